//! Checkpoints of the embedded mode: a file run killed (SIGKILL) at seeded
//! moments, or aborted at each fail point, and restarted until it
//! finishes, writes exactly the output and dead letters of a run that never
//! crashed; a corrupt newest checkpoint falls back to the previous one.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use crate::common::{self, sluice};

pub(crate) fn spawn_run(
    manifest: &Path,
    input: &Path,
    dir: &Path,
    failpoint: Option<(&str, u32)>,
) -> Child {
    let mut cmd = sluice();
    cmd.arg("run")
        .arg(manifest)
        .arg("--input")
        .arg(input)
        .arg("--output")
        .arg(dir.join("out.jsonl"))
        .arg("--dead-letter")
        .arg(dir.join("dead.jsonl"))
        .args(["--workers", "2", "--quiet", "--checkpoint-interval", "50ms"])
        .args(["--checkpoint-rows", "4000"])
        .arg("--checkpoint-dir")
        .arg(dir.join("checkpoints"))
        .arg("--cache-dir")
        .arg(dir.join("cache"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .env("SLUICE_LOG", "warn");
    if let Some((point, skip)) = failpoint {
        cmd.env("SLUICE_FAILPOINT", point)
            .env("SLUICE_FAILPOINT_SKIP", skip.to_string());
    }
    cmd.spawn().expect("spawning sluice run")
}

/// Sorted lines of a file.
fn sorted(path: &Path) -> Vec<String> {
    let mut lines: Vec<String> = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
        .lines()
        .map(str::to_owned)
        .collect();
    lines.sort();
    lines
}

/// A deterministic sequence of kill delays (xorshift from a seed).
struct Delays(u64);

impl Delays {
    fn next(&mut self, lo_ms: u64, hi_ms: u64) -> Duration {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        Duration::from_millis(lo_ms + self.0 % (hi_ms - lo_ms))
    }
}

pub(crate) struct Fixture {
    _dir: tempfile::TempDir,
    pub(crate) dir: PathBuf,
    manifest: PathBuf,
    input: PathBuf,
    pub(crate) reference: common::Run,
}

fn fixture(events: &str) -> Fixture {
    fixture_with(events, common::BTS_WINDOWS)
}

/// A fixture whose manifest has `windows` (windows, alerts, params).
pub(crate) fn fixture_with(events: &str, windows: &str) -> Fixture {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_owned();
    let manifest = common::manifest(
        &dir,
        "bts_analytics",
        "max_out_of_orderness = \"5s\"\n",
        windows,
    );
    let input = common::gen_bts(
        &dir,
        "bts.csv",
        &[
            "--events",
            events,
            "--stations",
            "6",
            "--dirty",
            "0.01",
            "--out-of-order",
            "0.05",
            "--ramp",
            "2",
        ],
    );
    let reference = common::run(&manifest, &input, 2);
    let crash_dir = dir.join("crash");
    std::fs::create_dir_all(&crash_dir).expect("mkdir");
    Fixture {
        _dir: tmp,
        dir: crash_dir,
        manifest,
        input,
        reference,
    }
}

/// Restarts without interference; the run must finish.
pub(crate) fn finish(f: &Fixture) {
    let out = spawn_run(&f.manifest, &f.input, &f.dir, None)
        .wait_with_output()
        .expect("run");
    assert!(
        out.status.success(),
        "a clean restart failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub(crate) fn assert_exact(f: &Fixture) {
    let mut want = f.reference.lines.clone();
    want.sort();
    let got = sorted(&f.dir.join("out.jsonl"));
    assert_eq!(
        got.len(),
        want.len(),
        "as many results as the crash-free run"
    );
    assert!(got == want, "the same results as the crash-free run");
    let mut want_dead: Vec<String> = f.reference.dead.iter().map(|v| v.to_string()).collect();
    want_dead.sort();
    let mut got_dead: Vec<String> = sorted(&f.dir.join("dead.jsonl"))
        .iter()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .expect("JSON")
                .to_string()
        })
        .collect();
    got_dead.sort();
    assert_eq!(got_dead, want_dead, "the same dead letters");
}

/// Kills the run once its output file reaches each of `kills` seeded sizes
/// (fractions of the crash-free output), so the crashes land at the same
/// points of the data however fast the machine is; returns how many kills
/// landed and how many restarts resumed from a checkpoint.
pub(crate) fn kill_at_output_sizes(f: &Fixture, seed: u64, kills: usize) -> (usize, usize) {
    let total: u64 = f.reference.lines.iter().map(|l| l.len() as u64 + 1).sum();
    let mut delays = Delays(seed);
    let mut targets: Vec<u64> = (0..kills)
        .map(|_| total * delays.next(30, 850).as_millis() as u64 / 1000)
        .collect();
    targets.sort_unstable();
    let out_path = f.dir.join("out.jsonl");
    let (mut landed, mut resumed) = (0, 0);
    for target in targets {
        let mut child = spawn_run(&f.manifest, &f.input, &f.dir, None);
        let started = std::time::Instant::now();
        let finished = loop {
            if child.try_wait().expect("try_wait").is_some() {
                break true;
            }
            let size = std::fs::metadata(&out_path).map_or(0, |m| m.len());
            if size >= target {
                break false;
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "the output stays at {size} bytes, short of {target}"
            );
            std::thread::sleep(Duration::from_millis(1));
        };
        if !finished {
            // A seeded few milliseconds more, so kills also land mid-write.
            std::thread::sleep(delays.next(0, 20));
            child.kill().expect("SIGKILL");
        }
        let out = child.wait_with_output().expect("reap");
        let stderr = String::from_utf8_lossy(&out.stderr);
        resumed += usize::from(stderr.contains("resuming from checkpoint"));
        if finished || out.status.success() {
            assert!(out.status.success(), "{stderr}");
            break;
        }
        landed += 1;
    }
    (landed, resumed)
}

#[test]
fn sigkill_at_seeded_moments_gives_the_crash_free_output() {
    let f = fixture("150000");
    let (kills, resumed) = kill_at_output_sizes(&f, 0x5eed_1234_abcd_0001, 12);
    eprintln!("{kills} kills, {resumed} restarts resumed from a checkpoint");
    assert!(
        kills >= 10,
        "only {kills} of 12 kills landed before the end"
    );
    assert!(
        resumed >= kills / 2,
        "only {resumed} of {kills} restarts resumed from a checkpoint"
    );
    finish(&f);
    assert_exact(&f);
}

#[test]
fn abort_at_each_fail_point_then_resume_exactly() {
    let f = fixture("100000");
    // Each run gets one checkpoint further than the one before.
    for (point, skip) in [
        ("after-checkpoint-write-before-rename", 1),
        ("after-output-before-checkpoint", 1),
        ("after-checkpoint-before-ack", 1),
    ] {
        let out = spawn_run(&f.manifest, &f.input, &f.dir, Some((point, skip)))
            .wait_with_output()
            .expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{point}: the run did not abort: {stderr}"
        );
        assert!(
            stderr.contains(&format!("fail point `{point}` reached")),
            "{stderr}"
        );
    }
    finish(&f);
    assert_exact(&f);
}

#[test]
fn a_corrupt_newest_checkpoint_falls_back_to_the_previous_one() {
    let f = fixture("100000");
    let out = spawn_run(
        &f.manifest,
        &f.input,
        &f.dir,
        Some(("after-checkpoint-before-ack", 2)),
    )
    .wait_with_output()
    .expect("run");
    assert!(!out.status.success());
    let checkpoints = f.dir.join("checkpoints");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&checkpoints)
        .expect("checkpoint dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "bin"))
        .collect();
    files.sort();
    assert!(files.len() >= 2, "{files:?}");
    let newest = files.last().expect("a checkpoint");
    let mut bytes = std::fs::read(newest).expect("read");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    std::fs::write(newest, bytes).expect("corrupt it");

    let out = spawn_run(&f.manifest, &f.input, &f.dir, None)
        .wait_with_output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("corrupt checkpoint skipped"), "{stderr}");
    assert!(stderr.contains("resuming from checkpoint"), "{stderr}");
    assert_exact(&f);
}
