//! Session windows in Cassandra: rows of fired sessions that a later line
//! `replaces` are deleted, so `sluice query` and a standard client read
//! exactly the final sessions — also after the whole input is replayed
//! into the same keyspace (newer writes of the superseded rows, then
//! their deletes again).

use std::collections::BTreeMap;

use serde_json::Value;

use crate::common::{self, gen_bts, keyspace, run};

/// A session window over the BTS readings with 10 s lateness against a
/// 1 s out-of-orderness bound: generated rows up to 3 s out of order are
/// late, within the lateness, and merge sessions that already fired.
fn manifest(dir: &std::path::Path) -> std::path::PathBuf {
    common::manifest(
        dir,
        "bts_analytics",
        "max_out_of_orderness = \"1s\"\nallowed_lateness = \"10s\"\n",
        r#"
[[windows]]
name = "episode"
kind = "session"
gap = "10s"
aggregate = "stats"

[params]
trend_points = "10"
horizon = "10m"
"#,
    )
}

/// A window line's identity as stored: type, window name, bounds, key.
fn identity(ty: &str, v: &Value, start: i64, end: i64) -> String {
    format!("{ty}|{}|{start}|{end}|{}", v["window"]["name"], v["key"])
}

/// The lines a consumer applying `update` and `replaces` ends with (the
/// last line of each identity; the rows each line replaces removed from
/// both windowed tables), as stored: without `replaces`, sorted.
fn final_rows(lines: &[String]) -> (Vec<String>, usize) {
    let mut rows = BTreeMap::new();
    let mut replaced = 0;
    for line in lines {
        let v: Value = serde_json::from_str(line).expect("an output line is JSON");
        let ty = v["type"].as_str().expect("a type");
        for r in v["replaces"].as_array().into_iter().flatten() {
            let (Some(s), Some(e)) = (r["start"].as_i64(), r["end"].as_i64()) else {
                panic!("replaces entry without bounds: {line}");
            };
            for table in ["Windowed Analytic", "Windowed Metric"] {
                replaced += usize::from(rows.remove(&identity(table, &v, s, e)).is_some());
            }
        }
        let (s, e) = (v["window"]["start"].as_i64(), v["window"]["end"].as_i64());
        let (Some(s), Some(e)) = (s, e) else {
            panic!("a line without window bounds: {line}");
        };
        // `replaces` is the line's last member and is not stored.
        let stored = match line.find(",\"replaces\":") {
            Some(at) => format!("{}}}", &line[..at]),
            None => line.clone(),
        };
        rows.insert(identity(ty, &v, s, e), stored);
    }
    let mut rows: Vec<String> = rows.into_values().collect();
    rows.sort();
    (rows, replaced)
}

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
fn superseded_sessions_are_deleted_and_stay_deleted_after_a_replay() {
    let _node = common::shared();
    let dir = tempfile::tempdir().expect("tempdir");
    let input = gen_bts(
        dir.path(),
        "in.csv",
        &[
            "--seed",
            "23",
            "--stations",
            "3",
            "--events",
            "12000",
            "--dirty",
            "0.01",
            "--out-of-order",
            "0.1",
        ],
    );
    let manifest = manifest(dir.path());
    let ks = keyspace("sessions");
    let first = run(&manifest, &input, &ks, "a", &["--workers", "2"]);
    let (expected, replaced) = final_rows(&first.lines);
    assert!(
        replaced > 0,
        "late rows should merge sessions that were already stored"
    );

    let check = |when: &str| {
        let queried = common::query(&ks, &[]);
        common::assert_same_rows(&format!("sluice query {when}"), &queried, &expected);
        let direct = common::python_read(&ks, "results");
        common::assert_same_rows(
            &format!("the Python driver {when}"),
            &canonical(&direct),
            &canonical(&expected),
        );
    };
    check("after the run");

    // The same input again: every superseded row is written anew, with a
    // newer timestamp, then deleted again by the line that replaces it.
    let again = run(&manifest, &input, &ks, "b", &["--workers", "1"]);
    assert_eq!(
        final_rows(&again.lines).0,
        expected,
        "a run is deterministic"
    );
    check("after a replay");
    common::drop_keyspace(&ks);
}
