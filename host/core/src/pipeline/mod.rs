//! The embedded pipeline: one tenant's input, read, parsed, keyed and
//! spread over shard workers, each running the tenant's windows and alert
//! function, with results and dead letters written as JSON lines.
//!
//! ```text
//!  read.rs            coordinator.rs                shard.rs
//!  reader ───Chunk───▶ coordinator ──Work::Batch───▶ worker 0 (shard 0: alerts, windows) ─┐
//!  (read + parse)      (watermark,    Work::Flush    worker 1 (shard 1: …)               ├─▶ sinks
//!                       keyless       (every worker,  …                                  ─┘
//!                       errors,        each batch)
//!                       key ceiling)
//!                      checkpoint.rs: ──Work::Checkpoint(reply)──▶ every worker (the barrier)
//!                      barrier, commit ◀───(worker, ShardState)─── each worker, on `reply`
//!                      → store, → ack
//! ```
//!
//! Files: `mod.rs` the entry ([`run_with`]: instantiate, restore,
//! start the threads, join them) and what they share (`Ctx`);
//! `options.rs` how to run ([`Options`] and its parts); `read.rs` the
//! reader; `coordinator.rs` the coordinator and the keyless metric;
//! `checkpoint.rs` the checkpoint protocol the coordinator runs;
//! `shard.rs` the shard worker (and `Work`, what it is sent); `alerts.rs`
//! the alert function's calls; `limits.rs` the host's ceilings and the
//! `max_future` guard.
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
mod checkpoint;
mod coordinator;
mod limits;
mod options;
mod read;
mod shard;
#[cfg(test)]
mod tests;

use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::data::{self, SandboxError};
use crate::ingress::Input;
use crate::manifest::{Manifest, WindowKind};
use crate::metrics::{Counters, Summary};
use crate::parse::{self, RowParser};
pub use crate::sink::Sinks;
use crate::sink::{self, DeadLetter, DeadLetterRecord, Event, EventBatch, Rendered};
use crate::state;
use crate::window::{self, ShardWindows, WindowCalls};

pub use alerts::AlertCalls;
use coordinator::Coordinator;
pub use limits::{CeilingError, Ceilings, FutureGuard};
pub use options::{CheckpointOptions, Live, Options, RowSelect, DEFAULT_BATCH_ROWS};
use read::{read_input, read_messages, Chunk, Chunking};
use shard::{Shard, Work};

/// Result of pipeline operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

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
        source: data::BatchError,
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

/// Runs `manifest`'s tenant over `input`; `calls(worker)` makes the tenant
/// calls of each worker (a sandbox instance, or a native stand-in; the
/// host's runner instantiates the sandboxed module once per worker).
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

    let progress = options.progress.as_deref();
    if let Some(progress) = progress {
        progress.started();
    }

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
        let outcome = coordinator.run(&chunk_rx, progress, &counters, started, &panes);
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
        if let Some(progress) = progress {
            progress.finished();
        }
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
    schema: Vec<data::FieldDef>,
    alert_function: Option<String>,
    max_out_of_orderness: i64,
    idle_timeout: Option<Duration>,
    /// Global windows: (name, emit_every ms), for the tenant-level metric.
    globals: Vec<(String, i64)>,
    /// Alert calls that failed on a key's events (each one dead-lettered):
    /// a few logged in full, the rest counted.
    alert_failures: crate::repeats::Repeats,
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
            alert_failures: crate::repeats::Repeats::new(
                &manifest.tenant,
                "alert call failed on this key's events; dead-lettered",
            ),
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
