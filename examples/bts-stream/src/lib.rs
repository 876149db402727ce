//! The BTS tenant: analytics over base-station sensor records
//! (the customer's design notes, summarised in `docs/design.md`, section 2), keyed by
//! (station_id, datapoint_id, alarm_id).
//!
//! - `stats` (aggregate, windowed and global): `mean`, `max`, `min`,
//!   `counter`, `alarms` (rows with `isActive`).
//! - `alerts` (alert function):
//!   - `alarm-raised` when a key's `isActive` goes false → true (a new key
//!     starts "not active", so its first active row raises);
//!   - `predicted-breach` when a least-squares line through the key's last
//!     `trend_points` (param, default 10, 3..=1000) points — a full window
//!     is required, since a slope through fewer points is mostly noise —
//!     reaches `valueThreshold` within `horizon` (param, default `10m`) of
//!     the current event. Raised once per approach: the key's state keeps a
//!     flag that is reset when the prediction stops holding.
//!     A threshold ≥ 999999 is the dataset's "no threshold" and never
//!     predicts; a value already at or over the threshold is not predicted.
//!
//! A library without component exports: `bts-analytics` exports `Bts` as
//! its component, and other tenants embed it (`bts-batch`, through
//! [`Function::embed`]). One crate could not do both: its exports would be
//! linked into every component embedding it, which then holds the sluice
//! interface twice and fails to link. Natively it runs through
//! [`sluice_guest::Module`].

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use sluice_guest::{
    Aggregate, Alerts, BoolField, Event, Events, FloatField, Function, GuestError, Key, Output,
    Params, Schema, Tenant,
};

pub const ALARM_RAISED: &str = "alarm-raised";
pub const PREDICTED_BREACH: &str = "predicted-breach";
/// `valueThreshold` at or above this is the dataset's "no threshold".
pub const NO_THRESHOLD: f64 = 999_999.0;

/// Params and field handles, resolved once by `init`.
pub struct Bts {
    value: FloatField,
    threshold: FloatField,
    active: BoolField,
    trend_points: usize,
    horizon_ms: i64,
}

impl Tenant for Bts {
    const NAME: &'static str = "bts-analytics";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    fn init(params: &Params, schema: &Schema) -> Result<Self, GuestError> {
        let trend_points = params.get_or("trend_points", 10)?;
        if !(3..=1000).contains(&trend_points) {
            return Err(GuestError::new(format!(
                "param `trend_points` = {trend_points}: a trend needs 3 to 1000 points"
            )));
        }
        Ok(Bts {
            value: schema.float("value")?,
            threshold: schema.float("valueThreshold")?,
            active: schema.boolean("isActive")?,
            trend_points,
            horizon_ms: params.duration_ms_or("horizon", 600_000)?,
        })
    }

    fn functions() -> Vec<Function<Self>> {
        vec![
            Function::aggregate::<Stats>("stats"),
            Function::alert::<KeyState>(
                "alerts",
                &[ALARM_RAISED, PREDICTED_BREACH],
                &["value", "threshold", "slope", "predicted_at"],
                alerts,
            ),
        ]
    }
}

/// Accumulator of `stats`: bounded, whatever the window length.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub count: u64,
    pub alarms: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            count: 0,
            alarms: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }
}

impl Aggregate<Bts> for Stats {
    const OUTPUTS: &'static [&'static str] = &["mean", "max", "min", "counter", "alarms"];

    fn add(&mut self, t: &Bts, event: Event<'_>) {
        let value = event.get(t.value);
        self.count += 1;
        self.alarms += u64::from(event.get(t.active));
        self.sum += value;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
    }

    fn merge(&mut self, other: Self) {
        self.count += other.count;
        self.alarms += other.alarms;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    fn finish(&self, _: &Bts) -> Output {
        // No rows: no mean/min/max (NaN, JSON null) rather than a made-up 0.
        let (mean, min, max) = match self.count {
            0 => (f64::NAN, f64::NAN, f64::NAN),
            n => (self.sum / n as f64, self.min, self.max),
        };
        Output::with_capacity(5)
            .float("mean", mean)
            .float("max", max)
            .float("min", min)
            .int("counter", self.count as i64)
            .int("alarms", self.alarms as i64)
    }
}

/// Host-held state of `alerts`, per key.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct KeyState {
    /// `isActive` of the key's last event.
    active: bool,
    /// A predicted-breach alert is out for the current approach.
    predicting: bool,
    /// The last `trend_points` (event time, value), oldest first.
    history: VecDeque<(i64, f64)>,
}

fn alerts(t: &Bts, s: &mut KeyState, _: &Key<'_>, events: Events<'_>, out: &mut Alerts) {
    for event in events {
        let (time, value, threshold) = (event.time(), event.get(t.value), event.get(t.threshold));
        let active = event.get(t.active);
        if active && !s.active {
            let data = Output::new()
                .float("value", value)
                .float("threshold", threshold);
            out.raise(ALARM_RAISED, time, data);
        }
        s.active = active;

        while s.history.len() >= t.trend_points {
            s.history.pop_front();
        }
        s.history.push_back((time, value));
        match t.predict_breach(&s.history, time, value, threshold) {
            Some(_) if s.predicting => {}
            Some(breach) => {
                s.predicting = true;
                let data = Output::new()
                    .float("value", value)
                    .float("threshold", threshold)
                    .float("slope", breach.slope_per_minute)
                    .int("predicted_at", breach.at);
                out.raise(PREDICTED_BREACH, time, data);
            }
            None => s.predicting = false,
        }
    }
}

/// When a trend is predicted to reach the threshold.
struct Breach {
    slope_per_minute: f64,
    /// Predicted crossing time, ms since the Unix epoch (≥ `now`).
    at: i64,
}

impl Bts {
    /// Fits a least-squares line through `history` (x = minutes relative to
    /// `now`) and returns when it reaches `threshold`, if that is upward and
    /// within the horizon. The line, not the last value, is the anchor, so
    /// one noisy reading neither triggers nor hides a breach.
    fn predict_breach(
        &self,
        history: &VecDeque<(i64, f64)>,
        now: i64,
        value: f64,
        threshold: f64,
    ) -> Option<Breach> {
        if history.len() < self.trend_points
            || !threshold.is_finite()
            || !value.is_finite()
            || threshold >= NO_THRESHOLD
            || value >= threshold
        {
            return None;
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
        let slope = sxy / sxx; // NaN when all points share one instant
        if slope.is_nan() || slope <= 0.0 {
            return None;
        }
        let fitted_now = mean_y - slope * mean_x;
        let until_ms = ((threshold - fitted_now) / slope).max(0.0) * 60_000.0;
        (until_ms <= self.horizon_ms as f64).then(|| Breach {
            slope_per_minute: slope,
            at: now + until_ms.round() as i64,
        })
    }
}
