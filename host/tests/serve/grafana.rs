//! `deploy/grafana/sluice.json` against a live `/metrics`: every metric
//! an expression of the dashboard names is one the host exports, with the
//! suffix its type gives it on the wire (`_total` of a counter, `_bucket`
//! of a histogram, none of a gauge).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::Value;

use crate::amqp::{self, unique};
use crate::host::{Data, Served, OPERATOR};

/// Every `sluice_…` name in `text`.
fn metric_names(text: &str, into: &mut BTreeSet<String>) {
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("sluice_") {
        let start = i + at;
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_lowercase() || bytes[end] == b'_') {
            end += 1;
        }
        into.insert(text[start..end].to_owned());
        i = end;
    }
}

/// Every string under a key `expr` or `definition`.
fn expressions(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr" | "definition", Value::String(s)) => out.push(s.clone()),
                    _ => expressions(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| expressions(v, out)),
        _ => {}
    }
}

#[test]
fn every_metric_the_grafana_dashboard_names_is_one_the_host_exports() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/grafana/sluice.json");
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("reading the dashboard"))
            .expect("the dashboard is JSON");
    let mut exprs = Vec::new();
    expressions(&dashboard, &mut exprs);
    assert!(exprs.len() >= 12, "{exprs:?}");
    let mut named = BTreeSet::new();
    for e in &exprs {
        metric_names(e, &mut named);
    }
    for wanted in [
        "sluice_records_in_total",
        "sluice_consumer_lag_messages",
        "sluice_end_to_end_latency_seconds_bucket",
        "sluice_window_fire_latency_seconds_bucket",
        "sluice_guest_traps_total",
        "sluice_checkpoint_write_duration_seconds_bucket",
    ] {
        assert!(named.contains(wanted), "the dashboard shows {wanted}");
    }

    // A live host with a tenant that has read, checkpointed and fired.
    let _broker = amqp::shared();
    let dir = tempfile::tempdir().expect("tempdir");
    let queue = unique("grafana");
    let manifest = amqp::manifest(dir.path(), &queue, &format!("{queue}.out"));
    let served = Served::start(dir.path(), &[], &[&manifest]);
    let data = Data::bts(dir.path(), &["--events", "1500"]);
    amqp::publish(&manifest, &data.path, 20);
    served.wait_records("bts", data.rows);
    // Checkpoint series appear with the first checkpoint written.
    let started = std::time::Instant::now();
    let text = loop {
        let (status, text) = served.get("/metrics", Some(OPERATOR));
        assert_eq!(status, 200);
        let text = text.as_str().expect("metrics text").to_owned();
        if text.contains("sluice_checkpoint_write_duration_seconds_count{") {
            break text;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "no checkpoint yet:\n{text}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    // `# TYPE name type` of every family, and the names of its samples.
    let types: BTreeMap<&str, &str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .collect();
    let sampled: BTreeSet<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    for name in &named {
        let (base, want) = if let Some(base) = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
        {
            (base, "histogram")
        } else if let Some(base) = name.strip_suffix("_total") {
            (base, "counter")
        } else {
            (name.as_str(), "gauge")
        };
        assert_eq!(
            types.get(base).copied(),
            Some(want),
            "the dashboard's {name} is no {want} `{base}` of /metrics:\n{text}"
        );
        // Partition series exist only for partitioned tenants; every
        // other name has a sample on this host.
        if !name.starts_with("sluice_partition_") {
            assert!(sampled.contains(name.as_str()), "no {name} sample:\n{text}");
        }
    }
    served.stop();
}
