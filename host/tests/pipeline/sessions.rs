//! Session windows through `sluice run` with the BTS component: 1 and 4
//! workers give the same lines, late rows within the lateness re-emit
//! merged sessions with `replaces`, and a consumer applying them ends with
//! disjoint sessions holding every accepted reading once; a run killed at
//! seeded moments (its checkpoints taken while sessions are open) resumes
//! to exactly the crash-free output.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::checkpoint;
use crate::common::{gen_bts, key_of, manifest, run};

/// A session window over the BTS readings, the `stats` aggregate.
fn sessions(gap: &str, max_duration: Option<&str>) -> String {
    let max = max_duration.map_or(String::new(), |m| format!("max_duration = \"{m}\"\n"));
    format!(
        r#"
[[windows]]
name = "episode"
kind = "session"
gap = "{gap}"
{max}aggregate = "stats"

[params]
trend_points = "10"
horizon = "10m"
"#
    )
}

/// What a consumer ends with: per (key, start, end) the last analytic
/// line, with what each line replaces deleted.
fn table(outputs: &[Value]) -> BTreeMap<(String, i64, i64), Value> {
    let mut table = BTreeMap::new();
    for o in outputs.iter().filter(|o| o["type"] == "Windowed Analytic") {
        let key = key_of(o);
        for r in o["replaces"].as_array().into_iter().flatten() {
            let bounds = (r["start"].as_i64(), r["end"].as_i64());
            let (Some(s), Some(e)) = bounds else {
                panic!("replaces entry without bounds: {o}");
            };
            table.remove(&(key.clone(), s, e));
        }
        let (s, e) = (o["window"]["start"].as_i64(), o["window"]["end"].as_i64());
        table.insert((key, s.expect("start"), e.expect("end")), o.clone());
    }
    table
}

#[test]
fn one_and_four_workers_give_the_same_sessions_and_replaces_leave_the_final_ones() {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = gen_bts(
        dir.path(),
        "bts.csv",
        &[
            "--seed",
            "23",
            "--stations",
            "4",
            "--events",
            "30000",
            "--dirty",
            "0.01",
            "--out-of-order",
            "0.1",
        ],
    );
    // Rows up to 3 s out of order against a 1 s bound: some are late,
    // within the 10 s lateness, and merge sessions that already fired. No
    // max_duration: final sessions never touch.
    let lateness = "max_out_of_orderness = \"1s\"\nallowed_lateness = \"10s\"\n";
    let manifest = manifest(
        dir.path(),
        "bts_analytics",
        lateness,
        &sessions("10s", None),
    );
    let one = run(&manifest, &input, 1);
    let four = run(&manifest, &input, 4);
    let set = |lines: &[String]| lines.iter().cloned().collect::<BTreeSet<_>>();
    assert_eq!(one.lines.len(), four.lines.len());
    assert_eq!(set(&one.lines), set(&four.lines));

    let replacing = one
        .of_type("Windowed Analytic")
        .filter(|o| o.get("replaces").is_some());
    assert!(replacing.count() > 0, "late rows merged fired sessions");
    assert!(
        one.dead.iter().all(|d| d["kind"] != "poison"),
        "{:?}",
        one.dead
    );

    let final_sessions = table(&one.outputs);
    let mut by_key: BTreeMap<&str, Vec<(i64, i64)>> = BTreeMap::new();
    for (key, s, e) in final_sessions.keys() {
        by_key.entry(key).or_default().push((*s, *e));
    }
    for (key, bounds) in &by_key {
        for pair in bounds.windows(2) {
            assert!(
                pair[0].1 < pair[1].0,
                "sessions of {key} overlap or touch: {pair:?} (a stale session was left)"
            );
        }
    }
    // Every reading that was neither a bad row nor too late is in exactly
    // one final session.
    let rows = std::fs::read_to_string(&input)
        .expect("input")
        .lines()
        .count() as u64;
    let readings: u64 = final_sessions
        .values()
        .map(|o| o["data"]["counter"].as_u64().expect("counter"))
        .sum();
    assert_eq!(readings, rows - one.dead.len() as u64);
}

#[test]
fn sigkill_with_sessions_open_resumes_to_the_crash_free_output() {
    // Keys report every 5 s to a minute and a gap of 2 min keeps most of
    // them in one session until max_duration closes it: every checkpoint
    // holds open sessions.
    let f = checkpoint::fixture_with("100000", &sessions("2m", Some("15m")));
    let sessions = f.reference.of_type("Windowed Analytic").count();
    assert!(sessions > 100, "{sessions} sessions");
    let (kills, resumed) = checkpoint::kill_at_output_sizes(&f, 0x5e55_1045_0000_0023, 8);
    eprintln!("{kills} kills, {resumed} restarts resumed from a checkpoint");
    assert!(kills >= 6, "only {kills} of 8 kills landed before the end");
    assert!(resumed >= kills / 2, "only {resumed} of {kills} resumed");
    checkpoint::finish(&f);
    checkpoint::assert_exact(&f);
}
