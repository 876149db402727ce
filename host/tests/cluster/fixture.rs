//! A partitioned BTS tenant, hosts serving it, and its stored results.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::amqp::{self, unique};
use crate::common::{self, sluice};
use crate::host::{Served, OPERATOR};

/// Partitions of the test tenants.
pub const PARTITIONS: u16 = 6;

/// One cluster test at a time: each runs up to four hosts.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

pub fn one_at_a_time() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn cassandra() -> String {
    std::env::var("SLUICE_TEST_CASSANDRA").unwrap_or_else(|_| "127.0.0.1:9042".to_owned())
}

/// A partitioned tenant: its name and manifest (unique queue, exchange
/// and tenant, so its checkpoints and rows are its own).
pub struct Tenant {
    pub name: String,
    pub manifest: PathBuf,
    pub dir: PathBuf,
}

impl Tenant {
    /// The example's BTS manifest (windows, alerts) with `partitions`.
    pub fn new(dir: &Path, prefix: &str) -> Tenant {
        let name = unique(prefix).replace(['.', '-'], "_");
        let dir = dir.join(&name);
        std::fs::create_dir_all(&dir).expect("tenant dir");
        let path = amqp::manifest(&dir, &format!("{name}.in"), &format!("{name}.out"));
        let text = std::fs::read_to_string(&path)
            .expect("reading the manifest")
            .replace("tenant = \"bts\"", &format!("tenant = {name:?}"))
            .replace(
                "[input]\n",
                &format!("[input]\npartitions = {PARTITIONS}\n"),
            );
        std::fs::write(&path, text).expect("writing the manifest");
        Tenant {
            name,
            manifest: path,
            dir,
        }
    }

    /// A host serving this tenant, its state under `<dir>/host-<n>`.
    pub fn host(&self, n: usize) -> Served {
        self.host_with_env(n, &[])
    }

    /// [`Tenant::host`] with extra environment (fail points).
    pub fn host_with_env(&self, n: usize, env: &[(&str, &str)]) -> Served {
        let dir = self.dir.join(format!("host-{n}"));
        std::fs::create_dir_all(&dir).expect("host dir");
        Served::start_extra_env(
            &dir,
            &[],
            &[&self.manifest],
            &format!("cassandra = {:?}", cassandra()),
            env,
        )
    }

    /// `sluice publish --manifest`: keyed, to the partition exchange;
    /// `rate` rows/s when given. Returns the publisher's process.
    pub fn publish(&self, file: &Path, rate: Option<u32>) -> std::process::Child {
        let mut cmd = sluice();
        cmd.args(["publish", "--amqp", &amqp::url(), "--manifest"])
            .arg(&self.manifest)
            .arg(file)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        if let Some(r) = rate {
            cmd.args(["--rate", &r.to_string()]);
        }
        cmd.spawn().expect("starting sluice publish")
    }

    /// This tenant as `host` sees it.
    pub fn view(&self, host: &Served) -> Value {
        host.tenant(&self.name)
    }

    /// Waits until the partitions' records, each read from the host that
    /// owns it now, add up to `rows`; panics after 4 min with the views.
    pub fn wait_read(&self, hosts: &[&Served], rows: u64) {
        let started = Instant::now();
        loop {
            let views: Vec<Value> = hosts.iter().map(|h| self.view(h)).collect();
            let read = owned_records(&views);
            if read == rows {
                return;
            }
            assert!(
                read <= rows,
                "read {read} records of {rows}: {views:#?}\n{}",
                hosts
                    .iter()
                    .map(|h| h.stderr())
                    .collect::<Vec<_>>()
                    .join("\n----\n")
            );
            assert!(
                started.elapsed() < Duration::from_secs(240),
                "read {read} of {rows} records after 4 min: {views:#?}\n{}",
                hosts
                    .iter()
                    .map(|h| h.stderr())
                    .collect::<Vec<_>>()
                    .join("\n----\n")
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Undeploys on every host: each fires the open windows of the
    /// partitions it owns (the end of the stream), as the embedded run
    /// does at the end of its file.
    pub fn finish(&self, hosts: &[&Served]) {
        for h in hosts {
            let (status, view) = h.delete(&format!("/v1/tenants/{}", self.name), Some(OPERATOR));
            assert_eq!(status, 200, "undeploy: {view}\n{}", h.stderr());
        }
    }

    /// The rows Cassandra holds for this tenant (`sluice query`), sorted,
    /// with the tenant's name replaced by `T`.
    pub fn stored(&self) -> Vec<String> {
        let out = sluice()
            .args(["query", "--cassandra", &cassandra(), "--tenant", &self.name])
            .output()
            .expect("running sluice query");
        assert!(
            out.status.success(),
            "sluice query failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut rows: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| anonymous(l, &self.name))
            .collect();
        rows.sort();
        rows
    }
}

/// Records read, summed over the partitions: per partition, the highest
/// count any host reports — a partition's count is restored with its
/// checkpoint and only grows, and a host that handed a partition over (to
/// a host that has read nothing of it since, while its queue is empty)
/// keeps the count it handed over with.
pub fn owned_records(views: &[Value]) -> u64 {
    let mut by_partition: BTreeMap<u64, u64> = BTreeMap::new();
    for v in views {
        for p in v["partitions"].as_array().into_iter().flatten() {
            let n = by_partition
                .entry(p["partition"].as_u64().unwrap_or(0))
                .or_insert(0);
            *n = (*n).max(p["records_in"].as_u64().unwrap_or(0));
        }
    }
    by_partition.values().sum()
}

/// Partitions each host owns now.
pub fn owned_counts(views: &[Value]) -> Vec<usize> {
    views
        .iter()
        .map(|v| {
            v["partitions"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["state"] == "active")
                .count()
        })
        .collect()
}

/// A result line with its tenant's name replaced by `T`.
fn anonymous(line: &str, tenant: &str) -> String {
    line.replacen(
        &format!("\"tenant\":{}", serde_json::json!(tenant)),
        "\"tenant\":\"T\"",
        1,
    )
}

/// What a stored result is identified by (its primary key): type, window
/// and key; kind, key and event time for alerts.
fn identity(v: &Value) -> String {
    match v["type"].as_str() {
        Some("Alert") => format!(
            "Alert|{}|{}|{}",
            v["key"], v["data"]["kind"], v["data"]["event_time"]
        ),
        _ => format!("{}|{}|{}", v["type"], v["window"], v["key"]),
    }
}

/// The embedded run of the same manifest and file, as Cassandra would hold
/// its lines: the last per identity, tenant `T`, sorted.
pub fn embedded_rows(tenant: &Tenant, file: &Path) -> Vec<String> {
    let run = common::run(&tenant.manifest, file, 2);
    let late = run.dead.iter().filter(|d| d["kind"] == "late").count();
    assert_eq!(
        late, 0,
        "the test file must have no late events (a partition's watermark, behind the \
         input's, drops fewer)"
    );
    let mut last = BTreeMap::new();
    for line in &run.lines {
        let v: Value = serde_json::from_str(line).expect("an output line is JSON");
        last.insert(identity(&v), anonymous(line, &tenant.name));
    }
    let mut rows: Vec<String> = last.into_values().collect();
    rows.sort();
    rows
}

/// The last Global Analytic `counter` per key in stored rows.
pub fn last_global_counters(rows: &[String]) -> BTreeMap<String, u64> {
    let mut last: BTreeMap<String, (i64, u64)> = BTreeMap::new();
    for row in rows {
        let v: Value = serde_json::from_str(row).expect("a stored row is JSON");
        if v["type"] != "Global Analytic" {
            continue;
        }
        let end = v["window"]["end"].as_i64().unwrap_or(0);
        let counter = v["data"]["counter"].as_u64().unwrap_or(0);
        let entry = last.entry(common::key_of(&v)).or_insert((end, counter));
        if end >= entry.0 {
            *entry = (end, counter);
        }
    }
    last.into_iter().map(|(k, (_, c))| (k, c)).collect()
}

/// Good rows per key of a BTS file, read independently of the host.
pub fn good_rows_per_key(file: &Path) -> BTreeMap<String, u64> {
    let mut n = BTreeMap::new();
    for line in common::read_lines(file) {
        if let (Some(key), Some(_)) = (line.key, line.good) {
            *n.entry(key).or_insert(0) += 1;
        }
    }
    n
}

/// Distinct keys of a BTS file.
pub fn keys_of(file: &Path) -> BTreeSet<String> {
    common::read_lines(file)
        .into_iter()
        .filter_map(|l| l.key)
        .collect()
}

/// A BTS file of `rows` rows over 6 stations, 5 % out of order (within
/// the manifest's 5 s bound: no late events), plus `extra` gen-bts args.
pub fn readings(dir: &Path, rows: u64, seed: u64, extra: &[&str]) -> PathBuf {
    let (rows, seed) = (rows.to_string(), seed.to_string());
    let mut args = vec![
        "--stations",
        "6",
        "--events",
        &rows,
        "--seed",
        &seed,
        "--out-of-order",
        "0.05",
    ];
    args.extend_from_slice(extra);
    common::gen_bts(dir, "readings.csv", &args)
}

/// Waits for a publisher to finish; panics with its stderr when it failed.
pub fn published(child: std::process::Child) {
    let out = child
        .wait_with_output()
        .expect("waiting for sluice publish");
    assert!(
        out.status.success(),
        "sluice publish failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
