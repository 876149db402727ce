//! Shared fixtures: the guest components (built once per test binary), the
//! `sluice` binary, manifests written into a temp dir, and runs of
//! `sluice run` whose outputs and dead letters come back parsed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Once;

use serde_json::Value;

/// Path of a guest component, building all guests on first use.
pub fn component(name: &str) -> PathBuf {
    static BUILD: Once = Once::new();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ has a parent")
        .to_path_buf();
    BUILD.call_once(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["xtask", "build-examples"])
            .current_dir(&root)
            .status()
            .expect("running cargo xtask build-examples");
        assert!(status.success(), "cargo xtask build-examples failed");
    });
    let path = root.join("target/components").join(format!("{name}.wasm"));
    assert!(path.exists(), "{} was not built", path.display());
    path
}

pub fn sluice() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
}

/// The BTS input section: the example's columns and key.
pub const BTS_COLUMNS: &str = r#"
queue = "bts.readings"
columns = [
  { name = "station_id", type = "text" },
  { name = "datapoint_id", type = "text" },
  { name = "alarm_id", type = "text" },
  { name = "event_time", type = "timestamp", format = "%Y-%m-%d %H:%M:%S UTC" },
  { name = "value", type = "float" },
  { name = "valueThreshold", type = "float" },
  { name = "isActive", type = "bool" },
  { name = "storedtime", type = "text", optional = true },
]
key = ["station_id", "datapoint_id", "alarm_id"]
event_time = "event_time"
"#;

/// Writes a manifest for `module` (a component name) into `dir`: the BTS
/// columns, `input_extra` appended to `[input]`, then `rest` (windows,
/// alerts, params).
pub fn manifest(dir: &Path, module: &str, input_extra: &str, rest: &str) -> PathBuf {
    let text = format!(
        "tenant = \"bts\"\nmodule = {:?}\n\n[input]\n{BTS_COLUMNS}{input_extra}\n{rest}\n\n[output]\nexchange = \"bts.results\"\n",
        component(module).display().to_string()
    );
    let path = dir.join("sluice.toml");
    std::fs::write(&path, text).expect("writing the manifest");
    path
}

/// The customer's windows and alerts: minute windows sliding by 5 s,
/// global stats every minute, the alert function.
pub const BTS_WINDOWS: &str = r#"
[[windows]]
name = "minute"
kind = "sliding"
size = "60s"
slide = "5s"
aggregate = "stats"

[[windows]]
name = "global"
kind = "global"
emit_every = "60s"
aggregate = "stats"

[alerts]
function = "alerts"

[params]
trend_points = "10"
horizon = "10m"
"#;

/// The BTS manifest with the customer's windows and alerts;
/// `input_extra` goes into `[input]`.
pub fn bts_manifest(dir: &Path, input_extra: &str) -> PathBuf {
    manifest(dir, "bts_analytics", input_extra, BTS_WINDOWS)
}

/// Writes generated BTS data with `sluice gen-bts ARGS -o dir/name`.
pub fn gen_bts(dir: &Path, name: &str, args: &[&str]) -> PathBuf {
    let path = dir.join(name);
    let out = sluice()
        .arg("gen-bts")
        .args(args)
        .arg("-o")
        .arg(&path)
        .output()
        .expect("running sluice gen-bts");
    assert!(
        out.status.success(),
        "gen-bts failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    path
}

/// One finished `sluice run`.
pub struct Run {
    /// Result lines as written.
    pub lines: Vec<String>,
    pub outputs: Vec<Value>,
    pub dead: Vec<Value>,
    pub stderr: String,
}

impl Run {
    pub fn of_type<'a>(&'a self, ty: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.outputs.iter().filter(move |o| o["type"] == ty)
    }
}

/// Runs `sluice run MANIFEST --input INPUT --workers N` and parses what it
/// wrote; panics (with stderr) if it fails.
pub fn run(manifest: &Path, input: &Path, workers: usize) -> Run {
    let dir = manifest.parent().expect("manifest in a dir");
    let out_path = dir.join(format!("out-{workers}.jsonl"));
    let dead_path = dir.join(format!("dead-{workers}.jsonl"));
    let out = sluice()
        .arg("run")
        .arg(manifest)
        .arg("--input")
        .arg(input)
        .arg("--output")
        .arg(&out_path)
        .arg("--dead-letter")
        .arg(&dead_path)
        .arg("--workers")
        .arg(workers.to_string())
        .arg("--quiet")
        .output()
        .expect("running sluice run");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "sluice run failed: {stderr}");
    let text = std::fs::read_to_string(&out_path).expect("reading the output");
    let lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let outputs = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l}: {e}")))
        .collect();
    let dead = std::fs::read_to_string(&dead_path)
        .expect("reading the dead letters")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad dead letter {l}: {e}")))
        .collect();
    Run {
        lines,
        outputs,
        dead,
        stderr,
    }
}

/// A BTS key as the test reads it from an output: its three values (JSON
/// strings) joined in key order.
pub fn key_of(output: &Value) -> String {
    ["station_id", "datapoint_id", "alarm_id"]
        .iter()
        .map(|name| {
            output["key"][name]
                .as_str()
                .unwrap_or_else(|| panic!("key value `{name}` is not a string: {output}"))
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// A BTS line, read independently of the host's parser.
#[derive(Debug, Clone)]
pub struct Line {
    /// `station/datapoint/alarm` when all three are non-empty.
    pub key: Option<String>,
    /// Event time (ms) when the time field reads.
    pub time: Option<i64>,
    /// Value and isActive when the whole line is good.
    pub good: Option<(f64, bool)>,
}

pub fn parse_time(text: &str) -> Option<i64> {
    chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S UTC")
        .ok()
        .map(|t| t.and_utc().timestamp_millis())
}

/// Classifies every line of a BTS CSV file (no header).
pub fn read_lines(path: &Path) -> Vec<Line> {
    let text = std::fs::read_to_string(path).expect("reading the input");
    text.split_terminator('\n')
        .map(|line| {
            let f: Vec<&str> = line.split(',').collect();
            let key =
                (f.len() >= 3 && f[..3].iter().all(|s| !s.is_empty())).then(|| f[..3].join("/"));
            let time = f.get(3).and_then(|t| parse_time(t));
            let float = |s: Option<&&str>| {
                s.and_then(|s| s.parse::<f64>().ok())
                    .filter(|v| v.is_finite())
            };
            let active = match f.get(6).copied() {
                Some("true") => Some(true),
                Some("false") => Some(false),
                _ => None,
            };
            let good = match (&key, time, float(f.get(4)), float(f.get(5)), active) {
                (Some(_), Some(_), Some(v), Some(_), Some(a)) if (7..=8).contains(&f.len()) => {
                    Some((v, a))
                }
                _ => None,
            };
            Line { key, time, good }
        })
        .collect()
}

/// Per key: the count of something.
pub type Counts = BTreeMap<String, u64>;

/// A process's peak RSS so far (`VmHWM`), in bytes. (Not `wait4`'s
/// `ru_maxrss`: a child spawned by a large test process inherits that
/// process's peak.)
pub fn vm_hwm(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kib << 10)
}

/// Samples a child's `VmHWM` every 2 ms on a thread of its own, for tests
/// that bound a run's memory while they feed or wait on it. `VmHWM` is the
/// high-water mark, so any sample late in the run holds the peak; 2 ms, as
/// a baseline run with its compiled module cached can end within 20 ms.
/// (`wait4`'s `ru_maxrss` is no substitute: it counts the forked test
/// process's pages before the child's `exec`.)
pub struct PeakRss {
    peak: std::sync::Arc<std::sync::atomic::AtomicU64>,
    done: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl PeakRss {
    pub fn watch(pid: u32) -> PeakRss {
        use std::sync::atomic::Ordering;
        let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let thread = {
            let (peak, done) = (peak.clone(), done.clone());
            std::thread::spawn(move || {
                while !done.load(Ordering::Relaxed) {
                    if let Some(bytes) = vm_hwm(pid) {
                        peak.fetch_max(bytes, Ordering::Relaxed);
                    }
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
            })
        };
        PeakRss { peak, done, thread }
    }

    /// Stops sampling (call it once the child has exited); the highest
    /// `VmHWM` seen, in MiB.
    pub fn stop_mib(self) -> u64 {
        use std::sync::atomic::Ordering;
        self.done.store(true, Ordering::Relaxed);
        self.thread.join().expect("the RSS monitor");
        self.peak.load(Ordering::Relaxed) >> 20
    }
}
