//! Many tenants in one host, pause and resume, redeploy mid-stream: each
//! tenant's results equal its own embedded `sluice run` of the same input.

use std::path::{Path, PathBuf};

use serde_json::json;

use crate::amqp::{self, unique};
use crate::common;
use crate::host::{self, collected, tenant_token, Data, Served, OPERATOR};

/// A second tenant unlike BTS: another schema (meter, ISO time, value),
/// another key, another module (the spike filter's process-window
/// function over 10 s tumbling windows).
fn meters_manifest(dir: &Path, queue: &str, exchange: &str) -> PathBuf {
    let text = format!(
        r#"tenant = "meters"
module = {module:?}

[input]
queue = {queue:?}
columns = [
  {{ name = "meter", type = "text" }},
  {{ name = "at", type = "timestamp", format = "%Y-%m-%dT%H:%M:%SZ" }},
  {{ name = "value", type = "float" }},
]
key = ["meter"]
event_time = "at"
max_out_of_orderness = "2s"

[[windows]]
name = "ten"
kind = "tumbling"
size = "10s"
process = "spikes"

[params]
spike_threshold = 5.0

[output]
exchange = {exchange:?}
"#,
        module = common::component("spike_filter").display().to_string(),
    );
    let path = dir.join("meters.toml");
    std::fs::write(&path, text).expect("writing the meters manifest");
    path
}

/// Deterministic meter readings with a few spikes and bad rows.
fn meters_data(dir: &Path, rows: usize) -> PathBuf {
    let mut text = String::new();
    let start = chrono::DateTime::parse_from_rfc3339("2024-03-01T00:00:00Z")
        .expect("start time")
        .timestamp();
    for i in 0..rows {
        let meter = format!("m{}", i % 7);
        let t = chrono::DateTime::from_timestamp(start + (i / 7) as i64, 0).expect("time");
        let at = t.format("%Y-%m-%dT%H:%M:%SZ");
        let base = 20.0 + (i % 7) as f64 + ((i / 7) % 5) as f64 * 0.1;
        let value = if i % 97 == 13 { base + 40.0 } else { base };
        if i % 211 == 5 {
            text.push_str(&format!("{meter},{at},not-a-number\n"));
        } else {
            text.push_str(&format!("{meter},{at},{value}\n"));
        }
    }
    let path = dir.join("meters.csv");
    std::fs::write(&path, text).expect("writing meter data");
    path
}

fn undeploy(served: &Served, tenant: &str) {
    let out = served.cli(&["undeploy", tenant], OPERATOR);
    assert!(
        out.status.success(),
        "sluice undeploy {tenant}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn two_tenants_with_different_schemas_and_modules_each_match_their_embedded_run() {
    let _broker = amqp::shared();
    let dir = tempfile::tempdir().expect("tempdir");
    let (bq, mq) = (unique("serve.two.bts"), unique("serve.two.meters"));
    let (bx, mx) = (format!("{bq}.out"), format!("{mq}.out"));
    let bts = amqp::manifest(dir.path(), &bq, &bx);
    let meters = meters_manifest(dir.path(), &mq, &mx);
    let bts_data = Data::bts(
        dir.path(),
        &[
            "--events",
            "4000",
            "--dirty",
            "0.01",
            "--out-of-order",
            "0.05",
        ],
    );
    let meters_data = Data::of(meters_data(dir.path(), 3000));
    let rt = amqp::runtime();
    let (_conn, channel) = rt.block_on(amqp::connect());
    let bc = rt.block_on(amqp::collector(&channel, &bx));
    let mc = rt.block_on(amqp::collector(&channel, &mx));

    // BTS starts with the host; meters is deployed through the CLI.
    let served = Served::start(dir.path(), &["bts", "meters"], &[&bts]);
    let out = served.cli(&["deploy", &meters.display().to_string()], OPERATOR);
    assert!(
        out.status.success(),
        "sluice deploy: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = served.cli(&["list"], OPERATOR);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("bts") && table.contains("meters"), "{table}");

    amqp::publish(&bts, &bts_data.path, 40);
    amqp::publish(&meters, &meters_data.path, 25);
    served.wait_records("bts", bts_data.rows);
    served.wait_records("meters", meters_data.rows);
    // Each tenant's token lists only its own tenant.
    let out = served.cli(&["list", "--json"], &tenant_token("meters"));
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("list JSON");
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(list[0]["tenant"], "meters");
    // A third tenant may not read another's queue or write into another's
    // exchange, and is not told whose it is.
    let spike = std::fs::read(common::component("spike_filter")).expect("module");
    for (queue, exchange) in [(bq.as_str(), "thief.out"), ("thief.in", mx.as_str())] {
        let thief = host::with_names(&meters, queue, exchange)
            .replace("tenant = \"meters\"", "tenant = \"thief\"");
        let (status, body) = served.deploy("thief", &thief, &spike);
        assert_eq!(status, 409, "{body}");
        assert!(
            !body.to_string().contains("bts") && !body.to_string().contains("meters"),
            "{body}"
        );
    }
    undeploy(&served, "bts");
    undeploy(&served, "meters");

    let bts_got = collected(&rt, &channel, &bc);
    let meters_got = collected(&rt, &channel, &mc);
    assert!(!meters_got.is_empty());
    assert!(meters_got
        .iter()
        .all(|l| l.contains("\"tenant\":\"meters\"")));
    assert_eq!(
        bts_got,
        amqp::embedded_lines(&bts, &bts_data.path),
        "BTS results differ from its embedded run"
    );
    assert_eq!(
        meters_got,
        amqp::embedded_lines(&meters, &meters_data.path),
        "meters results differ from its embedded run"
    );
    served.stop();
    rt.block_on(amqp::delete(
        &channel,
        &[
            &bq,
            &mq,
            &bc,
            &mc,
            &format!("{bq}.dead"),
            &format!("{mq}.dead"),
        ],
    ));
}

#[test]
fn pause_leaves_messages_in_the_queue_and_resume_drains_them_with_nothing_lost() {
    let _broker = amqp::shared();
    let dir = tempfile::tempdir().expect("tempdir");
    let queue = unique("serve.pause");
    let exchange = format!("{queue}.out");
    let manifest = amqp::manifest(dir.path(), &queue, &exchange);
    let data = Data::bts(dir.path(), &["--events", "3000", "--dirty", "0.01"]);
    let rt = amqp::runtime();
    let (_conn, channel) = rt.block_on(amqp::connect());
    let collector = rt.block_on(amqp::collector(&channel, &exchange));
    let served = Served::start(dir.path(), &["bts"], &[&manifest]);

    // The tenant pauses itself through the CLI with its own token.
    let out = served.cli(&["pause", "bts"], &tenant_token("bts"));
    assert!(
        out.status.success(),
        "sluice pause: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    amqp::publish(&manifest, &data.path, 30);
    let messages = data.rows.div_ceil(30) as u32;
    assert_eq!(
        rt.block_on(amqp::ready(&channel, &queue)),
        messages,
        "the paused tenant's queue should hold every message"
    );
    let view = served.tenant("bts");
    assert_eq!(view["state"], "paused");
    assert_eq!(view["reason"], "paused by the tenant");
    assert_eq!(view["counters"]["records_in"], 0);
    let (_, metrics) = served.get("/metrics", Some(OPERATOR));
    assert!(metrics
        .as_str()
        .unwrap_or("")
        .contains("sluice_tenant_paused{tenant=\"bts\"} 1"));
    assert_eq!(
        crate::metrics::state_of(metrics.as_str().unwrap_or(""), "bts"),
        "paused"
    );
    // The backlog gauges see the queue grow (sampled each second).
    let depth = format!("sluice_input_queue_messages{{tenant=\"bts\"}} {messages}\n");
    let lag = format!("sluice_consumer_lag_messages{{tenant=\"bts\"}} {messages}\n");
    let started = std::time::Instant::now();
    loop {
        let (_, metrics) = served.get("/metrics", Some(OPERATOR));
        let text = metrics.as_str().unwrap_or("").to_owned();
        if text.contains(&depth) && text.contains(&lag) {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "/metrics never showed {depth} and {lag}: {text}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }

    let out = served.cli(&["resume", "bts"], OPERATOR);
    assert!(
        out.status.success(),
        "sluice resume: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    served.wait_records("bts", data.rows);
    assert_eq!(rt.block_on(amqp::ready(&channel, &queue)), 0);
    assert_eq!(served.tenant("bts")["state"], "running");
    undeploy(&served, "bts");
    assert_eq!(
        collected(&rt, &channel, &collector),
        amqp::embedded_lines(&manifest, &data.path)
    );
    served.stop();
    rt.block_on(amqp::delete(
        &channel,
        &[&queue, &collector, &format!("{queue}.dead")],
    ));
}

#[test]
fn redeploy_mid_stream_swaps_the_module_at_a_checkpoint_with_nothing_lost_or_repeated() {
    let _broker = amqp::shared();
    let dir = tempfile::tempdir().expect("tempdir");
    let queue = unique("serve.swap");
    let exchange = format!("{queue}.out");
    let manifest = amqp::manifest(dir.path(), &queue, &exchange);
    let data = Data::bts(
        dir.path(),
        &[
            "--events",
            "6000",
            "--dirty",
            "0.01",
            "--out-of-order",
            "0.05",
            "--ramp",
            "2",
        ],
    );
    let [first, second] = data.halves(dir.path());
    let rt = amqp::runtime();
    let (_conn, channel) = rt.block_on(amqp::connect());
    let collector = rt.block_on(amqp::collector(&channel, &exchange));
    let served = Served::start(dir.path(), &[], &[&manifest]);
    let before = served.tenant("bts");

    amqp::publish(&manifest, &first.path, 40);
    served.wait_records("bts", first.rows);
    // The same tenant again — a new upload, swapped in at a barrier; the
    // open windows and the alert state must carry over.
    let manifest_text = host::with_names(&manifest, &queue, &exchange);
    let module = std::fs::read(common::component("bts_analytics")).expect("module");
    let (status, view) = served.deploy("bts", &manifest_text, &module);
    assert_eq!(status, 200, "redeploy: {view}");
    assert_eq!(view["state"], "running");
    assert_ne!(view["deployed_at"], json!(null));
    assert_eq!(
        view["counters"]["records_in"], first.rows,
        "counters carry over the swap"
    );
    assert!(before["deployed_at"].as_u64() <= view["deployed_at"].as_u64());
    amqp::publish(&manifest, &second.path, 40);
    served.wait_records("bts", data.rows);
    undeploy(&served, "bts");

    // Exactly the results of one uninterrupted embedded run: none lost,
    // none twice (sorted lines compared as multisets).
    assert_eq!(
        collected(&rt, &channel, &collector),
        amqp::embedded_lines(&manifest, &data.path)
    );
    let log = served.stop();
    assert!(
        log.contains("resuming from a checkpoint"),
        "the new version did not restore:\n{log}"
    );
    rt.block_on(amqp::delete(
        &channel,
        &[&queue, &collector, &format!("{queue}.dead")],
    ));
}

#[test]
fn sigterm_suspends_at_a_checkpoint_and_the_restarted_host_carries_on_exactly() {
    let _broker = amqp::shared();
    let dir = tempfile::tempdir().expect("tempdir");
    let queue = unique("serve.restart");
    let exchange = format!("{queue}.out");
    let manifest = amqp::manifest(dir.path(), &queue, &exchange);
    let data = Data::bts(
        dir.path(),
        &[
            "--events",
            "5000",
            "--dirty",
            "0.01",
            "--out-of-order",
            "0.05",
            "--ramp",
            "2",
        ],
    );
    let [first, second] = data.halves(dir.path());
    let rt = amqp::runtime();
    let (_conn, channel) = rt.block_on(amqp::connect());
    let collector = rt.block_on(amqp::collector(&channel, &exchange));

    let served = Served::start(dir.path(), &[], &[&manifest]);
    amqp::publish(&manifest, &first.path, 40);
    served.wait_records("bts", first.rows);
    let log = served.stop();
    assert!(
        log.contains("suspending every tenant at a checkpoint"),
        "{log}"
    );
    // Published while no host runs: waits in the queue.
    amqp::publish(&manifest, &second.path, 40);

    let served = Served::start_with(dir.path().join("host.toml"));
    served.wait_records("bts", data.rows);
    undeploy(&served, "bts");
    assert_eq!(
        collected(&rt, &channel, &collector),
        amqp::embedded_lines(&manifest, &data.path)
    );
    let log = served.stop();
    assert!(log.contains("resuming from a checkpoint"), "{log}");
    rt.block_on(amqp::delete(
        &channel,
        &[&queue, &collector, &format!("{queue}.dead")],
    ));
}
