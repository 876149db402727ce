//! `/metrics` read by a real Prometheus parser, its counters equal to the
//! run's own figures.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::amqp::{self, unique};
use crate::common;
use crate::host::{Data, Served, OPERATOR};

/// `(name, tenant label) → value` of every sample but those of
/// `sluice_tenant_state` (see [`states`]), as the Python
/// `prometheus_client` OpenMetrics parser reads the text (it fails on text
/// that is not valid OpenMetrics).
pub fn parse(text: &str) -> BTreeMap<(String, String), f64> {
    samples(text)
        .into_iter()
        .filter(|(name, _, _, _)| name != "sluice_tenant_state")
        .map(|(name, tenant, _, value)| ((name, tenant), value))
        .collect()
}

/// `tenant → (state → value)` of `sluice_tenant_state`, read by the same
/// parser.
pub fn states(text: &str) -> BTreeMap<String, BTreeMap<String, f64>> {
    let mut out: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
    for (name, tenant, state, value) in samples(text) {
        if name == "sluice_tenant_state" {
            out.entry(tenant).or_default().insert(state, value);
        }
    }
    out
}

/// The one state of `tenant` whose series is 1, asserting that there is
/// exactly one and that every state has a series.
pub fn state_of(text: &str, tenant: &str) -> String {
    let all = states(text);
    let mine = all
        .get(tenant)
        .unwrap_or_else(|| panic!("no sluice_tenant_state of {tenant}: {text}"));
    let known = ["auto_paused", "failed", "paused", "running", "stuck"];
    assert_eq!(
        mine.keys().map(String::as_str).collect::<Vec<_>>(),
        known,
        "{text}"
    );
    let on: Vec<&String> = mine
        .iter()
        .filter(|(_, v)| **v == 1.0)
        .map(|(s, _)| s)
        .collect();
    assert_eq!(on.len(), 1, "{tenant}: {mine:?}");
    assert!(mine.values().all(|v| *v == 0.0 || *v == 1.0), "{mine:?}");
    on[0].clone()
}

/// `(name, tenant, state, value)` of every sample (labels not given: "").
fn samples(text: &str) -> Vec<(String, String, String, f64)> {
    let python = std::env::var("SLUICE_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
out = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        out.append([s.name, s.labels.get("tenant", ""), s.labels.get("state", ""), s.value])
print(json.dumps(out))
"#;
    let mut child = Command::new(&python)
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("running {python} (set SLUICE_PYTHON to the venv's python): {e}")
        });
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("writing the metrics to the parser");
    let out = child.wait_with_output().expect("the parser");
    assert!(
        out.status.success(),
        "prometheus_client refused /metrics: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the parser's JSON")
}

/// The number just before `label` in a `sluice run` summary.
fn figure(stderr: &str, label: &str) -> u64 {
    let at = stderr
        .find(&format!(" {label}"))
        .unwrap_or_else(|| panic!("no `{label}` in: {stderr}"));
    stderr[..at]
        .rsplit([' ', ','])
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number before `{label}` in: {stderr}"))
}

#[test]
fn metrics_parse_as_openmetrics_and_count_what_the_run_counted() {
    let test_started = Instant::now();
    let _broker = amqp::shared();
    let dir = tempfile::tempdir().expect("tempdir");
    let queue = unique("serve.metrics");
    let exchange = format!("{queue}.out");
    let manifest = amqp::manifest(dir.path(), &queue, &exchange);
    let data = Data::bts(
        dir.path(),
        &["--events", "5000", "--dirty", "0.02", "--ramp", "2"],
    );
    let bytes = std::fs::metadata(&data.path).expect("data").len();
    // The embedded run's own count of deserialization errors.
    let embedded = common::run(&manifest, &data.path, 2);
    let bad = figure(&embedded.stderr, "deserialization errors");
    assert!(bad > 0, "the data should have bad rows");

    let rt = amqp::runtime();
    let (_conn, channel) = rt.block_on(amqp::connect());
    let collector = rt.block_on(amqp::collector(&channel, &exchange));
    let served = Served::start(dir.path(), &[], &[&manifest]);
    amqp::publish(&manifest, &data.path, 50);
    served.wait_records("bts", data.rows);

    // Records are counted as read, bad ones and results a little later,
    // and results arrive after they are counted: collect until what
    // arrived is what `/metrics` counts and every bad row is counted (they
    // agree once the tenant is quiet).
    let mut got = Vec::new();
    let started = Instant::now();
    let samples = loop {
        got.extend(rt.block_on(amqp::drain(&channel, &collector)));
        let (status, text) = served.get("/metrics", Some(OPERATOR));
        assert_eq!(status, 200);
        let samples = parse(text.as_str().expect("metrics text"));
        let of = |name: &str| samples[&(name.to_owned(), "bts".to_owned())];
        let (outputs, errors) = (
            of("sluice_outputs_total"),
            of("sluice_deserialization_errors_total"),
        );
        if outputs > 0.0 && outputs as usize == got.len() && errors == bad as f64 {
            break samples;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "/metrics counts {outputs} outputs and {errors} bad rows; {} results arrived, {bad} bad rows in the data",
            got.len()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let at = |name: &str| samples[&(name.to_owned(), "bts".to_owned())];
    assert_eq!(at("sluice_records_in_total"), data.rows as f64);
    assert_eq!(at("sluice_input_bytes_total"), bytes as f64);
    assert_eq!(at("sluice_deserialization_errors_total"), bad as f64);
    assert_eq!(at("sluice_late_events_dropped_total"), 0.0);
    let alerts = got
        .iter()
        .filter(|m| m.text().contains("\"type\":\"Alert\""))
        .count();
    assert!(alerts > 0, "the ramp keys should raise alerts");
    assert_eq!(at("sluice_alerts_total"), alerts as f64);
    assert_eq!(at("sluice_guest_traps_total"), 0.0);
    assert_eq!(at("sluice_tenant_paused"), 0.0);
    assert_eq!(at("sluice_tenant_running"), 1.0);
    let (_, text) = served.get("/metrics", Some(OPERATOR));
    assert_eq!(
        state_of(text.as_str().expect("metrics text"), "bts"),
        "running"
    );
    assert!(at("sluice_checkpoint_size_bytes") > 0.0);
    assert!(at("sluice_checkpoint_write_duration_seconds_count") >= 1.0);
    assert!(at("sluice_guest_cpu_seconds_total") > 0.0);
    assert!(at("sluice_events_per_second") >= 0.0);
    // Windows fired and outputs went out: both latencies were observed,
    // each between zero and the time this test has run.
    let test_time = test_started.elapsed().as_secs_f64();
    for name in [
        "sluice_window_fire_latency_seconds",
        "sluice_end_to_end_latency_seconds",
    ] {
        let count = at(&format!("{name}_count"));
        let sum = at(&format!("{name}_sum"));
        assert!(count >= 1.0, "{name}: no observation");
        assert!(
            sum >= 0.0 && sum / count <= test_time,
            "{name}: mean {} s in a test of {test_time} s",
            sum / count
        );
    }
    // Everything is done with: the backlog drains to zero (acks come with
    // checkpoints, the gauges are sampled each second).
    let started = Instant::now();
    loop {
        let (_, text) = served.get("/metrics", Some(OPERATOR));
        let samples = parse(text.as_str().expect("metrics text"));
        let at = |name: &str| samples[&(name.to_owned(), "bts".to_owned())];
        if at("sluice_consumer_lag_messages") == 0.0 && at("sluice_input_queue_messages") == 0.0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the backlog never drained: {text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    served.stop();
    rt.block_on(amqp::delete(
        &channel,
        &[&queue, &collector, &format!("{queue}.dead")],
    ));
}
