//! Cassandra stopped for 20 s in the middle of a run and started again:
//! the run completes, nothing is missing, and while the node is away the
//! pipeline holds back its input (backpressure) instead of buffering it.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::{self, bts_manifest, gen_bts, keyspace};

fn services(action: &str) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/services.sh");
    let status = Command::new("bash")
        .arg(script)
        .args([action, "cassandra"])
        .status()
        .expect("running scripts/services.sh");
    assert!(
        status.success(),
        "scripts/services.sh {action} cassandra failed"
    );
}

/// Starts the node again however the test ends.
struct Restart;

impl Drop for Restart {
    fn drop(&mut self) {
        services("start");
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_twenty_second_outage_mid_run_loses_nothing_and_holds_intake_back() {
    let _node = common::exclusive();
    let node = common::node();
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = bts_manifest(dir.path(), "max_out_of_orderness = \"5s\"\n");
    let input = gen_bts(
        dir.path(),
        "in.csv",
        &[
            "--events",
            "150000",
            "--dirty",
            "0.01",
            "--out-of-order",
            "0.05",
            "--ramp",
            "2",
        ],
    );
    let data = std::fs::read(&input).expect("reading the input");
    let total = data.len() as u64;
    let ks = keyspace("outage");
    let out_path = dir.path().join("out.jsonl");
    let dead_path = dir.path().join("dead.jsonl");
    let err_path = dir.path().join("stderr.txt");
    let mut child = common::sluice()
        .arg("run")
        .arg(&manifest)
        .args([
            "--input",
            "-",
            "--cassandra",
            &node,
            "--keyspace",
            &ks,
            "--quiet",
        ])
        .args(["--workers", "2"])
        .arg("--output")
        .arg(&out_path)
        .arg("--dead-letter")
        .arg(&dead_path)
        .stdin(Stdio::piped())
        .stderr(std::fs::File::create(&err_path).expect("stderr file"))
        .spawn()
        .expect("starting sluice run");
    let pid = child.id();
    let mut stdin = child.stdin.take().expect("piped stdin");
    let fed = Arc::new(AtomicU64::new(0));
    let finished = Arc::new(AtomicBool::new(false));
    let feeder = {
        let (fed, finished) = (Arc::clone(&fed), Arc::clone(&finished));
        std::thread::spawn(move || {
            for piece in data.chunks(16 << 10) {
                if stdin.write_all(piece).is_err() {
                    return;
                }
                fed.fetch_add(piece.len() as u64, Ordering::SeqCst);
            }
            finished.store(true, Ordering::SeqCst);
        })
    };

    // Mid-run: some input taken and results stored, most still to come.
    wait_for("the run to take 2 MB", Duration::from_secs(120), || {
        fed.load(Ordering::SeqCst) >= 2 << 20
    });
    assert!(
        !finished.load(Ordering::SeqCst),
        "the input was taken before the outage"
    );
    let restart = Restart;
    services("stop");
    let stopped = Instant::now();
    let (fed_at_stop, rss_at_stop) = (fed.load(Ordering::SeqCst), rss_kib(pid));
    let mut rss_peak = rss_at_stop;
    let mut fed_after_5s = None;
    while stopped.elapsed() < Duration::from_secs(20) {
        rss_peak = rss_peak.max(rss_kib(pid));
        if fed_after_5s.is_none() && stopped.elapsed() >= Duration::from_secs(5) {
            fed_after_5s = Some(fed.load(Ordering::SeqCst));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let fed_at_end = fed.load(Ordering::SeqCst);
    drop(restart); // starts the node again
    let status = child.wait().expect("waiting for sluice run");
    feeder.join().expect("feeder");
    let stderr = std::fs::read_to_string(&err_path).expect("reading stderr");
    assert!(status.success(), "sluice run failed: {stderr}");
    assert!(finished.load(Ordering::SeqCst));

    // Intake was held back while the node was away, memory stayed flat.
    let held = fed_at_end - fed_after_5s.expect("sampled");
    eprintln!(
        "outage: input taken {fed_at_stop} of {total} bytes at the stop, {held} bytes in its last 15 s; RSS {rss_at_stop} KiB at the stop, peak {rss_peak} KiB"
    );
    assert!(
        held < 1 << 20,
        "the run kept taking input while Cassandra was down: {held} bytes in 15 s \
         (had {fed_at_stop} of {total} at the stop)"
    );
    assert!(
        rss_peak.saturating_sub(rss_at_stop) < 100 << 10,
        "memory grew from {rss_at_stop} KiB to {rss_peak} KiB during the outage"
    );
    assert!(stderr.contains("Cassandra write failed"), "{stderr}");
    assert!(stderr.contains("accepts writes again"), "{stderr}");

    // Nothing missing.
    let lines: Vec<String> = std::fs::read_to_string(&out_path)
        .expect("output")
        .lines()
        .map(str::to_owned)
        .collect();
    common::assert_same_rows(
        "sluice query",
        &common::query(&ks, &[]),
        &common::expected_rows(&lines),
    );
    let dead: Vec<serde_json::Value> = std::fs::read_to_string(&dead_path)
        .expect("dead letters")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    let parsed: u64 = common::parsed_per_key(&input, &dead).values().sum();
    let counts = common::counts(&ks);
    assert_eq!(counts["events"], parsed);
    assert_eq!(counts["dead_letters"], dead.len() as u64);
    common::drop_keyspace(&ks);
}
