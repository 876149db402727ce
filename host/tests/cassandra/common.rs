//! Fixtures: the node's address, a keyspace per test, runs of the binary,
//! and reads through `sluice query` and the Python driver.

#[allow(dead_code)]
#[path = "../pipeline/common.rs"]
mod pipeline;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use serde_json::Value;

pub use pipeline::{bts_manifest, component, gen_bts, manifest, sluice};

/// Held shared by every test, exclusively by the one that stops the node.
static NODE: RwLock<()> = RwLock::new(());

pub fn shared() -> RwLockReadGuard<'static, ()> {
    NODE.read().unwrap_or_else(|e| e.into_inner())
}

pub fn exclusive() -> RwLockWriteGuard<'static, ()> {
    NODE.write().unwrap_or_else(|e| e.into_inner())
}

/// `host:port` of the test node; panics with what to do when nothing
/// answers there.
pub fn node() -> String {
    let addr =
        std::env::var("SLUICE_TEST_CASSANDRA").unwrap_or_else(|_| "127.0.0.1:9042".to_owned());
    let reachable = addr.parse::<std::net::SocketAddr>().ok().is_some_and(|a| {
        std::net::TcpStream::connect_timeout(&a, std::time::Duration::from_secs(3)).is_ok()
    });
    assert!(
        reachable,
        "Cassandra is not reachable at {addr}: run `scripts/services.sh start cassandra` \
         (or set SLUICE_TEST_CASSANDRA)"
    );
    addr
}

/// A keyspace name no other test (or earlier run) uses.
pub fn keyspace(test: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "sluice_test_{test}_{}_{}_{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// `sluice run MANIFEST --input INPUT --cassandra NODE --keyspace KS
/// --output OUT --dead-letter DEAD EXTRA…`; panics with stderr on failure.
pub fn run(manifest: &Path, input: &Path, ks: &str, tag: &str, extra: &[&str]) -> Run {
    let dir = manifest.parent().expect("manifest in a dir");
    let out_path = dir.join(format!("out-{tag}.jsonl"));
    let dead_path = dir.join(format!("dead-{tag}.jsonl"));
    let out = sluice()
        .arg("run")
        .arg(manifest)
        .arg("--input")
        .arg(input)
        .args(["--cassandra", &node(), "--keyspace", ks, "--quiet"])
        .arg("--output")
        .arg(&out_path)
        .arg("--dead-letter")
        .arg(&dead_path)
        .args(extra)
        .output()
        .expect("running sluice run");
    Run::read(out, &out_path, &dead_path)
}

/// A finished run: its output lines and dead letters.
pub struct Run {
    pub lines: Vec<String>,
    pub dead: Vec<Value>,
}

impl Run {
    pub fn read(out: Output, out_path: &Path, dead_path: &Path) -> Run {
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "sluice run failed: {stderr}");
        let lines = std::fs::read_to_string(out_path)
            .expect("reading the output")
            .lines()
            .map(str::to_owned)
            .collect();
        let dead = std::fs::read_to_string(dead_path)
            .expect("reading the dead letters")
            .lines()
            .map(|l| serde_json::from_str(l).expect("a dead letter is JSON"))
            .collect();
        Run { lines, dead }
    }
}

/// What a stored result is identified by: type, window and key for window
/// results; kind, key and event time for alerts (the primary keys).
fn identity(v: &Value) -> String {
    match v["type"].as_str() {
        Some("Alert") => format!(
            "Alert|{}|{}|{}",
            v["key"], v["data"]["kind"], v["data"]["event_time"]
        ),
        _ => format!("{}|{}|{}", v["type"], v["window"], v["key"]),
    }
}

/// The printed lines as Cassandra should hold them: one per identity, the
/// last printed (a window's latest late update), sorted.
pub fn expected_rows(lines: &[String]) -> Vec<String> {
    let mut last = BTreeMap::new();
    for line in lines {
        let v: Value = serde_json::from_str(line).expect("an output line is JSON");
        last.insert(identity(&v), line.clone());
    }
    let mut rows: Vec<String> = last.into_values().collect();
    rows.sort();
    rows
}

/// `sluice query …` output lines, sorted.
pub fn query(ks: &str, extra: &[&str]) -> Vec<String> {
    let out = sluice()
        .args([
            "query",
            "--cassandra",
            &node(),
            "--keyspace",
            ks,
            "--tenant",
            "bts",
        ])
        .args(extra)
        .output()
        .expect("running sluice query");
    sorted_stdout(&out, "sluice query")
}

/// A finished command's stdout lines, sorted; panics with its stderr when
/// it failed.
pub fn sorted_stdout(out: &Output, what: &str) -> Vec<String> {
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    lines.sort();
    lines
}

/// The Python interpreter with `cassandra-driver`.
fn python() -> String {
    let python = std::env::var("SLUICE_PYTHON")
        .unwrap_or_else(|_| "/var/cache/sluice/venv/bin/python".to_owned());
    let ok = Command::new(&python)
        .args(["-c", "import cassandra"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "{python} cannot import the Python driver: run scripts/test.sh (it installs \
         cassandra-driver into /var/cache/sluice/venv) or set SLUICE_PYTHON"
    );
    python
}

/// Runs `read_tables.py` (the DataStax driver) in `mode`; its stdout lines.
pub fn python_read(ks: &str, mode: &str) -> Vec<String> {
    let node = node();
    let (host, port) = node.rsplit_once(':').expect("node is host:port");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cassandra/read_tables.py");
    let out = Command::new(python())
        .arg(script)
        .args([host, port, ks, "bts", mode])
        .output()
        .expect("running read_tables.py");
    assert!(
        out.status.success(),
        "read_tables.py {mode} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Rows per table, read by the Python driver.
pub fn counts(ks: &str) -> BTreeMap<String, u64> {
    let line = python_read(ks, "counts").join("");
    serde_json::from_str(&line).expect("counts are a JSON object")
}

/// Parsed rows per key (`station|datapoint|alarm`) of a BTS file: every
/// line, less the bad rows its run dead-lettered (matched by their raw
/// text, so it holds for file and broker positions alike).
pub fn parsed_per_key(input: &Path, dead: &[Value]) -> BTreeMap<String, u64> {
    let key = |line: &str| line.split(',').take(3).collect::<Vec<_>>().join("|");
    let text = std::fs::read_to_string(input).expect("reading the input");
    let mut per_key = BTreeMap::new();
    for line in text.split_terminator('\n') {
        *per_key.entry(key(line)).or_insert(0u64) += 1;
    }
    for d in dead.iter().filter(|d| d["kind"] == "bad-row") {
        let raw = d["raw"].as_str().expect("a bad row has its raw text");
        let n = per_key
            .get_mut(&key(raw))
            .expect("a bad row is an input line");
        *n -= 1;
    }
    per_key.retain(|_, n| *n > 0);
    per_key
}

/// Drops a test's keyspace (through the Python driver, best effort).
pub fn drop_keyspace(ks: &str) {
    let node = node();
    let (host, port) = node.rsplit_once(':').expect("node is host:port");
    let _ = Command::new(python())
        .args([
            "-c",
            &format!(
                "from cassandra.cluster import Cluster\n\
                 c = Cluster(['{host}'], port={port}); s = c.connect()\n\
                 s.execute('DROP KEYSPACE IF EXISTS {ks}', timeout=60); c.shutdown()"
            ),
        ])
        .output();
}

/// Asserts two sorted row lists are equal; on failure names the counts
/// and the first few rows only one side has (not megabytes of rows).
pub fn assert_same_rows(what: &str, actual: &[String], expected: &[String]) {
    if actual == expected {
        return;
    }
    let a: std::collections::BTreeSet<&String> = actual.iter().collect();
    let e: std::collections::BTreeSet<&String> = expected.iter().collect();
    let missing: Vec<_> = e.difference(&a).take(3).collect();
    let extra: Vec<_> = a.difference(&e).take(3).collect();
    panic!(
        "{what}: {} rows, expected {}; first missing: {missing:#?}; first unexpected: {extra:#?}",
        actual.len(),
        expected.len()
    );
}
