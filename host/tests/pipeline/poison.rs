//! A tenant that traps on one value: only that key group is dead-lettered,
//! with the trap message; every other key's results are right.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::common::{key_of, manifest, run};

#[test]
fn a_poison_event_is_dead_lettered_alone_and_every_other_output_is_right() {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("rows.csv");
    let mut text = String::new();
    // Three keys, 25 rows each at 0..24 s (windows of 10, 10 and 5 rows:
    // never the 13 that makes `hostile` misbehave in merge/finish); key b's
    // row at 12 s carries the poison value.
    for s in 0..25 {
        for key in ["a", "b", "c"] {
            let value = if key == "b" && s == 12 { 666.0 } else { 1.5 };
            text.push_str(&format!(
                "{key},1,1,2017-02-18 18:00:{s:02} UTC,{value},100,false,\n"
            ));
        }
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

[params]
mode = "trap-on-value"
poison = "666"
"#;
    let manifest = manifest(
        dir.path(),
        "hostile",
        "max_out_of_orderness = \"0s\"\n",
        rest,
    );
    let result = run(&manifest, &input, 2);

    let mut windows: BTreeMap<(String, i64), u64> = BTreeMap::new();
    for o in result.of_type("Windowed Analytic") {
        let start = o["window"]["start"].as_i64().expect("start");
        let t0 = 1_487_440_800_000; // 2017-02-18 18:00:00 UTC
        windows.insert(
            (key_of(o), (start - t0) / 1000),
            o["data"]["counter"].as_u64().expect("counter"),
        );
    }
    let expected: BTreeMap<(String, i64), u64> = [
        (("a/1/1".to_owned(), 0), 10),
        (("a/1/1".to_owned(), 10), 10),
        (("a/1/1".to_owned(), 20), 5),
        (("b/1/1".to_owned(), 0), 10),
        (("b/1/1".to_owned(), 20), 5),
        (("c/1/1".to_owned(), 0), 10),
        (("c/1/1".to_owned(), 10), 10),
        (("c/1/1".to_owned(), 20), 5),
    ]
    .into_iter()
    .collect();
    assert_eq!(windows, expected);

    let alerts: BTreeMap<String, i64> = result
        .of_type("Alert")
        .map(|o| (key_of(o), o["data"]["counter"].as_i64().expect("counter")))
        .collect();
    assert_eq!(
        alerts,
        [("a/1/1".to_owned(), 25), ("c/1/1".to_owned(), 25)]
            .into_iter()
            .collect()
    );

    assert_eq!(result.dead.len(), 2, "{:#?}", result.dead);
    for d in &result.dead {
        assert_eq!(d["kind"], "poison");
        assert_eq!(d["key"]["station_id"], "b");
        let reason = d["reason"].as_str().expect("reason");
        assert!(reason.contains("poison value 666"), "{reason}");
        let rows = d["rows"].as_array().expect("rows");
        assert!(rows.iter().any(|r| r["value"] == 666.0), "{d}");
        assert!(rows.iter().all(|r| r["station_id"] == "b"), "{d}");
    }
    let by: Vec<&Value> = result
        .dead
        .iter()
        .filter(|d| d["function"] == "alerts")
        .collect();
    assert_eq!(by.len(), 1, "one poison group from the alert function");
    assert!(result.dead.iter().any(|d| d["window"] == "ten"));
    assert!(result.stderr.contains(", 2 poisoned,"), "{}", result.stderr);
}

#[test]
fn a_poisoned_process_window_is_dead_lettered_with_its_rows_and_repeated_warnings_are_summarised() {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("rows.csv");
    // Ten keys, 25 rows each at 0..24 s; every key's row at 12 s is poison.
    let keys: Vec<String> = (0..10).map(|k| format!("k{k}")).collect();
    let mut text = String::new();
    for s in 0..25 {
        for key in &keys {
            let value = if s == 12 { 666.0 } else { f64::from(s) };
            text.push_str(&format!(
                "{key},1,1,2017-02-18 18:00:{s:02} UTC,{value},100,false,\n"
            ));
        }
    }
    std::fs::write(&input, text).expect("writing the input");
    let rest = r#"
[[windows]]
name = "pw"
kind = "tumbling"
size = "10s"
process = "window"

[alerts]
function = "alerts"

[params]
mode = "trap-on-value"
poison = "666"
"#;
    let manifest = manifest(
        dir.path(),
        "hostile",
        "max_out_of_orderness = \"0s\"\n",
        rest,
    );
    let result = run(&manifest, &input, 2);

    // Each key's window [10 s, 20 s) failed: its letter holds the ten rows
    // the function was given, in time order.
    let windows: Vec<&Value> = result.dead.iter().filter(|d| d["window"] == "pw").collect();
    assert_eq!(windows.len(), keys.len(), "{:#?}", result.dead);
    for d in &windows {
        assert_eq!(d["kind"], "poison");
        assert_eq!(
            d["end"]
                .as_i64()
                .zip(d["start"].as_i64())
                .map(|(e, s)| e - s),
            Some(10_000)
        );
        let rows = d["rows"].as_array().expect("rows");
        let values: Vec<f64> = rows.iter().filter_map(|r| r["value"].as_f64()).collect();
        let want: Vec<f64> = (10..20)
            .map(|s| if s == 12 { 666.0 } else { f64::from(s) })
            .collect();
        assert_eq!(values, want, "{d}");
        assert!(
            rows.iter()
                .all(|r| r["station_id"] == d["key"]["station_id"]),
            "{d}"
        );
    }
    // The other windows are untouched.
    assert_eq!(
        result.of_type("Windowed Analytic").count(),
        2 * keys.len(),
        "[0, 10) and [20, 30) of every key"
    );

    // Repeated warnings: the first three of a kind in full, then a count.
    let alert_failures = result
        .dead
        .iter()
        .filter(|d| d["function"] == "alerts")
        .count();
    assert!(alert_failures >= keys.len(), "{:#?}", result.dead);
    let full = |text: &str| result.stderr.lines().filter(|l| l.contains(text)).count();
    let alert_lines = result
        .stderr
        .lines()
        .filter(|l| l.contains("alert call failed") && !l.contains("more `"))
        .count();
    assert_eq!(alert_lines, 3, "{}", result.stderr);
    assert!(
        result.stderr.contains(&format!(
            "{} more `alert call failed on this key's events; dead-lettered` warnings",
            alert_failures - 3
        )),
        "{}",
        result.stderr
    );
    assert!(
        full("guest call failed; instance discarded") <= 3,
        "{}",
        result.stderr
    );
    assert!(
        full("more `guest call failed` warnings") == 1,
        "{}",
        result.stderr
    );
}
