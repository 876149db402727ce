//! The BTS batch summaries, driven natively through `Module<BtsBatch>`,
//! against hand computations; and the embedded stream functions against
//! `Module<Bts>`.

use bts_batch::{BtsBatch, MAX_BINS};
use bts_stream::{Bts, ALARM_RAISED, NO_THRESHOLD};
use sluice_guest::{
    AddGroup, Batch, Column, DataField, FieldDef, FieldType, FunctionKind, KeyGroup, Module,
    TextColumn, Value,
};

const HOUR: i64 = 3_600_000;
/// 2016-07-18 00:00 UTC: a midnight, so hours of the day read plainly.
const DAY0: i64 = 17_000 * 24 * HOUR;

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

fn params(params: &[(&str, &str)]) -> Vec<(String, String)> {
    params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn module(p: &[(&str, &str)]) -> Module<BtsBatch> {
    Module::init(params(p), schema()).expect("the BTS schema fits the batch tenant")
}

/// (event time ms, value, threshold, isActive)
type Row = (i64, f64, f64, bool);

/// One key's rows (one station, the room temperature data point).
fn batch(rows: &[Row]) -> Batch {
    let text = |s: &str| Column::Text(TextColumn::from_values(rows.iter().map(|_| s)));
    Batch {
        times: rows.iter().map(|r| r.0).collect(),
        columns: vec![
            text("1161115009"),
            text("143"),
            text("308"),
            Column::Timestamp(rows.iter().map(|r| r.0).collect()),
            Column::Float(rows.iter().map(|r| r.1).collect()),
            Column::Float(rows.iter().map(|r| r.2).collect()),
            Column::Boolean(rows.iter().map(|r| u8::from(r.3)).collect()),
            text(""),
        ],
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

fn group(start: usize, len: usize) -> KeyGroup {
    KeyGroup {
        key: vec!["1161115009".into(), "143".into(), "308".into()],
        state: None,
        start: start as u32,
        len: len as u32,
    }
}

/// Adds all `rows` as one pane and finishes it.
fn run(m: &Module<BtsBatch>, function: &str, rows: &[Row]) -> Vec<DataField> {
    let acc = m
        .aggregate_add(function, &adds(&[group(0, rows.len())]), batch(rows))
        .expect("add");
    m.aggregate_finish(function, &[acc])
        .expect("finish")
        .remove(0)
}

fn field<'a>(fields: &'a [DataField], name: &str) -> &'a Value {
    &fields
        .iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("no field {name} in {fields:?}"))
        .value
}

fn int(fields: &[DataField], name: &str) -> i64 {
    match field(fields, name) {
        Value::Int(i) => *i,
        other => panic!("{name} is {other:?}, not an int"),
    }
}

fn float(fields: &[DataField], name: &str) -> f64 {
    match field(fields, name) {
        Value::Float(f) => *f,
        other => panic!("{name} is {other:?}, not a float"),
    }
}

/// (name, int value) of every field, for comparing whole outputs.
fn ints(fields: &[DataField]) -> Vec<(&str, i64)> {
    fields
        .iter()
        .filter_map(|f| match f.value {
            Value::Int(i) => Some((f.name.as_ref(), i)),
            _ => None,
        })
        .collect()
}

/// Deterministic pseudo-random rows over two days: values around 22 (some
/// negative), thresholds 25 or none, about half active.
fn readings(n: usize) -> Vec<Row> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let time = DAY0 + (x >> 20) as i64 % (48 * HOUR);
            let value = (x >> 40) as f64 / (1u64 << 24) as f64 * 40.0 - 5.0;
            let threshold = if (x >> 7) & 3 == 0 {
                NO_THRESHOLD
            } else {
                25.0
            };
            (time, value, threshold, (x >> 13) & 1 == 1)
        })
        .collect()
}

const BATCH_FUNCTIONS: [&str; 5] = [
    "row_count",
    "histogram",
    "active_alarms",
    "threshold_breaches",
    "hour_profile",
];

#[test]
fn describe_lists_the_batch_functions_then_the_embedded_stream_ones() {
    let info = Module::<BtsBatch>::describe();
    assert_eq!(info.name, "bts-batch");
    let names: Vec<&str> = info.functions.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "row_count",
            "histogram",
            "active_alarms",
            "threshold_breaches",
            "hour_profile",
            "stats",
            "alerts"
        ]
    );
    for f in &info.functions[..5] {
        assert_eq!(f.kind, FunctionKind::Aggregate, "{}", f.name);
    }
    assert_eq!(
        info.functions[0].outputs,
        ["rows", "first_time", "last_time", "rate_per_hour"]
    );
    assert_eq!(
        info.functions[1].outputs,
        ["count", "bin_width", "overflow", "bin:*"]
    );
    assert_eq!(info.functions[2].outputs, ["active", "rows"]);
    assert_eq!(info.functions[3].outputs, ["breaches", "rows"]);
    let hours: Vec<String> = (0..24).map(|h| format!("h{h:02}")).collect();
    assert_eq!(info.functions[4].outputs[..24], hours[..]);
    assert_eq!(info.functions[4].outputs[24..], ["active", "peak_hour"]);
    // The stream functions exactly as the bts-analytics module lists them.
    assert_eq!(info.functions[5..], Module::<Bts>::describe().functions[..]);
}

#[test]
fn reads_only_value_threshold_and_active() {
    // Event times come with every batch; no other column is needed.
    assert_eq!(module(&[]).reads(), [4, 5, 6]);
}

#[test]
fn row_count_counts_rows_and_rates_them_over_the_span() {
    let m = module(&[]);
    // Out of order; first 00:00:01, last 02:00:01: 5 rows in 2 h.
    let rows = [
        (DAY0 + HOUR, 1.0, 25.0, false),
        (DAY0 + 1_000, 1.0, 25.0, false),
        (DAY0 + 2 * HOUR + 1_000, 1.0, 25.0, true),
        (DAY0 + 30_000, 1.0, 25.0, false),
        (DAY0 + HOUR, 1.0, 25.0, false),
    ];
    let out = run(&m, "row_count", &rows);
    assert_eq!(int(&out, "rows"), 5);
    assert_eq!(int(&out, "first_time"), DAY0 + 1_000);
    assert_eq!(int(&out, "last_time"), DAY0 + 2 * HOUR + 1_000);
    assert_eq!(float(&out, "rate_per_hour"), 2.5);

    // 90 minutes: 3 / 1.5 h.
    let out = run(
        &m,
        "row_count",
        &[
            (0, 0.0, 0.0, false),
            (0, 0.0, 0.0, false),
            (HOUR * 3 / 2, 0.0, 0.0, false),
        ],
    );
    assert_eq!(float(&out, "rate_per_hour"), 2.0);

    // One instant has no span: the rate is the row count.
    let out = run(&m, "row_count", &[(7, 0.0, 0.0, false); 3]);
    assert_eq!((int(&out, "first_time"), int(&out, "last_time")), (7, 7));
    assert_eq!(float(&out, "rate_per_hour"), 3.0);

    let empty = m
        .aggregate_finish("row_count", &[Vec::<Vec<u8>>::new()])
        .expect("finish")
        .remove(0);
    assert_eq!(
        ints(&empty),
        [("rows", 0), ("first_time", 0), ("last_time", 0)]
    );
    assert_eq!(float(&empty, "rate_per_hour"), 0.0);
}

#[test]
fn histogram_names_bins_by_lower_edge_with_a_fractional_width() {
    let m = module(&[("histogram_bin_width", "2.5")]);
    let values = [22.4, 22.5, 24.9, 25.0, -0.1, -2.5, -2.6, 0.0];
    let rows: Vec<Row> = values.iter().map(|&v| (DAY0, v, 25.0, false)).collect();
    let out = run(&m, "histogram", &rows);
    assert_eq!(float(&out, "bin_width"), 2.5);
    assert_eq!(
        ints(&out),
        [
            ("count", 8),
            ("overflow", 0),
            ("bin:-5", 1),   // -2.6
            ("bin:-2.5", 2), // -0.1, -2.5
            ("bin:0", 1),    // 0.0
            ("bin:20", 1),   // 22.4
            ("bin:22.5", 2), // 22.5, 24.9
            ("bin:25", 1),   // 25.0
        ]
    );
}

#[test]
fn histogram_defaults_to_unit_bins_and_floors_negative_values() {
    let m = module(&[]);
    let values = [220.7, 221.2, 220.0, -3.0, -2.5, -0.5];
    let rows: Vec<Row> = values.iter().map(|&v| (DAY0, v, 250.0, false)).collect();
    let out = run(&m, "histogram", &rows);
    assert_eq!(float(&out, "bin_width"), 1.0);
    assert_eq!(
        ints(&out),
        [
            ("count", 6),
            ("overflow", 0),
            ("bin:-3", 2),
            ("bin:-1", 1),
            ("bin:220", 2),
            ("bin:221", 1),
        ]
    );
}

#[test]
fn histogram_counts_non_finite_values_in_overflow() {
    let m = module(&[]);
    let values = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 1.5, 1e300];
    let rows: Vec<Row> = values.iter().map(|&v| (DAY0, v, 250.0, false)).collect();
    let out = run(&m, "histogram", &rows);
    // 1e300 has no i64 bin index either.
    assert_eq!(ints(&out), [("count", 5), ("overflow", 4), ("bin:1", 1)]);
}

#[test]
fn histogram_past_the_cap_keeps_the_lowest_bins_whatever_the_order() {
    let m = module(&[]);
    let extra = 5;
    let rows: Vec<Row> = (0..MAX_BINS + extra)
        .map(|i| (DAY0, i as f64 + 0.5, 0.0, false))
        .collect();
    let mut reversed = rows.clone();
    reversed.reverse();

    let up = m
        .aggregate_add("histogram", &adds(&[group(0, rows.len())]), batch(&rows))
        .expect("ascending");
    let down = m
        .aggregate_add(
            "histogram",
            &adds(&[group(0, rows.len())]),
            batch(&reversed),
        )
        .expect("descending");
    assert_eq!(up, down, "event order changes nothing");
    let halves = m
        .aggregate_add(
            "histogram",
            &adds(&[group(0, 3_000), group(3_000, rows.len() - 3_000)]),
            batch(&reversed),
        )
        .expect("panes");
    let merged = m.aggregate_merge("histogram", &[halves]).expect("merge");
    assert_eq!(merged, up, "pane boundaries change nothing");

    let out = m
        .aggregate_finish("histogram", &[up])
        .expect("finish")
        .remove(0);
    assert_eq!(int(&out, "count"), (MAX_BINS + extra) as i64);
    assert_eq!(int(&out, "overflow"), extra as i64);
    assert_eq!(out.len(), 3 + MAX_BINS);
    assert_eq!(out[3].name, "bin:0");
    assert_eq!(out[out.len() - 1].name, format!("bin:{}", MAX_BINS - 1));
}

#[test]
fn bad_bin_widths_are_rejected_at_init() {
    for width in ["0", "-1", "inf", "NaN", "wide"] {
        let err = Module::<BtsBatch>::init(params(&[("histogram_bin_width", width)]), schema())
            .expect_err("bad width");
        assert!(
            err.message.contains("histogram_bin_width"),
            "{width}: {err}"
        );
    }
}

#[test]
fn active_alarms_count_active_rows() {
    let m = module(&[]);
    let rows = [
        (DAY0, 1.0, 25.0, true),
        (DAY0 + 1, 1.0, 25.0, false),
        (DAY0 + 2, 1.0, 25.0, true),
        (DAY0 + 3, 1.0, 25.0, true),
        (DAY0 + 4, 1.0, 25.0, false),
    ];
    assert_eq!(
        ints(&run(&m, "active_alarms", &rows)),
        [("active", 3), ("rows", 5)]
    );
}

#[test]
fn threshold_breaches_count_values_over_a_real_threshold() {
    let m = module(&[]);
    let rows = [
        (DAY0, 250.0, 245.0, false),      // over
        (DAY0, 245.0, 245.0, false),      // equal: not over
        (DAY0, 1e6, NO_THRESHOLD, false), // no threshold
        (DAY0, 2e6, 1_500_000.0, false),  // ≥ 999999: no threshold either
        (DAY0, f64::NAN, 10.0, false),    // NaN breaches nothing
        (DAY0, 10.0, f64::NAN, false),    //
        (DAY0, -5.0, -10.0, true),        // over
    ];
    assert_eq!(
        ints(&run(&m, "threshold_breaches", &rows)),
        [("breaches", 2), ("rows", 7)]
    );
}

/// `(hour of day, isActive)` rows on day 0 (or `day` days later).
fn at(day: i64, hour: i64, active: bool) -> Row {
    (
        DAY0 + day * 24 * HOUR + hour * HOUR + 59_999,
        1.0,
        25.0,
        active,
    )
}

/// The 24 hour counts of an `hour_profile` output, checking names and order.
fn hours(out: &[DataField]) -> Vec<i64> {
    assert_eq!(out.len(), 26);
    out[..24]
        .iter()
        .enumerate()
        .map(|(h, f)| {
            assert_eq!(f.name, format!("h{h:02}"));
            match f.value {
                Value::Int(i) => i,
                ref other => panic!("{} is {other:?}", f.name),
            }
        })
        .collect()
}

#[test]
fn hour_profile_counts_active_rows_per_utc_hour() {
    let m = module(&[]);
    let rows = [
        at(0, 3, true),
        at(0, 3, true),
        at(1, 3, true), // another day, same hour
        at(0, 5, true),
        at(0, 5, true),
        at(0, 5, false), // inactive rows do not count
        at(0, 5, false),
        at(0, 5, false),
        at(0, 23, true),
    ];
    let out = run(&m, "hour_profile", &rows);
    let mut expected = vec![0; 24];
    expected[3] = 3;
    expected[5] = 2;
    expected[23] = 1;
    assert_eq!(hours(&out), expected);
    assert_eq!(int(&out, "active"), 6);
    assert_eq!(int(&out, "peak_hour"), 3);
}

#[test]
fn hour_profile_peak_ties_go_to_the_earliest_hour() {
    let m = module(&[]);
    let rows = [
        at(0, 7, true),
        at(0, 7, true),
        at(0, 2, true),
        at(0, 2, true),
        at(0, 4, true),
    ];
    let out = run(&m, "hour_profile", &rows);
    assert_eq!(int(&out, "peak_hour"), 2);
    assert_eq!(int(&out, "active"), 5);
}

#[test]
fn hour_profile_without_active_rows_has_no_peak() {
    let m = module(&[]);
    for rows in [vec![], vec![at(0, 9, false), at(0, 10, false)]] {
        let out = run(&m, "hour_profile", &rows);
        assert_eq!(hours(&out), vec![0; 24]);
        assert_eq!(int(&out, "active"), 0);
        assert_eq!(int(&out, "peak_hour"), -1);
    }
}

#[test]
fn hour_profile_places_times_before_1970_in_the_right_hour() {
    let m = module(&[]);
    // 1969-12-31 23:59:59.999 and 1969-12-31 00:00.
    let rows = [(-1, 0.0, 0.0, true), (-24 * HOUR, 0.0, 0.0, true)];
    let out = run(&m, "hour_profile", &rows);
    assert_eq!(int(&out, "h23"), 1);
    assert_eq!(int(&out, "h00"), 1);
}

#[test]
fn merged_panes_equal_one_accumulator_over_all_rows() {
    let m = module(&[("histogram_bin_width", "0.25")]);
    let rows = readings(2_000);
    let mut shuffled = rows.clone();
    shuffled.reverse();
    shuffled.rotate_left(777);
    // Uneven panes, one empty, over the rows in another order.
    let cuts = [0, 1, 450, 450, 1_333, 2_000];
    for function in BATCH_FUNCTIONS {
        let whole = m
            .aggregate_add(function, &adds(&[group(0, rows.len())]), batch(&rows))
            .expect("one pane");
        let panes = m
            .aggregate_add(
                function,
                &adds(
                    &cuts
                        .windows(2)
                        .map(|w| group(w[0], w[1] - w[0]))
                        .collect::<Vec<_>>(),
                ),
                batch(&shuffled),
            )
            .expect("panes");
        let two = m
            .aggregate_add(
                function,
                &adds(&[group(0, 1_000), group(1_000, 1_000)]),
                batch(&rows),
            )
            .expect("two panes");
        for (what, parts) in [("five panes", panes), ("two panes", two)] {
            let merged = m
                .aggregate_merge(function, std::slice::from_ref(&parts))
                .expect("merge");
            assert_eq!(merged, whole, "{function}: {what}, merged accumulator");
            let finished = m
                .aggregate_finish(function, &[parts, whole.clone()])
                .expect("finish");
            assert_eq!(finished[0], finished[1], "{function}: {what}, output");
        }
    }
}

#[test]
fn summaries_of_a_larger_set_match_a_direct_count() {
    let rows = readings(2_000);
    let m = module(&[]);
    let count = |f: &dyn Fn(&Row) -> bool| rows.iter().filter(|r| f(r)).count() as i64;

    let out = run(&m, "active_alarms", &rows);
    assert_eq!(int(&out, "active"), count(&|r| r.3));
    let out = run(&m, "threshold_breaches", &rows);
    assert_eq!(
        int(&out, "breaches"),
        count(&|r| r.2 < NO_THRESHOLD && r.1 > r.2)
    );
    assert!(int(&out, "breaches") > 0);
    let out = run(&m, "hour_profile", &rows);
    for h in 0..24 {
        let expected = count(&|r| r.3 && (r.0 - DAY0) / HOUR % 24 == h);
        assert_eq!(int(&out, &format!("h{h:02}")), expected, "hour {h}");
    }
    let out = run(&m, "histogram", &rows);
    let binned: i64 = out[3..]
        .iter()
        .map(|f| match f.value {
            Value::Int(i) => i,
            _ => 0,
        })
        .sum();
    assert_eq!(binned + int(&out, "overflow"), 2_000);
    assert_eq!(int(&out, "bin:-5"), count(&|r| r.1 < -4.0));
    let out = run(&m, "row_count", &rows);
    let first = rows.iter().map(|r| r.0).min().unwrap_or_default();
    let last = rows.iter().map(|r| r.0).max().unwrap_or_default();
    assert_eq!(
        (int(&out, "first_time"), int(&out, "last_time")),
        (first, last)
    );
    let rate = 2_000.0 * HOUR as f64 / (last - first) as f64;
    assert_eq!(float(&out, "rate_per_hour"), rate);
}

#[test]
fn embedded_stats_and_alerts_match_the_stream_module() {
    let p = [("trend_points", "4"), ("histogram_bin_width", "0.5")];
    let batch_module = module(&p);
    let stream_module =
        Module::<Bts>::init(params(&p), schema()).expect("bts-stream ignores the batch param");
    let rows = readings(300);

    let b = batch_module
        .aggregate_add(
            "stats",
            &adds(&[group(0, 150), group(150, 150)]),
            batch(&rows),
        )
        .expect("stats add");
    let s = stream_module
        .aggregate_add(
            "stats",
            &adds(&[group(0, 150), group(150, 150)]),
            batch(&rows),
        )
        .expect("stats add");
    assert_eq!(b, s, "same accumulators");
    let out = batch_module
        .aggregate_finish("stats", &[b])
        .expect("stats finish");
    assert_eq!(
        out,
        stream_module
            .aggregate_finish("stats", &[s])
            .expect("finish")
    );
    assert_eq!(int(&out[0], "counter"), 300);

    // Alerts need rows in event order, as the host gives them.
    let mut ordered = rows.clone();
    ordered.sort_by_key(|r| r.0);
    let b = batch_module
        .alert("alerts", vec![group(0, 300)], batch(&ordered))
        .expect("alerts");
    let s = stream_module
        .alert("alerts", vec![group(0, 300)], batch(&ordered))
        .expect("alerts");
    assert_eq!(b, s);
    assert!(b[0].alerts.iter().any(|a| a.kind == ALARM_RAISED));
}

#[test]
fn stream_params_are_checked_by_the_embedded_tenant() {
    let err = Module::<BtsBatch>::init(params(&[("trend_points", "2")]), schema())
        .expect_err("too few trend points");
    assert!(err.message.contains("trend_points"), "{err}");
}
