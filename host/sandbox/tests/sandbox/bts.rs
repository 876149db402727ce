//! The BTS tenant against native references computed here.

use std::collections::BTreeMap;

use sluice_core::data::{DataField, Limits, Value};

use crate::common::{adds, batch, close, generate, instance, load, Reading};

/// min, max, mean, counter, alarms of a set of readings, computed plainly.
struct Reference {
    min: f64,
    max: f64,
    mean: f64,
    counter: i64,
    alarms: i64,
}

fn reference(rows: &[&Reading]) -> Reference {
    let values: Vec<f64> = rows.iter().map(|r| r.value).collect();
    Reference {
        min: values.iter().copied().fold(f64::INFINITY, f64::min),
        max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        mean: values.iter().sum::<f64>() / values.len() as f64,
        counter: rows.len() as i64,
        alarms: rows.iter().filter(|r| r.active).count() as i64,
    }
}

pub fn fields(out: &[DataField]) -> BTreeMap<&str, &Value> {
    out.iter().map(|f| (f.name.as_str(), &f.value)).collect()
}

fn float(out: &BTreeMap<&str, &Value>, name: &str) -> f64 {
    match out.get(name) {
        Some(Value::Float(x)) => *x,
        other => panic!("`{name}` should be a float, got {other:?}"),
    }
}

fn int(out: &BTreeMap<&str, &Value>, name: &str) -> i64 {
    match out.get(name) {
        Some(Value::Int(x)) => *x,
        other => panic!("`{name}` should be an int, got {other:?}"),
    }
}

fn assert_matches_reference(out: &[DataField], want: &Reference) {
    let got = fields(out);
    assert_eq!(
        got.keys().copied().collect::<Vec<_>>(),
        vec!["alarms", "counter", "max", "mean", "min"],
        "exactly the origin notes' field names"
    );
    assert!(close(float(&got, "min"), want.min), "min");
    assert!(close(float(&got, "max"), want.max), "max");
    assert!(
        close(float(&got, "mean"), want.mean),
        "mean {} vs {}",
        float(&got, "mean"),
        want.mean
    );
    assert_eq!(int(&got, "counter"), want.counter);
    assert_eq!(int(&got, "alarms"), want.alarms);
}

fn keys_of(readings: &[Reading]) -> Vec<[String; 3]> {
    let mut keys: Vec<_> = readings.iter().map(|r| r.key.clone()).collect();
    keys.sort();
    keys.dedup();
    keys
}

#[test]
fn stats_of_a_single_pane_equal_the_native_reference() {
    let module = load("bts", "bts_analytics");
    let mut inst = instance(&module, &[], Limits::default());
    let readings = generate(7, 5_000, 40);
    let (groups, events) = batch(&readings, |_| None);
    let accs = inst
        .aggregate_add("stats", &adds(&groups), &events)
        .expect("add");
    let windows: Vec<Vec<Vec<u8>>> = accs.into_iter().map(|a| vec![a]).collect();
    let outs = inst.aggregate_finish("stats", &windows, 0).expect("finish");
    let keys = keys_of(&readings);
    assert_eq!(outs.len(), keys.len());
    for (key, out) in keys.iter().zip(&outs) {
        let rows: Vec<&Reading> = readings.iter().filter(|r| &r.key == key).collect();
        assert_matches_reference(out, &reference(&rows));
    }
}

#[test]
fn panes_merged_in_any_grouping_equal_the_native_reference() {
    let module = load("bts", "bts_analytics");
    let mut inst = instance(&module, &[], Limits::default());
    let readings = generate(11, 3_000, 25);
    // Three panes of consecutive readings, as a sliding window would hold.
    let panes: Vec<Vec<Vec<u8>>> = readings
        .chunks(1_000)
        .map(|chunk| {
            let (groups, events) = batch(chunk, |_| None);
            assert_eq!(groups.len(), keys_of(chunk).len());
            let accs = inst
                .aggregate_add("stats", &adds(&groups), &events)
                .expect("add");
            // Index accumulators by key so panes line up across keys.
            keys_of(&readings)
                .iter()
                .map(|key| {
                    keys_of(chunk)
                        .iter()
                        .position(|k| k == key)
                        .map(|i| accs[i].clone())
                        .unwrap_or_default()
                })
                .collect()
        })
        .collect();
    let keys = keys_of(&readings);
    for (k, key) in keys.iter().enumerate() {
        let rows: Vec<&Reading> = readings.iter().filter(|r| &r.key == key).collect();
        let want = reference(&rows);
        let [a, b, c] = [&panes[0][k], &panes[1][k], &panes[2][k]].map(|p| {
            if p.is_empty() {
                // A key absent from a pane: a fresh accumulator.
                inst.aggregate_merge("stats", &[Vec::<Vec<u8>>::new()], 0)
                    .expect("empty merge")[0]
                    .clone()
            } else {
                p.clone()
            }
        });
        // finish(a, b, c) merges all three at once.
        let all = inst
            .aggregate_finish("stats", &[vec![a.clone(), b.clone(), c.clone()]], 0)
            .expect("finish");
        assert_matches_reference(&all[0], &want);
        // (a+b)+c and a+(b+c).
        let ab = inst
            .aggregate_merge("stats", &[vec![a.clone(), b.clone()]], 0)
            .expect("merge");
        let left = inst
            .aggregate_finish("stats", &[vec![ab[0].clone(), c.clone()]], 0)
            .expect("finish");
        let bc = inst
            .aggregate_merge("stats", &[vec![b.clone(), c.clone()]], 0)
            .expect("merge");
        let right = inst
            .aggregate_finish("stats", &[vec![a.clone(), bc[0].clone()]], 0)
            .expect("finish");
        assert_matches_reference(&left[0], &want);
        assert_matches_reference(&right[0], &want);
    }
}

#[test]
fn the_module_asks_only_for_the_columns_it_reads_and_answers_the_same() {
    let module = load("bts", "bts_analytics");
    let mut inst = instance(&module, &[], Limits::default());
    // value, valueThreshold, isActive: the key comes with each group.
    assert_eq!(inst.reads(), &[4, 5, 6]);
    let readings = generate(13, 1_000, 20);
    let reads = inst.reads().to_vec();
    let (groups, full) = batch(&readings, |_| None);
    let (_, projected) = crate::common::batch_with(&readings, Some(&reads), |_| None);
    assert!(
        matches!(&projected.columns[0], sluice_core::data::Column::Text(t) if t.data.is_empty())
    );
    let a = inst
        .aggregate_add("stats", &adds(&groups), &full)
        .expect("full");
    let b = inst
        .aggregate_add("stats", &adds(&groups), &projected)
        .expect("projected");
    assert_eq!(a, b);
    let a = inst.alert("alerts", &groups, &full).expect("full");
    let b = inst
        .alert("alerts", &groups, &projected)
        .expect("projected");
    assert_eq!(a, b);
}

#[test]
fn adding_to_a_held_accumulator_continues_it() {
    let module = load("bts", "bts_analytics");
    let mut inst = instance(&module, &[], Limits::default());
    let readings = generate(3, 400, 1);
    let (first, rest) = readings.split_at(150);
    let (groups, events) = batch(first, |_| None);
    let held = inst
        .aggregate_add("stats", &adds(&groups), &events)
        .expect("add")[0]
        .clone();
    let (groups, events) = batch(rest, |_| Some(held.clone()));
    let acc = inst
        .aggregate_add("stats", &adds(&groups), &events)
        .expect("add")[0]
        .clone();
    let out = inst
        .aggregate_finish("stats", &[vec![acc]], 0)
        .expect("finish");
    let all: Vec<&Reading> = readings.iter().collect();
    assert_matches_reference(&out[0], &reference(&all));
}

mod alerts {
    use super::*;
    use sluice_core::data::AlertResult;

    const MINUTE: i64 = 60_000;

    /// Feeds readings one call per reading (state carried by the host, as
    /// the pipeline does) and returns all alerts as (kind, event time).
    fn run(readings: &[Reading], params: &[(&str, &str)]) -> Vec<(String, i64)> {
        let module = load("bts", "bts_analytics");
        let mut inst = instance(&module, params, Limits::default());
        let mut state: Option<Vec<u8>> = None;
        let mut alerts = Vec::new();
        for r in readings {
            let (groups, events) = batch(std::slice::from_ref(r), |_| state.clone());
            let results: Vec<AlertResult> = inst.alert("alerts", &groups, &events).expect("alert");
            state = Some(results[0].state.clone());
            alerts.extend(
                results[0]
                    .alerts
                    .iter()
                    .map(|a| (a.kind.clone(), a.event_time)),
            );
        }
        alerts
    }

    fn ramp(threshold: f64) -> Vec<Reading> {
        // 30 V below the threshold, rising 1 V a minute: crosses in 30 min.
        (0..40)
            .map(|i| Reading::new("1", i * MINUTE, 200.0 + i as f64, threshold, false))
            .collect()
    }

    #[test]
    fn a_ramp_toward_the_threshold_predicts_one_breach_within_the_horizon() {
        let alerts = run(&ramp(230.0), &[("trend_points", "5"), ("horizon", "10m")]);
        let breaches: Vec<_> = alerts
            .iter()
            .filter(|(k, _)| k == "predicted-breach")
            .collect();
        assert_eq!(breaches.len(), 1, "one alert per approach: {alerts:?}");
        // Value 200+i reaches 230 at i = 30; 10 minutes ahead means i = 20.
        let at = breaches[0].1 / MINUTE;
        assert!((19..=21).contains(&at), "predicted at minute {at}");
    }

    #[test]
    fn the_default_threshold_never_predicts_a_breach() {
        let alerts = run(
            &ramp(999_999.0),
            &[("trend_points", "5"), ("horizon", "10m")],
        );
        assert!(alerts.is_empty(), "{alerts:?}");
    }

    #[test]
    fn a_rising_alarm_is_raised_once_per_transition() {
        let active = [false, true, true, true, false, false, true, true, false];
        let readings: Vec<Reading> = active
            .iter()
            .enumerate()
            .map(|(i, &a)| Reading::new("2", i as i64 * MINUTE, 10.0, 999_999.0, a))
            .collect();
        let alerts = run(&readings, &[]);
        assert_eq!(
            alerts,
            vec![
                ("alarm-raised".to_string(), MINUTE),
                ("alarm-raised".to_string(), 6 * MINUTE)
            ]
        );
    }

    #[test]
    fn alerts_batched_across_keys_equal_alerts_key_by_key() {
        let module = load("bts", "bts_analytics");
        let mut inst = instance(&module, &[], Limits::default());
        let mut readings = generate(5, 600, 30);
        for (i, r) in readings.iter_mut().enumerate() {
            r.active = (i / 7) % 3 == 0;
        }
        let (groups, events) = batch(&readings, |_| None);
        let batched = inst.alert("alerts", &groups, &events).expect("batched");
        for (group, result) in groups.iter().zip(&batched) {
            let rows: Vec<Reading> = readings
                .iter()
                .filter(|r| r.key[..] == group.key[..])
                .cloned()
                .collect();
            let (g, e) = batch(&rows, |_| None);
            let alone = inst.alert("alerts", &g, &e).expect("alone");
            assert_eq!(alone[0], *result);
        }
    }
}
