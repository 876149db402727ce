//! Rows through the whole pipeline: counts, metrics, dead letters, worker
//! independence, window values and lateness.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::common::{gen_bts, key_of, manifest, read_lines, run, Counts, BTS_WINDOWS};

const NO_LATENESS: &str = "max_out_of_orderness = \"5s\"\nallowed_lateness = \"0s\"\n";

fn int(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("{v} is not a count"))
}

/// Largest value of `field` in outputs of `ty`, per key.
fn max_per_key(outputs: &[Value], ty: &str, field: &str) -> Counts {
    let mut out = Counts::new();
    for o in outputs.iter().filter(|o| o["type"] == ty) {
        if o["key"].as_object().is_some_and(|k| k.is_empty()) {
            continue;
        }
        let n = int(&o["data"][field]);
        let e = out.entry(key_of(o)).or_default();
        *e = (*e).max(n);
    }
    out
}

#[test]
fn dirty_and_out_of_order_rows_are_counted_per_key_and_dead_lettered() {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = gen_bts(
        dir.path(),
        "bts.csv",
        &[
            "--seed",
            "7",
            "--stations",
            "3",
            "--events",
            "20000",
            "--dirty",
            "0.03",
            "--out-of-order",
            "0.1",
        ],
    );
    let manifest = manifest(dir.path(), "bts_analytics", NO_LATENESS, BTS_WINDOWS);
    let result = run(&manifest, &input, 2);

    // Expected, from the file alone.
    let lines = read_lines(&input);
    let mut good = Counts::new();
    let mut bad = Counts::new();
    let mut keyless = 0u64;
    let mut seen_time = false;
    for line in &lines {
        match (&line.good, &line.key) {
            (Some(_), Some(key)) => {
                *good.entry(key.clone()).or_default() += 1;
                seen_time = true;
            }
            // A bad row with a key is counted against it when its time
            // reads or, failing that, once the input has an event time.
            (None, Some(key)) if line.time.is_some() || seen_time => {
                *bad.entry(key.clone()).or_default() += 1;
            }
            _ => keyless += 1,
        }
    }
    let n_bad = lines.iter().filter(|l| l.good.is_none()).count();
    assert!(n_bad > 500 && keyless > 100, "the input is dirty enough");

    assert_eq!(
        max_per_key(&result.outputs, "Global Analytic", "counter"),
        good
    );
    assert_eq!(
        max_per_key(&result.outputs, "Global Metric", "data_conversion_errors"),
        bad
    );
    let keyless_metric = result
        .of_type("Global Metric")
        .filter(|o| o["key"].as_object().is_some_and(|k| k.is_empty()))
        .map(|o| int(&o["data"]["data_conversion_errors"]))
        .max();
    assert_eq!(keyless_metric, Some(keyless));
    let bad_letters = result
        .dead
        .iter()
        .filter(|d| d["kind"] == "bad-row")
        .count();
    let late_letters = result.dead.iter().filter(|d| d["kind"] == "late").count();
    assert_eq!(bad_letters, n_bad);
    assert_eq!(late_letters, 0, "5s of out-of-orderness leaves no row late");
    assert_eq!(result.dead.len(), n_bad + late_letters);
    assert!(result.dead.iter().all(|d| d["raw"].is_string()
        && d["reason"].is_string()
        && d["position"]["line"].is_u64()));
    assert!(
        result
            .stderr
            .contains(&format!("{n_bad} deserialization errors")),
        "{}",
        result.stderr
    );
}

#[test]
fn one_and_four_workers_give_the_same_lines_and_alerts_keep_per_key_order() {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = gen_bts(
        dir.path(),
        "bts.csv",
        &[
            "--seed",
            "11",
            "--stations",
            "4",
            "--events",
            "30000",
            "--dirty",
            "0.01",
            "--out-of-order",
            "0.05",
            "--ramp",
            "3",
        ],
    );
    let manifest = manifest(dir.path(), "bts_analytics", NO_LATENESS, BTS_WINDOWS);
    let one = run(&manifest, &input, 1);
    let four = run(&manifest, &input, 4);
    assert!(one.of_type("Alert").count() > 10, "the input raises alerts");
    let set = |lines: &[String]| lines.iter().cloned().collect::<BTreeSet<_>>();
    assert_eq!(one.lines.len(), four.lines.len());
    assert_eq!(set(&one.lines), set(&four.lines));

    let alerts_per_key = |outputs: &[Value]| {
        let mut per_key: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for o in outputs.iter().filter(|o| o["type"] == "Alert") {
            per_key.entry(key_of(o)).or_default().push(o.to_string());
        }
        per_key
    };
    let per_key = alerts_per_key(&four.outputs);
    assert_eq!(alerts_per_key(&one.outputs), per_key);
    for alerts in per_key.values() {
        let times: Vec<i64> = alerts
            .iter()
            .map(|a| {
                serde_json::from_str::<Value>(a).expect("json")["data"]["event_time"]
                    .as_i64()
                    .expect("event_time")
            })
            .collect();
        let mut sorted = times.clone();
        sorted.sort_unstable();
        assert_eq!(times, sorted, "alerts of a key come in its event order");
    }
}

/// mean, max, min, counter, alarms of one window.
type Stats = (f64, f64, f64, u64, u64);

#[test]
fn sliding_window_values_equal_a_brute_force_computation() {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = gen_bts(
        dir.path(),
        "bts.csv",
        &[
            "--seed",
            "3",
            "--stations",
            "1",
            "--events",
            "1500",
            "--out-of-order",
            "0.1",
        ],
    );
    let windows = r#"
[[windows]]
name = "minute"
kind = "sliding"
size = "60s"
slide = "5s"
aggregate = "stats"
"#;
    let manifest = manifest(dir.path(), "bts_analytics", NO_LATENESS, windows);
    let result = run(&manifest, &input, 2);

    // Brute force: every window [s, s + 60 s), s a multiple of 5 s, that
    // holds rows of a key.
    let mut rows: BTreeMap<String, Vec<(i64, f64, bool)>> = BTreeMap::new();
    for line in read_lines(&input) {
        let ((value, active), key, time) = (
            line.good.expect("clean input"),
            line.key.expect("key"),
            line.time.expect("time"),
        );
        rows.entry(key).or_default().push((time, value, active));
    }
    let mut expected: BTreeMap<(String, i64), Stats> = BTreeMap::new();
    for (key, rows) in &rows {
        let starts: BTreeSet<i64> = rows
            .iter()
            .flat_map(|(t, ..)| {
                let last = t.div_euclid(5000) * 5000;
                (0..12).map(move |i| last - i * 5000)
            })
            .collect();
        for start in starts {
            let inside: Vec<_> = rows
                .iter()
                .filter(|(t, ..)| *t >= start && *t < start + 60_000)
                .collect();
            let n = inside.len() as u64;
            let sum: f64 = inside.iter().map(|r| r.1).sum();
            let max = inside.iter().map(|r| r.1).fold(f64::MIN, f64::max);
            let min = inside.iter().map(|r| r.1).fold(f64::MAX, f64::min);
            let alarms = inside.iter().filter(|r| r.2).count() as u64;
            expected.insert((key.clone(), start), (sum / n as f64, max, min, n, alarms));
        }
    }
    let mut got = BTreeMap::new();
    for o in result.of_type("Windowed Analytic") {
        assert_eq!(o["window"]["name"], "minute");
        let start = o["window"]["start"].as_i64().expect("start");
        assert_eq!(o["window"]["end"].as_i64(), Some(start + 60_000));
        assert!(o.get("update").is_none(), "no late updates: {o}");
        let d = &o["data"];
        let f = |name: &str| d[name].as_f64().expect("float");
        let previous = got.insert(
            (key_of(o), start),
            (
                f("mean"),
                f("max"),
                f("min"),
                int(&d["counter"]),
                int(&d["alarms"]),
            ),
        );
        assert!(previous.is_none(), "window emitted twice: {o}");
    }
    let missing: Vec<_> = expected
        .keys()
        .filter(|w| !got.contains_key(w))
        .take(5)
        .collect();
    let extra: Vec<_> = got
        .keys()
        .filter(|w| !expected.contains_key(w))
        .take(5)
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "windows missing: {missing:?}, not expected: {extra:?}"
    );
    for (window, e) in &expected {
        let g = got[window];
        assert!(
            (g.0 - e.0).abs() < 1e-9 * e.0.abs().max(1.0)
                && g.1 == e.1
                && g.2 == e.2
                && g.3 == e.3
                && g.4 == e.4,
            "{window:?}: got {g:?}, expected {e:?}"
        );
    }
}

#[test]
fn rows_later_than_the_allowed_lateness_are_counted_dead_lettered_and_in_no_output() {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("late.csv");
    let row = |s: u32, v: f64| format!("1,2,3,2017-02-18 18:00:{s:02} UTC,{v},100,false,\n");
    let mut text = String::new();
    for s in 0..30 {
        text.push_str(&row(s, 10.0));
    }
    // 25 s behind the watermark (29 s − 0 s out-of-orderness), lateness 2 s.
    text.push_str(&row(4, 9999.0));
    text.push_str(&row(30, 10.0));
    std::fs::write(&input, text).expect("writing the input");
    let windows = r#"
[[windows]]
name = "ten"
kind = "tumbling"
size = "10s"
aggregate = "stats"

[[windows]]
name = "global"
kind = "global"
emit_every = "60s"
aggregate = "stats"
"#;
    let manifest = manifest(
        dir.path(),
        "bts_analytics",
        "max_out_of_orderness = \"0s\"\nallowed_lateness = \"2s\"\n",
        windows,
    );
    let result = run(&manifest, &input, 2);
    let late: Vec<&Value> = result.dead.iter().filter(|d| d["kind"] == "late").collect();
    assert_eq!(late.len(), 1, "{:?}", result.dead);
    assert_eq!(late[0]["row"]["value"], 9999.0);
    // Where it was read, as a bad row's letter says it: line 31, after 30
    // rows of 44 bytes.
    assert_eq!(late[0]["position"]["line"], 31, "{}", late[0]);
    assert_eq!(late[0]["position"]["offset"], 30 * 44, "{}", late[0]);
    assert!(
        late[0]["position"]["source"]
            .as_str()
            .is_some_and(|s| s.ends_with("late.csv")),
        "{}",
        late[0]
    );
    assert_eq!(result.dead.len(), 1);
    assert!(
        result.stderr.contains(", 1 late dropped,"),
        "{}",
        result.stderr
    );
    for o in &result.outputs {
        assert!(o.get("update").is_none(), "{o}");
        if let Some(max) = o["data"]["max"].as_f64() {
            assert!(max < 9999.0, "the late row is in an output: {o}");
        }
    }
    let counters: Vec<u64> = result
        .of_type("Windowed Analytic")
        .map(|o| int(&o["data"]["counter"]))
        .collect();
    assert_eq!(counters, vec![10, 10, 10, 1]);
    let global: Vec<u64> = result
        .of_type("Global Analytic")
        .map(|o| int(&o["data"]["counter"]))
        .collect();
    assert_eq!(global.last(), Some(&31));
}

#[test]
fn the_alert_function_sees_rows_too_late_for_the_windows() {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("late.csv");
    let mut text = String::new();
    for s in [0, 1, 2, 30, 3] {
        text.push_str(&format!(
            "k,1,1,2017-02-18 18:00:{s:02} UTC,1.5,100,false,\n"
        ));
    }
    std::fs::write(&input, text).expect("writing the input");
    let rest = r#"
[[windows]]
name = "ten"
kind = "tumbling"
size = "10s"
aggregate = "count"

[alerts]
function = "alerts"
"#;
    let manifest = manifest(
        dir.path(),
        "hostile",
        "max_out_of_orderness = \"0s\"\n",
        rest,
    );
    let result = run(&manifest, &input, 1);
    assert_eq!(
        result.dead.len(),
        1,
        "the row at 3 s is late: {:?}",
        result.dead
    );
    assert_eq!(result.dead[0]["kind"], "late");
    let windows: Vec<u64> = result
        .of_type("Windowed Analytic")
        .map(|o| int(&o["data"]["counter"]))
        .collect();
    assert_eq!(windows, vec![3, 1], "the late row is in no window");
    // `hostile`'s alert function raises one alert per batch and key with
    // the key's rows so far: all five, the late one included.
    let alerts: Vec<u64> = result
        .of_type("Alert")
        .map(|o| int(&o["data"]["counter"]))
        .collect();
    assert_eq!(alerts, vec![5]);
}
