//! `sluice batch` over a CSV file with the real bts-batch component: every
//! summary of `examples/bts-batch/sluice.toml` against a computation of its
//! own here (independent of the host's parser and of the guest), the range
//! and scope selection, reruns, and the command's errors.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::common::{component, gen_bts, parse_time, read_lines, sluice};

const DAY: i64 = 86_400_000;
const HOUR: i64 = 3_600_000;
/// `histogram_bin_width` of the example manifest.
const BIN_WIDTH: f64 = 0.5;
/// Range of the runs: cuts off the first half hour and the tail of the
/// generated data, and spans midnight (two day windows).
const FROM: &str = "2017-02-18 21:30:00";
const TO: &str = "2017-02-19 01:30:00";

fn example_manifest() -> PathBuf {
    component("bts_batch");
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/bts-batch/sluice.toml")
}

/// A good BTS row, read here from the CSV text.
struct Row {
    station: String,
    datapoint: String,
    alarm: String,
    time: i64,
    value: f64,
    threshold: f64,
    active: bool,
}

/// The good rows of `path` within `[from, to)`.
fn good_rows(path: &Path, from: i64, to: i64) -> Vec<Row> {
    let text = std::fs::read_to_string(path).expect("reading the input");
    let lines = read_lines(path);
    text.split_terminator('\n')
        .zip(lines)
        .filter_map(|(text, line)| {
            let (value, active) = line.good?;
            let f: Vec<&str> = text.split(',').collect();
            let time = parse_time(f[3])?;
            (from..to).contains(&time).then(|| Row {
                station: f[0].to_owned(),
                datapoint: f[1].to_owned(),
                alarm: f[2].to_owned(),
                time,
                value,
                threshold: f[5].parse().expect("a good row's threshold"),
                active,
            })
        })
        .collect()
}

/// `sluice batch MANIFEST --job JOB --from FROM --to TO --input INPUT
/// EXTRA…`, its results parsed; panics with stderr on failure.
fn batch(manifest: &Path, job: &str, input: &Path, extra: &[&str]) -> (String, Vec<Value>) {
    let out = sluice()
        .args(["batch"])
        .arg(manifest)
        .args([
            "--job", job, "--from", FROM, "--to", TO, "--quiet", "--input",
        ])
        .arg(input)
        .args(extra)
        .output()
        .expect("running sluice batch");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "sluice batch --job {job} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l}: {e}")))
        .collect();
    (stdout, results)
}

fn int(v: &Value, field: &str) -> i64 {
    v["data"][field]
        .as_i64()
        .unwrap_or_else(|| panic!("`{field}` is not an int in {v}"))
}

fn key(v: &Value, names: &[&str]) -> String {
    names
        .iter()
        .map(|n| {
            v["key"][n]
                .as_str()
                .unwrap_or_else(|| panic!("no key `{n}` in {v}"))
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn day_of(t: i64) -> i64 {
    t.div_euclid(DAY) * DAY
}

fn data() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = gen_bts(
        dir.path(),
        "bts.csv",
        &[
            "--seed",
            "11",
            "--stations",
            "6",
            "--events",
            "60000",
            "--dirty",
            "0.02",
            "--out-of-order",
            "0.05",
            "--start",
            "2017-02-18 21:00:00",
        ],
    );
    (dir, input)
}

fn range() -> (i64, i64) {
    let at = |t: &str| parse_time(&format!("{t} UTC")).expect("a time");
    (at(FROM), at(TO))
}

#[test]
fn every_bts_summary_equals_an_independent_computation() {
    let manifest = example_manifest();
    let (_dir, input) = data();
    let (from, to) = range();
    let rows = good_rows(&input, from, to);
    assert!(rows.len() > 20_000, "the range holds most rows");

    // Every result names its job, range and a window inside the range.
    let check_common = |job: &str, v: &Value| {
        assert_eq!(v["type"], "Batch Analytic", "{v}");
        assert_eq!(v["tenant"], "bts");
        assert_eq!(v["job"], job);
        assert_eq!(v["range"]["from"], from);
        assert_eq!(v["range"]["to"], to);
    };

    // Records per station: rows, first and last time, rate per hour.
    let (_, results) = batch(&manifest, "station_rates", &input, &[]);
    let mut want: BTreeMap<String, (i64, i64, i64)> = BTreeMap::new();
    for r in &rows {
        let e = want
            .entry(r.station.clone())
            .or_insert((0, i64::MAX, i64::MIN));
        e.0 += 1;
        e.1 = e.1.min(r.time);
        e.2 = e.2.max(r.time);
    }
    let mut got = BTreeMap::new();
    for v in &results {
        check_common("station_rates", v);
        assert_eq!(v["window"]["start"], from, "a range window is the range");
        assert_eq!(v["window"]["end"], to);
        let (rows, first, last) = (int(v, "rows"), int(v, "first_time"), int(v, "last_time"));
        let rate = v["data"]["rate_per_hour"].as_f64().expect("rate");
        let expected = rows as f64 * HOUR as f64 / (last - first) as f64;
        assert!((rate - expected).abs() <= expected * 1e-12, "{v}");
        got.insert(key(v, &["station_id"]), (rows, first, last));
    }
    assert_eq!(got, want, "rows, first and last time per station");

    // Room temperature (data point 143) histogram per station and day.
    let (_, results) = batch(&manifest, "temperature_histogram", &input, &[]);
    let mut want: BTreeMap<(String, i64), BTreeMap<String, i64>> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.datapoint == "143") {
        let bins = want.entry((r.station.clone(), day_of(r.time))).or_default();
        let lower = (r.value / BIN_WIDTH).floor() * BIN_WIDTH;
        *bins.entry(format!("bin:{lower}")).or_default() += 1;
        *bins.entry("count".into()).or_default() += 1;
    }
    let mut got = BTreeMap::new();
    for v in &results {
        check_common("temperature_histogram", v);
        assert_eq!(v["key"]["datapoint_id"], "143", "the job's filter");
        assert_eq!(v["data"]["bin_width"], BIN_WIDTH);
        assert_eq!(int(v, "overflow"), 0);
        let start = v["window"]["start"].as_i64().expect("start");
        assert_eq!(v["window"]["end"], start + DAY, "a day window");
        let bins: BTreeMap<String, i64> = v["data"]
            .as_object()
            .expect("data")
            .iter()
            .filter(|(k, _)| k.starts_with("bin:") || *k == "count")
            .map(|(k, n)| (k.clone(), n.as_i64().expect("a count")))
            .collect();
        got.insert((key(v, &["station_id"]), start), bins);
    }
    assert!(!want.is_empty(), "some stations measure room temperature");
    assert_eq!(got, want, "temperature bins per station and day");
    assert!(
        got.keys()
            .map(|(_, day)| day)
            .collect::<std::collections::BTreeSet<_>>()
            .len()
            == 2,
        "the range spans two days"
    );

    // Active-alarm readings per station and day.
    let (_, results) = batch(&manifest, "alarms_per_day", &input, &[]);
    let mut want: BTreeMap<(String, i64), (i64, i64)> = BTreeMap::new();
    for r in &rows {
        let e = want.entry((r.station.clone(), day_of(r.time))).or_default();
        e.0 += i64::from(r.active);
        e.1 += 1;
    }
    let got: BTreeMap<_, _> = results
        .iter()
        .map(|v| {
            check_common("alarms_per_day", v);
            (
                (
                    key(v, &["station_id"]),
                    v["window"]["start"].as_i64().expect("start"),
                ),
                (int(v, "active"), int(v, "rows")),
            )
        })
        .collect();
    assert_eq!(got, want, "active and all readings per station and day");

    // Threshold breaches per alarm type, and which one breaches most.
    let (_, results) = batch(&manifest, "breaches_by_alarm", &input, &[]);
    let mut want: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for r in &rows {
        let e = want.entry(r.alarm.clone()).or_default();
        e.0 += i64::from(r.threshold < 999_999.0 && r.value > r.threshold);
        e.1 += 1;
    }
    let got: BTreeMap<_, _> = results
        .iter()
        .map(|v| {
            check_common("breaches_by_alarm", v);
            (key(v, &["alarm_id"]), (int(v, "breaches"), int(v, "rows")))
        })
        .collect();
    assert_eq!(got, want, "breaches and readings per alarm type");
    assert!(
        want.values().any(|(b, _)| *b > 0),
        "some alarm breaches its threshold"
    );

    // Hour of day each alarm type is active most.
    let (_, results) = batch(&manifest, "alarm_hours", &input, &[]);
    let mut want: BTreeMap<String, [i64; 24]> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.active) {
        want.entry(r.alarm.clone()).or_default()[(r.time.rem_euclid(DAY) / HOUR) as usize] += 1;
    }
    let mut checked = 0;
    for v in &results {
        check_common("alarm_hours", v);
        let alarm = key(v, &["alarm_id"]);
        let hours = want.get(&alarm).copied().unwrap_or_default();
        for (h, n) in hours.iter().enumerate() {
            assert_eq!(int(v, &format!("h{h:02}")), *n, "{alarm} hour {h}");
        }
        let total: i64 = hours.iter().sum();
        assert_eq!(int(v, "active"), total);
        let peak = hours
            .iter()
            .enumerate()
            .max_by_key(|(h, n)| (**n, std::cmp::Reverse(*h)))
            .map_or(-1, |(h, _)| h as i64);
        assert_eq!(
            int(v, "peak_hour"),
            if total == 0 { -1 } else { peak },
            "{alarm}"
        );
        checked += usize::from(total > 0);
    }
    assert_eq!(
        checked,
        want.len(),
        "every alarm type that was active has its profile"
    );
}

#[test]
fn a_scoped_run_is_the_scoped_part_of_the_full_run_and_reruns_are_identical() {
    let manifest = example_manifest();
    let (_dir, input) = data();
    let (full_text, full) = batch(&manifest, "alarms_per_day", &input, &[]);
    let station = full[0]["key"]["station_id"]
        .as_str()
        .expect("a station")
        .to_owned();
    let (_, scoped) = batch(
        &manifest,
        "alarms_per_day",
        &input,
        &["--scope", &format!("station_id={station}")],
    );
    let part: Vec<&Value> = full
        .iter()
        .filter(|v| v["key"]["station_id"] == station.as_str())
        .collect();
    assert!(!part.is_empty());
    assert_eq!(scoped.iter().collect::<Vec<_>>(), part);
    let (again, _) = batch(&manifest, "alarms_per_day", &input, &[]);
    assert_eq!(again, full_text, "a rerun prints the same lines");
    let (one_worker, _) = batch(&manifest, "alarms_per_day", &input, &["--workers", "1"]);
    assert_eq!(
        one_worker, full_text,
        "results do not depend on the workers"
    );
}

#[test]
fn batch_errors_say_what_is_wrong() {
    let manifest = example_manifest();
    let (_dir, input) = data();
    let fail = |args: &[&str]| {
        let out = sluice()
            .arg("batch")
            .arg(&manifest)
            .arg("--input")
            .arg(&input)
            .args(args)
            .output()
            .expect("running sluice batch");
        assert!(!out.status.success(), "{args:?} should fail");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let unknown = fail(&["--job", "nope", "--from", FROM, "--to", TO]);
    assert!(
        unknown.contains("no batch job `nope` (jobs: station_rates, temperature_histogram"),
        "{unknown}"
    );
    let empty = fail(&["--job", "station_rates", "--from", TO, "--to", FROM]);
    assert!(empty.contains("is empty"), "{empty}");
    let bad_time = fail(&["--job", "station_rates", "--from", "last week", "--to", TO]);
    assert!(
        bad_time.contains("--from: `last week` is not a time"),
        "{bad_time}"
    );
    let bad_scope = fail(&[
        "--job",
        "station_rates",
        "--from",
        FROM,
        "--to",
        TO,
        "--scope",
        "nope=1",
    ]);
    assert!(
        bad_scope.contains("scope column `nope` is not a key column of the job"),
        "{bad_scope}"
    );
}

#[test]
fn a_report_draws_the_jobs_chart_with_every_key() {
    let manifest = example_manifest();
    let (dir, input) = data();
    let report = dir.path().join("report.html");
    let (_, results) = batch(
        &manifest,
        "station_rates",
        &input,
        &["--report", report.to_str().expect("utf-8")],
    );
    let html = std::fs::read_to_string(&report).expect("the report was written");
    assert_eq!(
        html.matches("data-chart=\"station_rates/0\"").count(),
        1,
        "one chart"
    );
    assert!(html.contains("Records per station"), "the chart's title");
    for r in &results {
        let station = r["key"]["station_id"].as_str().expect("station");
        let rows = r["data"]["rows"].as_i64().expect("rows").to_string();
        assert!(html.contains(station), "{station} is in the report");
        assert!(
            html.contains(&rows),
            "{station}'s {rows} rows are in the report"
        );
    }
    assert!(!html.contains("<script"), "self-contained, no scripts");
}

#[test]
fn a_session_window_job_has_the_sessions_of_the_range_s_good_rows() {
    let (dir, input) = data();
    let module = component("bts_analytics");
    let manifest = dir.path().join("sessions.toml");
    let text = format!(
        "tenant = \"bts\"\nmodule = {:?}\n\n[input]\n{}\n[params]\ntrend_points = \"10\"\n\
         horizon = \"10m\"\n\n[output]\nexchange = \"bts.results\"\n\n[[batch]]\n\
         name = \"episodes\"\nkey = [\"station_id\", \"datapoint_id\", \"alarm_id\"]\n\
         windows = [{{ name = \"episode\", kind = \"session\", gap = \"40s\", \
         aggregate = \"stats\" }}]\n",
        module.display().to_string(),
        crate::common::BTS_COLUMNS,
    );
    std::fs::write(&manifest, text).expect("writing the manifest");
    let (_, results) = batch(&manifest, "episodes", &input, &[]);

    // Sessions by definition: per key, the good rows of the range sorted
    // by time, a gap of more than 40 s ending one.
    let (from, to) = range();
    let mut times: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for r in good_rows(&input, from, to) {
        let k = format!("{}/{}/{}", r.station, r.datapoint, r.alarm);
        times.entry(k).or_default().push(r.time);
    }
    let mut want = BTreeMap::new();
    for (k, mut ts) in times {
        ts.sort_unstable();
        let mut session: Option<(i64, i64, i64)> = None;
        for t in ts {
            session = match session {
                Some((start, last, n)) if t <= last + 40_000 => Some((start, t, n + 1)),
                Some((start, last, n)) => {
                    want.insert((k.clone(), start, last + 40_000), n);
                    Some((t, t, 1))
                }
                None => Some((t, t, 1)),
            };
        }
        if let Some((start, last, n)) = session {
            want.insert((k.clone(), start, last + 40_000), n);
        }
    }
    let names = ["station_id", "datapoint_id", "alarm_id"];
    let got: BTreeMap<(String, i64, i64), i64> = results
        .iter()
        .map(|v| {
            let w = &v["window"];
            let bounds = (w["start"].as_i64(), w["end"].as_i64());
            let (Some(start), Some(end)) = bounds else {
                panic!("a result without bounds: {v}");
            };
            ((key(v, &names), start, end), int(v, "counter"))
        })
        .collect();
    assert!(want.len() > 100, "{} sessions", want.len());
    assert_eq!(got, want);
}
