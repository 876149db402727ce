//! The window engine with the real BTS component (`stats`) in the sandbox, for
//! the customer's sliding minute (60 s, every 5 s): every window's output
//! equals min/max/mean/counter/alarms computed by brute force.

use std::collections::BTreeMap;
use std::time::Duration;

use sluice_core::data::{Limits, Value};
use sluice_core::manifest::{WindowFunction, WindowKind, WindowSpec};
use sluice_core::parse::{Key, OwnedValue, ParsedRow};
use sluice_sandbox::TenantInstance;

use crate::common::{self, bts_schema, close};
use sluice_core::window::{Emitted, OutputType, ShardWindows, WindowOutput};

fn instance() -> TenantInstance {
    common::instance(
        &common::load("bts", "bts_analytics"),
        &[],
        Limits::default(),
    )
}

struct Reading {
    station: String,
    time: i64,
    value: f64,
    active: bool,
}

fn parsed(r: &Reading) -> ParsedRow {
    ParsedRow {
        key: Key::from_parts([r.station.as_str(), "121", "308"]).expect("no separator"),
        time: r.time,
        values: vec![
            OwnedValue::Text(r.station.as_str().into()),
            OwnedValue::Text("121".into()),
            OwnedValue::Text("308".into()),
            OwnedValue::Timestamp(r.time),
            OwnedValue::Float(r.value),
            OwnedValue::Float(999_999.0),
            OwnedValue::Bool(r.active),
            OwnedValue::Absent,
        ],
    }
}

/// Readings of 5 stations, one every 700 ms on average, each up to 3 s
/// late (within the 5 s out-of-orderness of the customer's manifest).
fn readings() -> Vec<Reading> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let start = 1_487_442_480_000; // 2017-02-18 18:28:00 UTC
    (0..1_500)
        .map(|i| {
            let delay = (next() % 3_000) as i64;
            Reading {
                station: format!("11611150{:02}", next() % 5),
                time: start + i * 700 - delay,
                value: 220.0 + (next() % 2_000) as f64 / 100.0,
                active: next() % 10 < 3,
            }
        })
        .collect()
}

fn float(o: &WindowOutput, name: &str) -> f64 {
    match o.data.iter().find(|f| f.name == name).map(|f| &f.value) {
        Some(Value::Float(v)) => *v,
        other => panic!("`{name}` should be a float, got {other:?}"),
    }
}

fn int(o: &WindowOutput, name: &str) -> i64 {
    match o.data.iter().find(|f| f.name == name).map(|f| &f.value) {
        Some(Value::Int(v)) => *v,
        other => panic!("`{name}` should be an int, got {other:?}"),
    }
}

#[test]
fn bts_sliding_minute_windows_equal_brute_force_stats() {
    let spec = WindowSpec {
        name: "minute".into(),
        kind: WindowKind::Sliding {
            size: Duration::from_secs(60),
            slide: Duration::from_secs(5),
        },
        function: WindowFunction::Aggregate("stats".into()),
    };
    let mut shard = ShardWindows::new(&[spec], Duration::ZERO, bts_schema()).expect("spec");
    let mut guest = instance();
    let readings = readings();
    let ooo = 5_000;
    let mut max = i64::MIN;
    let mut out = Emitted::default();
    for chunk in readings.chunks(97) {
        let mut rows = Vec::with_capacity(chunk.len());
        for r in chunk {
            rows.push((parsed(r), max.saturating_sub(ooo)));
            max = max.max(r.time);
        }
        let after = max - ooo;
        shard
            .push(&rows, &[], after, &mut guest, &mut out)
            .expect("push");
    }
    shard.flush(&mut guest, &mut out).expect("flush");
    assert!(out.late.is_empty() && out.poisoned.is_empty());

    // Brute force: every (station, aligned start) window holding a reading.
    let mut want: BTreeMap<(String, i64), Vec<&Reading>> = BTreeMap::new();
    for r in &readings {
        let mut s = r.time - r.time.rem_euclid(5_000);
        while s + 60_000 > r.time {
            want.entry((r.station.clone(), s)).or_default().push(r);
            s -= 5_000;
        }
    }
    assert_eq!(out.outputs.len(), want.len());
    for o in &out.outputs {
        assert_eq!(
            (o.kind, o.update, o.end - o.start),
            (OutputType::WindowedAnalytic, 0, 60_000)
        );
        let station = o.key.parts().next().expect("key part").to_owned();
        let rows = &want[&(station, o.start)];
        let values: Vec<f64> = rows.iter().map(|r| r.value).collect();
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        assert_eq!(int(o, "counter"), rows.len() as i64);
        assert_eq!(
            int(o, "alarms"),
            rows.iter().filter(|r| r.active).count() as i64
        );
        assert_eq!(
            float(o, "min"),
            values.iter().copied().fold(f64::INFINITY, f64::min)
        );
        assert_eq!(
            float(o, "max"),
            values.iter().copied().fold(f64::NEG_INFINITY, f64::max)
        );
        assert!(
            close(float(o, "mean"), mean),
            "mean {} vs {mean}",
            float(o, "mean")
        );
    }
}
