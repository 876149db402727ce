//! A trapping tenant beside a healthy one: the healthy one's results are
//! complete and right, the trapping one is paused automatically.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::amqp::{self, unique};
use crate::common;
use crate::host::{collected, tenant_token, Data, Served, OPERATOR};

/// The `hostile` test guest trapping on `value = 666`, as tenant
/// `hostile` on its own queue (BTS columns, a tumbling window, alerts).
fn hostile_manifest(dir: &Path, queue: &str, exchange: &str) -> PathBuf {
    let sub = dir.join("hostile");
    std::fs::create_dir_all(&sub).expect("dir");
    let rest = r#"
[[windows]]
name = "ten"
kind = "tumbling"
size = "10s"
aggregate = "count"

[alerts]
function = "alerts"

[params]
mode = "trap-on-value"
poison = "666"
"#;
    let path = common::manifest(&sub, "hostile", "", rest);
    let text = std::fs::read_to_string(&path)
        .expect("manifest")
        .replace("tenant = \"bts\"", "tenant = \"hostile\"")
        .replace("queue = \"bts.readings\"", &format!("queue = {queue:?}"))
        .replace(
            "exchange = \"bts.results\"",
            &format!("exchange = {exchange:?}"),
        );
    std::fs::write(&path, text).expect("writing the manifest");
    path
}

/// `rows` BTS-shaped rows over 5 keys, every `every`-th one poison.
fn rows(dir: &Path, name: &str, rows: usize, every: usize) -> PathBuf {
    let mut text = String::new();
    for i in 0..rows {
        let value = if every > 0 && i % every == every - 1 {
            666.0
        } else {
            1.5
        };
        text.push_str(&format!(
            "s{},1,1,2017-02-18 18:{:02}:{:02} UTC,{value},100,false,\n",
            i % 5,
            (i / 60) % 60,
            i % 60
        ));
    }
    let path = dir.join(name);
    std::fs::write(&path, text).expect("writing rows");
    path
}

#[test]
fn a_tenant_trapping_past_the_limit_is_paused_with_the_reason_and_its_neighbour_is_unharmed() {
    let _broker = amqp::shared();
    let dir = tempfile::tempdir().expect("tempdir");
    let (hq, bq) = (unique("serve.hostile"), unique("serve.healthy"));
    let (hx, bx) = (format!("{hq}.out"), format!("{bq}.out"));
    let hostile = hostile_manifest(dir.path(), &hq, &hx);
    let healthy = amqp::manifest(dir.path(), &bq, &bx);
    let healthy_data = Data::bts(dir.path(), &["--events", "4000", "--dirty", "0.01"]);
    // 20 poison rows, one per 10-row message: at least 20 trapping calls,
    // over the test host's limit of 5 a minute.
    let poison = rows(dir.path(), "poison.csv", 200, 10);
    let later = rows(dir.path(), "later.csv", 50, 0);
    let rt = amqp::runtime();
    let (_conn, channel) = rt.block_on(amqp::connect());
    let bc = rt.block_on(amqp::collector(&channel, &bx));
    let served = Served::start(dir.path(), &["hostile", "bts"], &[&healthy, &hostile]);

    amqp::publish(&hostile, &poison, 10);
    amqp::publish(&healthy, &healthy_data.path, 40);
    let started = Instant::now();
    let view = loop {
        let view = served.tenant("hostile");
        if view["state"] == "paused" {
            break view;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the trapping tenant was not paused: {view}\n{}",
            served.stderr()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let reason = view["reason"].as_str().unwrap_or("");
    assert!(
        reason.starts_with("auto-paused: ")
            && reason.contains("guest traps within a minute (limit 5)"),
        "{view}"
    );
    assert!(
        view["counters"]["guest_traps"].as_u64().unwrap_or(0) > 5,
        "{view}"
    );
    // Paused: what is published now waits in its queue (with whatever of
    // the poison batch had not been delivered yet) and is not read.
    amqp::publish(&hostile, &later, 10);
    assert!(rt.block_on(amqp::ready(&channel, &hq)) >= 5);
    let read = served.tenant("hostile")["counters"]["records_in"].as_u64();
    assert!(
        read.is_some_and(|n| n <= 200),
        "the paused tenant read {read:?} rows"
    );
    let (_, metrics) = served.get("/metrics", Some(OPERATOR));
    let metrics = metrics.as_str().unwrap_or("").to_owned();
    assert!(
        metrics.contains("sluice_tenant_paused{tenant=\"hostile\"} 1"),
        "{metrics}"
    );
    // Paused by the host, not by someone: `/metrics` tells them apart.
    assert_eq!(crate::metrics::state_of(&metrics, "hostile"), "auto_paused");
    assert_eq!(crate::metrics::state_of(&metrics, "bts"), "running");

    // The tenant reads its own log: its failed calls, what its guest wrote
    // (the panic message), and why the host paused it.
    let logs = served.cli(&["logs", "hostile", "--json"], &tenant_token("hostile"));
    assert!(
        logs.status.success(),
        "{}",
        String::from_utf8_lossy(&logs.stderr)
    );
    let entries: Vec<serde_json::Value> = String::from_utf8_lossy(&logs.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON entry"))
        .collect();
    let of = |source: &str| -> Vec<&str> {
        entries
            .iter()
            .filter(|e| e["source"] == source)
            .filter_map(|e| e["message"].as_str())
            .collect()
    };
    let traps = of("trap");
    assert!(traps.len() > 5, "{entries:?}");
    assert!(traps.iter().all(|m| m.contains("trapped")), "{traps:?}");
    assert!(
        of("stdio").iter().any(|m| m.contains("poison value 666")),
        "{entries:?}"
    );
    assert!(
        of("host").iter().any(|m| m.starts_with("auto-paused: ")),
        "{entries:?}"
    );
    let seqs: Vec<u64> = entries.iter().filter_map(|e| e["seq"].as_u64()).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    // Another tenant's token may not read it.
    let other = served.cli(&["logs", "hostile"], &tenant_token("bts"));
    assert!(!other.status.success());
    assert!(
        String::from_utf8_lossy(&other.stderr).contains("HTTP 403"),
        "{}",
        String::from_utf8_lossy(&other.stderr)
    );

    // The healthy neighbour: everything consumed, results equal its
    // embedded run, never paused.
    served.wait_records("bts", healthy_data.rows);
    assert_eq!(served.tenant("bts")["state"], "running");
    let out = served.cli(&["undeploy", "bts"], OPERATOR);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = collected(&rt, &channel, &bc);
    assert_eq!(got, amqp::embedded_lines(&healthy, &healthy_data.path));
    let minutes = started.elapsed().as_secs() / 60 + 1;
    let log = served.stop();
    // The host's log: the first few failed calls in full, the rest as a
    // count (the whole list is the tenant's log above).
    let full = log
        .lines()
        .filter(|l| l.contains("guest call failed; instance discarded"))
        .count() as u64;
    assert!(full <= 3 * minutes, "{full} lines in {minutes} min:\n{log}");
    assert!(
        log.lines()
            .any(|l| l.contains("more `guest call failed` warnings") && l.contains("hostile")),
        "{log}"
    );
    rt.block_on(amqp::delete(
        &channel,
        &[&hq, &bq, &bc, &format!("{hq}.dead"), &format!("{bq}.dead")],
    ));
}
