//! `[output] messages = "packed"`: the same results as the embedded run in
//! far fewer messages, each of one type with a meaningful routing key, a
//! deterministic id and its result count; `sluice tail` prints them as
//! lines.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::amqp::{self, Got};
use crate::common;

fn packed_manifest(dir: &Path, queue: &str, exchange: &str) -> PathBuf {
    let path = amqp::manifest(dir, queue, exchange);
    let text = std::fs::read_to_string(&path).expect("manifest").replace(
        &format!("exchange = {exchange:?}"),
        &format!("exchange = {exchange:?}\nmessages = \"packed\""),
    );
    assert!(text.contains("messages = \"packed\""));
    std::fs::write(&path, text).expect("manifest");
    path
}

fn slug(ty: &str) -> String {
    ty.to_lowercase().replace(' ', "-")
}

/// Runs the host once over `input` published to a fresh queue; returns
/// what its exchange received.
fn run_once(dir: &Path, input: &Path, tag: &str) -> (Vec<Got>, PathBuf) {
    let (queue, exchange) = (amqp::unique(tag), amqp::unique(&format!("{tag}-out")));
    let manifest = packed_manifest(dir, &queue, &exchange);
    let rt = amqp::runtime();
    let (_conn, channel) = rt.block_on(amqp::connect());
    let collector = rt.block_on(amqp::collector(&channel, &exchange));
    amqp::publish(&manifest, input, 100);
    let out = amqp::run_host(&manifest, "1.5", &["--workers", "2"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = rt.block_on(amqp::drain(&channel, &collector));
    let dead = format!("{queue}.dead");
    rt.block_on(amqp::delete(&channel, &[&queue, &dead, &collector]));
    (got, manifest)
}

#[test]
fn packed_results_are_the_embedded_runs_in_few_typed_messages() {
    let _guard = amqp::shared();
    let dir = tempfile::tempdir().expect("tempdir");
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
            "--ramp",
            "2",
        ],
    );
    let (got, manifest) = run_once(dir.path(), &input, "packed");
    let embedded = amqp::embedded_lines(&manifest, &input);
    assert!(embedded.len() > 1000, "the input makes results");

    let mut lines = Vec::new();
    let mut ids = BTreeSet::new();
    for g in &got {
        let text = g.text();
        assert!(text.ends_with('\n'), "newline-delimited: {text:.200}");
        let count = text.lines().count();
        assert_eq!(
            g.headers.get("x-sluice-results"),
            Some(&count.to_string()),
            "the header counts the lines"
        );
        assert!(text.len() <= 1 << 20, "a message holds at most 1 MiB");
        for line in text.lines() {
            let v: Value = serde_json::from_str(line).expect("each line is JSON");
            assert_eq!(
                slug(v["type"].as_str().expect("type")),
                g.routing_key,
                "one type per message, its slug the routing key"
            );
            lines.push(line.to_owned());
        }
        let id = g.message_id.clone().expect("a message id");
        assert!(id.starts_with(&format!("{}:", g.routing_key)), "{id}");
        assert!(ids.insert(id), "ids are unique");
    }
    lines.sort();
    assert_eq!(lines.len(), embedded.len(), "every result, once");
    assert!(lines == embedded, "the same results as the embedded run");
    assert!(
        got.len() * 20 < embedded.len(),
        "{} messages for {} results",
        got.len(),
        embedded.len()
    );

    // A binding on a type still selects it: `sluice tail --type alert`
    // prints exactly the alerts, as lines.
    let alerts: Vec<&String> = embedded
        .iter()
        .filter(|l| l.contains("\"type\":\"Alert\""))
        .collect();
    assert!(!alerts.is_empty(), "the ramp keys raise alerts");
    let (queue, exchange) = (amqp::unique("ptail"), amqp::unique("ptail-out"));
    let tail_manifest = packed_manifest(dir.path(), &queue, &exchange);
    amqp::tail_prints_the_alerts(&tail_manifest, &input, &alerts, "1.5");
    let rt = amqp::runtime();
    let (_conn, channel) = rt.block_on(amqp::connect());
    let dead = format!("{queue}.dead");
    rt.block_on(amqp::delete(&channel, &[&queue, &dead]));
}
