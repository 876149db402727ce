//! The BTS tenant's batch summaries (the first customer's questions in
//! `docs/design.md`, section 2), over the same input as
//! `bts-analytics`. Which question a function answers depends on the job's
//! key and window (e.g. `threshold_breaches` keyed by `alarm_id` over the
//! whole range: which alarm type exceeds its threshold the most).
//!
//! - `row_count`: `rows`, `first_time`, `last_time` (ms), `rate_per_hour`
//!   — which station issued the most data.
//! - `histogram`: `count`, `bin_width`, `overflow`, then `bin:<lower edge>`
//!   per non-empty bin, ascending — e.g. a station's temperature
//!   (datapoint 143) over a day. Param `histogram_bin_width` (default 1.0).
//! - `active_alarms`: `active` (rows with `isActive`), `rows` — alarms
//!   triggered per day per station.
//! - `threshold_breaches`: `breaches` (`value` > `valueThreshold`), `rows`.
//! - `hour_profile`: `h00` … `h23` (active rows per UTC hour of day),
//!   `active`, `peak_hour` — when in the day an alarm type triggers most.
//!
//! All are aggregates with integer accumulators, so panes merge exactly and
//! the result does not depend on event order or pane boundaries.
//!
//! The module also offers the stream side's `stats` and `alerts` (those of
//! the `bts-analytics` component, from `bts-stream`), embedded unchanged
//! ([`Function::embed`]), so one manifest can run both sides of the BTS
//! tenant.

use std::collections::BTreeMap;

use bts_stream::{Bts, NO_THRESHOLD};
use serde::{Deserialize, Serialize};
use sluice_guest::{
    Aggregate, BoolField, Event, FloatField, Function, GuestError, Output, Params, Schema, Tenant,
    Value,
};

/// Most bins a `histogram` accumulator keeps; see [`Histogram`].
pub const MAX_BINS: usize = 10_000;

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

/// Params and field handles, resolved once by `init`, and the embedded
/// stream tenant.
pub struct BtsBatch {
    stream: Bts,
    value: FloatField,
    threshold: FloatField,
    active: BoolField,
    bin_width: f64,
}

/// Where `stats` and `alerts` find their tenant.
fn stream(t: &BtsBatch) -> &Bts {
    &t.stream
}

impl Tenant for BtsBatch {
    const NAME: &'static str = "bts-batch";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    fn init(params: &Params, schema: &Schema) -> Result<Self, GuestError> {
        let bin_width: f64 = params.get_or("histogram_bin_width", 1.0)?;
        // Zero, negative or non-finite widths give no meaningful bins.
        if !(bin_width.is_finite() && bin_width > 0.0) {
            return Err(GuestError::new(format!(
                "param `histogram_bin_width` = {bin_width}: a bin width must be finite and > 0"
            )));
        }
        Ok(BtsBatch {
            stream: Bts::init(params, schema)?,
            value: schema.float("value")?,
            threshold: schema.float("valueThreshold")?,
            active: schema.boolean("isActive")?,
            bin_width,
        })
    }

    fn functions() -> Vec<Function<Self>> {
        let mut functions = vec![
            Function::aggregate::<RowCount>("row_count"),
            Function::aggregate::<Histogram>("histogram"),
            Function::aggregate::<ActiveAlarms>("active_alarms"),
            Function::aggregate::<ThresholdBreaches>("threshold_breaches"),
            Function::aggregate::<HourProfile>("hour_profile"),
        ];
        functions.extend(Bts::functions().into_iter().map(|f| f.embed(stream)));
        functions
    }
}

/// A count as an output int (counts never reach `i64::MAX` in practice;
/// saturating beats wrapping to a negative count if they did).
fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Accumulator of `row_count`. An empty one (no rows) finishes as zeros.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RowCount {
    rows: u64,
    first: i64,
    last: i64,
}

impl Default for RowCount {
    fn default() -> Self {
        RowCount {
            rows: 0,
            first: i64::MAX,
            last: i64::MIN,
        }
    }
}

impl Aggregate<BtsBatch> for RowCount {
    const OUTPUTS: &'static [&'static str] = &["rows", "first_time", "last_time", "rate_per_hour"];

    fn add(&mut self, _: &BtsBatch, event: Event<'_>) {
        let time = event.time();
        self.rows += 1;
        self.first = self.first.min(time);
        self.last = self.last.max(time);
    }

    fn merge(&mut self, other: Self) {
        self.rows += other.rows;
        self.first = self.first.min(other.first);
        self.last = self.last.max(other.last);
    }

    fn finish(&self, _: &BtsBatch) -> Output {
        let (first, last) = match self.rows {
            0 => (0, 0),
            _ => (self.first, self.last),
        };
        // From integers only, so the same rows give the same bits whatever
        // their order. One instant (or one row) has no span: report `rows`.
        let span_ms = last.abs_diff(first);
        let rate = match span_ms {
            0 => self.rows as f64,
            span => self.rows as f64 * HOUR_MS as f64 / span as f64,
        };
        Output::with_capacity(4)
            .int("rows", int(self.rows))
            .int("first_time", first)
            .int("last_time", last)
            .float("rate_per_hour", rate)
    }
}

/// Accumulator of `histogram`: bin index (`floor(value / width)`) → rows.
///
/// Bounded by [`MAX_BINS`]: past it, the highest bins are dropped and
/// their rows counted in `overflow`, as are non-finite values. Keeping the
/// lowest bins (rather than the first seen) makes the result independent
/// of event order and pane boundaries: it always holds the exact counts of
/// the `MAX_BINS` lowest non-empty bins. `overflow` > 0 means the bin
/// width is too small for the data's range (or the data has NaNs).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    count: u64,
    overflow: u64,
    bins: BTreeMap<i64, u64>,
}

impl Histogram {
    /// Drops the highest bins into `overflow` until at most `MAX_BINS` remain.
    fn trim(&mut self) {
        while self.bins.len() > MAX_BINS {
            if let Some((_, rows)) = self.bins.pop_last() {
                self.overflow += rows;
            }
        }
    }
}

/// The bin of `value`, if it has one that an `i64` index can name.
fn bin_index(value: f64, width: f64) -> Option<i64> {
    let index = (value / width).floor();
    // -2^63 and 2^63 are exact as f64; `as` would saturate silently.
    (index.is_finite() && index >= i64::MIN as f64 && index < i64::MAX as f64)
        .then_some(index as i64)
}

impl Aggregate<BtsBatch> for Histogram {
    /// Then one `bin:<lower edge>` field per non-empty bin, ascending: the
    /// bin names depend on the data, so they are declared by the `bin:*`
    /// pattern (the host refuses undeclared field names).
    const OUTPUTS: &'static [&'static str] = &["count", "bin_width", "overflow", "bin:*"];

    fn add(&mut self, t: &BtsBatch, event: Event<'_>) {
        self.count += 1;
        match bin_index(event.get(t.value), t.bin_width) {
            Some(index) => {
                *self.bins.entry(index).or_insert(0) += 1;
                self.trim();
            }
            None => self.overflow += 1,
        }
    }

    fn merge(&mut self, other: Self) {
        self.count += other.count;
        self.overflow += other.overflow;
        for (index, rows) in other.bins {
            *self.bins.entry(index).or_insert(0) += rows;
        }
        self.trim();
    }

    fn finish(&self, t: &BtsBatch) -> Output {
        let mut out = Output::with_capacity(3 + self.bins.len())
            .int("count", int(self.count))
            .float("bin_width", t.bin_width)
            .int("overflow", int(self.overflow));
        for (&index, &rows) in &self.bins {
            let edge = index as f64 * t.bin_width;
            out.push(format!("bin:{edge}"), Value::Int(int(rows)));
        }
        out
    }
}

/// Accumulator of `active_alarms`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ActiveAlarms {
    active: u64,
    rows: u64,
}

impl Aggregate<BtsBatch> for ActiveAlarms {
    const OUTPUTS: &'static [&'static str] = &["active", "rows"];

    fn add(&mut self, t: &BtsBatch, event: Event<'_>) {
        self.active += u64::from(event.get(t.active));
        self.rows += 1;
    }

    fn merge(&mut self, other: Self) {
        self.active += other.active;
        self.rows += other.rows;
    }

    fn finish(&self, _: &BtsBatch) -> Output {
        Output::with_capacity(2)
            .int("active", int(self.active))
            .int("rows", int(self.rows))
    }
}

/// Accumulator of `threshold_breaches`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ThresholdBreaches {
    breaches: u64,
    rows: u64,
}

/// `value` over `threshold`; a threshold ≥ [`NO_THRESHOLD`] is the
/// dataset's "no threshold", and a NaN on either side breaches nothing.
pub fn breaches(value: f64, threshold: f64) -> bool {
    threshold < NO_THRESHOLD && value > threshold
}

impl Aggregate<BtsBatch> for ThresholdBreaches {
    const OUTPUTS: &'static [&'static str] = &["breaches", "rows"];

    fn add(&mut self, t: &BtsBatch, event: Event<'_>) {
        self.breaches += u64::from(breaches(event.get(t.value), event.get(t.threshold)));
        self.rows += 1;
    }

    fn merge(&mut self, other: Self) {
        self.breaches += other.breaches;
        self.rows += other.rows;
    }

    fn finish(&self, _: &BtsBatch) -> Output {
        Output::with_capacity(2)
            .int("breaches", int(self.breaches))
            .int("rows", int(self.rows))
    }
}

/// Accumulator of `hour_profile`: active rows per UTC hour of day.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HourProfile {
    hours: [u64; 24],
}

/// UTC hour of day (0..24) of an event time in ms; `rem_euclid` keeps
/// times before 1970 in range.
pub fn hour_of_day(time_ms: i64) -> usize {
    (time_ms.rem_euclid(DAY_MS) / HOUR_MS) as usize
}

impl Aggregate<BtsBatch> for HourProfile {
    const OUTPUTS: &'static [&'static str] = &[
        "h00",
        "h01",
        "h02",
        "h03",
        "h04",
        "h05",
        "h06",
        "h07",
        "h08",
        "h09",
        "h10",
        "h11",
        "h12",
        "h13",
        "h14",
        "h15",
        "h16",
        "h17",
        "h18",
        "h19",
        "h20",
        "h21",
        "h22",
        "h23",
        "active",
        "peak_hour",
    ];

    fn add(&mut self, t: &BtsBatch, event: Event<'_>) {
        if event.get(t.active) {
            if let Some(hour) = self.hours.get_mut(hour_of_day(event.time())) {
                *hour += 1;
            }
        }
    }

    fn merge(&mut self, other: Self) {
        for (hour, rows) in self.hours.iter_mut().zip(other.hours) {
            *hour += rows;
        }
    }

    fn finish(&self, _: &BtsBatch) -> Output {
        let mut out = Output::with_capacity(Self::OUTPUTS.len());
        for (name, &rows) in Self::OUTPUTS.iter().zip(&self.hours) {
            out.push(*name, Value::Int(int(rows)));
        }
        let active: u64 = self.hours.iter().sum();
        // The first hour with the most wins ties; no active rows, no peak.
        let mut peak: i64 = -1;
        let mut most = 0;
        for (hour, &rows) in (0..).zip(&self.hours) {
            if rows > most {
                (peak, most) = (hour, rows);
            }
        }
        out.int("active", int(active)).int("peak_hour", peak)
    }
}

sluice_guest::export_tenant!(BtsBatch);
