//! Host ceilings of `sluice run`: a tenant hoarding ~900 KiB of alert state
//! per key over 3 000 keys stays in bounded memory and only its hoarding
//! keys are affected; keys beyond the key ceiling are dead-lettered as
//! `limit` without changing the results of the others; a manifest over
//! the panes ceiling is refused at load.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{self, sluice};

fn hoarder_manifest(dir: &Path, hoard_kib: u32) -> PathBuf {
    let text = format!(
        r#"tenant = "hoarder"
module = {module:?}

[input]
queue = "hoarder.in"
columns = [
  {{ name = "k", type = "text" }},
  {{ name = "t", type = "timestamp", format = "%Y-%m-%d %H:%M:%S UTC" }},
  {{ name = "v", type = "float" }},
]
key = ["k"]
event_time = "t"

[[windows]]
name = "minute"
kind = "tumbling"
size = "60s"
aggregate = "count"

[alerts]
function = "hoard"

[params]
hoard_kib = "{hoard_kib}"

[limits]
memory = "128MiB"
max_output = "16MiB"

[output]
exchange = "hoarder.out"
"#,
        module = common::component("hoarder").display().to_string()
    );
    let path = dir.join(format!("hoarder-{hoard_kib}.toml"));
    std::fs::write(&path, text).expect("manifest");
    path
}

/// 3 000 hoarding keys and 20 healthy ones, 2 rows each (healthy: 30).
fn hoarder_input(dir: &Path) -> PathBuf {
    let mut text = String::new();
    let at = |sec: u32| format!("2017-02-18 10:{:02}:{:02} UTC", sec / 60, sec % 60);
    for i in 0..3_000u32 {
        if i % 100 == 0 {
            for h in 0..20u32 {
                let _ = writeln!(text, "ok-{h},{},1.0", at(i));
            }
        }
        for r in 0..2u32 {
            let _ = writeln!(text, "hoard-{i},{},{r}.5", at(i + r));
        }
    }
    let path = dir.join("hoard.csv");
    std::fs::write(&path, text).expect("input");
    path
}

/// `sluice run` with a VmHWM monitor; (outputs, dead letters, peak MB).
fn run_measured(manifest: &Path, input: &Path, extra: &[&str]) -> (Vec<Value>, Vec<Value>, u64) {
    let dir = manifest.parent().expect("dir");
    let (out_path, dead_path) = (dir.join("m-out.jsonl"), dir.join("m-dead.jsonl"));
    let child = sluice()
        .arg("run")
        .arg(manifest)
        .arg("--input")
        .arg(input)
        .arg("--output")
        .arg(&out_path)
        .arg("--dead-letter")
        .arg(&dead_path)
        .args(["--workers", "2", "--quiet"])
        .args(extra)
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let monitor = common::PeakRss::watch(child.id());
    let out = child.wait_with_output().expect("wait");
    let peak_mib = monitor.stop_mib();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read = |p: &Path| -> Vec<Value> {
        std::fs::read_to_string(p)
            .expect("read")
            .lines()
            .map(|l| serde_json::from_str(l).expect("JSON"))
            .collect()
    };
    (read(&out_path), read(&dead_path), peak_mib)
}

fn sorted(values: impl Iterator<Item = String>) -> Vec<String> {
    let mut v: Vec<String> = values.collect();
    v.sort();
    v
}

#[test]
fn a_tenant_hoarding_900_kib_per_key_over_3000_keys_is_refused_per_key_in_bounded_memory() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let input = hoarder_input(dir);
    // The same tenant without hoarding: what every result must be.
    let (calm_out, calm_dead, calm_peak) = run_measured(&hoarder_manifest(dir, 0), &input, &[]);
    assert!(calm_dead.is_empty(), "{:?}", &calm_dead[..1]);
    let started = Instant::now();
    let (out, dead, peak) = run_measured(&hoarder_manifest(dir, 900), &input, &[]);
    let took = started.elapsed();
    eprintln!(
        "hoarder: peak RSS {peak} MB (without hoarding {calm_peak} MB), {:.1} s",
        took.as_secs_f64()
    );
    // 3 000 × 900 KiB would be 2.7 GB held.
    assert!(peak < 400, "peak RSS {peak} MB");
    assert!(took < Duration::from_secs(300), "took {took:?}");

    // Windows and the healthy keys' alerts are unchanged.
    assert!(
        sorted(out.iter().map(Value::to_string))
            == sorted(
                calm_out
                    .iter()
                    .filter(|o| {
                        o["type"] != "Alert"
                            || o["key"]["k"].as_str().is_some_and(|k| k.starts_with("ok-"))
                    })
                    .map(Value::to_string)
            ),
        "the same windows and healthy alerts"
    );
    let healthy_alerts = out.iter().filter(|o| o["type"] == "Alert").count();
    assert_eq!(
        healthy_alerts,
        20 * 3,
        "ok keys: 30 rows each, an alert every tenth"
    );
    // Every hoarding key's events are a poison dead letter naming the
    // ceiling, and nothing else is.
    let mut poisoned = BTreeSet::new();
    for d in &dead {
        assert_eq!(d["kind"], "poison", "{d}");
        let k = d["key"]["k"].as_str().expect("key");
        assert!(k.starts_with("hoard-"), "{d}");
        let reason = d["reason"].as_str().expect("reason");
        assert!(reason.contains("max_key_state"), "{reason}");
        poisoned.insert(k.to_owned());
    }
    assert_eq!(poisoned.len(), 3_000, "every hoarding key, no other");
}

#[test]
fn keys_beyond_the_key_ceiling_are_limit_dead_letters_and_the_others_unchanged() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let manifest = common::bts_manifest(dir, "max_out_of_orderness = \"5s\"\n");
    let input = common::gen_bts(dir, "in.csv", &["--events", "5000", "--dirty", "0"]);
    let all = common::run(&manifest, &input, 2);
    let (out, dead, _) = run_measured(&manifest, &input, &["--max-keys", "20"]);
    // The first 20 keys in arrival order are admitted.
    let mut admitted = Vec::new();
    for line in std::fs::read_to_string(&input).expect("input").lines() {
        let key = line.split(',').take(3).collect::<Vec<_>>().join("/");
        if !admitted.contains(&key) && admitted.len() < 20 {
            admitted.push(key);
        }
    }
    let keys: BTreeSet<String> = out.iter().map(common::key_of).collect();
    assert_eq!(keys.len(), 20);
    assert!(keys.iter().all(|k| admitted.contains(k)));
    let want = sorted(
        all.outputs
            .iter()
            .filter(|o| admitted.contains(&common::key_of(o)))
            .map(Value::to_string),
    );
    assert!(
        sorted(out.iter().map(Value::to_string)) == want,
        "admitted keys unchanged"
    );
    assert!(!dead.is_empty());
    for d in &dead {
        assert_eq!(d["kind"], "limit", "{d}");
        assert!(!admitted.contains(&common::key_of(d)), "{d}");
        assert!(
            d["reason"].as_str().expect("reason").contains("max_keys"),
            "{d}"
        );
    }
    let rejected_rows = all.outputs.len() - want.len();
    assert!(rejected_rows > 0);
}

#[test]
fn a_manifest_over_the_panes_ceiling_is_refused_at_load_naming_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let windows = common::BTS_WINDOWS
        .replace("size = \"60s\"", "size = \"10000s\"")
        .replace("slide = \"5s\"", "slide = \"1s\"");
    let manifest = common::manifest(dir, "bts_analytics", "", &windows);
    let input = common::gen_bts(dir, "in.csv", &["--events", "20"]);
    let run = |extra: &[&str]| {
        sluice()
            .arg("run")
            .arg(&manifest)
            .arg("--input")
            .arg(&input)
            .arg("--output")
            .arg(dir.join("out.jsonl"))
            .arg("--quiet")
            .args(extra)
            .output()
            .expect("run")
    };
    let out = run(&[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "accepted");
    assert!(
        stderr.contains("window `minute` has 10000 panes"),
        "{stderr}"
    );
    assert!(stderr.contains("max_panes_per_window"), "{stderr}");
    assert_eq!(
        std::fs::metadata(dir.join("out.jsonl")).map_or(0, |m| m.len()),
        0,
        "nothing was read or written"
    );
    let out = run(&["--max-panes-per-window", "10000"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
