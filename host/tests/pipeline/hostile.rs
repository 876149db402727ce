//! Issue 18's sandbox attacks through the real `sluice run`: each run
//! finishes (time bounded), its peak RSS stays bounded (the child's
//! `VmHWM`), the guilty key or window is dead-lettered with a clear reason,
//! and every other key's results are right.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{self, component, key_of, manifest, sluice};

/// A finished child: exit status, peak RSS (bytes), wall time, what it
/// wrote.
struct Measured {
    success: bool,
    peak_rss: u64,
    elapsed: Duration,
    stderr: String,
    outputs: Vec<Value>,
    dead: Vec<Value>,
    dead_text: String,
}

/// Runs `sluice run MANIFEST --input INPUT EXTRA…`, sampling the child's
/// `VmHWM` every 5 ms until it exits. (Not `wait4`'s `ru_maxrss`: a child
/// spawned by a large test process inherits that process's peak.)
fn run_measured(manifest: &Path, input: &Path, extra: &[&str]) -> Measured {
    let dir = manifest.parent().expect("manifest in a dir");
    let out_path = dir.join("out.jsonl");
    let dead_path = dir.join("dead.jsonl");
    let err_path = dir.join("stderr.txt");
    let started = Instant::now();
    let mut child = sluice()
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
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&err_path).expect("stderr file"))
        .spawn()
        .expect("running sluice run");
    let mut peak_rss = 0;
    let status = loop {
        if let Some(hwm) = common::vm_hwm(child.id()) {
            peak_rss = peak_rss.max(hwm);
        }
        if let Some(status) = child.try_wait().expect("waiting for sluice run") {
            break status;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let elapsed = started.elapsed();
    let read = |p: &PathBuf| std::fs::read_to_string(p).unwrap_or_default();
    let parse = |text: String| -> Vec<Value> {
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l}: {e}")))
            .collect()
    };
    let dead_text = read(&dead_path);
    Measured {
        success: status.success(),
        peak_rss,
        elapsed,
        stderr: read(&err_path),
        outputs: parse(read(&out_path)),
        dead: parse(dead_text.clone()),
        dead_text,
    }
}

/// Good keys `g0…` with 10 rows each and guilty keys `b0…` with 13 rows
/// (the windows that make `hostile`'s finish misbehave), in one minute;
/// with `poison`, each guilty key's first row carries the poison value.
fn input(dir: &Path, good: usize, bad: usize, poison: bool) -> PathBuf {
    let mut text = String::new();
    for s in 0..13 {
        for g in 0..good {
            if s < 10 {
                text.push_str(&format!(
                    "g{g},1,1,2017-02-18 18:00:{s:02} UTC,1.5,100,false,\n"
                ));
            }
        }
        for b in 0..bad {
            let value = if poison && s == 0 { 666.0 } else { 1.5 };
            text.push_str(&format!(
                "b{b},1,1,2017-02-18 18:00:{s:02} UTC,{value},100,false,\n"
            ));
        }
    }
    let path = dir.join("rows.csv");
    std::fs::write(&path, text).expect("writing the input");
    path
}

fn hostile_manifest(dir: &Path, mode: &str, extra_params: &str, limits: &str) -> PathBuf {
    let rest = format!(
        r#"
[[windows]]
name = "minute"
kind = "tumbling"
size = "60s"
aggregate = "count"

[alerts]
function = "alerts"

[params]
mode = "{mode}"
poison = "666"
{extra_params}

[limits]
{limits}
"#
    );
    manifest(dir, "hostile", "max_out_of_orderness = \"0s\"\n", &rest)
}

/// window counter per key.
fn window_counters(run: &Measured) -> BTreeMap<String, i64> {
    run.outputs
        .iter()
        .filter(|o| o["type"] != "Alert")
        .map(|o| (key_of(o), o["data"]["counter"].as_i64().expect("counter")))
        .collect()
}

fn poison_keys(run: &Measured) -> Vec<String> {
    let mut keys: Vec<String> = run
        .dead
        .iter()
        .filter(|d| d["kind"] == "poison")
        .map(|d| {
            ["station_id", "datapoint_id", "alarm_id"]
                .iter()
                .map(|n| d["key"][n].as_str().unwrap_or("?").to_owned())
                .collect::<Vec<_>>()
                .join("/")
        })
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

#[test]
fn a_name_spelled_out_per_reference_cannot_blow_up_the_host() {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = input(dir.path(), 30, 20, false);
    // 400 references to a 256 KiB name per guilty window: 100 MiB each,
    // 2 GiB for the 20, had the host spelled them out.
    let manifest = hostile_manifest(
        dir.path(),
        "bigname",
        "refs = \"400\"",
        "call_budget = \"5s\"\nmemory = \"64MiB\"",
    );
    let run = run_measured(&manifest, &input, &[]);
    assert!(run.success, "sluice run failed: {}", run.stderr);
    println!(
        "bigname: peak RSS {} MiB, {:.1} s",
        run.peak_rss >> 20,
        run.elapsed.as_secs_f64()
    );
    assert!(
        run.peak_rss < 600 << 20,
        "peak RSS {} MiB",
        run.peak_rss >> 20
    );
    assert!(run.elapsed < Duration::from_secs(180), "{:?}", run.elapsed);
    let counters = window_counters(&run);
    for g in 0..30 {
        assert_eq!(
            counters.get(&format!("g{g}/1/1")),
            Some(&10),
            "good key g{g}"
        );
    }
    assert!(
        (0..20).all(|b| !counters.contains_key(&format!("b{b}/1/1"))),
        "no guilty window emitted"
    );
    assert_eq!(
        poison_keys(&run).len(),
        20,
        "each guilty window dead-lettered"
    );
    assert!(
        run.dead_text.contains("output cap"),
        "{}",
        &run.dead_text[..500.min(run.dead_text.len())]
    );
}

/// Millions of one-byte names cost the host what they cost the guest: a
/// text column is lifted in two copies (under contract 0.3 a list of
/// strings cost an allocation each, ≈ 40 host bytes per 9 guest bytes);
/// then refused (undeclared), and only the guilty windows dead-lettered.
#[test]
fn a_flood_of_one_byte_names_costs_the_host_no_more_than_the_guest() {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = input(dir.path(), 30, 4, false);
    let manifest = hostile_manifest(
        dir.path(),
        "name-flood",
        "names = \"10000000\"",
        "call_budget = \"5s\"\nmemory = \"128MiB\"",
    );
    let run = run_measured(&manifest, &input, &[]);
    assert!(run.success, "sluice run failed: {}", run.stderr);
    println!(
        "name-flood: peak RSS {} MiB, {:.1} s",
        run.peak_rss >> 20,
        run.elapsed.as_secs_f64()
    );
    // Two workers, each lifting 10 MB of names and 40 MB of offsets at
    // most at once; as strings, 2 × 10 M × ≈ 32–40 B = 640–800 MB.
    assert!(
        run.peak_rss < 400 << 20,
        "peak RSS {} MiB",
        run.peak_rss >> 20
    );
    let counters = window_counters(&run);
    for g in 0..30 {
        assert_eq!(
            counters.get(&format!("g{g}/1/1")),
            Some(&10),
            "good key g{g}"
        );
    }
    assert!(
        (0..4).all(|b| !counters.contains_key(&format!("b{b}/1/1"))),
        "no guilty window emitted"
    );
    assert_eq!(
        poison_keys(&run).len(),
        4,
        "each guilty window dead-lettered"
    );
    assert!(
        run.dead_text.contains("returned a field named `a`"),
        "{}",
        &run.dead_text[..500.min(run.dead_text.len())]
    );
}

#[test]
fn fifty_thousand_empty_alerts_dead_letter_only_their_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = input(dir.path(), 5, 1, true);
    let manifest = hostile_manifest(dir.path(), "alert-flood", "", "call_budget = \"5s\"");
    let run = run_measured(&manifest, &input, &[]);
    assert!(run.success, "sluice run failed: {}", run.stderr);
    let alerts = run.outputs.iter().filter(|o| o["type"] == "Alert").count();
    assert!(alerts < 1000, "{alerts} alert lines");
    assert!(
        run.outputs
            .iter()
            .filter(|o| o["type"] == "Alert")
            .all(|o| key_of(o).starts_with('g')),
        "only good keys alert"
    );
    assert_eq!(poison_keys(&run), vec!["b0/1/1".to_owned()]);
    assert!(run.dead_text.contains("output cap"));
    assert!(
        run.peak_rss < 600 << 20,
        "peak RSS {} MiB",
        run.peak_rss >> 20
    );
}

#[test]
fn a_sleeping_guest_fails_fast_and_only_its_key_is_lost() {
    for mode in ["sleep", "sleep-max"] {
        let dir = tempfile::tempdir().expect("temp dir");
        let input = input(dir.path(), 5, 1, true);
        let manifest = hostile_manifest(dir.path(), mode, "", "call_budget = \"50ms\"");
        let run = run_measured(&manifest, &input, &[]);
        assert!(run.success, "{mode}: sluice run failed: {}", run.stderr);
        println!("{mode}: {:.1} s", run.elapsed.as_secs_f64());
        // It used to take 20 s per call (and retries), or forever.
        assert!(
            run.elapsed < Duration::from_secs(30),
            "{mode}: {:?}",
            run.elapsed
        );
        assert_eq!(poison_keys(&run), vec!["b0/1/1".to_owned()], "{mode}");
        assert!(run.dead_text.contains("may not sleep or wait"), "{mode}");
        let counters = window_counters(&run);
        for g in 0..5 {
            assert_eq!(
                counters.get(&format!("g{g}/1/1")),
                Some(&10),
                "{mode}: g{g}"
            );
        }
    }
}

#[test]
fn a_40_mib_error_becomes_a_short_dead_letter_and_short_log_lines() {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = input(dir.path(), 3, 1, true);
    // Building a 40 MiB string takes the guest more than 50 ms.
    let manifest = hostile_manifest(
        dir.path(),
        "huge-error",
        "",
        "memory = \"128MiB\"\ncall_budget = \"5s\"",
    );
    let run = run_measured(&manifest, &input, &[]);
    assert!(run.success, "sluice run failed: {}", run.stderr);
    assert_eq!(poison_keys(&run), vec!["b0/1/1".to_owned()]);
    let longest_dead = run.dead_text.lines().map(str::len).max().unwrap_or(0);
    assert!(
        longest_dead < 16 << 10,
        "dead letter of {longest_dead} bytes"
    );
    assert!(
        run.dead_text.contains("bytes]"),
        "says it was cut: {}",
        run.dead_text
    );
    let longest_log = run.stderr.lines().map(str::len).max().unwrap_or(0);
    assert!(longest_log < 16 << 10, "log line of {longest_log} bytes");
    assert!(
        run.peak_rss < 600 << 20,
        "peak RSS {} MiB",
        run.peak_rss >> 20
    );
}

#[test]
fn a_device_as_module_and_limits_over_the_ceilings_are_refused_at_load() {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = input(dir.path(), 1, 0, false);
    let text =
        std::fs::read_to_string(hostile_manifest(dir.path(), "normal", "", "")).expect("manifest");
    let module_line = format!("module = {:?}", component("hostile").display().to_string());
    let cases: [(&str, String, &[&str], &str); 4] = [
        (
            "dev-zero",
            text.replace(&module_line, "module = \"/dev/zero\""),
            &[],
            "not a regular file",
        ),
        (
            "budget",
            text.replace("[limits]\n", "[limits]\ncall_budget = \"36500d\"\n"),
            &[],
            "[limits] call_budget",
        ),
        (
            "output",
            text.replace("[limits]\n", "[limits]\nmax_output = \"4GiB\"\n"),
            &[],
            "[limits] max_output",
        ),
        (
            "flag",
            text.replace("[limits]\n", "[limits]\nmax_output = \"2MiB\"\n"),
            &["--max-output", "1MiB"],
            "--max-output",
        ),
    ];
    for (name, manifest_text, extra, expected) in cases {
        let path = dir.path().join(format!("{name}.toml"));
        std::fs::write(&path, manifest_text).expect("manifest");
        let run = run_measured(&path, &input, extra);
        assert!(!run.success, "{name}: refused");
        assert!(
            run.elapsed < Duration::from_secs(30),
            "{name}: {:?}",
            run.elapsed
        );
        assert!(run.stderr.contains(expected), "{name}: {}", run.stderr);
    }
}
