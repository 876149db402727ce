//! `idle_timeout`: with it, a quiet input's windows fire on the processing
//! clock; without it, nothing fires until more events or the end.

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{manifest, parse_time, sluice};

const T0: &str = "2017-02-18 18:00:00 UTC";

/// Starts `sluice run` on stdin with four rows (0..3 s) and keeps stdin
/// open; returns the child, its stdin and a channel of its output lines.
fn start(
    idle: Option<&str>,
) -> (
    std::process::Child,
    std::process::ChildStdin,
    mpsc::Receiver<Value>,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut input = "max_out_of_orderness = \"0s\"\n".to_owned();
    if let Some(idle) = idle {
        input.push_str(&format!("idle_timeout = \"{idle}\"\n"));
    }
    let rest = r#"
[[windows]]
name = "second"
kind = "tumbling"
size = "1s"
aggregate = "stats"
"#;
    let manifest = manifest(dir.path(), "bts_analytics", &input, rest);
    let mut child = sluice()
        .arg("run")
        .arg(&manifest)
        .args(["--input", "-", "--workers", "2", "--quiet"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting sluice run");
    let mut stdin = child.stdin.take().expect("stdin");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let value: Value = serde_json::from_str(&line).expect("JSON line");
            if tx.send(value).is_err() {
                break;
            }
        }
    });
    for s in 0..4 {
        writeln!(stdin, "1,2,3,2017-02-18 18:00:0{s} UTC,{s}.5,100,false,").expect("writing");
    }
    stdin.flush().expect("flushing");
    (child, stdin, rx, dir)
}

/// Seconds after T0 of the windows emitted within `wait`.
fn windows_within(rx: &mpsc::Receiver<Value>, wait: Duration) -> Vec<i64> {
    let t0 = parse_time(T0).expect("T0");
    let deadline = Instant::now() + wait;
    let mut starts = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(o) => starts.push((o["window"]["start"].as_i64().expect("start") - t0) / 1000),
            Err(_) => break,
        }
    }
    starts
}

#[test]
fn with_idle_timeout_a_quiet_inputs_windows_fire_on_the_processing_clock() {
    let (mut child, stdin, rx, _dir) = start(Some("200ms"));
    // Watermark 3 s fires 0, 1 and 2 at once; 3 needs 1 s more, which only
    // the idle advance can give while stdin stays open.
    let starts = windows_within(&rx, Duration::from_secs(6));
    assert_eq!(starts, vec![0, 1, 2, 3]);
    drop(stdin);
    assert!(child.wait().expect("exit").success());
}

#[test]
fn without_idle_timeout_nothing_fires_until_more_events_or_the_end() {
    let (mut child, stdin, rx, _dir) = start(None);
    let starts = windows_within(&rx, Duration::from_secs(3));
    assert_eq!(starts, vec![0, 1, 2], "window 3 must wait for input");
    drop(stdin);
    assert!(child.wait().expect("exit").success());
    let rest: Vec<i64> = windows_within(&rx, Duration::from_secs(5));
    assert_eq!(rest, vec![3], "the end of input fires the last window");
}
