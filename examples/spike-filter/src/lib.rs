//! Process-window function `spikes`: the origin notes' "anomaly detection
//! diagnosis" — drop isolated spikes, then summarise what is left.
//!
//! Within a window (events in event-time order), a value is an isolated
//! spike when its two neighbours agree with each other
//! (`|prev - next| ≤ neighbour_tolerance`, default 1.0), are close in time
//! (`next.time - prev.time ≤ max_gap`, default `60s`), and the value is far
//! from both (`|v - mean(prev, next)| > spike_threshold`, default 10.0).
//! The first and last events of a window have one neighbour and are never
//! flagged. Outputs: `spikes` (int), and over the kept rows `mean`, `min`,
//! `max` (NaN when nothing is kept) and `counter` (int).

use sluice_guest::{
    Events, FloatField, Function, GuestError, Key, Output, Params, Schema, Tenant, WindowInfo,
};

/// Params and the `value` handle, resolved once by `init`.
pub struct SpikeFilter {
    value: FloatField,
    spike_threshold: f64,
    neighbour_tolerance: f64,
    max_gap_ms: i64,
}

impl Tenant for SpikeFilter {
    const NAME: &'static str = "spike-filter";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    fn init(params: &Params, schema: &Schema) -> Result<Self, GuestError> {
        let spike_threshold: f64 = params.get_or("spike_threshold", 10.0)?;
        let neighbour_tolerance: f64 = params.get_or("neighbour_tolerance", 1.0)?;
        for (name, v) in [
            ("spike_threshold", spike_threshold),
            ("neighbour_tolerance", neighbour_tolerance),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(GuestError::new(format!(
                    "param `{name}` = {v}: must be a finite number ≥ 0"
                )));
            }
        }
        Ok(SpikeFilter {
            value: schema.float("value")?,
            spike_threshold,
            neighbour_tolerance,
            max_gap_ms: params.duration_ms_or("max_gap", 60_000)?,
        })
    }

    fn functions() -> Vec<Function<Self>> {
        vec![Function::process_window(
            "spikes",
            &["spikes", "mean", "min", "max", "counter"],
            spikes,
        )]
    }
}

fn spikes(t: &SpikeFilter, _: &Key<'_>, _: WindowInfo, events: Events<'_>) -> Output {
    let mut points: Vec<(i64, f64)> = events.iter().map(|e| (e.time(), e.get(t.value))).collect();
    // The host hands windows over in event-time order; a stable sort keeps
    // that a no-op and makes "neighbour" mean the same if it ever did not.
    points.sort_by_key(|&(time, _)| time);

    let (mut spikes, mut kept, mut sum) = (0i64, 0i64, 0.0);
    let (mut min, mut max) = (f64::INFINITY, f64::NEG_INFINITY);
    for (i, &(_, value)) in points.iter().enumerate() {
        let is_spike =
            i > 0 && i + 1 < points.len() && t.is_spike(points[i - 1], value, points[i + 1]);
        if is_spike {
            spikes += 1;
        } else {
            kept += 1;
            sum += value;
            min = min.min(value);
            max = max.max(value);
        }
    }
    let (mean, min, max) = match kept {
        0 => (f64::NAN, f64::NAN, f64::NAN),
        n => (sum / n as f64, min, max),
    };
    Output::with_capacity(5)
        .int("spikes", spikes)
        .float("mean", mean)
        .float("min", min)
        .float("max", max)
        .int("counter", kept)
}

impl SpikeFilter {
    fn is_spike(&self, prev: (i64, f64), value: f64, next: (i64, f64)) -> bool {
        (prev.1 - next.1).abs() <= self.neighbour_tolerance
            && next.0 - prev.0 <= self.max_gap_ms
            && (value - (prev.1 + next.1) / 2.0).abs() > self.spike_threshold
    }
}

sluice_guest::export_tenant!(SpikeFilter);

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_guest::{Batch, Column, DataField, FieldDef, FieldType, Module, Value, WindowGroup};

    fn module(params: &[(&str, &str)]) -> Module<SpikeFilter> {
        Module::init(
            params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            vec![
                FieldDef::new("station_id", FieldType::Text),
                FieldDef::new("value", FieldType::Float),
            ],
        )
        .expect("schema has a float `value`")
    }

    fn run(m: &Module<SpikeFilter>, points: &[(i64, f64)]) -> Vec<DataField> {
        let n = points.len();
        let batch = Batch {
            times: points.iter().map(|p| p.0).collect(),
            columns: vec![
                Column::Text(sluice_guest::TextColumn::from_values(
                    points.iter().map(|_| "s"),
                )),
                Column::Float(points.iter().map(|p| p.1).collect()),
            ],
            absent: vec![],
        };
        let window = WindowGroup {
            key: vec!["s".into()],
            start: 0,
            end: 600_000,
            first: 0,
            len: n as u32,
        };
        m.process_window("spikes", vec![window], batch)
            .expect("valid window")
            .remove(0)
    }

    fn get(fields: &[DataField], name: &str) -> Value {
        fields
            .iter()
            .find(|f| f.name == name)
            .map(|f| f.value.clone())
            .unwrap_or_else(|| panic!("no {name}"))
    }

    #[test]
    fn an_isolated_spike_is_removed_from_the_stats() {
        let out = run(
            &module(&[]),
            &[
                (0, 20.0),
                (10_000, 20.5),
                (20_000, 80.0),
                (30_000, 20.0),
                (40_000, 21.0),
            ],
        );
        assert_eq!(get(&out, "spikes"), Value::Int(1));
        assert_eq!(get(&out, "counter"), Value::Int(4));
        assert_eq!(get(&out, "max"), Value::Float(21.0));
        assert_eq!(get(&out, "min"), Value::Float(20.0));
        assert_eq!(get(&out, "mean"), Value::Float(81.5 / 4.0));
    }

    #[test]
    fn no_spike_when_neighbours_disagree_are_far_apart_or_it_is_small() {
        let m = module(&[]);
        // Neighbours 20 and 25 disagree: a step, not a spike.
        let step = run(&m, &[(0, 20.0), (10_000, 80.0), (20_000, 25.0)]);
        assert_eq!(get(&step, "spikes"), Value::Int(0));
        // Neighbours 2 minutes apart: too far to judge.
        let gap = run(&m, &[(0, 20.0), (60_000, 80.0), (120_000, 20.0)]);
        assert_eq!(get(&gap, "spikes"), Value::Int(0));
        // 5 above the neighbours: under the threshold of 10.
        let small = run(&m, &[(0, 20.0), (10_000, 25.0), (20_000, 20.0)]);
        assert_eq!(get(&small, "spikes"), Value::Int(0));
        // Edges have one neighbour.
        let edge = run(&m, &[(0, 90.0), (10_000, 20.0), (20_000, 20.0)]);
        assert_eq!(get(&edge, "spikes"), Value::Int(0));
        assert_eq!(get(&edge, "counter"), Value::Int(3));
    }

    #[test]
    fn params_change_what_counts_as_a_spike() {
        let m = module(&[("spike_threshold", "3"), ("max_gap", "5m")]);
        let out = run(&m, &[(0, 20.0), (60_000, 25.0), (120_000, 20.0)]);
        assert_eq!(get(&out, "spikes"), Value::Int(1));
        let err = Module::<SpikeFilter>::init(
            vec![("neighbour_tolerance".into(), "-1".into())],
            vec![FieldDef::new("value", FieldType::Float)],
        )
        .expect_err("negative tolerance");
        assert!(err.message.contains("neighbour_tolerance"), "{err}");
    }

    #[test]
    fn an_empty_window_keeps_nothing() {
        let out = run(&module(&[]), &[]);
        assert_eq!(get(&out, "counter"), Value::Int(0));
        assert!(matches!(get(&out, "mean"), Value::Float(m) if m.is_nan()));
    }
}
