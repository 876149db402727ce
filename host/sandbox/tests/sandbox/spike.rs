//! The spike-filter tenant against a native reference computed here.

use sluice_core::data::{Limits, Value, WindowGroup};

use crate::bts::fields;
use crate::common::{batch, close, instance, load, Reading, Rng};

const THRESHOLD: f64 = 10.0;
const TOLERANCE: f64 = 1.0;
const GAP_MS: i64 = 60_000;

/// (spikes, kept values) by the rule in the tenant's docs: a value far from
/// the mean of both neighbours while they agree and are close in time.
fn reference(rows: &[Reading]) -> (i64, Vec<f64>) {
    let mut spikes = 0;
    let mut kept = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        let spike = i > 0 && i + 1 < rows.len() && {
            let (prev, next) = (&rows[i - 1], &rows[i + 1]);
            (prev.value - next.value).abs() <= TOLERANCE
                && (r.value - (prev.value + next.value) / 2.0).abs() > THRESHOLD
                && next.time - prev.time <= GAP_MS
        };
        if spike {
            spikes += 1;
        } else {
            kept.push(r.value);
        }
    }
    (spikes, kept)
}

/// Stable readings with isolated spikes, and one pair of adjacent spikes
/// (neither is isolated, so neither is removed).
fn window(rng: &mut Rng, station: &str, start: i64) -> Vec<Reading> {
    let mut rows: Vec<Reading> = (0..120)
        .map(|i| {
            Reading::new(
                station,
                start + i * 5_000,
                230.0 + rng.unit() * 0.4,
                999_999.0,
                false,
            )
        })
        .collect();
    for i in [10usize, 40, 77, 118] {
        rows[i].value += 50.0 + rng.unit() * 10.0;
    }
    rows[90].value -= 40.0;
    rows[91].value -= 40.0;
    // A gap: neighbours of row 60 are too far apart in time.
    for r in rows.iter_mut().skip(61) {
        r.time += 120_000;
    }
    rows[60].value += 80.0;
    rows
}

#[test]
fn spikes_and_cleaned_stats_equal_the_native_reference() {
    let module = load("spikes", "spike_filter");
    let mut inst = instance(&module, &[], Limits::default());
    let mut rng = Rng::new(99);
    let windows: Vec<Vec<Reading>> = (0..20)
        .map(|k| window(&mut rng, &format!("{}", 1_000 + k), 1_487_442_480_000))
        .collect();
    let all: Vec<Reading> = windows.iter().flatten().cloned().collect();
    let (groups, events) = batch(&all, |_| None);
    let groups: Vec<WindowGroup> = groups
        .into_iter()
        .map(|g| WindowGroup {
            key: g.key,
            start: 1_487_442_480_000,
            end: 1_487_442_480_000 + 900_000,
            first: g.start,
            len: g.len,
        })
        .collect();
    let outs = inst
        .process_window("spikes", &groups, &events)
        .expect("process-window");
    assert_eq!(outs.len(), windows.len());
    // `batch` orders keys as strings; so does this.
    let mut sorted = windows.clone();
    sorted.sort_by(|a, b| a[0].key.cmp(&b[0].key));
    for (rows, out) in sorted.iter().zip(&outs) {
        let (spikes, kept) = reference(rows);
        assert_eq!(spikes, 4, "the isolated spikes of the fixture");
        let got = fields(out);
        assert_eq!(got.get("spikes"), Some(&&Value::Int(spikes)));
        assert_eq!(got.get("counter"), Some(&&Value::Int(kept.len() as i64)));
        let mean = kept.iter().sum::<f64>() / kept.len() as f64;
        let min = kept.iter().copied().fold(f64::INFINITY, f64::min);
        let max = kept.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        for (name, want) in [("mean", mean), ("min", min), ("max", max)] {
            match got.get(name) {
                Some(Value::Float(x)) => assert!(close(*x, want), "{name}: {x} vs {want}"),
                other => panic!("`{name}` should be a float, got {other:?}"),
            }
        }
    }
}
