//! Recovery benchmark: how long the real `sluice run` takes from a restart
//! to its first new output, with ≈100 k keys of open windows in the
//! checkpoint. The run is aborted at a fail point right after a checkpoint
//! (so the output file then ends exactly where the checkpoint does), then
//! restarted; the figure is the time from spawning the restart to the
//! output file growing past that point, split into process start + restore
//! (up to the "resuming" line) and the rest. Prints figures; never passes
//! or fails on time.
//!
//! Needs the example component: `cargo xtask build-examples`.
//! `cargo bench -p sluice-host --bench recovery` (`SLUICE_BENCH_ROWS`:
//! rows, default 1 000 000).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sluice_host::generate::bts::{self, BtsConfig};

fn sluice(manifest: &Path, input: &Path, dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
    cmd.arg("run")
        .arg(manifest)
        .arg("--input")
        .arg(input)
        .arg("--output")
        .arg(dir.join("out.jsonl"))
        .args(["--quiet", "--checkpoint-interval", "1s"])
        .arg("--cache-dir")
        .arg(dir.parent().unwrap_or(dir).join("module-cache"))
        .arg("--checkpoint-dir")
        .arg(dir.join("checkpoints"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .env("SLUICE_LOG", "warn");
    cmd
}

fn size(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ has a parent")
        .to_path_buf();
    let manifest = root.join("examples/bts-analytics/sluice.toml");
    let module = root.join("target/components/bts_analytics.wasm");
    if !module.exists() {
        println!(
            "recovery: {} is missing; run `cargo xtask build-examples` first",
            module.display()
        );
        return;
    }
    let rows: u64 = std::env::var("SLUICE_BENCH_ROWS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("bts.csv");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&input).expect("input"));
    let summary = bts::write_bts(
        &BtsConfig {
            events: rows,
            stations: 16_700,
            out_of_order: 0.05,
            ..BtsConfig::default()
        },
        &mut file,
    )
    .expect("generating");
    drop(file);
    println!(
        "recovery of `sluice run` (BTS module, {} rows, {} keys, checkpoints every 1 s):",
        summary.lines, summary.keys
    );

    // Baseline: a fresh start (no checkpoint) to its first output.
    let fresh_dir = dir.path().join("fresh");
    std::fs::create_dir_all(&fresh_dir).expect("mkdir");
    // Warms the module cache, as a restart finds it.
    let _ = sluice(&manifest, &input, &fresh_dir)
        .env("SLUICE_FAILPOINT", "after-checkpoint-before-ack")
        .output();
    let _ = std::fs::remove_dir_all(&fresh_dir);
    std::fs::create_dir_all(&fresh_dir).expect("mkdir");
    let started = Instant::now();
    let mut child = sluice(&manifest, &input, &fresh_dir)
        .stderr(Stdio::null())
        .spawn()
        .expect("a fresh run");
    let out_path = fresh_dir.join("out.jsonl");
    let fresh = loop {
        if size(&out_path) > 0 {
            break Some(started.elapsed());
        }
        if child.try_wait().expect("try_wait").is_some() {
            break None;
        }
        std::thread::sleep(Duration::from_micros(200));
    };
    let _ = child.kill();
    let _ = child.wait();
    if let Some(fresh) = fresh {
        println!(
            "  fresh start (no checkpoint) → first output {:>7.1} ms",
            fresh.as_secs_f64() * 1e3
        );
    }

    for skip in [2u32, 5] {
        let run_dir = dir.path().join(format!("skip{skip}"));
        std::fs::create_dir_all(&run_dir).expect("mkdir");
        let out = sluice(&manifest, &input, &run_dir)
            .env("SLUICE_FAILPOINT", "after-checkpoint-before-ack")
            .env("SLUICE_FAILPOINT_SKIP", skip.to_string())
            .output()
            .expect("the first run");
        if out.status.success() {
            println!(
                "  the run finished before checkpoint {}: use more rows",
                skip + 1
            );
            continue;
        }
        let out_path = run_dir.join("out.jsonl");
        let at_abort = size(&out_path);
        let checkpoint_bytes: u64 = std::fs::read_dir(run_dir.join("checkpoints"))
            .expect("checkpoints")
            .filter_map(|e| e.ok())
            .filter(|e| e.path().extension().is_some_and(|x| x == "bin"))
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .max()
            .unwrap_or(0);

        let started = Instant::now();
        let mut child = sluice(&manifest, &input, &run_dir)
            .spawn()
            .expect("the restart");
        let stderr = child.stderr.take().expect("piped stderr");
        let resumed = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line.contains("resuming from checkpoint") {
                    return Some((started.elapsed(), line));
                }
            }
            None
        });
        let first_output = loop {
            if size(&out_path) > at_abort {
                break Some(started.elapsed());
            }
            if child.try_wait().expect("try_wait").is_some() {
                break None;
            }
            std::thread::sleep(Duration::from_micros(200));
        };
        let _ = child.kill();
        let _ = child.wait();
        let resumed = resumed.join().ok().flatten();
        match (resumed, first_output) {
            (Some((restore, line)), Some(first)) => println!(
                "  after checkpoint {:>2} ({:>5.1} MB): restart → restored {:>7.1} ms, → first new output {:>7.1} ms  [{}]",
                skip + 1,
                checkpoint_bytes as f64 / 1e6,
                restore.as_secs_f64() * 1e3,
                first.as_secs_f64() * 1e3,
                line.trim_start_matches("sluice run: "),
            ),
            _ => println!(
                "  after checkpoint {}: the restart did not resume and write (see its stderr)",
                skip + 1
            ),
        }
    }
}
