//! Results through the broker equal the embedded run's; bad records and
//! undecodable messages are dead-lettered and never redelivered; a
//! standard client's messages work like `sluice publish`'s; `sluice tail`
//! prints what the host publishes.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use lapin::options::BasicPublishOptions;
use lapin::BasicProperties;
use serde_json::Value;

use crate::amqp::{self, figure, Got};
use crate::common;

/// The routing key a result line must have: `<type>.<key values>`.
fn expected_routing_key(line: &str) -> String {
    let v: Value = serde_json::from_str(line).expect("result JSON");
    let ty = match v["type"].as_str().expect("type") {
        "Windowed Analytic" => "windowed-analytic",
        "Global Analytic" => "global-analytic",
        "Windowed Metric" => "windowed-metric",
        "Global Metric" => "global-metric",
        "Alert" => "alert",
        other => panic!("unknown type {other}"),
    };
    let mut key = ty.to_owned();
    if let Some(k) = v["key"].as_object() {
        for name in ["station_id", "datapoint_id", "alarm_id"] {
            if let Some(part) = k.get(name).and_then(Value::as_str) {
                key.push('.');
                key.push_str(part);
            }
        }
    }
    key
}

#[test]
fn results_through_the_broker_equal_the_embedded_run() {
    let _guard = amqp::shared();
    let dir = tempfile::tempdir().expect("tempdir");
    let (queue, exchange) = (amqp::unique("in"), amqp::unique("out"));
    let manifest = amqp::manifest(dir.path(), &queue, &exchange);
    let input = common::gen_bts(
        dir.path(),
        "bts.csv",
        &[
            "--events",
            "20000",
            "--stations",
            "4",
            "--dirty",
            "0.01",
            "--out-of-order",
            "0.05",
            "--ramp",
            "2",
        ],
    );
    let embedded = amqp::embedded_lines(&manifest, &input);
    assert!(embedded.len() > 1000, "the input makes results");

    let rt = amqp::runtime();
    let (_conn, channel) = rt.block_on(amqp::connect());
    let collector = rt.block_on(amqp::collector(&channel, &exchange));
    // Messages of 7 lines: rows of one message spread over keys and chunks.
    let published = amqp::publish(&manifest, &input, 7);
    assert!(
        published.contains("2858 messages, 20000 rows"),
        "{published}"
    );

    let out = amqp::run_host(&manifest, "1.5", &["--workers", "2"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "sluice run --amqp failed: {stderr}");
    assert_eq!(figure(&stderr, "messages consumed"), 2858, "{stderr}");

    let got = rt.block_on(amqp::drain(&channel, &collector));
    let mut lines: Vec<String> = got.iter().map(Got::text).collect();
    lines.sort();
    assert_eq!(
        lines.len(),
        embedded.len(),
        "as many results as the embedded run"
    );
    assert!(lines == embedded, "the same results as the embedded run");
    for g in &got {
        assert_eq!(
            g.routing_key,
            expected_routing_key(&g.text()),
            "{}",
            g.text()
        );
    }
    let ids: BTreeSet<_> = got.iter().filter_map(|g| g.message_id.clone()).collect();
    assert_eq!(ids.len(), got.len(), "every result has its own message id");
    // Everything was acked: nothing waits in the input queue.
    assert_eq!(rt.block_on(amqp::ready(&channel, &queue)), 0);
    let dead = format!("{queue}.dead");
    let letters = rt.block_on(amqp::drain(&channel, &dead));
    assert!(
        letters
            .iter()
            .all(|l| l.headers.get("x-sluice-kind").map(String::as_str) == Some("bad-row")),
        "only bad rows in this input"
    );
    assert_eq!(
        letters.len(),
        200,
        "1 % of 20 000 rows are dirty, each dead-lettered"
    );
    rt.block_on(amqp::delete(&channel, &[&queue, &dead, &collector]));
}

#[test]
fn bad_rows_and_undecodable_messages_are_dead_lettered_once() {
    let _guard = amqp::shared();
    let dir = tempfile::tempdir().expect("tempdir");
    let (queue, exchange) = (amqp::unique("bad"), amqp::unique("bad-out"));
    let manifest = amqp::manifest(dir.path(), &queue, &exchange);
    let rt = amqp::runtime();
    let (_conn, channel) = rt.block_on(amqp::connect());
    let collector = rt.block_on(amqp::collector(&channel, &exchange));
    rt.block_on(async {
        sluice_host::amqp::topology::declare_input(&channel, &queue)
            .await
            .expect("declare");
        let good = "S1,121,308,2017-02-18 18:28:05 UTC,240.0,999999.0,false\n\
                    S1,121,308,2017-02-18 18:28:06 UTC,241.0,999999.0,true\n";
        let messages: Vec<(&str, Vec<u8>)> = vec![
            // Good rows, a bad number and an empty line in one message.
            (
                "mixed",
                format!("{good}S1,121,308,2017-02-18 18:28:07 UTC,abc,999999.0,false\n\n")
                    .into_bytes(),
            ),
            (
                "latin1",
                b"S1,121,308,2017-02-18 18:28:08 UTC,24\xe9.0,999999.0,false\n".to_vec(),
            ),
            ("huge", vec![b'x'; 5000]),
            (
                "tail",
                b"S1,121,308,2017-02-18 18:29:30 UTC,242.0,999999.0,false\n".to_vec(),
            ),
        ];
        for (id, body) in messages {
            channel
                .basic_publish(
                    "".into(),
                    queue.as_str().into(),
                    BasicPublishOptions::default(),
                    &body,
                    BasicProperties::default()
                        .with_delivery_mode(2)
                        .with_message_id(id.into()),
                )
                .await
                .expect("publish")
                .await
                .expect("confirm");
        }
    });

    let out = amqp::run_host(&manifest, "1", &["--max-message-bytes", "4096"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(figure(&stderr, "messages consumed"), 4, "{stderr}");
    assert_eq!(figure(&stderr, "dead-lettered undecoded"), 2, "{stderr}");
    assert!(stderr.contains("2 deserialization errors"), "{stderr}");

    // The dead-letter queue: both undecodable messages, verbatim, with a
    // reason; and both bad rows as JSON dead letters.
    let dead = format!("{queue}.dead");
    let letters = rt.block_on(amqp::drain(&channel, &dead));
    let by_kind = |kind: &str| -> Vec<&Got> {
        letters
            .iter()
            .filter(|l| l.headers.get("x-sluice-kind").map(String::as_str) == Some(kind))
            .collect()
    };
    let messages = by_kind("message");
    assert_eq!(messages.len(), 2, "{letters:?}");
    let reasons: BTreeMap<_, _> = messages
        .iter()
        .map(|m| {
            (
                m.message_id.clone().unwrap_or_default(),
                m.headers["x-sluice-reason"].clone(),
            )
        })
        .collect();
    assert!(reasons["latin1"].starts_with("not UTF-8"), "{reasons:?}");
    assert!(
        reasons["huge"].contains("exceeds the limit of 4096 bytes"),
        "{reasons:?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.body.as_slice() == vec![b'x'; 5000].as_slice()),
        "kept verbatim"
    );
    let rows = by_kind("bad-row");
    assert_eq!(rows.len(), 2, "{letters:?}");
    for row in rows {
        let v: Value = serde_json::from_str(&row.text()).expect("dead letter JSON");
        assert_eq!(v["position"]["source"], "amqp:mixed", "{v}");
    }

    // The good rows made results: a minute window of S1 with 2 events.
    let results = rt.block_on(amqp::drain(&channel, &collector));
    let counted: Vec<Value> = results
        .iter()
        .map(|g| serde_json::from_str(&g.text()).expect("JSON"))
        .filter(|v: &Value| {
            v["type"] == "Windowed Analytic" && v["window"]["end"] == 1487442540000_i64
        })
        .collect();
    assert!(
        counted.iter().any(|v| v["data"]["counter"] == 2),
        "the two good rows of the mixed message were counted: {counted:?}"
    );

    // Nothing is redelivered: a second host finds the queue empty.
    assert_eq!(rt.block_on(amqp::ready(&channel, &queue)), 0);
    let again = amqp::run_host(&manifest, "1", &[]);
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success(), "{stderr}");
    assert_eq!(figure(&stderr, "messages consumed"), 0, "{stderr}");
    rt.block_on(amqp::delete(&channel, &[&queue, &dead, &collector]));
}

/// The interpreter with `pika` (scripts/test.sh installs it in a venv).
fn python() -> String {
    std::env::var("SLUICE_PYTHON").unwrap_or_else(|_| "/var/cache/sluice/venv/bin/python".into())
}

#[test]
fn a_standard_client_without_message_ids_works_like_sluice_publish() {
    let _guard = amqp::shared();
    let dir = tempfile::tempdir().expect("tempdir");
    let (queue, exchange) = (amqp::unique("pika"), amqp::unique("pika-out"));
    let manifest = amqp::manifest(dir.path(), &queue, &exchange);
    let input = common::gen_bts(
        dir.path(),
        "bts.csv",
        &["--events", "1500", "--stations", "2", "--dirty", "0.02"],
    );
    // Identical readings twice: both must count.
    let mut text = std::fs::read_to_string(&input).expect("input");
    let first: String = text.lines().take(50).map(|l| format!("{l}\n")).collect();
    text.push_str(&first);
    std::fs::write(&input, &text).expect("input");
    let embedded = amqp::embedded_lines(&manifest, &input);

    let rt = amqp::runtime();
    let (_conn, channel) = rt.block_on(amqp::connect());
    let collector = rt.block_on(amqp::collector(&channel, &exchange));
    // As the README tells sensors: a durable queue whose dead-letter
    // exchange is `<queue>.dead`, persistent messages, one row each.
    let script = r#"
import sys, pika
url, queue, path = sys.argv[1:4]
conn = pika.BlockingConnection(pika.URLParameters(url))
ch = conn.channel()
ch.queue_declare(queue=queue, durable=True, arguments={"x-dead-letter-exchange": queue + ".dead"})
ch.confirm_delivery()
n = 0
with open(path, "rb") as f:
    for line in f:
        ch.basic_publish(exchange="", routing_key=queue, body=line,
                         properties=pika.BasicProperties(delivery_mode=2))
        n += 1
conn.close()
print(n)
"#;
    let out = Command::new(python())
        .args(["-c", script, &amqp::url(), &queue])
        .arg(&input)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "running {} ({e}); scripts/test.sh sets up the venv",
                python()
            )
        });
    assert!(
        out.status.success(),
        "pika publisher failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1550");

    let run = amqp::run_host(&manifest, "1.5", &[]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert_eq!(figure(&stderr, "messages consumed"), 1550, "{stderr}");
    let mut lines: Vec<String> = rt
        .block_on(amqp::drain(&channel, &collector))
        .iter()
        .map(Got::text)
        .collect();
    lines.sort();
    assert_eq!(lines.len(), embedded.len());
    assert!(
        lines == embedded,
        "the same results as the embedded run of the same rows"
    );
    let dead = format!("{queue}.dead");
    rt.block_on(amqp::delete(&channel, &[&queue, &dead, &collector]));
}

#[test]
fn sluice_tail_prints_the_published_results() {
    let _guard = amqp::shared();
    let dir = tempfile::tempdir().expect("tempdir");
    let (queue, exchange) = (amqp::unique("tail"), amqp::unique("tail-out"));
    let manifest = amqp::manifest(dir.path(), &queue, &exchange);
    let input = common::gen_bts(
        dir.path(),
        "bts.csv",
        &["--events", "2000", "--stations", "1", "--ramp", "1"],
    );
    let embedded = amqp::embedded_lines(&manifest, &input);
    let alerts: Vec<&String> = embedded
        .iter()
        .filter(|l| l.contains("\"type\":\"Alert\""))
        .collect();
    assert!(!alerts.is_empty(), "the ramp key raises alerts");

    amqp::tail_prints_the_alerts(&manifest, &input, &alerts, "1");

    let rt = amqp::runtime();
    let (_conn, channel) = rt.block_on(amqp::connect());
    let dead = format!("{queue}.dead");
    rt.block_on(amqp::delete(&channel, &[&queue, &dead]));
}
