//! How to run a pipeline: [`Options`] and its parts — checkpointing
//! ([`CheckpointOptions`]), what a host reads while it runs ([`Live`]),
//! which rows a batch job keeps ([`RowSelect`]). These are what a caller
//! (the CLI, `sluice serve`, a batch job) decides; the threads that act
//! on them live beside this file: the reader applies `RowSelect`, the
//! coordinator updates `Live` and takes the checkpoints, the shard workers
//! report latencies.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use super::Ceilings;
use crate::metrics::{Counters, LatencyObserver, ProgressObserver};
use crate::parse::ParsedRow;
use crate::state::{Checkpoint, CheckpointStore};

/// Rows per batch sent to the workers: large enough that a guest call's
/// fixed cost (≈ µs) vanishes, small enough to keep latency and memory low.
pub const DEFAULT_BATCH_ROWS: usize = 4096;

/// How to run.
#[derive(Clone)]
pub struct Options {
    /// Shard workers (and shards); at least 1.
    pub workers: usize,
    /// Rows per batch handed to the workers.
    pub batch_rows: usize,
    /// Where to report the run's figures while it goes on (`sluice run`'s
    /// progress line on stderr); `None`: nowhere.
    pub progress: Option<Arc<dyn ProgressObserver>>,
    /// Take checkpoints (and resume from one).
    pub checkpoint: Option<CheckpointOptions>,
    /// Count into these (reset to a restored checkpoint's figures) instead
    /// of counters of the run's own: `sluice serve` reads them live for
    /// `sluice list` and `/metrics` while the run goes on.
    pub counters: Option<Arc<Counters>>,
    /// Set before ending a broker input to *suspend* the run rather than
    /// finish it: at the end of the input no window fires; the state is
    /// checkpointed (with `checkpoint`) and acked instead, so a later run
    /// restoring that checkpoint carries on as if never stopped — a
    /// shutdown, or a redeploy swapping the module at this barrier.
    pub suspend: Option<Arc<AtomicBool>>,
    /// Where to report window-fire and end-to-end latencies (`/metrics`).
    pub latency: Option<Arc<dyn LatencyObserver>>,
    /// Keep only the parsed rows this selects (a batch job's range and
    /// scope); bad rows are kept, they are counted and dead-lettered.
    pub select: Option<Arc<RowSelect>>,
    /// Report the input watermark and the keys seen here while running
    /// (`sluice serve`'s partitions).
    pub live: Option<Arc<Live>>,
    /// What the tenant may cost the host (default: [`Ceilings::host`]).
    pub ceilings: Ceilings,
}

/// What a host reads of a running pipeline besides its counters.
#[derive(Debug)]
pub struct Live {
    /// The input watermark, ms (`i64::MIN` before any row).
    pub watermark: std::sync::atomic::AtomicI64,
    /// Hashes of the keys of the rows read (good, and bad with a key).
    pub(super) keys: std::sync::Mutex<HashSet<u64>>,
    /// Whether `keys` is kept (a hash per row under a lock per batch).
    pub(super) count_keys: bool,
}

impl Default for Live {
    fn default() -> Self {
        Live {
            watermark: std::sync::atomic::AtomicI64::new(i64::MIN),
            keys: std::sync::Mutex::new(HashSet::new()),
            count_keys: true,
        }
    }
}

impl Live {
    /// The watermark only: no key is counted (`keys` stays 0), so a host
    /// that only shows the watermark costs its runs nothing per row.
    pub fn watermark_only() -> Live {
        Live {
            count_keys: false,
            ..Live::default()
        }
    }

    /// Distinct keys seen so far.
    pub fn keys(&self) -> usize {
        self.keys.lock().map_or(0, |k| k.len())
    }
}

/// Which parsed rows a run keeps: an event-time range and column values.
/// Applied where rows are read, before anything counts or windows them.
#[derive(Debug, Default)]
pub struct RowSelect {
    /// `[from, to)`, ms since the Unix epoch.
    pub time: Option<(i64, i64)>,
    /// (column index, value): the column's value, as text, must equal it.
    pub equals: Vec<(usize, String)>,
    /// Rows left out so far.
    pub skipped: std::sync::atomic::AtomicU64,
}

impl RowSelect {
    /// Whether `row` is kept; counts it in `skipped` when not.
    pub fn keeps(&self, row: &ParsedRow) -> bool {
        let in_time = self
            .time
            .is_none_or(|(from, to)| (from..to).contains(&row.time));
        let keep = in_time
            && self.equals.iter().all(|(column, value)| {
                row.values
                    .get(*column)
                    .is_some_and(|v| v.text_equals(value))
            });
        if !keep {
            self.skipped.fetch_add(1, Ordering::Relaxed);
        }
        keep
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            workers: thread::available_parallelism().map_or(1, usize::from),
            batch_rows: DEFAULT_BATCH_ROWS,
            progress: None,
            checkpoint: None,
            counters: None,
            suspend: None,
            latency: None,
            select: None,
            live: None,
            ceilings: Ceilings::host(),
        }
    }
}

/// Checkpointing: where, how often, and the checkpoint to resume from.
/// With it, a broker input is acknowledged only up to the last durable
/// checkpoint (instead of as soon as outputs are confirmed).
#[derive(Clone)]
pub struct CheckpointOptions {
    pub store: Arc<dyn CheckpointStore>,
    /// At most this long between checkpoints while records flow.
    pub interval: Duration,
    /// Also after this many rows (if set).
    pub every_rows: Option<u64>,
    /// Also once this many messages await their ack (if set). A broker
    /// delivers at most `prefetch` unacked messages, and with checkpoints
    /// none is acked before one: set to about half the prefetch, so the
    /// next checkpoint's acks free the window before the consumer runs dry.
    pub every_messages: Option<usize>,
    /// The tenant module's hash, recorded with its keyed state.
    pub module_hash: String,
    /// Resume from this checkpoint (the caller has positioned the input
    /// and cut the output files back to it).
    pub restore: Option<Checkpoint>,
}
