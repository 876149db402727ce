//! Touches every field of every event so neither layout can skip work.

// The generated lowering of `sum-columns` takes one (pointer, length) pair
// per list.
#![allow(clippy::too_many_arguments)]

wit_bindgen::generate!({
    world: "probe",
    path: "wit",
});

struct Probe;

impl Guest for Probe {
    fn sum_records(events: Vec<Event>) -> f64 {
        events
            .iter()
            .map(|e| e.value + e.threshold + e.time as f64 + f64::from(u8::from(e.active)))
            .sum()
    }

    fn sum_columns(
        times: Vec<i64>,
        values: Vec<f64>,
        thresholds: Vec<f64>,
        active: Vec<u8>,
    ) -> f64 {
        times
            .iter()
            .zip(&values)
            .zip(&thresholds)
            .zip(&active)
            .map(|(((t, v), th), a)| v + th + *t as f64 + f64::from(*a))
            .sum()
    }
}

export!(Probe);
