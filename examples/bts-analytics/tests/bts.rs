//! The BTS analytics, driven natively through `Module<Bts>`.

use bts_analytics::{Bts, Stats, ALARM_RAISED, NO_THRESHOLD, PREDICTED_BREACH};
use sluice_guest::{
    AddGroup, AlertResult, Batch, Column, DataField, FieldDef, FieldType, KeyGroup, Module,
    TextColumn, Value,
};

fn schema() -> Vec<FieldDef> {
    vec![
        FieldDef::new("station_id", FieldType::Text),
        FieldDef::new("datapoint_id", FieldType::Text),
        FieldDef::new("alarm_id", FieldType::Text),
        FieldDef::new("event_time", FieldType::Timestamp),
        FieldDef::new("value", FieldType::Float),
        FieldDef::new("valueThreshold", FieldType::Float),
        FieldDef::new("isActive", FieldType::Boolean),
        FieldDef::optional("storedtime", FieldType::Text),
    ]
}

fn module(params: &[(&str, &str)]) -> Module<Bts> {
    Module::init(
        params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        schema(),
    )
    .expect("the BTS schema fits the BTS tenant")
}

/// One key's rows: (event time ms, value, threshold, isActive).
fn batch(rows: &[(i64, f64, f64, bool)]) -> Batch {
    let text = |s: &str| Column::Text(TextColumn::from_values(rows.iter().map(|_| s)));
    Batch {
        times: rows.iter().map(|r| r.0).collect(),
        columns: vec![
            text("1161115009"),
            text("121"),
            text("308"),
            Column::Timestamp(rows.iter().map(|r| r.0).collect()),
            Column::Float(rows.iter().map(|r| r.1).collect()),
            Column::Float(rows.iter().map(|r| r.2).collect()),
            Column::Boolean(rows.iter().map(|r| u8::from(r.3)).collect()),
            text(""),
        ],
        // storedtime is never filled in the dataset.
        absent: vec![
            vec![],
            vec![],
            vec![],
            vec![],
            vec![],
            vec![],
            vec![],
            (0..rows.len() as u32).collect(),
        ],
    }
}

/// The `aggregate_add` groups of consecutive key groups from row 0.
fn adds(groups: &[KeyGroup]) -> Vec<AddGroup<'_>> {
    AddGroup::runs(groups).expect("consecutive groups")
}

fn group(state: Option<Vec<u8>>, start: usize, len: usize) -> KeyGroup {
    KeyGroup {
        key: vec!["1161115009".into(), "121".into(), "308".into()],
        state,
        start: start as u32,
        len: len as u32,
    }
}

fn field<'a>(fields: &'a [DataField], name: &str) -> &'a Value {
    &fields
        .iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("no field {name} in {fields:?}"))
        .value
}

fn float(fields: &[DataField], name: &str) -> f64 {
    match field(fields, name) {
        Value::Float(f) => *f,
        other => panic!("{name} is {other:?}, not a float"),
    }
}

fn int(fields: &[DataField], name: &str) -> i64 {
    match field(fields, name) {
        Value::Int(i) => *i,
        other => panic!("{name} is {other:?}, not an int"),
    }
}

/// Deterministic pseudo-random readings around 240, like the dataset's.
fn readings(n: usize) -> Vec<(i64, f64, f64, bool)> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..n)
        .map(|i| {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let value = 230.0 + (x >> 40) as f64 / (1u64 << 24) as f64 * 20.0;
            (i as i64 * 5_000, value, 245.0, (x >> 13) & 1 == 1)
        })
        .collect()
}

#[test]
fn describe_names_stats_outputs_and_alert_kinds() {
    let info = Module::<Bts>::describe();
    assert_eq!(info.name, "bts-analytics");
    assert_eq!(info.functions[0].name, "stats");
    assert_eq!(
        info.functions[0].outputs,
        ["mean", "max", "min", "counter", "alarms"]
    );
    assert_eq!(info.functions[1].name, "alerts");
    assert_eq!(
        info.functions[1].alert_kinds,
        [ALARM_RAISED, PREDICTED_BREACH]
    );
}

#[test]
fn stats_over_one_window_match_the_rows() {
    let rows = [
        (0, 240.0, 245.0, true),
        (5_000, 241.0, 245.0, false),
        (10_000, 240.5, 245.0, true),
        (15_000, 240.0, 245.0, false),
    ];
    let m = module(&[]);
    let acc = m
        .aggregate_add("stats", &adds(&[group(None, 0, 4)]), batch(&rows))
        .expect("add");
    let out = m.aggregate_finish("stats", &[acc]).expect("finish");
    assert_eq!(float(&out[0], "mean"), 240.375);
    assert_eq!(float(&out[0], "max"), 241.0);
    assert_eq!(float(&out[0], "min"), 240.0);
    assert_eq!(int(&out[0], "counter"), 4);
    assert_eq!(int(&out[0], "alarms"), 2);
}

#[test]
fn stats_merged_from_panes_equal_a_single_pane() {
    let rows = readings(1_000);
    let m = module(&[]);
    let whole = m
        .aggregate_add("stats", &adds(&[group(None, 0, rows.len())]), batch(&rows))
        .expect("one pane");
    // Uneven panes, one of them empty, added in one batch.
    let cuts = [0, 1, 137, 137, 600, 1_000];
    let panes = m
        .aggregate_add(
            "stats",
            &adds(
                &cuts
                    .windows(2)
                    .map(|w| group(None, w[0], w[1] - w[0]))
                    .collect::<Vec<_>>(),
            ),
            batch(&rows),
        )
        .expect("panes");
    let merged = m
        .aggregate_merge("stats", std::slice::from_ref(&panes))
        .expect("merge");
    let from_merge: Stats = postcard::from_bytes(&merged[0]).expect("a Stats accumulator");
    let single: Stats = postcard::from_bytes(&whole[0]).expect("a Stats accumulator");
    assert_eq!(from_merge.count, single.count);
    assert_eq!(from_merge.alarms, single.alarms);
    assert_eq!(from_merge.min, single.min);
    assert_eq!(from_merge.max, single.max);

    let out = m
        .aggregate_finish("stats", &[whole, panes])
        .expect("finish");
    for name in ["counter", "alarms"] {
        assert_eq!(int(&out[0], name), int(&out[1], name), "{name}");
    }
    for name in ["max", "min"] {
        assert_eq!(float(&out[0], name), float(&out[1], name), "{name}");
    }
    // Summation order differs between the two, so allow rounding.
    let (a, b) = (float(&out[0], "mean"), float(&out[1], "mean"));
    assert!((a - b).abs() <= 1e-9 * a.abs(), "mean {a} vs {b}");
    assert_eq!(int(&out[0], "counter"), 1_000);
    assert!(int(&out[0], "alarms") > 300 && int(&out[0], "alarms") < 700);
}

#[test]
fn stats_of_an_empty_window_have_no_mean_min_max() {
    let out = module(&[])
        .aggregate_finish("stats", &[Vec::<Vec<u8>>::new()])
        .expect("finish");
    assert_eq!(int(&out[0], "counter"), 0);
    assert!(float(&out[0], "mean").is_nan());
    assert!(float(&out[0], "min").is_nan());
}

/// Runs `alerts` over consecutive batches of one key, carrying its state.
fn run_alerts(m: &Module<Bts>, batches: &[Vec<(i64, f64, f64, bool)>]) -> Vec<AlertResult> {
    let mut state = None;
    batches
        .iter()
        .map(|rows| {
            let mut result = m
                .alert(
                    "alerts",
                    vec![group(state.take(), 0, rows.len())],
                    batch(rows),
                )
                .expect("alert call");
            let result = result.remove(0);
            state = Some(result.state.clone());
            result
        })
        .collect()
}

fn kinds(results: &[AlertResult], kind: &str) -> Vec<i64> {
    results
        .iter()
        .flat_map(|r| &r.alerts)
        .filter(|a| a.kind == kind)
        .map(|a| a.event_time)
        .collect()
}

#[test]
fn alarm_raised_once_per_false_to_true_transition() {
    let m = module(&[]);
    let flat = |t: i64, active: bool| (t, 10.0, NO_THRESHOLD, active);
    let results = run_alerts(
        &m,
        &[
            vec![
                flat(0, false),
                flat(1, true),
                flat(2, true),
                flat(3, false),
                flat(4, true),
            ],
            // Still active across the call boundary: no new alert.
            vec![flat(5, true), flat(6, true)],
            vec![flat(7, false), flat(8, true)],
        ],
    );
    assert_eq!(kinds(&results, ALARM_RAISED), [1, 4, 8]);
    let first = &results[0].alerts[0];
    assert_eq!(field(&first.data, "value"), &Value::Float(10.0));
}

#[test]
fn a_new_key_that_starts_active_raises() {
    let m = module(&[]);
    let results = run_alerts(
        &m,
        &[vec![
            (100, 1.0, NO_THRESHOLD, true),
            (200, 1.0, NO_THRESHOLD, true),
        ]],
    );
    assert_eq!(kinds(&results, ALARM_RAISED), [100]);
}

/// A key whose value climbs 2 per 10 s (12 per minute) from `from`.
fn ramp(from: f64, points: usize, threshold: f64) -> Vec<(i64, f64, f64, bool)> {
    (0..points)
        .map(|i| (i as i64 * 10_000, from + 2.0 * i as f64, threshold, false))
        .collect()
}

#[test]
fn no_threshold_never_predicts() {
    let m = module(&[]);
    let rows = ramp(999_000.0, 600, NO_THRESHOLD);
    let results = run_alerts(&m, &[rows]);
    assert!(kinds(&results, PREDICTED_BREACH).is_empty());
}

#[test]
fn a_ramp_toward_the_threshold_predicts_once() {
    let m = module(&[]);
    // 50 → 98 in 25 points; threshold 100.
    let rows = ramp(50.0, 25, 100.0);
    let results = run_alerts(&m, &[rows[..12].to_vec(), rows[12..].to_vec()]);
    let raised: Vec<_> = results
        .iter()
        .flat_map(|r| &r.alerts)
        .filter(|a| a.kind == PREDICTED_BREACH)
        .collect();
    assert_eq!(raised.len(), 1, "{raised:?}");
    // First possible with 10 points: at the 10th (t = 90 s, value 68);
    // 32 to go at 12/min is 160 s after it, within 10 minutes.
    let alert = raised[0];
    assert_eq!(alert.event_time, 90_000);
    assert_eq!(field(&alert.data, "value"), &Value::Float(68.0));
    assert_eq!(field(&alert.data, "threshold"), &Value::Float(100.0));
    assert!((float(&alert.data, "slope") - 12.0).abs() < 1e-9);
    assert_eq!(int(&alert.data, "predicted_at"), 250_000);
}

#[test]
fn a_second_approach_after_the_trend_flattens_predicts_again() {
    let m = module(&[]);
    let mut rows = ramp(50.0, 12, 100.0);
    // Flat for 20 points: the slope goes to zero, the prediction stops.
    let last = rows[rows.len() - 1];
    rows.extend((1..=20).map(|i| (last.0 + i * 10_000, last.1, 100.0, false)));
    // Climb again.
    let flat_end = rows[rows.len() - 1];
    rows.extend((1..=10).map(|i| {
        (
            flat_end.0 + i * 10_000,
            flat_end.1 + 2.0 * i as f64,
            100.0,
            false,
        )
    }));
    let results = run_alerts(&m, &[rows]);
    assert_eq!(kinds(&results, PREDICTED_BREACH).len(), 2);
}

/// Event times of the predicted-breach alerts for one key's rows.
fn predicted(m: &Module<Bts>, rows: &[(i64, f64, f64, bool)]) -> Vec<i64> {
    kinds(&run_alerts(m, &[rows.to_vec()]), PREDICTED_BREACH)
}

#[test]
fn no_prediction_beyond_the_horizon_or_over_the_threshold_or_with_few_points() {
    // 12/min from 50 with threshold 1000: ~79 minutes away.
    let far = ramp(50.0, 30, 1_000.0);
    assert!(predicted(&module(&[]), &far).is_empty());
    let longer = module(&[("horizon", "2h")]);
    assert_eq!(
        predicted(&longer, &far).len(),
        1,
        "a longer horizon sees it"
    );

    // Already over the threshold: nothing to predict.
    assert!(predicted(&module(&[]), &ramp(150.0, 30, 100.0)).is_empty());

    // Only 4 points with trend_points = 5; enough with 4.
    let short = ramp(90.0, 4, 100.0);
    assert!(predicted(&module(&[("trend_points", "5")]), &short).is_empty());
    assert_eq!(
        predicted(&module(&[("trend_points", "4")]), &short),
        [30_000]
    );
}

#[test]
fn bad_params_are_rejected_at_init() {
    for (name, value, needle) in [
        ("trend_points", "2", "3 to 1000 points"),
        ("trend_points", "many", "not a valid usize"),
        ("horizon", "10", "needs a unit"),
    ] {
        let err = Module::<Bts>::init(vec![(name.into(), value.into())], schema())
            .expect_err("bad param");
        assert!(err.message.contains(name), "{err}");
        assert!(err.message.contains(needle), "{err}");
    }
}
