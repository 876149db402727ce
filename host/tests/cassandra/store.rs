//! What lands in Cassandra: the printed results row for row, idempotent
//! replays, every parsed row as a raw event, chunked large values.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::common::{self, bts_manifest, gen_bts, keyspace, run};

/// Parsed JSON lines, canonical (maps sorted) and sorted.
fn canonical(lines: &[String]) -> Vec<String> {
    let mut out: Vec<String> = lines
        .iter()
        .map(|l| {
            serde_json::from_str::<Value>(l)
                .expect("a JSON line")
                .to_string()
        })
        .collect();
    out.sort();
    out
}

#[test]
fn stored_results_equal_the_printed_output_row_for_row() {
    let _node = common::shared();
    let dir = tempfile::tempdir().expect("tempdir");
    // No out-of-orderness but 5 s of lateness: the generator's delayed rows
    // update windows that already fired, so some windows are stored twice.
    let manifest = bts_manifest(dir.path(), "allowed_lateness = \"5s\"\n");
    let input = gen_bts(
        dir.path(),
        "in.csv",
        &[
            "--events",
            "20000",
            "--dirty",
            "0.01",
            "--out-of-order",
            "0.05",
            "--ramp",
            "3",
        ],
    );
    let ks = keyspace("rows");
    let run = run(&manifest, &input, &ks, "a", &["--workers", "2"]);
    assert!(
        run.lines.iter().any(|l| l.contains("\"update\":")),
        "the input should make late updates"
    );
    let expected = common::expected_rows(&run.lines);
    assert!(expected.len() < run.lines.len(), "updates overwrite rows");
    for ty in [
        "Windowed Analytic",
        "Global Analytic",
        "Windowed Metric",
        "Global Metric",
        "Alert",
    ] {
        assert!(
            expected
                .iter()
                .any(|l| l.contains(&format!("\"type\":\"{ty}\""))),
            "the input should produce a {ty}"
        );
    }

    // `sluice query`: the very lines, text for text.
    let queried = common::query(&ks, &[]);
    common::assert_same_rows("sluice query", &queried, &expected);

    // A standard client reading the typed columns sees the same rows.
    let direct = common::python_read(&ks, "results");
    common::assert_same_rows(
        "the Python driver",
        &canonical(&direct),
        &canonical(&expected),
    );

    // Filters.
    let alerts: Vec<String> = expected
        .iter()
        .filter(|l| l.contains("\"type\":\"Alert\""))
        .cloned()
        .collect();
    common::assert_same_rows(
        "--type alert",
        &common::query(&ks, &["--type", "alert"]),
        &alerts,
    );
    let first: Value = serde_json::from_str(&expected[0]).expect("JSON");
    let key = &first["key"];
    let arg = format!(
        "station_id={},datapoint_id={},alarm_id={}",
        key["station_id"].as_str().expect("text"),
        key["datapoint_id"].as_str().expect("text"),
        key["alarm_id"].as_str().expect("text")
    );
    let of_key: Vec<String> = expected
        .iter()
        .filter(|l| serde_json::from_str::<Value>(l).expect("JSON")["key"] == *key)
        .cloned()
        .collect();
    assert!(!of_key.is_empty());
    common::assert_same_rows("--key", &common::query(&ks, &["--key", &arg]), &of_key);
    common::drop_keyspace(&ks);
}

#[test]
fn running_the_same_input_twice_leaves_the_row_counts_unchanged() {
    let _node = common::shared();
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = bts_manifest(dir.path(), "max_out_of_orderness = \"5s\"\n");
    let input = gen_bts(
        dir.path(),
        "in.csv",
        &[
            "--events",
            "8000",
            "--dirty",
            "0.02",
            "--out-of-order",
            "0.05",
            "--ramp",
            "2",
        ],
    );
    let ks = keyspace("twice");
    let first = run(&manifest, &input, &ks, "1", &[]);
    let after_one = common::counts(&ks);
    for (table, n) in &after_one {
        assert!(
            *n > 0,
            "{table} is empty after the first run: {after_one:?}"
        );
    }
    let second = run(&manifest, &input, &ks, "2", &["--workers", "1"]);
    assert_eq!(first.lines.len(), second.lines.len());
    assert_eq!(
        common::counts(&ks),
        after_one,
        "a replay added or lost rows"
    );
    assert_eq!(
        common::query(&ks, &[]),
        common::expected_rows(&second.lines)
    );
    common::drop_keyspace(&ks);
}

#[test]
fn raw_events_per_key_equal_the_parsed_rows_per_key_duplicates_included() {
    let _node = common::shared();
    let dir = tempfile::tempdir().expect("tempdir");
    // No lateness: the generator's delayed rows are late for the windows,
    // but they parsed, so they are raw events all the same.
    let manifest = bts_manifest(dir.path(), "");
    let generated = gen_bts(
        dir.path(),
        "gen.csv",
        &[
            "--events",
            "6000",
            "--dirty",
            "0.02",
            "--out-of-order",
            "0.05",
        ],
    );
    let text = std::fs::read_to_string(&generated).expect("reading");
    // Identical readings: the first 500 lines once more at the end.
    let mut input = text.clone();
    for line in text.lines().take(500) {
        input.push_str(line);
        input.push('\n');
    }
    let path = dir.path().join("in.csv");
    std::fs::write(&path, &input).expect("writing");

    let ks = keyspace("events");
    let run = run(&manifest, &path, &ks, "e", &["--workers", "2"]);
    assert!(
        run.dead.iter().any(|d| d["kind"] == "late"),
        "the input should have late rows"
    );
    let expected = common::parsed_per_key(&path, &run.dead);
    let stored: BTreeMap<String, u64> =
        serde_json::from_str(&common::python_read(&ks, "events").join("")).expect("JSON");
    assert_eq!(stored, expected);
    let total: u64 = expected.values().sum();
    let bad = run.dead.iter().filter(|d| d["kind"] == "bad-row").count() as u64;
    assert_eq!(total + bad, input.lines().count() as u64);

    // Without raw events: results, but no events.
    let ks2 = keyspace("noevents");
    let again = common::run(&manifest, &path, &ks2, "n", &["--no-store-events"]);
    let counts = common::counts(&ks2);
    assert_eq!(counts["events"], 0);
    assert_eq!(
        counts["windowed_analytics"]
            + counts["global_analytics"]
            + counts["metrics"]
            + counts["alerts"],
        common::expected_rows(&again.lines).len() as u64
    );
    common::drop_keyspace(&ks);
    common::drop_keyspace(&ks2);
}

#[test]
fn a_dead_letter_larger_than_a_chunk_is_stored_in_chunks_and_reads_back_whole() {
    let _node = common::shared();
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = bts_manifest(dir.path(), "");
    let huge = format!(
        "1161114001,121,309,2017-02-18 18:28:05 UTC,{},80,false,\n",
        "9".repeat(700_000)
    );
    let input = format!(
        "1161114001,121,309,2017-02-18 18:28:04 UTC,70,80,false,\n{huge}\
         1161114001,121,309,2017-02-18 18:28:06 UTC,71,80,false,\n"
    );
    let path = dir.path().join("in.csv");
    std::fs::write(&path, input).expect("writing");
    let ks = keyspace("chunks");
    let run = run(&manifest, &path, &ks, "c", &[]);
    assert_eq!(run.dead.len(), 1, "the huge line is one bad row");
    let stored: Vec<Value> = common::python_read(&ks, "dead")
        .iter()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    assert_eq!(stored.len(), 1);
    let letter = &stored[0];
    assert!(letter["chunks"].as_u64().expect("chunks") >= 3, "{letter}");
    assert_eq!(letter["stored"], letter["chunks"]);
    let line: Value = serde_json::from_str(letter["line"].as_str().expect("text")).expect("JSON");
    assert_eq!(line, run.dead[0]);
    common::drop_keyspace(&ks);
}

#[test]
fn an_unreachable_cassandra_fails_the_run_with_a_clear_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = bts_manifest(dir.path(), "");
    let input = dir.path().join("in.csv");
    std::fs::write(&input, "1,2,3,2017-02-18 18:28:04 UTC,70,80,false,\n").expect("writing");
    let out = common::sluice()
        .arg("run")
        .arg(&manifest)
        .arg("--input")
        .arg(&input)
        .args(["--cassandra", "127.0.0.1:1", "--quiet"])
        .output()
        .expect("running sluice run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("cannot connect to Cassandra at 127.0.0.1:1"),
        "{stderr}"
    );
}
