//! Input guards of `sluice run`: one row dated 9999-12-31 does not blind
//! the stream (it becomes a `future` dead letter, also across a restore
//! from a checkpoint); a 200 MB line is read through in bounded memory and
//! becomes a `bad-row` dead letter with a prefix and its length;
//! checkpoints refuse results on stdout, which a restart cannot cut back.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{self, sluice};

const FAR_FUTURE: &str = "9999-12-31 23:59:59 UTC";
const FAR_FUTURE_MS: i64 = 253_402_300_799_000;

/// `lines` with line `at` (0-based) copied and re-dated to 9999-12-31.
fn with_future_row(input: &Path, at: usize, out: &Path) -> String {
    let text = std::fs::read_to_string(input).expect("input");
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let mut fields: Vec<String> = lines[at].split(',').map(str::to_owned).collect();
    fields[3] = FAR_FUTURE.to_owned();
    let future = fields.join(",");
    lines.insert(at, future.clone());
    std::fs::write(out, lines.join("\n") + "\n").expect("write");
    future
}

fn sorted_lines(v: impl Iterator<Item = String>) -> Vec<String> {
    let mut v: Vec<String> = v.collect();
    v.sort();
    v
}

/// Results other than error metrics, as sorted lines.
fn analytics(run: &common::Run) -> Vec<String> {
    sorted_lines(
        run.outputs
            .iter()
            .filter(|o| !o["type"].as_str().unwrap_or("").ends_with("Metric"))
            .map(Value::to_string),
    )
}

struct Future {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    input: PathBuf,
    future_line: String,
    /// 1-based line of the future row.
    line_no: u64,
    clean: common::Run,
}

fn future_fixture(events: &str) -> Future {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_owned();
    let manifest = common::bts_manifest(&dir, "max_out_of_orderness = \"5s\"\n");
    let clean_input = common::gen_bts(
        &dir,
        "clean.csv",
        &[
            "--events",
            events,
            "--stations",
            "6",
            "--dirty",
            "0",
            "--out-of-order",
            "0.05",
        ],
    );
    let clean = common::run(&manifest, &clean_input, 2);
    let rows: usize = events.parse().expect("number");
    let at = rows / 10;
    let input = dir.join("future.csv");
    let future_line = with_future_row(&clean_input, at, &input);
    Future {
        _tmp: tmp,
        dir,
        input,
        future_line,
        line_no: at as u64 + 1,
        clean,
    }
}

#[test]
fn one_row_dated_9999_is_a_future_dead_letter_and_blinds_nothing() {
    let f = future_fixture("20000");
    assert!(f.clean.dead.is_empty(), "clean data has no dead letter");
    let manifest = f.dir.join("sluice.toml");
    let run = common::run(&manifest, &f.input, 2);

    // Every analytic and alert is what the stream gives without the row.
    let want = analytics(&f.clean);
    assert!(want.len() > 10_000, "{} results", want.len());
    assert!(analytics(&run) == want, "the same analytics and alerts");
    // The row is one `future` dead letter, in the bad-row shape.
    assert_eq!(run.dead.len(), 1, "{:?}", run.dead);
    let d = &run.dead[0];
    assert_eq!(d["kind"], "future");
    assert_eq!(d["raw"], f.future_line.as_str());
    assert_eq!(d["event_time"], FAR_FUTURE_MS);
    assert_eq!(d["position"]["line"], f.line_no);
    let reason = d["reason"].as_str().expect("reason");
    assert!(reason.contains("max_future (1d)"), "{reason}");
    assert!(reason.contains("9999-12-31T23:59:59Z"), "{reason}");
    let station = f.future_line.split(',').next().expect("station");
    assert_eq!(d["key"]["station_id"], station);
    // It counts against its key like a bad row, and only there.
    let metrics: Vec<&Value> = run
        .outputs
        .iter()
        .filter(|o| o["type"] == "Windowed Metric" || o["type"] == "Global Metric")
        .collect();
    assert!(!metrics.is_empty(), "the row shows in its key's metrics");
    for m in &metrics {
        assert_eq!(m["key"]["station_id"], station, "{m}");
        assert_eq!(m["data"]["data_conversion_errors"], 1, "{m}");
    }
    assert!(
        run.stderr.contains("0 deserialization errors") && run.stderr.contains("1 future dropped"),
        "{}",
        run.stderr
    );

    // With the guard off the same file blinds the stream, as in the issue.
    let off = common::bts_manifest(
        &f.dir,
        "max_out_of_orderness = \"5s\"\nmax_future = \"off\"\n",
    );
    let blind = common::run(&off, &f.input, 2);
    let late = blind.dead.iter().filter(|d| d["kind"] == "late").count();
    assert!(late > 15_000, "without the guard {late} rows are late");
}

#[test]
fn a_restore_from_a_checkpoint_after_the_future_row_keeps_the_stream_unblinded() {
    let f = future_fixture("100000");
    let manifest = f.dir.join("sluice.toml");
    let reference = common::run(&manifest, &f.input, 2);
    let crash = f.dir.join("crash");
    std::fs::create_dir_all(&crash).expect("mkdir");
    let spawn = |failpoint: bool| {
        let mut cmd = sluice();
        cmd.arg("run")
            .arg(&manifest)
            .arg("--input")
            .arg(&f.input)
            .arg("--output")
            .arg(crash.join("out.jsonl"))
            .arg("--dead-letter")
            .arg(crash.join("dead.jsonl"))
            .args(["--workers", "2", "--quiet", "--checkpoint-interval", "20ms"])
            .args(["--checkpoint-rows", "5000"])
            .arg("--checkpoint-dir")
            .arg(crash.join("checkpoints"))
            .arg("--cache-dir")
            .arg(f.dir.join("cache"))
            .env("SLUICE_LOG", "warn");
        if failpoint {
            cmd.env("SLUICE_FAILPOINT", "after-checkpoint-before-ack")
                .env("SLUICE_FAILPOINT_SKIP", "1");
        }
        cmd.output().expect("run")
    };
    // Abort one checkpoint further each time until a run has resumed from
    // a checkpoint taken after the future row.
    let mut resumed_after = false;
    for _ in 0..40 {
        let out = spawn(true);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.success() {
            break;
        }
        let rows_in = stderr
            .split("rows in so far")
            .next()
            .and_then(|s| s.rsplit('(').next())
            .and_then(|n| n.trim().parse::<u64>().ok());
        if rows_in.is_some_and(|n| n > f.line_no) {
            resumed_after = true;
            break;
        }
    }
    assert!(resumed_after, "no restart resumed after the future row");
    let out = spawn(false);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = sorted_lines(
        std::fs::read_to_string(crash.join("out.jsonl"))
            .expect("out")
            .lines()
            .map(str::to_owned),
    );
    let mut want = reference.lines.clone();
    want.sort();
    assert!(
        got == want,
        "the restored run has the uninterrupted run's results"
    );
    let dead = std::fs::read_to_string(crash.join("dead.jsonl")).expect("dead");
    let kinds: Vec<Value> = dead
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("JSON")["kind"].clone())
        .collect();
    assert_eq!(
        kinds,
        vec![Value::from("future")],
        "one future letter, nothing late"
    );
}

#[test]
fn a_200_mb_line_on_stdin_is_read_in_bounded_memory_and_dead_lettered_with_a_prefix() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let manifest = common::bts_manifest(dir, "max_out_of_orderness = \"5s\"\n");
    let out_path = dir.join("out.jsonl");
    let dead_path = dir.join("dead.jsonl");
    let mut child = sluice()
        .arg("run")
        .arg(&manifest)
        .args(["--input", "-", "--quiet", "--workers", "1"])
        .arg("--output")
        .arg(&out_path)
        .arg("--dead-letter")
        .arg(&dead_path)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let monitor = common::PeakRss::watch(child.id());
    let row = |station: &str, sec: u64| {
        format!(
            "{station},121,308,2017-02-18 19:{:02}:{:02} UTC,240.5,300.0,false,\n",
            sec / 60,
            sec % 60
        )
    };
    let started = Instant::now();
    {
        let mut stdin = child.stdin.take().expect("stdin");
        for s in 0..100 {
            stdin.write_all(row("before", s).as_bytes()).expect("write");
        }
        // 200 MB without a newline, streamed: never allocated here either.
        let piece = vec![b'z'; 1 << 16];
        let total: u64 = 200_000_000;
        let mut sent = 0u64;
        while sent < total {
            let n = (total - sent).min(piece.len() as u64) as usize;
            stdin.write_all(&piece[..n]).expect("write the long line");
            sent += n as u64;
        }
        stdin.write_all(b"\n").expect("write");
        for s in 100..300 {
            stdin.write_all(row("after", s).as_bytes()).expect("write");
        }
    }
    let out = child.wait_with_output().expect("wait");
    let peak_mb = monitor.stop_mib();
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    eprintln!(
        "200 MB line: peak RSS {peak_mb} MB, {:.1} s",
        took.as_secs_f64()
    );
    assert!(peak_mb > 0, "VmHWM was read");
    assert!(peak_mb < 150, "peak RSS {peak_mb} MB");
    assert!(took < Duration::from_secs(120), "took {took:?}");

    let dead: Vec<Value> = std::fs::read_to_string(&dead_path)
        .expect("dead letters")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    assert_eq!(dead.len(), 1, "one dead letter");
    let d = &dead[0];
    assert_eq!(d["kind"], "bad-row");
    assert_eq!(d["length"], 200_000_000u64);
    assert_eq!(d["raw"].as_str().expect("raw"), "z".repeat(4096));
    assert_eq!(d["position"]["line"], 101);
    assert!(
        d["reason"]
            .as_str()
            .expect("reason")
            .contains("over the limit of 1048576 bytes"),
        "{d}"
    );
    // The rows after it were processed: their windows fired.
    let after: u64 = std::fs::read_to_string(&out_path)
        .expect("out")
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("JSON"))
        .filter(|o| o["type"] == "Windowed Analytic" && o["key"]["station_id"] == "after")
        .map(|o| o["data"]["counter"].as_u64().expect("counter"))
        .sum();
    // Each row is in 12 sliding windows (60 s by 5 s).
    assert_eq!(after, 200 * 12, "every row after the long line counted");
}

#[test]
fn checkpoints_refuse_results_on_stdout() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let manifest = common::bts_manifest(dir, "");
    let input = common::gen_bts(dir, "in.csv", &["--events", "100"]);
    for output in [None, Some("-")] {
        let mut cmd: Command = sluice();
        cmd.arg("run")
            .arg(&manifest)
            .arg("--input")
            .arg(&input)
            .arg("--checkpoint-dir")
            .arg(dir.join("ck"))
            .arg("--quiet");
        if let Some(o) = output {
            cmd.args(["--output", o]);
        }
        let out = cmd.output().expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{output:?}: accepted");
        assert!(
            stderr.contains("need the results in --output FILE"),
            "{stderr}"
        );
        assert!(out.stdout.is_empty(), "nothing printed");
    }
    let out = sluice()
        .arg("run")
        .arg(&manifest)
        .arg("--input")
        .arg(&input)
        .arg("--checkpoint-dir")
        .arg(dir.join("ck"))
        .arg("--output")
        .arg(dir.join("out.jsonl"))
        .arg("--quiet")
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
