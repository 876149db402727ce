//! Cluster benchmark: partitioned input (`[input] partitions = 6`) served
//! by several `sluice serve` processes (needs RabbitMQ with the
//! consistent-hash exchange plugin and Cassandra: `scripts/services.sh
//! start`; the example component: `cargo xtask build-examples`). Prints,
//! in one run:
//!
//! 1. **events/s with 1, 2 and 3 hosts**: the hosts are started, a paced
//!    warm-up stream runs until their balance has settled (every partition
//!    active somewhere, no host above its share ⌈6 / hosts⌉), the warm-up
//!    is drained, the hosts are frozen (SIGSTOP), N rows are published
//!    (the broker's rate, printed apart), the hosts are thawed (SIGCONT)
//!    and timed until the partitions' `records_in` (each taken from the
//!    host where it is active) add up to the warm-up plus N;
//! 2. **takeover time**: two hosts, a paced stream, the host owning the
//!    most partitions SIGKILLed; kill → the survivor's "took the partition
//!    over" log line, kill → its `records_in` for the partition growing,
//!    and the claim + restore time the line reports; then whether the
//!    survivor's records add up to exactly what was published, per
//!    partition (the same rows published first into a copy of the input
//!    that nobody consumes say what each partition gets);
//! 3. **checkpoint cost**: the same realistic checkpoint written 200 times
//!    to a `LocalStore` (fsync + rename) and to a `CassandraStore`,
//!    unclaimed (plain marker insert) and claimed (conditional LWT marker).
//!
//! `cargo bench -p sluice-host --bench cluster` (`SLUICE_BENCH_ROWS`,
//! default 60 000; `SLUICE_AMQP_URL`; `SLUICE_TEST_CASSANDRA`). Figures
//! only; never passes or fails on time. Every host is killed on exit; the
//! hosts' logs are kept in a directory the output names, and their WARN
//! and ERROR lines are printed after each part.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use sluice_host::cassandra::store::{CassandraStore, CassandraStoreOptions};
use sluice_host::cassandra::CassandraConfig;
use sluice_host::parse::Key;
use sluice_host::state::local::LocalStore;
use sluice_host::state::{
    Checkpoint, CheckpointStore, CoordinatorState, CounterState, InputPosition, ShardState,
};

const PARTITIONS: u16 = 6;
const OPERATOR: &str = "bench-cluster-operator-token-0123456789";
/// Rows/s of the warm-up stream (part 1) and of the stream a host is
/// killed in (part 2).
const WARM_RATE: u32 = 1_000;
const KILL_RATE: u32 = 2_000;
/// Rows of the warm-up file: far more than a warm-up takes at its rate.
const WARM_ROWS: u64 = 45_000;
const CHECKPOINT_WRITES: usize = 200;

fn amqp_url() -> String {
    std::env::var("SLUICE_AMQP_URL").unwrap_or_else(|_| "amqp://127.0.0.1:5672/%2f".into())
}

fn cassandra_node() -> String {
    std::env::var("SLUICE_TEST_CASSANDRA").unwrap_or_else(|_| "127.0.0.1:9042".into())
}

fn sluice() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
}

/// The 1-minute load average (other work on the machine skews figures).
fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// A log line without its ANSI colours.
fn plain(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `key=value` of a tracing log line.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|t| t.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
}

/// A host's log line worth reporting.
fn alarming(line: &str) -> bool {
    let level = line.split_whitespace().nth(1).unwrap_or("");
    level == "WARN" || level == "ERROR" || line.contains("panicked") || line.contains("error:")
}

/// A child process killed (SIGKILL) when dropped.
struct Guard(Option<Child>);

impl Guard {
    fn kill(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn finished(&mut self) -> bool {
        self.0
            .as_mut()
            .is_none_or(|c| matches!(c.try_wait(), Ok(Some(_))))
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One partition as a host sees it.
#[derive(Debug, Clone)]
struct Part {
    partition: u16,
    active: bool,
    generation: i64,
    records_in: u64,
    lag: u64,
    hosts: u64,
    takeovers: u64,
    handovers: u64,
    losses: u64,
}

impl Part {
    fn from_json(v: &Value) -> Option<Part> {
        let n = |k: &str| v[k].as_u64().unwrap_or(0);
        Some(Part {
            partition: u16::try_from(v["partition"].as_u64()?).ok()?,
            active: v["state"].as_str()? == "active",
            generation: v["generation"].as_i64().unwrap_or(0),
            records_in: n("records_in"),
            lag: n("lag"),
            hosts: n("hosts"),
            takeovers: n("takeovers"),
            handovers: n("handovers"),
            losses: n("losses"),
        })
    }
}

/// A `sluice serve` process: its directory, admin URL and stderr.
struct Host {
    label: String,
    child: Option<Child>,
    pid: i32,
    url: String,
    log: Arc<Mutex<Vec<(Instant, String)>>>,
    agent: ureq::Agent,
    _dir: tempfile::TempDir,
}

impl Host {
    /// Starts `count` hosts at once, each with its own `host.toml` and
    /// state directory, serving `manifest`; returns once all listen.
    fn start_all(prefix: &str, count: usize, manifest: &Path) -> Vec<Host> {
        let mut starting = Vec::new();
        for i in 1..=count {
            let dir = tempfile::tempdir().expect("tempdir");
            let config = dir.path().join("host.toml");
            std::fs::write(
                &config,
                format!(
                    "listen = \"127.0.0.1:0\"\noperator_token = {OPERATOR:?}\namqp = {:?}\n\
                     cassandra = {:?}\nstate_dir = \"state\"\nworkers = 1\n\
                     checkpoint_interval = \"1s\"\n\n[[tenants]]\nmanifest = {:?}\n",
                    amqp_url(),
                    cassandra_node(),
                    manifest.display().to_string()
                ),
            )
            .expect("writing host.toml");
            let mut child = sluice()
                .args(["serve", "--config"])
                .arg(&config)
                .env("SLUICE_LOG", "sluice_host=info")
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("starting sluice serve");
            let log = Arc::new(Mutex::new(Vec::new()));
            let (tx, rx) = std::sync::mpsc::channel();
            let pipe = child.stderr.take().expect("piped stderr");
            {
                let log = Arc::clone(&log);
                std::thread::spawn(move || {
                    for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                        let at = Instant::now();
                        let line = plain(&line);
                        if let Some(rest) = line.split("admin API on ").nth(1) {
                            let _ = tx.send(rest.split(',').next().unwrap_or("").to_owned());
                        }
                        log.lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push((at, line));
                    }
                });
            }
            let pid = i32::try_from(child.id()).expect("pid fits");
            let host = Host {
                label: format!("{prefix}-host{i}"),
                child: Some(child),
                pid,
                url: String::new(),
                log,
                agent: ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .timeout_global(Some(Duration::from_secs(10)))
                    .build()
                    .into(),
                _dir: dir,
            };
            starting.push((host, rx));
        }
        starting
            .into_iter()
            .map(|(mut host, rx)| {
                match rx.recv_timeout(Duration::from_secs(120)) {
                    Ok(url) => host.url = url,
                    Err(_) => panic!("{} did not start:\n{}", host.label, host.log_text()),
                }
                host
            })
            .collect()
    }

    fn log_text(&self) -> String {
        self.lines()
            .into_iter()
            .map(|(_, l)| l)
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn lines(&self) -> Vec<(Instant, String)> {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The tenant's partitions as this host sees them (`None`: no answer).
    fn parts(&self, tenant: &str) -> Option<Vec<Part>> {
        let mut response = self
            .agent
            .get(format!("{}/v1/tenants/{tenant}", self.url))
            .header("Authorization", &format!("Bearer {OPERATOR}"))
            .call()
            .ok()?;
        if response.status().as_u16() != 200 {
            return None;
        }
        let text = response.body_mut().read_to_string().ok()?;
        let json: Value = serde_json::from_str(&text).ok()?;
        json["partitions"]
            .as_array()?
            .iter()
            .map(Part::from_json)
            .collect()
    }

    fn signal(&self, signal: i32) {
        if self.child.is_some() {
            // SAFETY: `pid` is our own child, still unreaped.
            unsafe {
                libc::kill(self.pid, signal);
            }
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// SIGTERM to every host (thawed first), then waits for all; SIGKILL
/// after 20 s. The hosts that did not exit cleanly, with their status.
fn stop_all(hosts: &mut [Host]) -> Vec<String> {
    let mut children = Vec::new();
    for h in hosts.iter_mut() {
        if let Some(child) = h.child.take() {
            // SAFETY: `pid` is our own child, still unreaped.
            unsafe {
                libc::kill(h.pid, libc::SIGCONT);
                libc::kill(h.pid, libc::SIGTERM);
            }
            children.push((h.label.clone(), child));
        }
    }
    let until = Instant::now() + Duration::from_secs(20);
    let mut unclean = Vec::new();
    for (label, mut child) in children {
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status.to_string(),
                Ok(None) if Instant::now() < until => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break "did not stop within 20 s of SIGTERM: killed".into();
                }
            }
        };
        if status != "exit status: 0" {
            unclean.push(format!("{label}: {status}"));
        }
    }
    unclean
}

impl Drop for Host {
    fn drop(&mut self) {
        self.kill();
    }
}

/// What every host says about a tenant at one moment.
struct Snapshot {
    hosts: Vec<Option<Vec<Part>>>,
}

impl Snapshot {
    fn take(hosts: &[Host], tenant: &str) -> Snapshot {
        Snapshot {
            hosts: hosts
                .iter()
                .map(|h| {
                    if h.child.is_some() {
                        h.parts(tenant)
                    } else {
                        None
                    }
                })
                .collect(),
        }
    }

    fn all_answered(&self, alive: usize) -> bool {
        self.hosts.iter().filter(|h| h.is_some()).count() == alive
    }

    /// Per partition, the host where it is active (the newest generation
    /// when two hosts say so, as during a handover) and what it says.
    fn owners(&self) -> BTreeMap<u16, (usize, Part)> {
        let mut out: BTreeMap<u16, (usize, Part)> = BTreeMap::new();
        for (i, parts) in self.hosts.iter().enumerate() {
            for p in parts.iter().flatten().filter(|p| p.active) {
                let newer = out
                    .get(&p.partition)
                    .is_none_or(|(_, q)| p.generation > q.generation);
                if newer {
                    out.insert(p.partition, (i, p.clone()));
                }
            }
        }
        out
    }

    fn total(&self) -> u64 {
        self.owners().values().map(|(_, p)| p.records_in).sum()
    }

    /// Partitions each host says are active on it.
    fn active_on(&self, host: usize) -> Vec<u16> {
        self.hosts[host]
            .iter()
            .flatten()
            .filter(|p| p.active)
            .map(|p| p.partition)
            .collect()
    }

    /// Sum of a per-partition counter over every host.
    fn sum(&self, f: impl Fn(&Part) -> u64) -> u64 {
        self.hosts.iter().flatten().flatten().map(f).sum()
    }

    fn ownership(&self) -> String {
        (0..self.hosts.len())
            .map(|i| {
                let parts = self.active_on(i);
                let list: Vec<String> = parts.iter().map(|p| format!("p{p}")).collect();
                format!("h{}: {} [{}]", i + 1, parts.len(), list.join(","))
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// A tenant of its own: name, queue, output exchange, manifest file.
struct Tenant {
    name: String,
    queue: String,
    exchange: String,
    manifest: PathBuf,
}

impl Tenant {
    fn new(dir: &Path, root: &Path, tag: &str, what: &str) -> Tenant {
        let name = format!("bench-cluster-{tag}-{what}");
        let queue = format!("bench.cluster.{tag}.{what}");
        let exchange = format!("{queue}.out");
        let template = std::fs::read_to_string(root.join("examples/bts-analytics/sluice.toml"))
            .expect("the example manifest");
        let module = root.join("target/components/bts_analytics.wasm");
        assert!(
            module.exists(),
            "{} is missing: cargo xtask build-examples",
            module.display()
        );
        let mut text = String::new();
        let mut replaced = 0;
        for line in template.lines() {
            let t = line.trim_start();
            if t.starts_with("tenant =") {
                text.push_str(&format!("tenant = {name:?}\n"));
            } else if t.starts_with("module =") {
                text.push_str(&format!("module = {:?}\n", module.display().to_string()));
            } else if t.starts_with("queue =") {
                text.push_str(&format!("queue = {queue:?}\npartitions = {PARTITIONS}\n"));
            } else if t.starts_with("exchange =") {
                text.push_str(&format!("exchange = {exchange:?}\n"));
            } else {
                text.push_str(line);
                text.push('\n');
                continue;
            }
            replaced += 1;
        }
        assert_eq!(replaced, 4, "the example manifest changed shape");
        let manifest = dir.join(format!("{what}.toml"));
        std::fs::write(&manifest, text).expect("writing the manifest");
        Tenant {
            name,
            queue,
            exchange,
            manifest,
        }
    }
}

/// `sluice publish --manifest` of `file`, at `rate` rows/s or at once.
fn publish_command(tenant: &Tenant, file: &Path, rate: Option<u32>) -> Command {
    let mut cmd = sluice();
    cmd.args(["publish", "--amqp", &amqp_url(), "--manifest"])
        .arg(&tenant.manifest)
        .arg(file);
    if let Some(r) = rate {
        cmd.args(["--rate", &r.to_string()]);
    }
    cmd
}

/// Publishes `file` at once; the wall time and the tool's summary.
fn publish(tenant: &Tenant, file: &Path) -> (Duration, String) {
    let started = Instant::now();
    let out = publish_command(tenant, file, None)
        .output()
        .expect("running sluice publish");
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    assert!(out.status.success(), "sluice publish failed: {stderr}");
    (took, stderr.lines().last().unwrap_or("").to_owned())
}

fn publish_paced(tenant: &Tenant, file: &Path, rate: u32) -> Guard {
    Guard(Some(
        publish_command(tenant, file, Some(rate))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting sluice publish"),
    ))
}

/// Writes `rows` BTS rows (8 stations, seed 7) from `start` to `path`.
fn gen_bts(path: &Path, rows: u64, start: Option<&str>) {
    let mut cmd = sluice();
    cmd.args(["gen-bts", "--stations", "8", "--seed", "7", "--events"])
        .arg(rows.to_string())
        .arg("--output")
        .arg(path);
    if let Some(s) = start {
        cmd.args(["--start", s]);
    }
    let out = cmd.output().expect("running sluice gen-bts");
    assert!(
        out.status.success(),
        "sluice gen-bts failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Waits until every host consumes every partition queue (the consumer
/// count each host samples is `hosts.len()`).
fn wait_registered(hosts: &[Host], tenant: &str) -> bool {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        let snap = Snapshot::take(hosts, tenant);
        let all = snap.hosts.iter().all(|h| {
            h.as_ref().is_some_and(|parts| {
                parts.len() == usize::from(PARTITIONS)
                    && parts.iter().all(|p| p.hosts == hosts.len() as u64)
            })
        });
        if all {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

/// Rows the hosts' partition runs dropped as late (their "partition run
/// ended" lines): `host pN: n` for each run that dropped any, and the sum.
fn late_drops(hosts: &[Host]) -> (u64, Vec<String>) {
    let mut sum = 0;
    let mut runs = Vec::new();
    for (i, h) in hosts.iter().enumerate() {
        for (_, line) in h.lines() {
            if !line.contains("partition run ended") {
                continue;
            }
            let late: u64 = field(&line, "late_events_dropped")
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            if late > 0 {
                sum += late;
                runs.push(format!(
                    "h{} p{}: {late}",
                    i + 1,
                    field(&line, "partition").unwrap_or("?")
                ));
            }
        }
    }
    (sum, runs)
}

/// Keeps the hosts' logs, prints their WARN/ERROR lines.
struct Logs {
    dir: PathBuf,
}

impl Logs {
    fn report(&self, hosts: &[Host]) {
        let mut alarming_lines = Vec::new();
        for h in hosts {
            let lines = h.lines();
            let path = self.dir.join(format!("{}.log", h.label));
            if let Ok(mut f) = std::fs::File::create(&path) {
                for (_, l) in &lines {
                    let _ = writeln!(f, "{l}");
                }
            }
            alarming_lines.extend(
                lines
                    .into_iter()
                    .filter(|(_, l)| alarming(l))
                    .map(|(_, l)| format!("{}: {l}", h.label)),
            );
        }
        if alarming_lines.is_empty() {
            println!("    hosts' logs: no WARN/ERROR line");
            return;
        }
        const SHOWN: usize = 30;
        println!(
            "    hosts' logs: {} WARN/ERROR lines{}:",
            alarming_lines.len(),
            if alarming_lines.len() > SHOWN {
                format!(" (first {SHOWN}; all in {})", self.dir.display())
            } else {
                String::new()
            }
        );
        for l in alarming_lines.iter().take(SHOWN) {
            println!("      {l}");
        }
    }
}

fn main() {
    let rows: u64 = std::env::var("SLUICE_BENCH_ROWS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60_000);
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ has a parent")
        .to_path_buf();
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // Unique across runs: partitions' checkpoints stay in Cassandra.
    let tag = format!("{secs}-{}", std::process::id());
    let work = tempfile::tempdir().expect("tempdir");
    let logs = Logs {
        dir: std::env::temp_dir().join(format!("sluice-bench-cluster-{tag}")),
    };
    std::fs::create_dir_all(&logs.dir).expect("log directory");
    let data = work.path().join("bts.csv");
    gen_bts(&data, rows, None);
    let warm = work.path().join("warm.csv");
    // Event times before the measured rows', so none of those is late.
    gen_bts(&warm, WARM_ROWS, Some("2017-02-18 12:00:00"));
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    println!(
        "cluster benchmark: partitioned BTS tenant ({PARTITIONS} partitions), {rows} rows \
         (gen-bts, 8 stations, seed 7, 1 row a message), `sluice serve` hosts with workers = 1, \
         checkpoints in Cassandra every 1 s, results to RabbitMQ and Cassandra."
    );
    println!(
        "this machine has {cores} cores: every host, the broker and Cassandra share them, so the \
         figures show the cluster's overhead and correctness, not a speed-up."
    );
    println!(
        "hosts' logs: {}; load average at the start: {}",
        logs.dir.display(),
        load()
    );
    let mut tenants = Vec::new();

    println!();
    println!("1. events/s with 1, 2 and 3 hosts");
    println!(
        "   method: the hosts start; a warm-up stream ({WARM_RATE} rows/s, earlier event times) runs \
         until the balance has settled (all {PARTITIONS} partitions active, no host above \
         ⌈{PARTITIONS}/hosts⌉), is stopped and drained; the hosts are frozen (SIGSTOP), the {rows} \
         rows published (timed apart: the broker's rate), the hosts thawed (SIGCONT) and timed \
         until the active partitions' records_in add up to warm-up + {rows}."
    );
    let mut table = Vec::new();
    for h in 1..=3 {
        let tenant = Tenant::new(work.path(), &root, &tag, &format!("h{h}"));
        table.push(throughput(h, &tenant, &data, &warm, rows, &logs));
        tenants.push(tenant);
    }
    println!(
        "   {:>5} {:>9} {:>8} {:>13} {:>11} {:>11} {:>6} {:>6} {:>6}  partitions per host at the end",
        "hosts", "settled", "warm-up", "publish", "consume", "rows/s", "moves", "exact", "late"
    );
    for r in &table {
        println!(
            "   {:>5} {:>8.1}s {:>8} {:>7.0} rows/s {:>10.2}s {:>11} {:>6} {:>6} {:>6}  {}",
            r.hosts,
            r.settled.as_secs_f64(),
            r.warm_rows,
            r.publish_rate,
            r.consumed.map_or(f64::NAN, |d| d.as_secs_f64()),
            r.consumed.map_or("-".to_owned(), |d| format!(
                "{:.0}",
                rows as f64 / d.as_secs_f64()
            )),
            r.moves,
            r.exact,
            r.late,
            r.ownership
        );
    }
    if let Some(base) = table.first().and_then(|r| r.consumed) {
        for r in table.iter().skip(1) {
            if let Some(d) = r.consumed {
                println!(
                    "   {} hosts: {:.0} % of the 1-host rate",
                    r.hosts,
                    base.as_secs_f64() / d.as_secs_f64() * 100.0
                );
            }
        }
    }
    println!(
        "   (settled: warm-up start → balance settled; moves: handovers + takeovers while \
         timed; exact: records_in at the end = warm-up + {rows}; late: rows dropped as late over \
         the whole run, warm-up included (expected 0); publish: `sluice publish` \
         wall time, process start included)"
    );
    for r in &table {
        println!("   publish summary, {} hosts: {}", r.hosts, r.publish_line);
    }

    println!();
    println!("2. takeover time (load average {}; 2 hosts, {PARTITIONS} partitions, stream at {KILL_RATE} rows/s, SIGKILL of the host owning the most partitions)", load());
    let tenant = Tenant::new(work.path(), &root, &tag, "takeover");
    let reference = Tenant::new(work.path(), &root, &tag, "reference");
    takeover(&tenant, &reference, &data, rows, work.path(), &logs);
    tenants.push(tenant);
    tenants.push(reference);

    println!();
    println!("3. checkpoint cost, Cassandra vs local (load average {}; {CHECKPOINT_WRITES} writes each, ids increasing, after 5 untimed)", load());
    checkpoint_cost(&tag, &root);

    cleanup(&tenants);
}

struct Row {
    hosts: usize,
    settled: Duration,
    warm_rows: u64,
    publish_rate: f64,
    publish_line: String,
    consumed: Option<Duration>,
    moves: u64,
    exact: String,
    late: u64,
    ownership: String,
}

fn throughput(h: usize, tenant: &Tenant, data: &Path, warm: &Path, rows: u64, logs: &Logs) -> Row {
    let t = tenant.name.as_str();
    let mut hosts = Host::start_all(&format!("h{h}"), h, &tenant.manifest);
    if !wait_registered(&hosts, t) {
        println!("   ({h} hosts: not every host consumes every partition after 30 s)");
    }
    // Warm-up until the balance settles.
    let share = usize::from(PARTITIONS).div_ceil(h);
    let mut warmup = publish_paced(tenant, warm, WARM_RATE);
    let started = Instant::now();
    let mut calm = 0;
    let settled = loop {
        std::thread::sleep(Duration::from_millis(250));
        let snap = Snapshot::take(&hosts, t);
        let counts: Vec<usize> = (0..h).map(|i| snap.active_on(i).len()).collect();
        let ok = snap.all_answered(h)
            && snap.owners().len() == usize::from(PARTITIONS)
            && counts.iter().sum::<usize>() == usize::from(PARTITIONS)
            && counts.iter().all(|c| *c <= share);
        calm = if ok { calm + 1 } else { 0 };
        if calm >= 4 {
            break started.elapsed();
        }
        if started.elapsed() > Duration::from_secs(60) || warmup.finished() {
            println!(
                "   ({h} hosts: the balance did not settle within {:.0} s of warm-up: {})",
                started.elapsed().as_secs_f64(),
                snap.ownership()
            );
            break started.elapsed();
        }
    };
    warmup.kill();
    // Drained: no lag anywhere, the total still for 1.5 s.
    let drain_started = Instant::now();
    let mut last = (u64::MAX, Instant::now());
    let warm_rows = loop {
        std::thread::sleep(Duration::from_millis(250));
        let snap = Snapshot::take(&hosts, t);
        let owners = snap.owners();
        let total = snap.total();
        if total != last.0 {
            last = (total, Instant::now());
        }
        let idle = owners.len() == usize::from(PARTITIONS)
            && owners.values().all(|(_, p)| p.lag == 0)
            && last.1.elapsed() >= Duration::from_millis(1_500);
        if idle {
            break total;
        }
        if drain_started.elapsed() > Duration::from_secs(60) {
            println!(
                "   ({h} hosts: the warm-up did not drain within 60 s: {total} records, {})",
                snap.ownership()
            );
            break total;
        }
    };
    let before = Snapshot::take(&hosts, t);
    let moves_before = before.sum(|p| p.handovers + p.takeovers);
    // Frozen while the rows are published, then thawed and timed.
    for host in &hosts {
        host.signal(libc::SIGSTOP);
    }
    let (took, publish_line) = publish(tenant, data);
    for host in &hosts {
        host.signal(libc::SIGCONT);
    }
    let started = Instant::now();
    let load_at_start = load();
    let target = warm_rows + rows;
    let mut end = None;
    let mut snap;
    loop {
        snap = Snapshot::take(&hosts, t);
        let total = snap.total();
        if total >= target {
            end = Some(started.elapsed());
            break;
        }
        if started.elapsed() > Duration::from_secs(300) {
            println!(
                "   ({h} hosts: {total} of {target} records after 300 s: {})",
                snap.ownership()
            );
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // Anything counted twice shows up shortly after.
    std::thread::sleep(Duration::from_millis(1_500));
    let after = Snapshot::take(&hosts, t);
    let total = after.total();
    let exact = if total == target {
        "yes".to_owned()
    } else {
        format!("{:+}", total as i64 - target as i64)
    };
    let moves = after
        .sum(|p| p.handovers + p.takeovers)
        .saturating_sub(moves_before);
    let losses = after.sum(|p| p.losses);
    if losses > 0 {
        println!("   ({h} hosts: {losses} partition losses reported)");
    }
    let ownership = after.ownership();
    let unclean = stop_all(&mut hosts);
    if !unclean.is_empty() {
        println!("   ({h} hosts: stopping: {})", unclean.join(", "));
    }
    // The run-ended lines are written on the way out.
    std::thread::sleep(Duration::from_millis(200));
    let (late, late_runs) = late_drops(&hosts);
    println!(
        "   {h} host(s): settled after {:.1} s, warm-up {warm_rows} rows, published {rows} rows in {:.2} s, consumed in {} (load average {load_at_start} → {})",
        settled.as_secs_f64(),
        took.as_secs_f64(),
        end.map_or("(did not finish)".to_owned(), |d| format!("{:.2} s", d.as_secs_f64())),
        load()
    );
    if late > 0 {
        println!(
            "    late rows dropped (the generated rows are in order: expected 0): {}",
            late_runs.join(", ")
        );
    }
    logs.report(&hosts);
    Row {
        hosts: h,
        settled,
        warm_rows,
        publish_rate: rows as f64 / took.as_secs_f64(),
        publish_line,
        consumed: end,
        moves,
        exact,
        late,
        ownership,
    }
}

fn takeover(tenant: &Tenant, reference: &Tenant, data: &Path, rows: u64, dir: &Path, logs: &Logs) {
    let t = tenant.name.as_str();
    // About 25 s of stream.
    let stream_rows = rows.min(u64::from(KILL_RATE) * 25);
    let file = dir.join("takeover.csv");
    {
        let text = std::fs::read_to_string(data).expect("reading the rows");
        let mut out = String::new();
        for line in text.lines().take(stream_rows as usize) {
            out.push_str(line);
            out.push('\n');
        }
        std::fs::write(&file, out).expect("writing the rows");
    }
    // What each partition gets: the same rows into a copy of the input
    // nobody consumes (the exchange places keys by its bindings, the
    // same for every input with as many partitions).
    publish(reference, &file);
    let published = queue_depths(reference);
    let mut hosts = Host::start_all("takeover", 2, &tenant.manifest);
    if !wait_registered(&hosts, t) {
        println!("   (not every host consumes every partition after 30 s)");
    }
    let mut publisher = publish_paced(tenant, &file, KILL_RATE);
    let started = Instant::now();
    // Until the balance has settled (3 and 3, no partition active on both
    // hosts, for 1 s), or 25 s: the kill then moves whole partitions,
    // not one in the middle of a handover.
    let mut calm = 0;
    let snap = loop {
        std::thread::sleep(Duration::from_millis(200));
        let snap = Snapshot::take(&hosts, t);
        let counts = [snap.active_on(0).len(), snap.active_on(1).len()];
        let half = usize::from(PARTITIONS).div_ceil(2);
        let ok = snap.owners().len() == usize::from(PARTITIONS)
            && counts.iter().sum::<usize>() == usize::from(PARTITIONS)
            && counts.iter().all(|c| *c <= half);
        calm = if ok { calm + 1 } else { 0 };
        if calm >= 5 {
            break snap;
        }
        if started.elapsed() > Duration::from_secs(25) {
            println!("   (the balance did not settle within 25 s: killing anyway)");
            break snap;
        }
    };
    let victim = if snap.active_on(1).len() > snap.active_on(0).len() {
        1
    } else {
        0
    };
    let survivor = 1 - victim;
    // The partitions the victim runs (the newest generation is its).
    let moved: BTreeSet<u16> = snap
        .owners()
        .into_iter()
        .filter(|(_, (host, _))| *host == victim)
        .map(|(p, _)| p)
        .collect();
    println!(
        "   at {:.1} s of stream: {}; SIGKILL to h{} ({} partitions)",
        started.elapsed().as_secs_f64(),
        snap.ownership(),
        victim + 1,
        moved.len()
    );
    if moved.is_empty() {
        println!("   (no host owns a partition: nothing to measure)");
        logs.report(&hosts);
        return;
    }
    let killed_at = Instant::now();
    hosts[victim].kill();
    // Poll the survivor until each moved partition is active and counting.
    let mut active_at: BTreeMap<u16, (Duration, u64)> = BTreeMap::new();
    let mut grown_at: BTreeMap<u16, Duration> = BTreeMap::new();
    while grown_at.len() < moved.len() && killed_at.elapsed() < Duration::from_secs(30) {
        if let Some(parts) = hosts[survivor].parts(t) {
            let now = killed_at.elapsed();
            for p in parts
                .iter()
                .filter(|p| p.active && moved.contains(&p.partition))
            {
                let first = *active_at.entry(p.partition).or_insert((now, p.records_in));
                if p.records_in > first.1 {
                    grown_at.entry(p.partition).or_insert(now);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // The survivor's log: when each takeover line came, and its took_ms.
    let mut logged: BTreeMap<u16, (Duration, u64)> = BTreeMap::new();
    for (at, line) in hosts[survivor].lines() {
        if at < killed_at || !line.contains("took the partition over") {
            continue;
        }
        if field(&line, "tenant") != Some(t) {
            continue;
        }
        let Some(p) = field(&line, "partition").and_then(|s| s.parse::<u16>().ok()) else {
            continue;
        };
        let took = field(&line, "took_ms")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        if moved.contains(&p) {
            logged
                .entry(p)
                .or_insert((at.duration_since(killed_at), took));
        }
    }
    println!(
        "   {:>9} {:>22} {:>14} {:>24} {:>26}",
        "partition",
        "kill → took over (log)",
        "took_ms (log)",
        "kill → active (API)",
        "kill → records_in grows"
    );
    let cell = |d: Option<Duration>| d.map_or("-".to_owned(), |d| format!("{:.0} ms", ms(d)));
    for p in &moved {
        println!(
            "   {:>9} {:>22} {:>14} {:>24} {:>26}",
            format!("p{p}"),
            cell(logged.get(p).map(|x| x.0)),
            logged
                .get(p)
                .map_or("-".to_owned(), |x| format!("{} ms", x.1)),
            cell(active_at.get(p).map(|x| x.0)),
            cell(grown_at.get(p).copied())
        );
    }
    let stats = |mut v: Vec<f64>| -> String {
        if v.is_empty() {
            return "-".into();
        }
        v.sort_by(f64::total_cmp);
        format!(
            "min {:.0} / median {:.0} / max {:.0} ms",
            v[0],
            v[v.len() / 2],
            v[v.len() - 1]
        )
    };
    println!(
        "   kill → took over (log):   {} over {} of {} moved partitions",
        stats(logged.values().map(|x| ms(x.0)).collect()),
        logged.len(),
        moved.len()
    );
    println!(
        "   took_ms (claim + restore + result sink, as logged): {}",
        stats(logged.values().map(|x| x.1 as f64).collect())
    );
    println!(
        "   kill → records_in grows:  {} over {} of {} moved partitions",
        stats(grown_at.values().map(|d| ms(*d)).collect()),
        grown_at.len(),
        moved.len()
    );
    // Exactly once across the kill: the survivor's partitions add up to
    // what was published.
    let until = Instant::now() + Duration::from_secs(60);
    while !publisher.finished() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut total = 0;
    let mut last_change = Instant::now();
    let mut last = None;
    while Instant::now() < until {
        let snap = Snapshot::take(&hosts, t);
        let now = snap.total();
        last = Some(snap);
        if now != total {
            total = now;
            last_change = Instant::now();
        }
        if (now >= stream_rows && last_change.elapsed() > Duration::from_secs(2))
            || last_change.elapsed() > Duration::from_secs(10)
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    publisher.kill();
    println!(
        "   after the stream: the survivor's partitions read {total} records of {stream_rows} published ({})",
        if total == stream_rows {
            "exactly once".to_owned()
        } else {
            format!("{:+}", total as i64 - stream_rows as i64)
        }
    );
    if let (Some(snap), Some(published)) = (last, published) {
        println!(
            "   {:>9} {:>10} {:>10} {:>10}  moved by",
            "partition", "published", "read", "difference"
        );
        let owners = snap.owners();
        for (i, sent) in published.iter().enumerate() {
            let p = u16::try_from(i).unwrap_or(u16::MAX);
            let read = owners.get(&p).map(|(_, part)| part.records_in);
            let how = if moved.contains(&p) {
                "the SIGKILL"
            } else if snap.hosts[survivor]
                .iter()
                .flatten()
                .any(|x| x.partition == p && x.takeovers > 0 && x.generation > 1)
            {
                "a handover"
            } else {
                "-"
            };
            println!(
                "   {:>9} {:>10} {:>10} {:>10}  {how}",
                format!("p{p}"),
                sent,
                read.map_or("-".to_owned(), |r| r.to_string()),
                read.map_or("-".to_owned(), |r| format!("{:+}", r as i64 - *sent as i64)),
            );
        }
    }
    let unclean = stop_all(&mut hosts);
    if !unclean.is_empty() {
        println!("   (stopping: {})", unclean.join(", "));
    }
    std::thread::sleep(Duration::from_millis(200));
    let (late, late_runs) = late_drops(&hosts);
    if late > 0 {
        println!(
            "   late rows dropped (the generated rows are in order: expected 0): {}",
            late_runs.join(", ")
        );
    }
    logs.report(&hosts);
}

/// A realistic checkpoint: one shard with a 64 KiB window blob, 300
/// alert states, 500 unacked message fingerprints.
fn sample_checkpoint(id: u64) -> Checkpoint {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let windows: Vec<u8> = (0..64 * 1024).map(|_| next() as u8).collect();
    let alert_states = (0..300)
        .map(|i| {
            let key = Key::from_parts([format!("11611140{i:03}"), "121".into(), "309".into()])
                .expect("key");
            let state: Vec<u8> = (0..48).map(|_| next() as u8).collect();
            (key, state)
        })
        .collect();
    let unacked = (0..500)
        .map(|_| (0..4).flat_map(|_| next().to_le_bytes()).collect())
        .collect();
    Checkpoint {
        id,
        tenant: "bts".into(),
        module_hash: "0".repeat(64),
        input: InputPosition::Messages { unacked },
        output_bytes: None,
        dead_letter_bytes: None,
        coordinator: CoordinatorState {
            wm: 1_487_442_485_000,
            max_time: Some(1_487_442_490_000),
            wm_at_last_record: 1_487_442_485_000,
            keyless: 0,
            keyless_metrics: vec![(Some(1_487_442_540_000), 0)],
        },
        counters: CounterState {
            rows_in: 10_000,
            ..CounterState::default()
        },
        shards: vec![ShardState {
            windows,
            alert_states,
        }],
        guards: Default::default(),
    }
}

/// Writes 5 untimed then `CHECKPOINT_WRITES` timed checkpoints; ms each.
fn time_writes(store: &dyn CheckpointStore, template: &Checkpoint) -> Vec<f64> {
    let mut c = template.clone();
    let mut out = Vec::new();
    for i in 0..CHECKPOINT_WRITES + 5 {
        c.id = i as u64 + 1;
        let started = Instant::now();
        store.write(&c).expect("checkpoint write");
        if i >= 5 {
            out.push(ms(started.elapsed()));
        }
    }
    out
}

struct Stats {
    mean: f64,
    p50: f64,
    p99: f64,
    max: f64,
    over_50: usize,
}

fn stats(mut v: Vec<f64>) -> Stats {
    v.sort_by(f64::total_cmp);
    let at = |q: usize| v[(v.len() * q / 100).min(v.len() - 1)];
    Stats {
        mean: v.iter().sum::<f64>() / v.len() as f64,
        p50: at(50),
        p99: at(99),
        max: v[v.len() - 1],
        over_50: v.iter().filter(|x| **x > 50.0).count(),
    }
}

fn checkpoint_cost(tag: &str, root: &Path) {
    let checkpoint = sample_checkpoint(1);
    let size = checkpoint.encode().expect("encode").len();
    println!(
        "   checkpoint: {size} B encoded (1 shard: 64 KiB of windows, 300 alert states, 500 unacked fingerprints)"
    );
    // On the disk the target directory is on (not a tmpfs).
    let local_dir = tempfile::Builder::new()
        .prefix("bench-cluster-ckpt")
        .tempdir_in(root.join("target"))
        .expect("tempdir");
    let local = LocalStore::open(local_dir.path(), 3).expect("local store");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let tenant = format!("bench-cluster-ckpt-{tag}");
    let config = CassandraConfig::new(vec![cassandra_node()]);
    let open = |pipeline: &str| {
        rt.block_on(CassandraStore::connect(
            &config,
            rt.handle().clone(),
            &tenant,
            pipeline,
            &CassandraStoreOptions::default(),
        ))
        .unwrap_or_else(|e| {
            panic!("{e}: is Cassandra running? `scripts/services.sh start cassandra`")
        })
    };
    let plain_store = open("unclaimed");
    let mut claimed = open("claimed");
    let generation = claimed.claim("bench").expect("claiming");
    let local_ms = stats(time_writes(&local, &checkpoint));
    let plain_ms = stats(time_writes(&plain_store, &checkpoint));
    let claimed_ms = stats(time_writes(&claimed, &checkpoint));
    // Read back, so a write that silently did nothing shows.
    let newest = |s: &dyn CheckpointStore| {
        s.latest()
            .ok()
            .flatten()
            .map_or("none".to_owned(), |r| r.checkpoint.id.to_string())
    };
    println!(
        "   {:<34} {:>9} {:>9} {:>9} {:>9} {:>8}",
        "store", "mean ms", "p50 ms", "p99 ms", "max ms", "> 50 ms"
    );
    for (name, s) in [
        ("local (fsync + rename + dir fsync)", &local_ms),
        ("cassandra, unclaimed", &plain_ms),
        ("cassandra, claimed (LWT marker)", &claimed_ms),
    ] {
        println!(
            "   {:<34} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>8}",
            name, s.mean, s.p50, s.p99, s.max, s.over_50
        );
    }
    println!(
        "   claimed / local: {:.1}× (mean), {:.1}× (p50); claimed / unclaimed: {:.2}× (mean), {:.2}× (p50)",
        claimed_ms.mean / local_ms.mean,
        claimed_ms.p50 / local_ms.p50,
        claimed_ms.mean / plain_ms.mean,
        claimed_ms.p50 / plain_ms.p50
    );
    println!(
        "   newest checkpoint read back: local {}, unclaimed {}, claimed {} (generation {generation}); tenant {tenant}",
        newest(&local),
        newest(&plain_store),
        newest(&claimed)
    );
}

/// Messages ready in each partition queue of `tenant`'s input.
fn queue_depths(tenant: &Tenant) -> Option<Vec<u64>> {
    use lapin::options::QueueDeclareOptions;
    use lapin::types::FieldTable;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    rt.block_on(async {
        let conn = lapin::Connection::connect(&amqp_url(), lapin::ConnectionProperties::default())
            .await
            .ok()?;
        let ch = conn.create_channel().await.ok()?;
        let mut out = Vec::new();
        for i in 0..PARTITIONS {
            let q = format!("{}.p{i}", tenant.queue);
            let declared = ch
                .queue_declare(
                    q.as_str().into(),
                    QueueDeclareOptions {
                        passive: true,
                        ..QueueDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await
                .ok()?;
            out.push(u64::from(declared.message_count()));
        }
        let _ = conn.close(200, "done".into()).await;
        Some(out)
    })
}

/// Deletes the partition queues, dead-letter queues and the exchanges.
fn cleanup(tenants: &[Tenant]) {
    use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    rt.block_on(async {
        let Ok(conn) =
            lapin::Connection::connect(&amqp_url(), lapin::ConnectionProperties::default()).await
        else {
            return;
        };
        let Ok(ch) = conn.create_channel().await else {
            return;
        };
        for t in tenants {
            let dead = sluice_host::amqp::topology::dead_letter_name(&t.queue);
            let mut queues: Vec<String> = (0..PARTITIONS)
                .map(|i| format!("{}.p{i}", t.queue))
                .collect();
            queues.push(dead.clone());
            for q in &queues {
                let _ = ch
                    .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
                    .await;
            }
            for x in [&t.queue, &dead, &t.exchange] {
                let _ = ch
                    .exchange_delete(x.as_str().into(), ExchangeDeleteOptions::default())
                    .await;
            }
        }
        let _ = conn.close(200, "done".into()).await;
    });
}
