use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use proptest::prelude::*;

use super::bts::*;
use crate::parse::{OwnedValue, ParsedRow, RowParser};

fn manifest() -> crate::manifest::Manifest {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/bts-analytics/sluice.toml");
    crate::manifest::Manifest::from_path(&path).expect("the BTS example manifest loads")
}

fn generate(config: &BtsConfig) -> (Vec<u8>, GenSummary, Vec<GenLine>) {
    let mut out = Vec::new();
    let mut lines = Vec::new();
    let summary = write_bts_with(config, &mut out, &mut |l| lines.push(*l)).expect("generate");
    (out, summary, lines)
}

fn config(seed: u64, events: u64) -> BtsConfig {
    BtsConfig {
        seed,
        stations: 8,
        events,
        ..BtsConfig::default()
    }
}

fn parse_all(bytes: &[u8]) -> Vec<Result<ParsedRow, crate::parse::BadRow>> {
    let mut parser = RowParser::new(&manifest().input).expect("parser");
    parser.parse_message(bytes, "gen").collect()
}

fn float(v: &OwnedValue) -> f64 {
    match v {
        OwnedValue::Float(f) => *f,
        other => panic!("float expected, got {other:?}"),
    }
}

#[test]
fn the_same_seed_gives_identical_bytes_and_another_seed_differs() {
    let mut cfg = config(42, 5_000);
    cfg.out_of_order = 0.05;
    cfg.dirty = 0.02;
    cfg.ramp = 2;
    let (a, sa, _) = generate(&cfg);
    let (b, sb, _) = generate(&cfg);
    assert_eq!(a, b);
    assert_eq!(sa, sb);
    cfg.seed = 43;
    let (c, _, _) = generate(&cfg);
    assert_ne!(a, c);
}

#[test]
fn dirt_and_disorder_do_not_change_the_readings() {
    let clean_cfg = config(21, 10_000);
    let (clean, _, _) = generate(&clean_cfg);
    let mut messy_cfg = clean_cfg.clone();
    messy_cfg.dirty = 0.05;
    messy_cfg.out_of_order = 0.2;
    let (messy, summary, lines) = generate(&messy_cfg);
    let clean_lines: BTreeSet<&[u8]> = clean.split(|&b| b == b'\n').collect();
    let mut good = 0;
    for (text, line) in messy.split(|&b| b == b'\n').zip(&lines) {
        if line.dirty.is_none() {
            assert!(
                clean_lines.contains(text),
                "{}",
                String::from_utf8_lossy(text)
            );
            good += 1;
        }
    }
    assert_eq!(good, summary.good);
}

#[test]
fn every_generated_row_parses_with_the_example_manifest() {
    let mut cfg = config(1, 20_000);
    cfg.out_of_order = 0.02;
    cfg.ramp = 3;
    let (bytes, summary, _) = generate(&cfg);
    let rows = parse_all(&bytes);
    assert_eq!(rows.len() as u64, cfg.events);
    assert_eq!(summary.lines, cfg.events);
    assert_eq!(summary.bytes, bytes.len() as u64);
    let mut keys = BTreeSet::new();
    for row in rows {
        let row = row.unwrap_or_else(|b| panic!("generated row does not parse: {b}: {}", b.raw));
        assert_eq!(row.values[7], OwnedValue::Absent, "storedtime is empty");
        assert!(row.time >= cfg.start_ms && row.time >= summary.first_time_ms);
        keys.insert(row.key);
    }
    assert_eq!(keys.len() as u64, summary.keys, "every key reports");
}

#[test]
fn the_output_is_exactly_the_bts_csv_format() {
    let mut cfg = config(3, 50);
    cfg.header = true;
    let (bytes, summary, lines) = generate(&cfg);
    let text = String::from_utf8(bytes).expect("utf-8");
    let mut it = text.lines();
    assert_eq!(it.next(), Some(HEADER));
    assert_eq!(
        lines.first().map(|l| l.line),
        Some(2),
        "the header is line 1"
    );
    let first = it.next().expect("a row");
    let fields: Vec<&str> = first.split(',').collect();
    assert_eq!(fields.len(), 8, "{first}");
    assert!(fields[0].len() == 10 && fields[0].bytes().all(|b| b.is_ascii_digit()));
    assert!(
        fields[3].ends_with(" UTC") && fields[3].len() == 23,
        "{first}"
    );
    assert!(
        fields[3].starts_with("2017-02-18 18:2"),
        "starts near --start: {first}"
    );
    assert!(fields[6] == "true" || fields[6] == "false");
    assert_eq!(fields[7], "");
    assert!(text.ends_with(",\n"));
    assert_eq!(text.lines().count() as u64, summary.lines + 1);

    // With `header = true` the file reader skips it.
    let mut spec = manifest().input;
    spec.header = true;
    let mut parser = RowParser::new(&spec).expect("parser");
    let rows: Vec<_> = parser
        .read_file(text.as_bytes(), "f")
        .map(|r| r.expect("io"))
        .collect();
    assert_eq!(rows.len() as u64, summary.lines);
    assert!(rows.iter().all(Result::is_ok));
}

#[test]
fn dirty_lines_are_the_requested_fraction_each_a_bad_row_of_every_kind() {
    let mut cfg = config(5, 30_000);
    cfg.dirty = 0.013;
    cfg.out_of_order = 0.01;
    let (bytes, summary, lines) = generate(&cfg);
    let expected = (cfg.events as f64 * cfg.dirty).round() as u64;
    assert_eq!(summary.dirty, expected);
    assert_eq!(summary.good + summary.dirty, cfg.events);
    let rows = parse_all(&bytes);
    assert_eq!(rows.len(), lines.len());
    let mut bad_by_kind: BTreeMap<DirtyKind, u64> = BTreeMap::new();
    for (row, line) in rows.iter().zip(&lines) {
        match (row, line.dirty) {
            (Ok(_), None) => {}
            (Err(bad), Some(kind)) => {
                assert_eq!(bad.position.line, line.line);
                *bad_by_kind.entry(kind).or_default() += 1;
            }
            (Ok(r), Some(kind)) => panic!("line {} is {kind:?} but parsed: {r:?}", line.line),
            (Err(bad), None) => panic!("good line {} is bad: {bad}", line.line),
        }
    }
    assert_eq!(bad_by_kind, summary.dirty_by_kind);
    for kind in DirtyKind::ALL {
        assert!(
            bad_by_kind.get(&kind).copied().unwrap_or(0) > 0,
            "{kind:?} never generated"
        );
    }
    // Spread over the file, not bunched at one end.
    let first_half = lines[..lines.len() / 2]
        .iter()
        .filter(|l| l.dirty.is_some())
        .count() as f64;
    assert!(
        (first_half / expected as f64 - 0.5).abs() < 0.1,
        "{first_half} of {expected}"
    );
}

#[test]
fn dirty_rows_keep_their_key_when_the_key_fields_are_intact() {
    let mut cfg = config(9, 5_000);
    cfg.dirty = 0.1;
    let (bytes, _, lines) = generate(&cfg);
    for (row, line) in parse_all(&bytes).iter().zip(&lines) {
        if let (Err(bad), Some(kind)) = (row, line.dirty) {
            let keyed = match kind {
                DirtyKind::BadFloat
                | DirtyKind::NotANumber
                | DirtyKind::Infinite
                | DirtyKind::BadBool
                | DirtyKind::BadTime => true,
                // Cut after 1–5 fields: the key survives with 3 or more.
                DirtyKind::MissingFields => bad.raw.split(',').count() >= 3,
                DirtyKind::AllEmpty | DirtyKind::EmptyLine | DirtyKind::EmptyKey => false,
            };
            assert_eq!(bad.key.is_some(), keyed, "{kind:?}: {}", bad.raw);
            let timed = keyed && kind != DirtyKind::BadTime && bad.raw.split(',').count() >= 4;
            if timed {
                assert_eq!(bad.time, Some(line.time), "{kind:?}");
            }
        }
    }
}

#[test]
fn out_of_order_rows_stay_within_the_documented_bound() {
    let mut cfg = config(11, 40_000);
    cfg.out_of_order = 0.1;
    let (bytes, summary, _) = generate(&cfg);
    let bound = OUT_OF_ORDER_BOUND.as_millis() as i64;
    let mut max_seen = i64::MIN;
    let (mut late, mut worst) = (0u64, 0i64);
    for row in parse_all(&bytes) {
        let t = row.expect("no dirty rows").time;
        if t < max_seen {
            late += 1;
            worst = worst.max(max_seen - t);
        }
        max_seen = max_seen.max(t);
    }
    assert!(worst <= bound, "a row is {worst} ms behind, bound {bound}");
    assert!(worst > 0, "some rows are out of order");
    assert_eq!(
        (late, worst),
        (summary.out_of_order, summary.max_lateness_ms)
    );
    let fraction = late as f64 / cfg.events as f64;
    assert!(
        (fraction - cfg.out_of_order).abs() < 0.02,
        "out of order: {fraction}"
    );

    // Without the option, event time never goes backwards.
    let (in_order, s, _) = generate(&config(11, 5_000));
    assert_eq!(s.out_of_order, 0);
    let times: Vec<i64> = parse_all(&in_order)
        .into_iter()
        .map(|r| r.expect("good").time)
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]));
}

#[test]
fn readings_are_realistic_per_data_point() {
    let (bytes, summary, _) = generate(&config(2, 40_000));
    let mut per_dp: HashMap<String, Vec<f64>> = HashMap::new();
    let mut thresholds = (0u64, 0u64);
    let mut dps_per_station: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut alarms_per_dp: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    let mut seen_keys = BTreeSet::new();
    let mut active = 0u64;
    let rows = parse_all(&bytes);
    for row in &rows {
        let row = row.as_ref().expect("good");
        let parts = row.key.to_vec();
        per_dp
            .entry(parts[1].clone())
            .or_default()
            .push(float(&row.values[4]));
        if seen_keys.insert(row.key.clone()) {
            if float(&row.values[5]) == NO_THRESHOLD {
                thresholds.0 += 1;
            } else {
                thresholds.1 += 1;
            }
        }
        dps_per_station
            .entry(parts[0].clone())
            .or_default()
            .insert(parts[1].clone());
        alarms_per_dp
            .entry((parts[0].clone(), parts[1].clone()))
            .or_default()
            .insert(parts[2].clone());
        active += u64::from(row.values[6] == OwnedValue::Bool(true));
    }
    let median = |dp: &str| {
        let mut v = per_dp.get(dp).cloned().unwrap_or_default();
        assert!(!v.is_empty(), "data point {dp} never generated");
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let grid = median("121");
    assert!((220.0..=240.0).contains(&grid), "grid voltage {grid}");
    let battery = median("141");
    assert!((48.0..=54.0).contains(&battery), "battery {battery}");
    let temp = median("143");
    assert!((18.0..=35.0).contains(&temp), "room temperature {temp}");
    let humidity = median("145");
    assert!((30.0..=95.0).contains(&humidity), "humidity {humidity}");
    let no_threshold = thresholds.0 as f64 / (thresholds.0 + thresholds.1) as f64;
    assert!(
        (0.2..0.6).contains(&no_threshold),
        "999999 share {no_threshold}"
    );
    assert_eq!(dps_per_station.len(), 8);
    for dps in dps_per_station.values() {
        assert!((4..=6).contains(&dps.len()), "{dps:?}");
    }
    for alarms in alarms_per_dp.values() {
        assert!((1..=3).contains(&alarms.len()), "{alarms:?}");
    }
    let share = active as f64 / rows.len() as f64;
    assert!((0.01..0.3).contains(&share), "active share {share}");
    assert_eq!(summary.keys, seen_keys.len() as u64);
}

#[test]
fn alarms_stay_active_for_runs_of_rows() {
    let (bytes, _, _) = generate(&config(4, 30_000));
    let mut last: HashMap<String, bool> = HashMap::new();
    let (mut active_rows, mut runs) = (0u64, 0u64);
    for row in parse_all(&bytes) {
        let row = row.expect("good");
        let active = row.values[6] == OwnedValue::Bool(true);
        let was = last
            .insert(row.key.as_joined().to_owned(), active)
            .unwrap_or(false);
        active_rows += u64::from(active);
        runs += u64::from(active && !was);
    }
    assert!(runs > 10, "{runs} runs");
    let mean_run = active_rows as f64 / runs as f64;
    assert!(mean_run > 3.0, "mean run length {mean_run}");
}

/// The BTS module's predicted-breach rule (bts-analytics `alerts` with its
/// default params: 10 points, 10 minute horizon): a least-squares line
/// through the last 10 points reaches the threshold, upward, within 10
/// minutes of now.
fn breach_predicted(history: &VecDeque<(i64, f64)>, now: i64, value: f64, threshold: f64) -> bool {
    if history.len() < 10 || threshold >= NO_THRESHOLD || value >= threshold {
        return false;
    }
    let minutes = |t: i64| (t - now) as f64 / 60_000.0;
    let n = history.len() as f64;
    let mean_x = history.iter().map(|&(t, _)| minutes(t)).sum::<f64>() / n;
    let mean_y = history.iter().map(|&(_, v)| v).sum::<f64>() / n;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for &(t, v) in history {
        let dx = minutes(t) - mean_x;
        sxy += dx * (v - mean_y);
        sxx += dx * dx;
    }
    let slope = sxy / sxx;
    if slope.is_nan() || slope <= 0.0 {
        return false;
    }
    let fitted_now = mean_y - slope * mean_x;
    ((threshold - fitted_now) / slope).max(0.0) <= 10.0
}

#[test]
fn ramp_keys_climb_to_their_threshold_and_the_bts_breach_prediction_fires() {
    let mut cfg = config(8, 60_000);
    cfg.ramp = 3;
    let (bytes, summary, _) = generate(&cfg);
    assert_eq!(summary.ramp_keys.len(), 3);
    let mut series: HashMap<Vec<String>, Vec<(i64, f64, f64)>> = HashMap::new();
    for row in parse_all(&bytes) {
        let row = row.expect("good");
        let parts = row.key.to_vec();
        if summary.ramp_keys.contains(&parts) {
            series.entry(parts).or_default().push((
                row.time,
                float(&row.values[4]),
                float(&row.values[5]),
            ));
        }
    }
    for key in &summary.ramp_keys {
        let points = series
            .get(key)
            .unwrap_or_else(|| panic!("ramp key {key:?} has no rows"));
        let threshold = points[0].2;
        assert!(threshold < NO_THRESHOLD, "{key:?} has a real threshold");
        assert!(
            points[0].1 < threshold,
            "{key:?} starts below its threshold"
        );
        assert!(
            points.last().expect("rows").1 >= threshold,
            "{key:?} reaches its threshold"
        );
        let mut history = VecDeque::new();
        let mut predicted = None;
        for &(time, value, threshold) in points {
            if history.len() == 10 {
                history.pop_front();
            }
            history.push_back((time, value));
            if predicted.is_none() && breach_predicted(&history, time, value, threshold) {
                predicted = Some(time);
            }
        }
        let crossing = points
            .iter()
            .find(|p| p.1 >= p.2)
            .map(|p| p.0)
            .expect("crosses");
        let at = predicted.unwrap_or_else(|| panic!("no breach predicted for {key:?}"));
        assert!(
            at < crossing,
            "{key:?}: predicted at {at}, after crossing at {crossing}"
        );
    }
}

#[test]
fn invalid_configs_are_refused() {
    let mut cfg = config(1, 10);
    cfg.dirty = 1.5;
    let err = write_bts(&cfg, Vec::new()).expect_err("fraction");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert!(
        err.to_string().contains("dirty must be a fraction"),
        "{err}"
    );
    cfg.dirty = 0.0;
    cfg.stations = 0;
    assert!(write_bts(&cfg, Vec::new()).is_err());
}

#[test]
fn start_times_parse_with_or_without_utc() {
    assert_eq!(parse_start("2017-02-18 18:28:05"), Ok(DEFAULT_START_MS));
    assert_eq!(parse_start("2017-02-18 18:28:05 UTC"), Ok(DEFAULT_START_MS));
    assert!(parse_start("18/02/2017").is_err());
}

proptest! {
    #[test]
    fn formatted_times_equal_chronos_and_parse_back(secs in -62_135_596_800i64..253_402_300_799) {
        let ms = secs * 1000;
        let ours = format_time(ms);
        let chrono = chrono::DateTime::from_timestamp(secs, 0)
            .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
            .unwrap_or_default();
        prop_assert_eq!(std::str::from_utf8(&ours).unwrap_or_default(), chrono.as_str());
        let format = crate::parse::TimestampFormat::new(crate::parse::BTS_TIME_FORMAT)
            .map_err(TestCaseError::fail)?;
        prop_assert_eq!(format.parse(&ours), Some(ms));
    }
}
