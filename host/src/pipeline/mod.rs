//! The embedded pipeline: one tenant's input, read, parsed, keyed and
//! spread over shard workers, each running the tenant's windows and alert
//! function, with results and dead letters written as JSON lines.
//!
//! ```text
//! reader ──rows──▶ coordinator ──batches──▶ worker 0 (shard 0: alerts, windows) ─┐
//! (read + parse)   (watermark,    (every     worker 1 (shard 1: …)              ├─▶ sinks
//!                   keyless        worker,   …                                  ─┘
//!                   errors)        each batch)
//! ```
//!
//! - **Reader thread** reads lines and parses them; it hands over what it
//!   has whenever the input has nothing more buffered, so a quiet stdin
//!   does not hold rows back.
//! - **Coordinator** (the calling thread) owns the input's watermark: max
//!   event time seen in arrival order − `max_out_of_orderness`, never going
//!   back. Every row carries the watermark in effect before it; every batch
//!   ends with the watermark after it and goes to *every* worker, also
//!   those that got no rows, so windows fire at the same points whatever
//!   the number of workers. With `idle_timeout` set, a quiet input's
//!   watermark is advanced by the wall time since its last record, so
//!   windows still fire. It also writes the bad rows to the dead-letter
//!   sink and counts those without a readable key (tenant level).
//! - **Workers**: key → `Key::shard(workers)`; each worker owns one shard
//!   and one `TenantInstance`, so per-key order holds and guest calls are
//!   batched across the keys of a shard.
//! - **Sinks**: each stage writes what a batch produced to every sink and
//!   only then reports the batch settled (acks). With a table sink that
//!   stores raw events, the reader keeps each row's position and a worker
//!   hands its shard's parsed rows — late ones too — to the sink with the
//!   batch's results, so an event's partition (tenant, key, day) is always
//!   written by one worker.
//!
//! Decisions (see also `README.md`, "sluice run"):
//! - The alert function sees *every* parsed row of its key in arrival
//!   order, including rows later than the allowed lateness: it is not
//!   windowed, and an alarm is worth raising late.
//! - Only parsed rows advance the watermark: a bad row's time may be as
//!   broken as the rest of it.
//! - A bad row with a readable key but no readable time is counted at the
//!   latest event time seen so far (it arrived "now"); before any event
//!   time has been seen it is counted at tenant level.
//! - The tenant-level `Global Metric` (`"key": {}`) is emitted for each
//!   global window when the watermark passes a multiple `B` of its
//!   `emit_every` (`start` = the start of that period, `end` = `B`) and at
//!   the end of input (`end` = the next multiple above the latest event
//!   time), whenever its count — all keyless bad rows read so far, in
//!   arrival order — has grown since the last one.

mod alerts;
mod limits;
mod read;
#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::ingress::{Acknowledger, Input};
use crate::manifest::{Manifest, WindowKind};
use crate::metrics::{Counters, LatencyObserver, Summary};
use crate::parse::{self, BadKind, BadRow, Key, ParsedRow, RowParser};
use crate::sandbox::{self, DataField, SandboxError, TenantModule, Value};
pub use crate::sink::Sinks;
use crate::sink::{
    self, Data, DeadLetter, DeadLetterRecord, Event, EventBatch, OutputType, Record, Rendered,
    RowPos, WindowRef,
};
use crate::state::{self, Checkpoint, CheckpointStore};
use crate::window::{self, Emitted, OutputKind, PoisonedInput, ShardWindows, WindowCalls};

pub use alerts::AlertCalls;
pub use limits::{CeilingError, Ceilings, FutureGuard};
use read::{read_input, read_messages, Chunk, Chunking};

/// Result of pipeline operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Rows per batch sent to the workers: large enough that a guest call's
/// fixed cost (≈ µs) vanishes, small enough to keep latency and memory low.
pub const DEFAULT_BATCH_ROWS: usize = 4096;

/// Errors that stop a run. A bad row, a late row or a guest call failing on
/// its input never stop a run; these do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot build the row parser: {0}")]
    Parser(#[from] parse::Error),
    #[error("reading the input {source_name}: {source}")]
    Input {
        source_name: String,
        #[source]
        source: std::io::Error,
    },
    #[error("worker {worker}: cannot instantiate the tenant module: {source}")]
    Instantiate {
        worker: usize,
        #[source]
        source: SandboxError,
    },
    #[error("worker {worker}: {source}")]
    Window {
        worker: usize,
        #[source]
        source: window::Error,
    },
    #[error("worker {worker}: alert function `{function}`: {source}")]
    Alert {
        worker: usize,
        function: String,
        #[source]
        source: SandboxError,
    },
    #[error(
        "worker {worker}: alert function `{function}`: a row does not fit the schema: {source}"
    )]
    AlertBatch {
        worker: usize,
        function: String,
        #[source]
        source: sandbox::BatchError,
    },
    #[error(transparent)]
    Sink(#[from] sink::Error),
    #[error("the {0} thread panicked")]
    Panicked(String),
    #[error(transparent)]
    Checkpoint(#[from] state::Error),
    #[error("worker {worker}: restoring its shard: {source}")]
    Restore {
        worker: usize,
        #[source]
        source: window::Error,
    },
    /// The manifest asks for more than the host allows.
    #[error(transparent)]
    Ceiling(#[from] CeilingError),
    /// A worker hung up; its own error (reported instead) says why.
    #[error("a shard worker stopped early")]
    WorkerGone,
}

/// How to run.
#[derive(Clone)]
pub struct Options {
    /// Shard workers (and shards); at least 1.
    pub workers: usize,
    /// Rows per batch handed to the workers.
    pub batch_rows: usize,
    /// Show a progress line on stderr.
    pub progress: bool,
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
    keys: std::sync::Mutex<HashSet<u64>>,
}

impl Default for Live {
    fn default() -> Self {
        Live {
            watermark: std::sync::atomic::AtomicI64::new(i64::MIN),
            keys: std::sync::Mutex::new(HashSet::new()),
        }
    }
}

impl Live {
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
            progress: false,
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

/// The figures of a finished run, beyond the counters.
#[derive(Debug, Clone, Copy, Default)]
pub struct Report {
    pub summary: Summary,
    /// Largest number of panes all shards held together after a batch.
    pub peak_open_panes: usize,
}

/// What one shard needs from the tenant: window calls and alert calls.
/// `TenantInstance` implements both; the benchmark has a native one.
pub trait ShardCalls: WindowCalls + AlertCalls + Send {}

impl<T: WindowCalls + AlertCalls + Send> ShardCalls for T {}

/// Runs `manifest`'s tenant over `input` with the sandboxed `module` (one
/// instance per worker).
pub fn run(
    manifest: &Manifest,
    module: &TenantModule,
    input: Input,
    sinks: &Sinks,
    options: &Options,
) -> Result<Report> {
    let params = manifest.params_list();
    let schema = manifest.schema();
    let limits = manifest.limits.clone();
    run_with(manifest, input, sinks, options, |worker| {
        module
            .instantiate(params.clone(), schema.clone(), limits.clone())
            .map_err(|source| Error::Instantiate { worker, source })
    })
}

/// Runs `manifest`'s tenant over `input`; `calls(worker)` makes the tenant
/// calls of each worker (a sandbox instance, or a native stand-in).
pub fn run_with<C, F>(
    manifest: &Manifest,
    input: Input,
    sinks: &Sinks,
    options: &Options,
    calls: F,
) -> Result<Report>
where
    C: ShardCalls,
    F: Fn(usize) -> Result<C>,
{
    let started = Instant::now();
    options.ceilings.check(manifest)?;
    let restore = options.checkpoint.as_ref().and_then(|c| c.restore.as_ref());
    let counters = match (&options.counters, restore) {
        (Some(shared), Some(c)) => {
            shared.reset(&c.counters);
            Arc::clone(shared)
        }
        (Some(shared), None) => {
            shared.reset(&state::CounterState::default());
            Arc::clone(shared)
        }
        (None, Some(c)) => Arc::new(Counters::restored(&c.counters)),
        (None, None) => Arc::new(Counters::new()),
    };
    if let Some(c) = restore {
        counters.restore_guards(&c.guards);
    }
    let workers = options.workers.max(1);
    let batch_rows = options.batch_rows.max(1);
    let parser = RowParser::new(&manifest.input)?;
    let ctx = Arc::new(Ctx::new(manifest));

    // Instantiate up front, on this thread: a module that fails `init`
    // fails the run before any input is read.
    // Window specs the engine cannot run fail here too.
    let mut shard_calls = Vec::with_capacity(workers);
    for worker in 0..workers {
        let mut windows = ShardWindows::new(
            &manifest.windows,
            manifest.input.allowed_lateness,
            ctx.schema.clone(),
        )
        .map_err(|source| Error::Window { worker, source })?;
        // Window state and alert states of a shard share one budget: its
        // share of the tenant's ceiling (even, so which key hits it does
        // not depend on thread timing).
        windows.set_state_ceilings(
            options.ceilings.max_key_state,
            options.ceilings.max_tenant_state / workers as u64,
        );
        shard_calls.push((calls(worker)?, windows, alerts::States::default()));
    }
    if let Some(c) = restore {
        if c.tenant != manifest.tenant {
            return Err(state::Error::Tenant {
                saved: c.tenant.clone(),
                now: manifest.tenant.clone(),
            }
            .into());
        }
        if c.shards.len() != workers {
            return Err(state::Error::Workers {
                saved: c.shards.len(),
                now: workers,
            }
            .into());
        }
        for (worker, ((_, windows, alert_states), saved)) in
            shard_calls.iter_mut().zip(&c.shards).enumerate()
        {
            windows
                .restore(&saved.windows)
                .map_err(|source| Error::Restore { worker, source })?;
            alert_states.extend(saved.alert_states.iter().cloned());
            let alert_bytes = alert_states.values().map(|s| s.len() as u64).sum::<u64>();
            windows.budget_mut().set_alert_bytes(alert_bytes);
        }
    }

    let progress = if options.progress {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_draw_target(indicatif::ProgressDrawTarget::stderr_with_hz(4));
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };

    thread::scope(|scope| -> Result<Report> {
        let (chunk_tx, chunk_rx) = mpsc::sync_channel::<Chunk>(4);
        // Not scoped: a reader blocked on a live stdin cannot be stopped,
        // so after a failure it is left behind (detached) instead of
        // joined; it ends with the process.
        // Without checkpoints every stage reports what it settled; with
        // them only the coordinator does, once a checkpoint is durable.
        let checkpointing = options.checkpoint.is_some();
        let acks = match &input {
            Input::Bytes { .. } => None,
            Input::Messages { acks, .. } => {
                acks.set_stages(if checkpointing { 1 } else { workers + 1 });
                Some(Arc::clone(acks))
            }
        };
        let chunking = Chunking {
            batch_rows,
            // Positions are kept for the raw-event store only.
            keep_positions: sinks.stores_events(),
            select: options.select.clone(),
            max_line_bytes: options.ceilings.max_line_bytes,
            max_future: manifest.input.max_future,
        };
        let worker_acks = if checkpointing { None } else { acks.clone() };
        let reader = {
            thread::Builder::new()
                .name("sluice-reader".into())
                .spawn(move || match input {
                    Input::Bytes {
                        reader,
                        name,
                        start,
                    } => read_input(reader, parser, &name, start, chunking, &chunk_tx),
                    Input::Messages { rx, .. } => {
                        read_messages(rx, parser, chunking, &chunk_tx);
                        Ok(())
                    }
                })
                .map_err(|e| Error::Panicked(format!("reader (spawn: {e})")))?
        };

        let mut senders = Vec::with_capacity(workers);
        let mut handles = Vec::with_capacity(workers);
        let panes = Arc::new(
            (0..workers)
                .map(|_| std::sync::atomic::AtomicUsize::new(0))
                .collect::<Vec<_>>(),
        );
        for (worker, (calls, windows, alert_states)) in shard_calls.into_iter().enumerate() {
            let (tx, rx) = mpsc::sync_channel::<Work>(4);
            senders.push(tx);
            let ctx = Arc::clone(&ctx);
            let counters = Arc::clone(&counters);
            let sinks = sinks.clone();
            let panes = Arc::clone(&panes);
            let acks = worker_acks.clone();
            let latency = options.latency.clone();
            let handle = thread::Builder::new()
                .name(format!("sluice-shard-{worker}"))
                .spawn_scoped(scope, move || -> Result<usize> {
                    let mut shard = Shard {
                        worker,
                        ctx: &ctx,
                        calls,
                        windows,
                        alert_states,
                        counters: &counters,
                        sinks: &sinks,
                        acks: acks.as_deref(),
                        peak_panes: 0,
                        latency: latency.as_deref(),
                    };
                    shard.run(&rx, &panes[worker])
                })
                .map_err(|e| Error::Panicked(format!("worker {worker} (spawn: {e})")))?;
            handles.push(handle);
        }

        let mut coordinator = Coordinator::new(
            &ctx,
            workers,
            senders,
            sinks,
            &counters,
            acks.as_deref(),
            options.ceilings.max_keys,
        );
        if let Some(c) = &options.checkpoint {
            coordinator.checkpoints(c);
        }
        coordinator.suspend = options.suspend.clone();
        coordinator.live = options.live.clone();
        let outcome = coordinator.run(&chunk_rx, &progress, &counters, started, &panes);
        // Whatever happened, close the channels so every thread ends.
        drop(coordinator);
        drop(chunk_rx);
        let mut peak_panes = 0;
        // A worker's or the reader's own error explains `WorkerGone`.
        let (mut first_error, gone) = match outcome {
            Err(Error::WorkerGone) => (None, Some(Error::WorkerGone)),
            other => (other.err(), None),
        };
        for (worker, handle) in handles.into_iter().enumerate() {
            match handle.join() {
                Ok(Ok(peak)) => peak_panes += peak,
                Ok(Err(e)) => {
                    first_error.get_or_insert(e);
                }
                Err(_) => {
                    first_error.get_or_insert(Error::Panicked(format!("worker {worker}")));
                }
            }
        }
        // Without a failure the reader has finished (it closed the
        // channel); with one, it may be blocked on input: leave it.
        if first_error.is_none() && gone.is_none() {
            match reader.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => first_error = Some(e),
                Err(_) => first_error = Some(Error::Panicked("reader".into())),
            }
        }
        progress.finish_and_clear();
        if let Some(e) = first_error.or(gone) {
            return Err(e);
        }
        sinks.flush()?;
        Ok(Report {
            summary: counters.snapshot(started.elapsed()),
            peak_open_panes: peak_panes,
        })
    })
}

/// What the threads share about the tenant.
struct Ctx {
    tenant: String,
    key_names: Vec<String>,
    columns: Vec<String>,
    schema: Vec<sandbox::FieldDef>,
    alert_function: Option<String>,
    max_out_of_orderness: i64,
    idle_timeout: Option<Duration>,
    /// Global windows: (name, emit_every ms), for the tenant-level metric.
    globals: Vec<(String, i64)>,
}

impl Ctx {
    fn new(manifest: &Manifest) -> Ctx {
        Ctx {
            tenant: manifest.tenant.clone(),
            key_names: manifest.input.key.clone(),
            columns: manifest
                .input
                .columns
                .iter()
                .map(|c| c.name.clone())
                .collect(),
            schema: manifest.schema(),
            alert_function: manifest.alerts.as_ref().map(|a| a.function.clone()),
            max_out_of_orderness: millis(manifest.input.max_out_of_orderness),
            idle_timeout: manifest.input.idle_timeout,
            globals: manifest
                .windows
                .iter()
                .filter_map(|w| match w.kind {
                    WindowKind::Global { emit_every } => {
                        Some((w.name.clone(), millis(emit_every).max(1)))
                    }
                    _ => None,
                })
                .collect(),
        }
    }

    /// `events` labelled with the tenant's names.
    fn events<'e>(&'e self, events: &'e [Event<'e>]) -> EventBatch<'e> {
        EventBatch {
            tenant: &self.tenant,
            key_names: &self.key_names,
            columns: &self.columns,
            events,
        }
    }

    fn dead_letter(&self, letter: DeadLetter<'_>, out: &mut Rendered) {
        out.push_dead_letter(&DeadLetterRecord {
            tenant: &self.tenant,
            key_names: &self.key_names,
            columns: &self.columns,
            letter,
        });
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A batch for one worker: its shard's rows and bad rows (each with the
/// watermark before it) and the watermark after the batch; or the end.
enum Work {
    Batch {
        rows: Vec<(ParsedRow, i64)>,
        /// Where each row was read, parallel to `rows`; empty unless raw
        /// events are stored.
        positions: Vec<RowPos>,
        bad: Vec<(BadRow, i64)>,
        wm_after: i64,
        /// The last message this batch completes (message input only).
        seq: Option<u64>,
        /// When the coordinator sent it: the watermark `wm_after` passed
        /// then (window-fire latency starts here).
        sent_at: Instant,
        /// The earliest publish time (ms) of its messages, if known.
        published_ms: Option<i64>,
    },
    /// End of a bounded input: flush every window.
    Flush,
    /// A checkpoint barrier: reply with this shard's state as it is after
    /// every batch before the barrier (their outputs already in the sinks).
    Checkpoint(SyncSender<(usize, Result<state::ShardState>)>),
}

/// The tenant-level (keyless) error count of one global window.
struct KeylessMetric {
    name: String,
    every: i64,
    /// Next multiple of `every` the watermark has to pass.
    next: Option<i64>,
    /// Count at the last emission.
    emitted: u64,
}

struct Coordinator<'a> {
    ctx: &'a Ctx,
    workers: usize,
    senders: Vec<SyncSender<Work>>,
    sinks: &'a Sinks,
    counters: &'a Counters,
    /// The input's watermark (`i64::MIN` before any row).
    wm: i64,
    max_time: Option<i64>,
    /// When the last record arrived, and the watermark then (idle advance).
    last_record: Instant,
    wm_at_last_record: i64,
    keyless: u64,
    keyless_metrics: Vec<KeylessMetric>,
    dead: Rendered,
    out: Rendered,
    acks: Option<&'a dyn Acknowledger>,
    checkpoints: Option<Checkpoints>,
    /// The last message settled by a chunk (message input).
    last_seq: Option<u64>,
    /// See [`Options::suspend`].
    suspend: Option<Arc<AtomicBool>>,
    /// See [`Options::live`].
    live: Option<Arc<Live>>,
    /// The key ceiling: hashes of the keys admitted so far, at most
    /// `max_keys` of them. A key's state (windows, alert state) is held
    /// for the run's life, so admitted keys are never forgotten.
    keys: rustc_hash::FxHashSet<u64>,
    max_keys: u64,
    key_limit_reason: String,
}

/// An input quiet this long gets its checkpoint (and acks) at once.
const QUIET_CHECKPOINT: Duration = Duration::from_secs(1);

/// The coordinator's checkpoint schedule and what the next checkpoint
/// records about the input.
struct Checkpoints {
    store: Arc<dyn CheckpointStore>,
    interval: Duration,
    every_rows: Option<u64>,
    every_messages: Option<usize>,
    module_hash: String,
    next_id: u64,
    last_at: Instant,
    rows_since: u64,
    /// Something arrived since the last checkpoint.
    dirty: bool,
    /// File input: the position after the last chunk.
    file_end: (u64, u64),
    /// Fingerprints of the messages since the last checkpoint, and of
    /// those of the one before with the last sequence number it covers:
    /// they are recorded again only while their acks are not yet sent (a
    /// body hash recorded after its ack could match a later identical
    /// message and drop it).
    covered: Vec<Vec<u8>>,
    previous: Vec<Vec<u8>>,
    previous_seq: u64,
    /// The last checkpoint (id, last sequence number) whose acks are not
    /// yet known committed; marked in the store once they are.
    awaiting_ack: Option<(u64, u64)>,
}

impl<'a> Coordinator<'a> {
    fn new(
        ctx: &'a Ctx,
        workers: usize,
        senders: Vec<SyncSender<Work>>,
        sinks: &'a Sinks,
        counters: &'a Counters,
        acks: Option<&'a dyn Acknowledger>,
        max_keys: u64,
    ) -> Coordinator<'a> {
        Coordinator {
            keys: rustc_hash::FxHashSet::default(),
            max_keys,
            key_limit_reason: format!(
                "the tenant already holds state for {max_keys} keys, this host's ceiling \
                 (max_keys): rows of further keys are dead-lettered"
            ),
            ctx,
            workers,
            senders,
            sinks,
            counters,
            wm: i64::MIN,
            max_time: None,
            last_record: Instant::now(),
            wm_at_last_record: i64::MIN,
            keyless: 0,
            keyless_metrics: ctx
                .globals
                .iter()
                .map(|(name, every)| KeylessMetric {
                    name: name.clone(),
                    every: *every,
                    next: None,
                    emitted: 0,
                })
                .collect(),
            dead: sinks.buffer(),
            out: sinks.buffer(),
            acks,
            checkpoints: None,
            last_seq: None,
            suspend: None,
            live: None,
        }
    }

    /// Takes checkpoints from now on, resuming from `options.restore`.
    fn checkpoints(&mut self, options: &CheckpointOptions) {
        let mut c = Checkpoints {
            store: Arc::clone(&options.store),
            interval: options.interval,
            every_rows: options.every_rows,
            every_messages: options.every_messages,
            module_hash: options.module_hash.clone(),
            next_id: 1,
            last_at: Instant::now(),
            rows_since: 0,
            dirty: false,
            file_end: (0, 0),
            covered: Vec::new(),
            previous: Vec::new(),
            previous_seq: 0,
            awaiting_ack: None,
        };
        if let Some(saved) = &options.restore {
            c.next_id = saved.id + 1;
            match &saved.input {
                state::InputPosition::File { offset, line } => c.file_end = (*offset, *line),
                state::InputPosition::Messages { unacked } => {
                    // Their redeliveries come first after the restart; the
                    // next checkpoint records them again in case it is the
                    // one the next restart uses.
                    c.previous = unacked.clone();
                    c.previous_seq = u64::MAX;
                }
            }
            let s = &saved.coordinator;
            self.wm = s.wm;
            self.max_time = s.max_time;
            self.wm_at_last_record = s.wm_at_last_record;
            self.keyless = s.keyless;
            self.keys = saved.guards.keys.iter().copied().collect();
            for (m, (next, emitted)) in self.keyless_metrics.iter_mut().zip(&s.keyless_metrics) {
                m.next = *next;
                m.emitted = *emitted;
            }
        }
        self.checkpoints = Some(c);
    }

    /// Marks the last checkpoint acknowledged once the input's acks for it
    /// are committed.
    fn mark_acked(&mut self) -> Result<()> {
        let (Some(acks), Some(c)) = (self.acks, self.checkpoints.as_mut()) else {
            return Ok(());
        };
        if let Some((id, seq)) = c.awaiting_ack {
            if acks.acked() >= seq {
                c.store.mark_acked(id)?;
                c.awaiting_ack = None;
            }
        }
        Ok(())
    }

    /// Whether a checkpoint is due: the interval passed, enough rows or
    /// unacked messages piled up, or the input went quiet — a broker's
    /// input is acked only with checkpoints, so a quiet input must not
    /// wait a long interval for the acks of its last messages (nor an
    /// `--until-idle` run for its end).
    fn checkpoint_due(&self) -> bool {
        self.checkpoints.as_ref().is_some_and(|c| {
            c.dirty
                && (c.last_at.elapsed() >= c.interval
                    || self.last_record.elapsed() >= c.interval.min(QUIET_CHECKPOINT)
                    || c.every_rows.is_some_and(|n| c.rows_since >= n)
                    || c.every_messages.is_some_and(|n| c.covered.len() >= n))
        })
    }

    /// A barrier through every shard, then the checkpoint, written
    /// durably, then the acknowledgement of the input it covers.
    fn checkpoint(&mut self) -> Result<()> {
        let Some(c) = self.checkpoints.as_mut() else {
            return Ok(());
        };
        let (tx, rx) = mpsc::sync_channel(self.workers);
        for s in &self.senders {
            s.send(Work::Checkpoint(tx.clone()))
                .map_err(|_| Error::WorkerGone)?;
        }
        drop(tx);
        let mut shards: Vec<Option<state::ShardState>> = vec![None; self.workers];
        for _ in 0..self.workers {
            let (worker, shard) = rx.recv().map_err(|_| Error::WorkerGone)?;
            shards[worker] = Some(shard?);
        }
        self.sinks.sync()?;
        state::failpoint::hit("after-output-before-checkpoint");
        let input = if let Some(acks) = self.acks {
            let mut unacked = if acks.acked() < c.previous_seq {
                c.previous.clone()
            } else {
                Vec::new()
            };
            unacked.extend(c.covered.iter().cloned());
            state::InputPosition::Messages { unacked }
        } else {
            state::InputPosition::File {
                offset: c.file_end.0,
                line: c.file_end.1,
            }
        };
        let summary = self.counters.snapshot(Duration::ZERO);
        let checkpoint = Checkpoint {
            id: c.next_id,
            tenant: self.ctx.tenant.clone(),
            module_hash: c.module_hash.clone(),
            input,
            output_bytes: Some(self.sinks.output.written()),
            dead_letter_bytes: Some(self.sinks.dead_letter.written()),
            coordinator: state::CoordinatorState {
                wm: self.wm,
                max_time: self.max_time,
                wm_at_last_record: self.wm_at_last_record,
                keyless: self.keyless,
                keyless_metrics: self
                    .keyless_metrics
                    .iter()
                    .map(|m| (m.next, m.emitted))
                    .collect(),
            },
            counters: (&summary).into(),
            shards: shards.into_iter().flatten().collect(),
            guards: state::GuardState {
                future_dropped: summary.future_dropped,
                limited: summary.limited,
                keys: {
                    let mut keys: Vec<u64> = self.keys.iter().copied().collect();
                    keys.sort_unstable();
                    keys
                },
            },
        };
        let started = Instant::now();
        c.store.write(&checkpoint)?;
        tracing::debug!(
            id = checkpoint.id,
            took_ms = started.elapsed().as_millis() as u64,
            "checkpoint written"
        );
        state::failpoint::hit("after-checkpoint-before-ack");
        if let (Some(acks), Some(seq)) = (self.acks, self.last_seq) {
            acks.settled(0, seq);
            c.awaiting_ack = Some((checkpoint.id, seq));
        }
        c.previous = std::mem::take(&mut c.covered);
        c.previous_seq = self.last_seq.unwrap_or(0);
        c.next_id += 1;
        c.last_at = Instant::now();
        c.rows_since = 0;
        c.dirty = false;
        Ok(())
    }

    fn run(
        &mut self,
        rx: &Receiver<Chunk>,
        progress: &indicatif::ProgressBar,
        counters: &Counters,
        started: Instant,
        panes: &[std::sync::atomic::AtomicUsize],
    ) -> Result<()> {
        // How often a quiet input is looked at: often enough that windows
        // fire within about a tenth of the timeout of becoming due.
        let idle_tick = self
            .ctx
            .idle_timeout
            .map(|t| (t / 10).clamp(Duration::from_millis(5), Duration::from_secs(1)));
        // A quiet input still gets its checkpoint (and its acks) on time.
        let checkpoint_tick = self
            .checkpoints
            .as_ref()
            .map(|c| (c.interval / 4).clamp(Duration::from_millis(5), Duration::from_secs(1)));
        let tick = match (idle_tick, checkpoint_tick) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let mut last_progress = Instant::now();
        loop {
            let chunk = match tick {
                None => rx.recv().ok(),
                Some(tick) => match rx.recv_timeout(tick) {
                    Ok(chunk) => Some(chunk),
                    Err(RecvTimeoutError::Timeout) => {
                        self.idle()?;
                        self.mark_acked()?;
                        if self.checkpoint_due() {
                            self.checkpoint()?;
                        }
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => None,
                },
            };
            let Some(chunk) = chunk else { break };
            self.chunk(chunk)?;
            if last_progress.elapsed() >= Duration::from_millis(250) {
                last_progress = Instant::now();
                let s = counters.snapshot(started.elapsed());
                let open: usize = panes
                    .iter()
                    .map(|p| p.load(std::sync::atomic::Ordering::Relaxed))
                    .sum();
                progress.set_message(format!(
                    "{} rows, {} MB, {} bad, {} late, {} outputs, {:.0} events/s, {open} panes",
                    s.rows_in,
                    s.bytes_in / 1_000_000,
                    s.bad_rows,
                    s.late_dropped,
                    s.outputs,
                    s.events_per_sec()
                ));
            }
        }
        let suspended = self.acks.is_some()
            && self.checkpoints.is_some()
            && self
                .suspend
                .as_ref()
                .is_some_and(|s| s.load(Ordering::Acquire));
        if suspended {
            // Open windows stay open: they are in the checkpoint below, and
            // the run that restores it fires them.
            tracing::info!(tenant = %self.ctx.tenant, "input suspended: checkpointing without firing windows");
        } else {
            for tx in &self.senders {
                // A worker that hung up has failed; its join reports why.
                let _ = tx.send(Work::Flush);
            }
            self.keyless_at_end();
            self.write()?;
        }
        // Broker input: the flushed state is checkpointed before the last
        // messages are acked, so a restart does not lose them.
        if self.acks.is_some() {
            if let Some(c) = self.checkpoints.as_mut() {
                c.dirty = true;
                self.checkpoint()?;
            }
        }
        Ok(())
    }

    /// Routes one chunk of parsed records, in batches of rows.
    fn chunk(&mut self, chunk: Chunk) -> Result<()> {
        self.last_record = Instant::now();
        self.counters
            .add_input(chunk.rows.len() as u64, chunk.bytes);
        let mut rows: Vec<Vec<(ParsedRow, i64)>> = (0..self.workers).map(|_| Vec::new()).collect();
        let mut positions: Vec<Vec<RowPos>> = (0..self.workers).map(|_| Vec::new()).collect();
        let mut bad: Vec<Vec<(BadRow, i64)>> = (0..self.workers).map(|_| Vec::new()).collect();
        let (mut n_bad, mut n_keyless, mut n_future, mut n_limited) = (0u64, 0u64, 0u64, 0u64);
        let shards = u32::try_from(self.workers).unwrap_or(u32::MAX);
        let n_rows = chunk.rows.len() as u64;
        let mut chunk_positions = chunk.positions.into_iter();
        for item in chunk.rows {
            let position = chunk_positions.next();
            match item {
                Ok(row) if !self.admit(&row.key) => {
                    n_limited += 1;
                    self.ctx.dead_letter(
                        DeadLetter::Limit {
                            row: &row,
                            reason: &self.key_limit_reason,
                        },
                        &mut self.dead,
                    );
                }
                Ok(row) => {
                    let before = self.wm;
                    self.max_time = Some(self.max_time.map_or(row.time, |m| m.max(row.time)));
                    self.wm = self
                        .wm
                        .max(row.time.saturating_sub(self.ctx.max_out_of_orderness));
                    let shard = row.key.shard(shards) as usize;
                    rows[shard].push((row, before));
                    if let Some(position) = position {
                        positions[shard].push(position);
                    }
                }
                Err(mut b) => {
                    let future = b.kind == BadKind::Future;
                    if future {
                        n_future += 1;
                    } else {
                        n_bad += 1;
                    }
                    self.ctx.dead_letter(DeadLetter::BadRow(&b), &mut self.dead);
                    if future {
                        // Its time is not believed: it counts against its
                        // key at the latest time seen, like a bad row whose
                        // time does not read.
                        b.time = None;
                    }
                    if b.time.is_none() {
                        b.time = self.max_time;
                    }
                    let keyed = b.time.is_some() && b.key.as_ref().is_some_and(|k| self.admit(k));
                    match (&b.key, keyed) {
                        (Some(key), true) => {
                            let shard = key.shard(shards) as usize;
                            bad[shard].push((b, self.wm));
                        }
                        _ => {
                            if !future {
                                n_keyless += 1;
                            }
                            self.keyless += 1;
                        }
                    }
                }
            }
            // The keyless metric is emitted as the watermark passes each
            // period boundary, counting what arrived before.
            self.keyless_passed();
        }
        self.wm_at_last_record = self.wm;
        if let Some(live) = &self.live {
            live.watermark.store(self.wm, Ordering::Relaxed);
            if let Ok(mut keys) = live.keys.lock() {
                let good = rows.iter().flatten().map(|(r, _)| &r.key);
                let bad = bad.iter().flatten().filter_map(|(b, _)| b.key.as_ref());
                keys.extend(good.chain(bad).map(Key::hash64));
            }
        }
        self.counters.add_bad_rows(n_bad, n_keyless);
        if n_future > 0 {
            self.counters.add_future_dropped(n_future);
        }
        if n_limited > 0 {
            self.counters.add_limited(n_limited);
        }
        self.send(rows, positions, bad, chunk.seq, chunk.published_ms)?;
        self.write()?;
        if chunk.seq.is_some() {
            self.last_seq = chunk.seq;
        }
        match self.checkpoints.as_mut() {
            None => {
                if let (Some(acks), Some(seq)) = (self.acks, chunk.seq) {
                    acks.settled(self.workers, seq);
                }
            }
            Some(_) => {
                self.mark_acked()?;
                let Some(c) = self.checkpoints.as_mut() else {
                    return Ok(());
                };
                c.dirty = true;
                c.rows_since += n_rows;
                if let Some(end) = chunk.end {
                    c.file_end = end;
                }
                c.covered.extend(chunk.fingerprints);
                if self.checkpoint_due() {
                    self.checkpoint()?;
                }
            }
        }
        Ok(())
    }

    /// Whether `key` may hold state: already admitted, or room for one
    /// more under the key ceiling.
    #[inline]
    fn admit(&mut self, key: &Key) -> bool {
        let hash = key.hash64();
        if self.keys.contains(&hash) {
            return true;
        }
        if self.keys.len() as u64 >= self.max_keys {
            return false;
        }
        self.keys.insert(hash);
        true
    }

    fn send(
        &mut self,
        rows: Vec<Vec<(ParsedRow, i64)>>,
        positions: Vec<Vec<RowPos>>,
        bad: Vec<Vec<(BadRow, i64)>>,
        seq: Option<u64>,
        published_ms: Option<i64>,
    ) -> Result<()> {
        let sent_at = Instant::now();
        for (((tx, rows), positions), bad) in self.senders.iter().zip(rows).zip(positions).zip(bad)
        {
            let work = Work::Batch {
                rows,
                positions,
                bad,
                wm_after: self.wm,
                seq,
                sent_at,
                published_ms,
            };
            if tx.send(work).is_err() {
                // The worker failed; stop reading. Its join says why.
                return Err(Error::Panicked(
                    "a worker stopped early; see its error".into(),
                ));
            }
        }
        Ok(())
    }

    /// The input is quiet: when it has been so for `idle_timeout`, advance
    /// the watermark by the wall time since the last record.
    fn idle(&mut self) -> Result<()> {
        let Some(timeout) = self.ctx.idle_timeout else {
            return Ok(());
        };
        let quiet = self.last_record.elapsed();
        if quiet < timeout || self.wm_at_last_record == i64::MIN {
            return Ok(());
        }
        let advanced = self
            .wm_at_last_record
            .saturating_add(i64::try_from(quiet.as_millis()).unwrap_or(i64::MAX));
        if advanced <= self.wm {
            return Ok(());
        }
        tracing::debug!(
            watermark = advanced,
            quiet_ms = quiet.as_millis() as u64,
            "idle input: watermark advanced"
        );
        self.wm = advanced;
        self.keyless_passed();
        let rows = (0..self.workers).map(|_| Vec::new()).collect();
        let positions = (0..self.workers).map(|_| Vec::new()).collect();
        let bad = (0..self.workers).map(|_| Vec::new()).collect();
        self.send(rows, positions, bad, None, None)?;
        self.write()
    }

    /// Emits the keyless metric of each global window whose next boundary
    /// the watermark has passed.
    fn keyless_passed(&mut self) {
        if self.wm == i64::MIN {
            return;
        }
        for i in 0..self.keyless_metrics.len() {
            let m = &mut self.keyless_metrics[i];
            let next = *m
                .next
                .get_or_insert_with(|| next_multiple_above(self.wm, m.every));
            if self.wm < next {
                continue;
            }
            // Every boundary passed at once counts the same rows: one line.
            let boundary = self.wm.div_euclid(m.every) * m.every;
            m.next = Some(boundary.saturating_add(m.every));
            if self.keyless > m.emitted {
                m.emitted = self.keyless;
                let (name, start) = (m.name.clone(), boundary - m.every);
                self.keyless_line(&name, start, boundary);
            }
        }
    }

    fn keyless_at_end(&mut self) {
        let end_time = self.max_time.unwrap_or(0);
        for i in 0..self.keyless_metrics.len() {
            let m = &mut self.keyless_metrics[i];
            if self.keyless > m.emitted {
                m.emitted = self.keyless;
                let end = next_multiple_above(end_time, m.every);
                let (name, start) = (m.name.clone(), end - m.every);
                self.keyless_line(&name, start, end);
            }
        }
    }

    fn keyless_line(&mut self, window: &str, start: i64, end: i64) {
        let data = [DataField {
            name: window::DATA_CONVERSION_ERRORS.to_owned(),
            value: Value::Int(i64::try_from(self.keyless).unwrap_or(i64::MAX)),
        }];
        self.out.push_record(&Record {
            tenant: &self.ctx.tenant,
            ty: OutputType::GlobalMetric,
            window: Some(WindowRef {
                name: window,
                start,
                end,
            }),
            key_names: &self.ctx.key_names,
            key: None,
            data: Data::Fields(&data),
            update: 0,
        });
        self.counters.add_outputs(1, 0);
    }

    fn write(&mut self) -> Result<()> {
        let no_events = self.ctx.events(&[]);
        self.sinks.batch(&self.out, &self.dead, &no_events)?;
        self.out.clear();
        self.dead.clear();
        Ok(())
    }
}

/// The smallest multiple of `every` strictly above `t`.
fn next_multiple_above(t: i64, every: i64) -> i64 {
    (t.div_euclid(every) + 1).saturating_mul(every)
}

/// One worker: one shard's windows, alert states and tenant calls.
struct Shard<'a, C> {
    worker: usize,
    ctx: &'a Ctx,
    calls: C,
    windows: ShardWindows,
    alert_states: alerts::States,
    counters: &'a Counters,
    sinks: &'a Sinks,
    acks: Option<&'a dyn Acknowledger>,
    peak_panes: usize,
    latency: Option<&'a dyn LatencyObserver>,
}

impl<C: ShardCalls> Shard<'_, C> {
    /// Processes batches until the end of input; returns the peak of open
    /// panes.
    fn run(
        &mut self,
        rx: &Receiver<Work>,
        panes: &std::sync::atomic::AtomicUsize,
    ) -> Result<usize> {
        let mut out = self.sinks.buffer();
        let mut dead = self.sinks.buffer();
        while let Ok(work) = rx.recv() {
            let mut emitted = Emitted::default();
            let mut alert_lines = 0;
            let mut settles = None;
            let mut batch_rows = Vec::new();
            let mut batch_positions = Vec::new();
            let mut timing = None;
            match work {
                Work::Batch {
                    rows,
                    positions,
                    bad,
                    wm_after,
                    seq,
                    sent_at,
                    published_ms,
                } => {
                    settles = seq;
                    timing = Some((sent_at, published_ms));
                    if let Some(function) = &self.ctx.alert_function {
                        alert_lines = alerts::run(
                            self.worker,
                            self.ctx,
                            function,
                            &mut self.calls,
                            &mut self.alert_states,
                            self.windows.budget_mut(),
                            &rows,
                            &mut out,
                            &mut dead,
                            self.counters,
                        )?;
                    }
                    self.windows
                        .push(&rows, &bad, wm_after, &mut self.calls, &mut emitted)
                        .map_err(|source| Error::Window {
                            worker: self.worker,
                            source,
                        })?;
                    batch_rows = rows;
                    batch_positions = positions;
                }
                Work::Flush => {
                    self.windows
                        .flush(&mut self.calls, &mut emitted)
                        .map_err(|source| Error::Window {
                            worker: self.worker,
                            source,
                        })?;
                }
                Work::Checkpoint(reply) => {
                    let state = self.snapshot();
                    // The coordinator waits for this; if it is gone, so is the run.
                    let _ = reply.send((self.worker, state));
                    continue;
                }
            }
            self.render(&emitted, &mut out, &mut dead);
            self.counters
                .add_outputs(emitted.outputs.len() as u64 + alert_lines, alert_lines);
            self.counters.add_late_dropped(emitted.late.len() as u64);
            self.counters.add_poisoned(emitted.poisoned.len() as u64);
            let open = self.windows.open_panes();
            self.peak_panes = self.peak_panes.max(open);
            panes.store(open, std::sync::atomic::Ordering::Relaxed);
            // Every row that parsed is a raw event, late ones too.
            let events: Vec<Event<'_>> = batch_rows
                .iter()
                .zip(&batch_positions)
                .map(|((row, _), position)| Event {
                    key: &row.key,
                    time: row.time,
                    values: &row.values,
                    position,
                })
                .collect();
            self.sinks.batch(&out, &dead, &self.ctx.events(&events))?;
            if let (Some(latency), Some((sent_at, published_ms))) = (self.latency, timing) {
                // Measured once the sinks have confirmed the outputs.
                if !emitted.outputs.is_empty() {
                    latency.window_fire(sent_at.elapsed());
                }
                let outputs = emitted.outputs.len() as u64 + alert_lines;
                if let Some(at) = published_ms.filter(|_| outputs > 0) {
                    latency.end_to_end(crate::metrics::since_epoch_ms(at));
                }
            }
            out.clear();
            dead.clear();
            if let (Some(acks), Some(seq)) = (self.acks, settles) {
                acks.settled(self.worker, seq);
            }
        }
        Ok(self.peak_panes)
    }

    /// This shard's state for a checkpoint.
    fn snapshot(&self) -> Result<state::ShardState> {
        let windows = self.windows.snapshot().map_err(|source| Error::Window {
            worker: self.worker,
            source,
        })?;
        let mut alert_states: Vec<(parse::Key, Vec<u8>)> = self
            .alert_states
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        alert_states.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Ok(state::ShardState {
            windows,
            alert_states,
        })
    }

    fn render(&self, emitted: &Emitted, out: &mut Rendered, dead: &mut Rendered) {
        for o in &emitted.outputs {
            out.push_record(&Record {
                tenant: &self.ctx.tenant,
                ty: match o.kind {
                    OutputKind::WindowedAnalytic => OutputType::WindowedAnalytic,
                    OutputKind::GlobalAnalytic => OutputType::GlobalAnalytic,
                    OutputKind::WindowedMetric => OutputType::WindowedMetric,
                    OutputKind::GlobalMetric => OutputType::GlobalMetric,
                },
                window: Some(WindowRef {
                    name: &o.window,
                    start: o.start,
                    end: o.end,
                }),
                key_names: &self.ctx.key_names,
                key: Some(&o.key),
                data: Data::Fields(&o.data),
                update: o.update,
            });
        }
        for row in &emitted.late {
            self.ctx.dead_letter(DeadLetter::Late { row }, dead);
        }
        for p in &emitted.poisoned {
            let (rows, bounds): (Vec<&ParsedRow>, _) = match &p.input {
                PoisonedInput::Rows(rows) => (rows.iter().collect(), None),
                PoisonedInput::Window { start, end } => (Vec::new(), Some((*start, *end))),
            };
            self.ctx.dead_letter(
                DeadLetter::Poison {
                    function: None,
                    window: Some(&p.window),
                    bounds,
                    key: &p.key,
                    rows: &rows,
                    error: &p.error,
                },
                dead,
            );
        }
    }
}
