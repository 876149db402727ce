//! Batch-job triggers inside `sluice serve` (real RabbitMQ, real Cassandra,
//! the real bts-batch component): a ramp toward a threshold raises
//! predicted-breach alerts, each alert runs its job once over the alert
//! station's last 24 h, a repeated alert writes no new rows; a short
//! schedule runs its job, and its next firing over the same range writes
//! no new rows.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use sluice_host::batch::JobRange;
use sluice_host::cassandra::batch_results::{BatchResultStore, BatchRun};
use sluice_host::cassandra::CassandraConfig;

use crate::amqp::{self, unique};
use crate::common::{self, sluice};
use crate::host::{cassandra, Data, Served};

const DAY: i64 = 86_400_000;
const HOUR: i64 = 3_600_000;

fn manifest(dir: &Path, tenant: &str, queue: &str, exchange: &str) -> std::path::PathBuf {
    let text = format!(
        r#"tenant = {tenant:?}
module = {module:?}
[input]
queue = {queue:?}
columns = [
  {{ name = "station_id", type = "text" }},
  {{ name = "datapoint_id", type = "text" }},
  {{ name = "alarm_id", type = "text" }},
  {{ name = "event_time", type = "timestamp", format = "%Y-%m-%d %H:%M:%S UTC" }},
  {{ name = "value", type = "float" }},
  {{ name = "valueThreshold", type = "float" }},
  {{ name = "isActive", type = "bool" }},
  {{ name = "storedtime", type = "text", optional = true }},
]
key = ["station_id", "datapoint_id", "alarm_id"]
event_time = "event_time"
max_out_of_orderness = "5s"
[alerts]
function = "alerts"
[params]
trend_points = "10"
horizon = "10m"
[output]
exchange = {exchange:?}

[[batch]]
name = "on_breach"
key = ["station_id"]
windows = [{{ name = "day", kind = "tumbling", size = "1d", aggregate = "active_alarms" }}]
[batch.on_alert]
kinds = ["predicted-breach"]
range = "24h"
align = "1h"
scope = ["station_id"]

[[batch]]
name = "every_2s"
key = ["station_id"]
windows = [{{ name = "all", kind = "range", aggregate = "row_count" }}]
[batch.schedule]
every = "2s"
range = "3d"
align = "1d"
"#,
        module = common::component("bts_batch").display().to_string(),
    );
    let path = dir.join("bts-batch.toml");
    std::fs::write(&path, text).expect("writing the manifest");
    path
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Polls `f` every 250 ms until it returns `Some`, for at most `limit`.
fn wait_for<T>(
    what: &str,
    limit: Duration,
    served: &Served,
    mut f: impl FnMut() -> Option<T>,
) -> T {
    let started = Instant::now();
    loop {
        if let Some(t) = f() {
            return t;
        }
        assert!(
            started.elapsed() < limit,
            "timed out waiting for {what}:\n{}",
            served.stderr()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// (range, station) of every predicted-breach alert stored for `tenant`,
/// as the trigger derives them (24 h up to the next whole hour).
fn alert_runs(tenant: &str) -> BTreeSet<(JobRange, String)> {
    let out = sluice()
        .args([
            "query",
            "--cassandra",
            &cassandra(),
            "--tenant",
            tenant,
            "--type",
            "alert",
        ])
        .output()
        .expect("running sluice query");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("JSON"))
        .filter(|a| a["data"]["kind"] == "predicted-breach")
        .map(|a| {
            let t = a["data"]["event_time"].as_i64().expect("event time");
            let to = (t.div_euclid(HOUR) + 1) * HOUR;
            let station = a["key"]["station_id"].as_str().expect("station").to_owned();
            (JobRange { from: to - DAY, to }, station)
        })
        .collect()
}

fn scoped(runs: &[BatchRun]) -> BTreeMap<(JobRange, String), i64> {
    runs.iter()
        .map(|r| {
            let station = r.scope.get("station_id").cloned().unwrap_or_default();
            ((r.range, station), r.finished_at)
        })
        .collect()
}

#[test]
fn alert_and_schedule_triggers_run_their_jobs_once_per_range() {
    let _broker = amqp::shared();
    let dir = tempfile::tempdir().expect("tempdir");
    let tenant = unique("bts_trig").replace('.', "_");
    let queue = unique("batch.trig.in");
    let exchange = unique("batch.trig.out");
    let manifest = manifest(dir.path(), &tenant, &queue, &exchange);
    // Readings from 01:00 yesterday (UTC): inside the schedule's range,
    // the three days before today.
    let today = now_ms().div_euclid(DAY) * DAY;
    let start = chrono::DateTime::from_timestamp_millis(today - DAY + HOUR)
        .expect("a time")
        .format("%Y-%m-%d %H:%M:%S")
        .to_string();
    let input = Data::bts(
        dir.path(),
        &[
            "--seed",
            "9",
            "--stations",
            "4",
            "--events",
            "20000",
            "--ramp",
            "4",
            "--start",
            &start,
        ],
    );
    let served = Served::start_extra(
        dir.path(),
        &[],
        &[&manifest],
        &format!("cassandra = {:?}", cassandra()),
    );
    amqp::publish(&manifest, &input.path, 20);
    served.wait_records(&tenant, input.rows);
    let all_read = now_ms();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let store = rt
        .block_on(BatchResultStore::connect(
            &CassandraConfig::new(vec![cassandra()]),
            rt.handle().clone(),
        ))
        .expect("connecting to Cassandra");

    // Every alert ran its job once, over its station's last 24 h. (Records
    // are counted when read: the last alerts may still be on their way to
    // the store, so both sides are read again until they agree.)
    let (expected, runs) = wait_for("the alert runs", Duration::from_secs(120), &served, || {
        let expected = alert_runs(&tenant);
        let got = scoped(&store.runs(&tenant, "on_breach").expect("runs"));
        (!expected.is_empty() && got.keys().cloned().collect::<BTreeSet<_>>() == expected)
            .then_some((expected, got))
    });
    let view = served.tenant(&tenant);
    assert_eq!(view["batch_triggers"]["failed"], 0, "{view}");
    for r in store.runs(&tenant, "on_breach").expect("runs") {
        assert_eq!(r.trigger, "alert:predicted-breach");
    }
    // The host's list of recent runs (the console's) says the same.
    let recent = view["batch_triggers"]["recent"].as_array().expect("recent");
    assert!(!recent.is_empty() && recent.len() <= 20, "{view}");
    for r in recent {
        assert_eq!(r["error"], Value::Null, "{r}");
        if r["job"] == "every_2s" {
            assert_eq!(r["trigger"], "schedule", "{r}");
            continue;
        }
        assert_eq!(r["job"], "on_breach", "{r}");
        assert_eq!(r["trigger"], "alert:predicted-breach", "{r}");
        let station = r["scope"]
            .as_str()
            .and_then(|s| s.strip_prefix("station_id="))
            .unwrap_or("");
        let range = JobRange {
            from: r["from"].as_i64().unwrap_or(0),
            to: r["to"].as_i64().unwrap_or(0),
        };
        assert!(
            runs.contains_key(&(range, station.to_owned())),
            "{r} is one of the stored runs {runs:?}"
        );
    }
    // The console's tenant page lists them (headless Chromium).
    let page = crate::browser::browse(serde_json::json!({
        "action": "triggers", "url": served.url, "token": crate::host::OPERATOR,
        "tenant": tenant,
    }));
    let shown = page["runs"].as_array().expect("runs");
    assert!(!shown.is_empty() && shown.len() <= 20, "{page}");
    for row in shown {
        let job = row[1].as_str().unwrap_or("");
        assert!(job == "on_breach" || job == "every_2s", "{row}");
        assert_eq!(row[8], "stored", "{row}");
    }
    let alert_rows = store.count(&tenant, "on_breach").expect("count");
    assert!(alert_rows > 0);
    for range in expected.iter().map(|(r, _)| *r).collect::<BTreeSet<_>>() {
        let stations: BTreeSet<&str> = expected
            .iter()
            .filter(|(r, _)| *r == range)
            .map(|(_, s)| s.as_str())
            .collect();
        let results = store.read(&tenant, "on_breach", Some(range)).expect("read");
        let seen: BTreeSet<&str> = results.iter().map(|r| r.key[0].as_str()).collect();
        assert_eq!(
            seen, stations,
            "range {range:?}: rows of the alerting stations only"
        );
    }

    // The schedule: a run over the three days before today that read every
    // event; the next firing reruns that range and adds no row.
    let range = JobRange {
        from: today - 3 * DAY,
        to: today,
    };
    let first = wait_for(
        "a scheduled run of every event",
        Duration::from_secs(60),
        &served,
        || {
            let runs = store.runs(&tenant, "every_2s").expect("runs");
            runs.into_iter()
                .find(|r| r.range == range && r.started_at > all_read && r.rows_in == input.rows)
        },
    );
    assert_eq!(first.trigger, "schedule");
    let scheduled_rows = store.count(&tenant, "every_2s").expect("count");
    assert_eq!(scheduled_rows, 4, "one row per station");
    wait_for("the next firing", Duration::from_secs(60), &served, || {
        let runs = store.runs(&tenant, "every_2s").expect("runs");
        runs.into_iter()
            .find(|r| r.range == range && r.finished_at > first.finished_at)
    });
    assert_eq!(
        store.count(&tenant, "every_2s").expect("count"),
        scheduled_rows
    );
    assert_eq!(store.runs(&tenant, "every_2s").expect("runs").len(), 1);

    // The same readings again: the alerts repeat, their runs do not (a
    // replay can also raise an alert in a new hour: that range runs once).
    let rows_of = |range: JobRange, station: &str| {
        let mut rows: Vec<String> = store
            .read(&tenant, "on_breach", Some(range))
            .expect("read")
            .iter()
            .filter(|r| r.key[0] == station)
            .map(|r| format!("{r:?}"))
            .collect();
        rows.sort();
        rows
    };
    let before: BTreeMap<_, _> = expected
        .iter()
        .map(|(range, station)| ((*range, station.clone()), rows_of(*range, station)))
        .collect();
    amqp::publish(&manifest, &input.path, 20);
    served.wait_records(&tenant, 2 * input.rows);
    wait_for("repeated alerts", Duration::from_secs(60), &served, || {
        let view = served.tenant(&tenant);
        (view["batch_triggers"]["repeated"].as_u64().unwrap_or(0) > 0).then_some(())
    });
    let after = wait_for(
        "the new alerts' runs",
        Duration::from_secs(120),
        &served,
        || {
            let again = alert_runs(&tenant);
            let got = scoped(&store.runs(&tenant, "on_breach").expect("runs"));
            (again.is_superset(&expected) && got.keys().cloned().collect::<BTreeSet<_>>() == again)
                .then_some(got)
        },
    );
    for (id, finished) in &runs {
        assert_eq!(after.get(id), Some(finished), "{id:?} ran once");
    }
    for ((range, station), rows) in &before {
        assert_eq!(
            &rows_of(*range, station),
            rows,
            "{station} over {range:?}: no new row"
        );
    }
    served.stop();
}
