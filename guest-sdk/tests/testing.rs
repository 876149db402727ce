//! `sluice_guest::testing` against the BTS tenant's `stats` and `alerts`
//! (examples/bts-stream), each result checked against a value computed
//! here, independently of the tenant.

use bts_stream::{Bts, KeyState, Stats, ALARM_RAISED, PREDICTED_BREACH};
use sluice_guest::testing::{schema, Harness, Rows};
use sluice_guest::{
    Aggregate, Events, FieldDef, Function, GuestError, Key, Output, Params, Schema, Tenant,
    TextField, WindowInfo,
};

const BTS: &str = "station_id: text, datapoint_id: text, alarm_id: text, event_time: timestamp, \
                   value: float, valueThreshold: float, isActive: bool, storedtime: text?";

/// Six rows of one key over two minutes; values and flags chosen so that
/// min, max and the alarm count are easy to state.
const SIX: &str = "
    1161115009,121,308,2017-02-18 18:28:05 UTC,240.5,250,true,
    1161115009,121,308,2017-02-18 18:28:35 UTC,238.0,250,FALSE,
    1161115009,121,308,2017-02-18 18:28:59 UTC,241.0,250,true,x
    1161115009,121,308,2017-02-18 18:29:00 UTC,239.5,250,false,
    1161115009,121,308,2017-02-18 18:29:30 UTC,242.0,250,True,
    1161115009,121,308,2017-02-18 18:29:59 UTC,237.5,250,false,
";
const VALUES: [f64; 6] = [240.5, 238.0, 241.0, 239.5, 242.0, 237.5];
const ACTIVE: [bool; 6] = [true, false, true, false, true, false];
const KEY: [&str; 3] = ["1161115009", "121", "308"];

fn bts(params: &[(&str, &str)]) -> Harness<Bts> {
    Harness::new(params, schema(BTS).expect("BTS schema")).expect("init")
}

fn float(out: &Output, name: &str) -> f64 {
    out.get(name)
        .and_then(|v| v.as_float())
        .unwrap_or_else(|| panic!("no float `{name}` in {out:?}"))
}

fn int(out: &Output, name: &str) -> i64 {
    out.get(name)
        .and_then(|v| v.as_int())
        .unwrap_or_else(|| panic!("no int `{name}` in {out:?}"))
}

/// The figure the kit promises: one aggregate tested natively in ten lines.
#[test]
fn one_aggregate_in_ten_lines() -> Result<(), GuestError> {
    let h = Harness::<Bts>::new(&[], schema(BTS)?)?;
    let rows = h.csv(
        "s1,1,2,2017-02-18 18:28:05 UTC,1.5,9,true,\ns1,1,2,2017-02-18 18:28:06 UTC,2.5,9,false,",
    )?;
    let out = h.aggregate("stats", &rows)?;
    assert_eq!(out.get("mean").and_then(|v| v.as_float()), Some(2.0));
    assert_eq!(out.get("alarms").and_then(|v| v.as_int()), Some(1));
    Ok(())
}

#[test]
fn stats_over_all_rows_match_an_independent_computation() {
    let h = bts(&[]);
    let rows = h.csv(SIX).expect("rows");
    assert_eq!(rows.len(), 6);
    let out = h.aggregate("stats", &rows).expect("stats");
    let mean = VALUES.iter().sum::<f64>() / 6.0;
    assert!((float(&out, "mean") - mean).abs() < 1e-12, "{out:?}");
    assert_eq!(float(&out, "max"), 242.0);
    assert_eq!(float(&out, "min"), 237.5);
    assert_eq!(int(&out, "counter"), 6);
    assert_eq!(
        int(&out, "alarms"),
        ACTIVE.iter().filter(|a| **a).count() as i64
    );
}

#[test]
fn panes_merged_equal_one_pane() {
    let h = bts(&[]);
    let rows = h.csv(SIX).expect("rows");
    let (a, b) = (rows.select(&[0, 1]), rows.select(&[2, 3, 4, 5]));
    let merged = h.aggregate_panes("stats", &[&a, &b]).expect("panes");
    assert_eq!(merged, h.aggregate("stats", &rows).expect("whole"));
    // No panes: `finish` of a fresh accumulator (no rows: NaN, count 0).
    let empty = h.aggregate_panes("stats", &[]).expect("empty");
    assert!(float(&empty, "mean").is_nan());
    assert_eq!(int(&empty, "counter"), 0);
}

#[test]
fn tumbling_minutes_split_rows_by_event_time() {
    let h = bts(&[]);
    let rows = h.csv(SIX).expect("rows");
    let windows = h
        .aggregate_tumbling("stats", &rows, 60_000)
        .expect("windows");
    // 18:28:05, :35, :59 fall in [18:28, 18:29); 18:29:00, :30, :59 in the next.
    let minute = 1_487_442_480_000;
    assert_eq!(windows.len(), 2);
    for (n, (info, out)) in windows.iter().enumerate() {
        let start = minute + 60_000 * n as i64;
        assert_eq!(
            *info,
            WindowInfo {
                start,
                end: start + 60_000
            }
        );
        let values = &VALUES[3 * n..3 * n + 3];
        assert_eq!(int(out, "counter"), 3);
        assert!((float(out, "mean") - values.iter().sum::<f64>() / 3.0).abs() < 1e-12);
    }
}

#[test]
fn sessions_split_rows_at_quiet_periods_and_at_max_duration() {
    let h = bts(&[]);
    let rows = h.csv(SIX).expect("rows");
    let at = |hms: &str| {
        let (m, s) = hms.split_once(':').expect("m:s");
        1_487_442_480_000 - 60_000 * 28
            + 60_000 * m.parse::<i64>().unwrap_or(0)
            + 1_000 * s.parse::<i64>().unwrap_or(0)
    };
    // 18:28:05, :35, :59, 18:29:00, :30, :59 with a 29 s gap: the 30 s
    // pauses after :05 and after 18:29:00 end sessions (29 s does not).
    let quiet = h
        .aggregate_sessions("stats", &rows, 29_000, None)
        .expect("sessions");
    let got: Vec<(WindowInfo, i64)> = quiet.iter().map(|(w, o)| (*w, int(o, "counter"))).collect();
    let window = |start: &str, end: i64| WindowInfo {
        start: at(start),
        end,
    };
    assert_eq!(
        got,
        vec![
            (window("28:05", at("28:34")), 1),
            (window("28:35", at("29:29")), 3),
            (window("29:30", at("30:28")), 2),
        ]
    );
    let values = &VALUES[1..4];
    let mean = values.iter().sum::<f64>() / 3.0;
    assert!((float(&quiet[1].1, "mean") - mean).abs() < 1e-12);
    // A 30 s gap joins every row; max_duration 60 s cuts at 18:29:05.
    let capped = h
        .aggregate_sessions("stats", &rows, 30_000, Some(60_000))
        .expect("sessions");
    let got: Vec<(WindowInfo, i64)> = capped
        .iter()
        .map(|(w, o)| (*w, int(o, "counter")))
        .collect();
    assert_eq!(
        got,
        vec![
            (window("28:05", at("29:05")), 4),
            (window("29:30", at("30:29")), 2),
        ]
    );
    assert!(h.aggregate_sessions("stats", &rows, 0, None).is_err());
}

#[test]
fn an_accumulator_can_be_fed_events_directly() {
    let h = bts(&[]);
    let rows = h.csv(SIX).expect("rows");
    let mut acc = Stats::default();
    for i in 0..rows.len() {
        acc.add(h.tenant(), rows.event(i).expect("row"));
    }
    assert_eq!(acc.count, 6);
    assert_eq!(acc.alarms, 3);
    assert_eq!(acc.max, 242.0);
    assert_eq!(rows.event(6).map(|e| e.time()), None);
}

#[test]
fn alarm_state_is_carried_between_calls() {
    let h = bts(&[]);
    let rows = h.csv(SIX).expect("rows");
    let mut run = h.alerts("alerts", &KEY);
    // Row 0 is active on a new key: raised. Row 1 is not; row 2 raises again.
    let first = run.feed(&rows.select(&[0, 1, 2])).expect("first call");
    let kinds: Vec<_> = first
        .iter()
        .map(|a| (a.kind.as_str(), a.event_time))
        .collect();
    let t = rows.times();
    assert_eq!(kinds, [(ALARM_RAISED, t[0]), (ALARM_RAISED, t[2])]);
    // The state says "active" now, so another active row raises nothing…
    let again = run.feed(&rows.select(&[4])).expect("second call");
    assert!(again.is_empty(), "{again:?}");
    // …and a fresh key (no state) would have raised.
    let fresh = h
        .alerts("alerts", &KEY)
        .feed(&rows.select(&[4]))
        .expect("fresh");
    assert_eq!(fresh.len(), 1);
    let _: KeyState = run.state().expect("state decodes");
    assert!(run.state_bytes().is_some());
}

#[test]
fn a_rising_trend_predicts_the_breach_the_least_squares_line_gives() {
    let h = bts(&[("trend_points", "3"), ("horizon", "10m")]);
    // 1 per minute towards a threshold of 105: from 100 at minute 2, the
    // line reaches it 5 minutes later. Not active: no alarm alerts.
    let rows = h
        .csv(
            "s,1,2,2017-02-18 18:00:00 UTC,98,105,false,
             s,1,2,2017-02-18 18:01:00 UTC,99,105,false,
             s,1,2,2017-02-18 18:02:00 UTC,100,105,false,
             s,1,2,2017-02-18 18:03:00 UTC,101,105,false,",
        )
        .expect("rows");
    let mut run = h.alerts("alerts", &["s", "1", "2"]);
    let alerts = run.feed(&rows.select(&[0, 1])).expect("too few points");
    assert!(alerts.is_empty());
    let alerts = run.feed(&rows.select(&[2, 3])).expect("trend");
    // Raised once per approach: at minute 2, not again at minute 3.
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let alert = &alerts[0];
    assert_eq!(alert.kind, PREDICTED_BREACH);
    assert_eq!(alert.event_time, rows.times()[2]);
    let data: Output = alert.data.iter().fold(Output::new(), |o, f| {
        o.value(f.name.clone(), f.value.clone())
    });
    assert!((float(&data, "slope") - 1.0).abs() < 1e-9, "{data:?}");
    assert_eq!(int(&data, "predicted_at"), rows.times()[2] + 5 * 60_000);
}

/// A tenant with a process-window function, to test that helper: the
/// median of the window's values and its first station.
struct Median {
    value: sluice_guest::FloatField,
    station: TextField,
}

impl Tenant for Median {
    const NAME: &'static str = "median";
    const VERSION: &'static str = "0.0.0";

    fn init(_: &Params, schema: &Schema) -> Result<Self, GuestError> {
        Ok(Median {
            value: schema.float("value")?,
            station: schema.text("station")?,
        })
    }

    fn functions() -> Vec<Function<Self>> {
        vec![Function::process_window(
            "median",
            &["median", "first", "span"],
            median,
        )]
    }
}

fn median(t: &Median, key: &Key<'_>, w: WindowInfo, events: Events<'_>) -> Output {
    let mut values: Vec<f64> = events.iter().map(|e| e.get(t.value)).collect();
    values.sort_by(f64::total_cmp);
    let first = events.first().map(|e| e.get(t.station)).unwrap_or_default();
    Output::new()
        .float(
            "median",
            values.get(values.len() / 2).copied().unwrap_or(f64::NAN),
        )
        .text("first", format!("{key}:{first}"))
        .int("span", w.end - w.start)
}

#[test]
fn a_process_window_function_sees_its_window_in_time_order() {
    let fields = vec![
        FieldDef::new("station", sluice_guest::FieldType::Text),
        FieldDef::new("at", sluice_guest::FieldType::Timestamp),
        FieldDef::new("value", sluice_guest::FieldType::Float),
    ];
    let h = Harness::<Median>::new(&[], fields).expect("init");
    let rows = h
        .csv("late,3000,9\nearly,1000,1\nmid,2000,5")
        .expect("rows");
    let window = WindowInfo {
        start: 0,
        end: 10_000,
    };
    let out = h
        .process_window("median", &["k"], window, &rows)
        .expect("call");
    assert_eq!(float(&out, "median"), 5.0);
    assert_eq!(out.get("first").and_then(|v| v.as_text()), Some("k:early"));
    assert_eq!(int(&out, "span"), 10_000);
}

#[test]
fn errors_name_the_function_and_the_csv_line() {
    let h = bts(&[]);
    let err = h
        .aggregate("nope", &Rows::from_csv(&[], "").expect("empty"))
        .expect_err("unknown function");
    assert!(err.message.contains("has no function `nope`"), "{err}");
    let err = h.csv("a,b,c,yesterday,1,2,true,").expect_err("bad time");
    assert!(
        err.message.starts_with("CSV line 1: field `event_time`"),
        "{err}"
    );
    let err = Harness::<Bts>::new(&[("trend_points", "2")], schema(BTS).expect("schema"))
        .expect_err("init refuses");
    assert!(err.message.contains("trend_points"), "{err}");
}
