//! `--amqp` and `--cassandra` together: records published to RabbitMQ are
//! consumed, their results published and stored, and every parsed row is
//! a raw event positioned by its message. Needs RabbitMQ too
//! (`scripts/services.sh start rabbitmq`).

use std::collections::BTreeMap;
use std::process::Command;

use crate::common::{self, bts_manifest, gen_bts, keyspace, Run};

const AMQP: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// Removes the test's queues and exchanges (best effort).
fn clean_broker(queue: &str, exchange: &str) {
    for q in [queue.to_owned(), format!("{queue}.dead")] {
        let _ = Command::new("rabbitmqctl")
            .args(["-q", "delete_queue", &q])
            .output();
    }
    for x in [exchange.to_owned(), format!("{queue}.dead")] {
        let _ = Command::new("curl")
            .args(["-s", "-u", "guest:guest", "-X", "DELETE"])
            .arg(format!("http://127.0.0.1:15672/api/exchanges/%2F/{x}"))
            .output();
    }
}

#[test]
fn records_from_the_broker_are_stored_with_their_results() {
    let _node = common::shared();
    let reachable = std::net::TcpStream::connect("127.0.0.1:5672").is_ok();
    assert!(
        reachable,
        "RabbitMQ is not reachable at 127.0.0.1:5672: run `scripts/services.sh start rabbitmq`"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let ks = keyspace("amqp");
    let (queue, exchange) = (format!("{ks}.in"), format!("{ks}.results"));
    let manifest = bts_manifest(dir.path(), "max_out_of_orderness = \"5s\"\n");
    let text = std::fs::read_to_string(&manifest)
        .expect("manifest")
        .replace("queue = \"bts.readings\"", &format!("queue = {queue:?}"))
        .replace(
            "exchange = \"bts.results\"",
            &format!("exchange = {exchange:?}"),
        );
    std::fs::write(&manifest, text).expect("manifest");
    let input = gen_bts(
        dir.path(),
        "in.csv",
        &[
            "--events",
            "5000",
            "--dirty",
            "0.02",
            "--out-of-order",
            "0.05",
            "--ramp",
            "2",
        ],
    );
    let published = common::sluice()
        .args([
            "publish",
            "--amqp",
            AMQP,
            "--queue",
            &queue,
            "--lines-per-message",
            "50",
        ])
        .arg(&input)
        .output()
        .expect("sluice publish");
    assert!(
        published.status.success(),
        "sluice publish failed: {}",
        String::from_utf8_lossy(&published.stderr)
    );
    let out_path = dir.path().join("out.jsonl");
    let dead_path = dir.path().join("dead.jsonl");
    let out = common::sluice()
        .arg("run")
        .arg(&manifest)
        .args([
            "--amqp",
            AMQP,
            "--until-idle",
            "2",
            "--cassandra",
            &common::node(),
        ])
        .args(["--keyspace", &ks, "--quiet", "--workers", "2"])
        .arg("--output")
        .arg(&out_path)
        .arg("--dead-letter")
        .arg(&dead_path)
        .output()
        .expect("sluice run");
    let run = Run::read(out, &out_path, &dead_path);
    clean_broker(&queue, &exchange);

    assert!(!run.lines.is_empty());
    common::assert_same_rows(
        "sluice query",
        &common::query(&ks, &[]),
        &common::expected_rows(&run.lines),
    );
    let stored: BTreeMap<String, u64> =
        serde_json::from_str(&common::python_read(&ks, "events").join("")).expect("JSON");
    assert_eq!(stored, common::parsed_per_key(&input, &run.dead));
    let sources = common::python_read(&ks, "sources");
    assert!(
        !sources.is_empty() && sources.iter().all(|s| s.starts_with("amqp:")),
        "raw events should be positioned by message: {sources:?}"
    );
    common::drop_keyspace(&ks);
}
