//! Run counters: what came in, what was rejected and what came out. Shared
//! by the reading thread, the coordinator and the shard workers as relaxed
//! atomics (each counter is only ever added to; readers want a recent
//! figure for the progress line and the exact one after the threads have
//! joined, which the join makes visible).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Where a run reports latencies, each measured when the sinks have
/// confirmed the outputs (`sluice serve` feeds `/metrics` histograms).
pub trait LatencyObserver: Send + Sync {
    /// From the watermark passing (the batch that moved it leaving the
    /// coordinator) to the windows it fired being in the sinks.
    fn window_fire(&self, took: Duration);
    /// From the publish time of the earliest input message of a batch to
    /// the outputs it triggered being in the sinks.
    fn end_to_end(&self, took: Duration);
}

/// Where a run reports how far it has got while it goes on (`sluice run`'s
/// progress line on stderr). The pipeline calls it from its coordinator
/// thread, at most about four times a second, so the library draws
/// nothing itself and the caller chooses how to show it.
pub trait ProgressObserver: Send + Sync {
    /// The run starts reading its input: the tenant is instantiated (and
    /// restored), the threads are about to start.
    fn started(&self) {}
    /// The figures so far, after a chunk of input.
    fn progress(&self, progress: &Progress);
    /// The run's threads have ended, whether the run succeeded or not.
    fn finished(&self) {}
}

/// A running pipeline's figures, as [`ProgressObserver::progress`] gets
/// them.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// The counters so far (`elapsed`: since the run started).
    pub summary: Summary,
    /// Panes open over all shards now.
    pub open_panes: usize,
}

/// Wall time since `at_ms` (ms since the epoch); zero for a time ahead of
/// this clock (another machine's skew).
pub fn since_epoch_ms(at_ms: i64) -> Duration {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    Duration::from_millis(u64::try_from(now.saturating_sub(at_ms)).unwrap_or(0))
}

/// Names of the counters, as the summary and future exporters print them.
pub mod names {
    pub const ROWS_IN: &str = "rows_in";
    pub const BYTES_IN: &str = "bytes_in";
    pub const DATA_CONVERSION_ERRORS: &str = "data_conversion_errors";
    pub const LATE_EVENTS_DROPPED: &str = "late_events_dropped";
    pub const OUTPUTS: &str = "outputs";
    pub const ALERTS: &str = "alerts";
    pub const POISONED: &str = "poisoned";
    pub const FUTURE_EVENTS_DROPPED: &str = "future_events_dropped";
    pub const LIMITED: &str = "limited";
}

/// The live counters of one run.
#[derive(Debug, Default)]
pub struct Counters {
    rows_in: AtomicU64,
    bytes_in: AtomicU64,
    bad_rows: AtomicU64,
    bad_rows_keyless: AtomicU64,
    late_dropped: AtomicU64,
    outputs: AtomicU64,
    alerts: AtomicU64,
    poisoned: AtomicU64,
    future_dropped: AtomicU64,
    limited: AtomicU64,
}

impl Counters {
    pub fn new() -> Counters {
        Counters::default()
    }

    /// Counters resumed from a checkpoint.
    pub fn restored(c: &CounterState) -> Counters {
        let n = |v: u64| AtomicU64::new(v);
        Counters {
            rows_in: n(c.rows_in),
            bytes_in: n(c.bytes_in),
            bad_rows: n(c.bad_rows),
            bad_rows_keyless: n(c.bad_rows_keyless),
            late_dropped: n(c.late_dropped),
            outputs: n(c.outputs),
            alerts: n(c.alerts),
            poisoned: n(c.poisoned),
            future_dropped: n(0),
            limited: n(0),
        }
    }

    /// Sets every figure to a checkpoint's (a shared set of counters
    /// reused by the next run of the same tenant).
    pub fn reset(&self, c: &CounterState) {
        self.rows_in.store(c.rows_in, Ordering::Relaxed);
        self.bytes_in.store(c.bytes_in, Ordering::Relaxed);
        self.bad_rows.store(c.bad_rows, Ordering::Relaxed);
        self.bad_rows_keyless
            .store(c.bad_rows_keyless, Ordering::Relaxed);
        self.late_dropped.store(c.late_dropped, Ordering::Relaxed);
        self.outputs.store(c.outputs, Ordering::Relaxed);
        self.alerts.store(c.alerts, Ordering::Relaxed);
        self.poisoned.store(c.poisoned, Ordering::Relaxed);
        self.future_dropped.store(0, Ordering::Relaxed);
        self.limited.store(0, Ordering::Relaxed);
    }

    /// Sets the guards' counters to a checkpoint's (they are kept apart
    /// from [`CounterState`], which format version 1 had).
    pub fn restore_guards(&self, g: &GuardState) {
        self.future_dropped
            .store(g.future_dropped, Ordering::Relaxed);
        self.limited.store(g.limited, Ordering::Relaxed);
    }

    /// Records read (good and bad), and their bytes including terminators.
    pub fn add_input(&self, rows: u64, bytes: u64) {
        self.rows_in.fetch_add(rows, Ordering::Relaxed);
        self.bytes_in.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Rows that did not parse; `keyless` of them had no readable key.
    pub fn add_bad_rows(&self, rows: u64, keyless: u64) {
        self.bad_rows.fetch_add(rows, Ordering::Relaxed);
        self.bad_rows_keyless.fetch_add(keyless, Ordering::Relaxed);
    }

    pub fn add_late_dropped(&self, rows: u64) {
        self.late_dropped.fetch_add(rows, Ordering::Relaxed);
    }

    /// Result lines written; `alerts` of them are alerts.
    pub fn add_outputs(&self, lines: u64, alerts: u64) {
        self.outputs.fetch_add(lines, Ordering::Relaxed);
        self.alerts.fetch_add(alerts, Ordering::Relaxed);
    }

    /// Key groups or windows dead-lettered because a guest call failed on
    /// them.
    pub fn add_poisoned(&self, n: u64) {
        self.poisoned.fetch_add(n, Ordering::Relaxed);
    }

    /// Rows whose event time was beyond `max_future` (dead-lettered).
    pub fn add_future_dropped(&self, rows: u64) {
        self.future_dropped.fetch_add(rows, Ordering::Relaxed);
    }

    /// Rows dead-lettered as `limit`: of a new key beyond the key ceiling.
    /// (State over a ceiling fails its call: it counts as poisoned.)
    pub fn add_limited(&self, n: u64) {
        self.limited.fetch_add(n, Ordering::Relaxed);
    }

    /// A copy of the figures now.
    pub fn snapshot(&self, elapsed: Duration) -> Summary {
        Summary {
            rows_in: self.rows_in.load(Ordering::Relaxed),
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            bad_rows: self.bad_rows.load(Ordering::Relaxed),
            bad_rows_keyless: self.bad_rows_keyless.load(Ordering::Relaxed),
            late_dropped: self.late_dropped.load(Ordering::Relaxed),
            outputs: self.outputs.load(Ordering::Relaxed),
            alerts: self.alerts.load(Ordering::Relaxed),
            poisoned: self.poisoned.load(Ordering::Relaxed),
            future_dropped: self.future_dropped.load(Ordering::Relaxed),
            limited: self.limited.load(Ordering::Relaxed),
            elapsed,
        }
    }
}

/// The figures of a run (or of a run so far).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Summary {
    pub rows_in: u64,
    pub bytes_in: u64,
    /// Deserialization errors (bad rows), with and without a readable key.
    pub bad_rows: u64,
    pub bad_rows_keyless: u64,
    pub late_dropped: u64,
    /// Result lines, alerts included.
    pub outputs: u64,
    pub alerts: u64,
    pub poisoned: u64,
    /// Rows beyond `max_future`.
    pub future_dropped: u64,
    /// Rows of keys beyond the key ceiling (`limit` dead letters).
    pub limited: u64,
    pub elapsed: Duration,
}

impl Summary {
    /// Input records per second of wall time.
    pub fn events_per_sec(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.rows_in as f64 / secs
        } else {
            0.0
        }
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}={} {}={} {}={} (without a key: {}) {}={} {}={} {}={} {}={} {}={} {}={} \
             in {:.2} s = {:.0} events/s",
            names::ROWS_IN,
            self.rows_in,
            names::BYTES_IN,
            self.bytes_in,
            names::DATA_CONVERSION_ERRORS,
            self.bad_rows,
            self.bad_rows_keyless,
            names::LATE_EVENTS_DROPPED,
            self.late_dropped,
            names::OUTPUTS,
            self.outputs,
            names::ALERTS,
            self.alerts,
            names::POISONED,
            self.poisoned,
            names::FUTURE_EVENTS_DROPPED,
            self.future_dropped,
            names::LIMITED,
            self.limited,
            self.elapsed.as_secs_f64(),
            self.events_per_sec(),
        )
    }
}

/// Counters at the barrier (restored, not recounted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CounterState {
    pub rows_in: u64,
    pub bytes_in: u64,
    pub bad_rows: u64,
    pub bad_rows_keyless: u64,
    pub late_dropped: u64,
    pub outputs: u64,
    pub alerts: u64,
    pub poisoned: u64,
}

impl From<&Summary> for CounterState {
    fn from(s: &Summary) -> Self {
        CounterState {
            rows_in: s.rows_in,
            bytes_in: s.bytes_in,
            bad_rows: s.bad_rows,
            bad_rows_keyless: s.bad_rows_keyless,
            late_dropped: s.late_dropped,
            outputs: s.outputs,
            alerts: s.alerts,
            poisoned: s.poisoned,
        }
    }
}

/// What the input guards and host ceilings need to resume exactly.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct GuardState {
    /// Rows dead-lettered as `future`.
    pub future_dropped: u64,
    /// Rows dead-lettered as `limit` (keys beyond the key ceiling).
    pub limited: u64,
    /// Hashes of the keys the run holds state for, sorted.
    pub keys: Vec<u64>,
}
