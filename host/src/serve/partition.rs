//! A partitioned tenant (`[input] partitions = P`) inside `sluice serve`:
//! P partitions, each the unit of state — its own watermark, windows,
//! tenant state and checkpoints — consumed by every host, run by one.
//!
//! Per partition, a thread on each host loops through:
//! 1. **standby**: a consumer on `<queue>.p<N>` (a single-active-consumer
//!    queue); the broker delivers nothing until it makes this consumer
//!    the active one — the first delivery says so, and is held;
//! 2. **takeover**: the partition is claimed in Cassandra (a new
//!    ownership generation, which fences the previous owner's checkpoint
//!    writes), its newest checkpoint restored, and the held deliveries
//!    applied, redeliveries the checkpoint covers recognised;
//! 3. **active**: the ordinary pipeline ([`Runner`]) with one worker (a
//!    partition's checkpoint must restore on any host, whatever its core
//!    count; the partitions are the parallelism), checkpoints in
//!    Cassandra, acks after them;
//! 4. the end: a lost broker connection ends it at once — sinks and store
//!    refuse everything from then on, since another host may already own
//!    the partition — and a suspend (shutdown, handover) checkpoints the
//!    open windows and acks before the consumer goes, so the next owner
//!    carries on exactly. Then back to 1 (unless the host is stopping).
//!
//! **Balance**: the broker makes the longest-waiting consumer active, so a
//! host that started first would own everything. Each second the host
//! compares what it owns with its share, ⌈P / hosts⌉ (hosts = the
//! partition queues' consumer count), and hands the excess over once its
//! partitions have settled: per partition a suspend, then a fresh consumer
//! at the back of the queue's line, so the broker activates the next host
//! (which hands on what puts it above its share in turn).

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::amqp::ingress::{AmqpIngress, AmqpIngressConfig, IngressControl};
use crate::amqp::topology::{self, Partitioned};
use crate::cassandra::store::{CassandraStore, CassandraStoreOptions};
use crate::ingress::Input;
use crate::manifest::Manifest;
use crate::metrics::prometheus::CheckpointMetrics;
use crate::metrics::{Counters, Summary};
use crate::pipeline::{Live, Options, Sinks};
use crate::runner::{self, RunSpec, Runner};
use crate::sandbox::TenantModule;
use crate::sink::{self, EventBatch, LineSink, MessageSink, Rendered, Stream, TableSink};
use crate::state::{self, Checkpoint, CheckpointStore, Restored};

use super::env::{RunEnv, StateDb};

/// A host hands a partition over at most this often, and only when every
/// partition it owns has been its own this long: a partition that just
/// moved is not moved on at once.
const SETTLE: Duration = Duration::from_secs(2);

/// The checkpoint name of a partition among its tenant's.
pub fn checkpoint_name(queue: &str, index: u16) -> String {
    format!("{queue}#p{index}")
}

/// Why a partition's thread could not start, an activation failed (it is
/// retried), or partitions' threads panicked. Each message carries its
/// cause's text (these are logged and shown as they are), so the cause is
/// not also returned by `source()`.
#[derive(Debug, thiserror::Error)]
pub enum PartitionError {
    #[error("starting partition {index}'s thread: {error}")]
    Thread { index: u16, error: std::io::Error },
    #[error("the thread of partition(s) {} panicked", list(.partitions))]
    Panicked { partitions: Vec<usize> },
    #[error("consuming {queue}: {error}")]
    Consume {
        queue: String,
        error: Box<crate::amqp::Error>,
    },
    #[error("the consumer has no activation signal")]
    NoActivationSignal,
    #[error("the standby consumer ended")]
    StandbyEnded,
    #[error("acknowledging partition {index}'s input: {error}")]
    Acknowledge {
        index: u16,
        error: Box<crate::amqp::Error>,
    },
    #[error("the partition's input ended")]
    InputEnded,
    #[error("opening partition {index}'s checkpoints: {error}")]
    OpenCheckpoints {
        index: u16,
        error: Box<crate::cassandra::store::StoreError>,
    },
    #[error("claiming partition {index}: {error}")]
    Claim {
        index: u16,
        error: Box<crate::cassandra::store::StoreError>,
    },
    #[error("restoring partition {index}: {error}")]
    Restore {
        index: u16,
        error: Box<state::Error>,
    },
    #[error("connecting partition {index}'s result sink: {error}")]
    ResultSink {
        index: u16,
        error: Box<crate::amqp::Error>,
    },
    #[error("partition {index}'s pipeline: {error}")]
    Pipeline {
        index: u16,
        error: Box<crate::pipeline::Error>,
    },
    #[error("counting {queue}'s consumers: {error}")]
    CountConsumers {
        queue: String,
        error: Box<crate::amqp::Error>,
    },
}

/// `1, 3, 4`.
fn list(partitions: &[usize]) -> String {
    partitions
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// One partition as this host sees it (`sluice list`, `/metrics`).
#[derive(Debug, Clone, Serialize)]
pub struct PartitionView {
    pub partition: u16,
    pub queue: String,
    /// `active` (this host runs it) or `standby` (waiting for the broker).
    pub state: &'static str,
    /// Ownership generation of the running activation (0: none yet).
    pub generation: i64,
    /// Seconds since this host took the partition over.
    pub owned_for_secs: Option<u64>,
    /// Messages ready in the partition queue plus those delivered here and
    /// not yet acked.
    pub lag: u64,
    /// Hosts consuming the partition (the queue's consumers).
    pub hosts: u64,
    /// The partition's input watermark, ms (while active).
    pub watermark: Option<i64>,
    /// Distinct keys this activation has read.
    pub keys: usize,
    /// The partition's records so far (restored with its checkpoint).
    pub records_in: u64,
    /// Times this host took the partition over / lost it / handed it on.
    pub takeovers: u64,
    pub losses: u64,
    pub handovers: u64,
}

/// What one partition's thread shares with the host.
#[derive(Default)]
struct PartitionState {
    owned: AtomicBool,
    generation: AtomicI64,
    owned_since: Mutex<Option<Instant>>,
    /// Counted into by the active pipeline (reset to the checkpoint's).
    counters: Arc<Counters>,
    live: Mutex<Option<Arc<Live>>>,
    control: Mutex<Option<IngressControl>>,
    /// End the current activation keeping its state (handover, shutdown).
    suspend: Arc<AtomicBool>,
    /// The current end is a handover: consume again afterwards.
    handover: AtomicBool,
    takeovers: AtomicU64,
    losses: AtomicU64,
    handovers: AtomicU64,
}

impl PartitionState {
    fn control(&self) -> Option<IngressControl> {
        self.control.lock().ok().and_then(|c| c.clone())
    }

    fn owned_for(&self) -> Option<Duration> {
        self.owned_since
            .lock()
            .ok()
            .and_then(|s| s.map(|at| at.elapsed()))
    }
}

/// Everything a partition's thread needs.
struct Ctx {
    env: RunEnv,
    db: StateDb,
    manifest: Manifest,
    module: TenantModule,
    input: Partitioned,
    tables: Option<Arc<dyn TableSink>>,
    /// The host is stopping this tenant: no new activation.
    stop: Arc<AtomicBool>,
    /// The stop keeps state for a later run (shutdown), rather than ending
    /// the stream (undeploy). Set before `stop`.
    suspend_on_stop: Arc<AtomicBool>,
    paused: Arc<AtomicBool>,
    owner: String,
}

/// A partitioned tenant's partitions on this host.
pub struct PartitionedRun {
    partitions: Vec<(Arc<PartitionState>, Option<JoinHandle<()>>)>,
    queue: Partitioned,
    stop: Arc<AtomicBool>,
    suspend_on_stop: Arc<AtomicBool>,
    paused: Arc<AtomicBool>,
    last_handover: Mutex<Option<Instant>>,
}

impl PartitionedRun {
    /// Starts a standby consumer per partition.
    pub fn start(
        env: &RunEnv,
        db: StateDb,
        manifest: &Manifest,
        module: &TenantModule,
        tables: Option<Arc<dyn TableSink>>,
        count: u16,
    ) -> Result<PartitionedRun, PartitionError> {
        let input = Partitioned {
            base: manifest.input.queue.clone(),
            count,
        };
        let stop = Arc::new(AtomicBool::new(false));
        let suspend_on_stop = Arc::new(AtomicBool::new(false));
        let paused = Arc::new(AtomicBool::new(false));
        let ctx = Arc::new(Ctx {
            env: env.clone(),
            db,
            manifest: manifest.clone(),
            module: module.clone(),
            input: input.clone(),
            tables,
            stop: Arc::clone(&stop),
            suspend_on_stop: Arc::clone(&suspend_on_stop),
            paused: Arc::clone(&paused),
            owner: env.host_name.clone(),
        });
        let mut partitions = Vec::new();
        for index in 0..count {
            let state = Arc::new(PartitionState::default());
            let thread = {
                let ctx = Arc::clone(&ctx);
                let state = Arc::clone(&state);
                std::thread::Builder::new()
                    .name(format!("sluice-{}-p{index}", manifest.tenant))
                    .spawn(move || serve_partition(&ctx, index, &state))
                    .map_err(|error| PartitionError::Thread { index, error })?
            };
            partitions.push((state, Some(thread)));
        }
        Ok(PartitionedRun {
            partitions,
            queue: input,
            stop,
            suspend_on_stop,
            paused,
            last_handover: Mutex::new(None),
        })
    }

    pub fn pause(&self) {
        self.paused.store(true, Ordering::Release);
        for (state, _) in &self.partitions {
            if let Some(c) = state.control() {
                drop(c.pause());
            }
        }
    }

    pub fn resume(&self) {
        self.paused.store(false, Ordering::Release);
        for (state, _) in &self.partitions {
            if let Some(c) = state.control() {
                c.resume();
            }
        }
    }

    /// Starts ending every partition, without waiting: `suspend`
    /// checkpoints open windows for the next owner, otherwise they fire
    /// (undeploy). [`PartitionedRun::finished`] tells when all are over;
    /// the host polls it rather than join, so a partition stuck in a guest
    /// call holds no one but its tenant (the watchdog finds it).
    pub fn begin_stop(&self, suspend: bool) {
        self.suspend_on_stop.store(suspend, Ordering::Release);
        for (state, _) in &self.partitions {
            state.suspend.store(suspend, Ordering::Release);
        }
        self.stop.store(true, Ordering::Release);
        for (state, _) in &self.partitions {
            if let Some(c) = state.control() {
                c.end();
            }
        }
    }

    /// Whether every partition's thread has ended.
    pub fn finished(&self) -> bool {
        self.partitions
            .iter()
            .all(|(_, t)| t.as_ref().is_none_or(JoinHandle::is_finished))
    }

    /// Joins the partitions' threads (after [`PartitionedRun::begin_stop`];
    /// at once when [`PartitionedRun::finished`]). An error names the
    /// partitions whose thread panicked.
    pub fn join(mut self) -> Result<(), PartitionError> {
        let panicked: Vec<usize> = self
            .partitions
            .iter_mut()
            .enumerate()
            .filter_map(|(i, (_, thread))| {
                let panicked = thread.take()?.join().is_err();
                panicked.then_some(i)
            })
            .collect();
        if panicked.is_empty() {
            Ok(())
        } else {
            Err(PartitionError::Panicked {
                partitions: panicked,
            })
        }
    }

    /// The counters of the partitions this host owns, summed.
    pub fn summary(&self) -> Summary {
        let mut sum = Summary::default();
        for (state, _) in self
            .partitions
            .iter()
            .filter(|(s, _)| s.owned.load(Ordering::Acquire))
        {
            let s = state.counters.snapshot(Duration::ZERO);
            sum.rows_in += s.rows_in;
            sum.bytes_in += s.bytes_in;
            sum.bad_rows += s.bad_rows;
            sum.bad_rows_keyless += s.bad_rows_keyless;
            sum.late_dropped += s.late_dropped;
            sum.outputs += s.outputs;
            sum.alerts += s.alerts;
            sum.poisoned += s.poisoned;
            sum.future_dropped += s.future_dropped;
            sum.limited += s.limited;
        }
        sum
    }

    /// Ready messages and lag over every partition queue (each host
    /// samples every queue, so these are the tenant's, not this host's).
    pub fn depth_and_lag(&self) -> (u64, u64) {
        self.partitions
            .iter()
            .filter_map(|(s, _)| s.control())
            .fold((0, 0), |(d, l), c| {
                (d + c.gauges().queue_depth(), l + c.gauges().lag())
            })
    }

    pub fn views(&self) -> Vec<PartitionView> {
        self.partitions
            .iter()
            .enumerate()
            .map(|(i, (state, _))| {
                let index = u16::try_from(i).unwrap_or(u16::MAX);
                let owned = state.owned.load(Ordering::Acquire);
                let control = state.control();
                let live = state.live.lock().ok().and_then(|l| l.clone());
                let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
                PartitionView {
                    partition: index,
                    queue: self.queue.queue(index),
                    state: if owned { "active" } else { "standby" },
                    generation: state.generation.load(Ordering::Relaxed),
                    owned_for_secs: state.owned_for().map(|d| d.as_secs()),
                    lag: control.as_ref().map_or(0, |c| c.gauges().lag()),
                    hosts: control.as_ref().map_or(0, |c| c.gauges().consumers()),
                    watermark: live
                        .as_ref()
                        .map(|l| l.watermark.load(Ordering::Relaxed))
                        .filter(|w| owned && *w != i64::MIN),
                    keys: live.as_ref().map_or(0, |l| l.keys()),
                    records_in: state.counters.snapshot(Duration::ZERO).rows_in,
                    takeovers: n(&state.takeovers),
                    losses: n(&state.losses),
                    handovers: n(&state.handovers),
                }
            })
            .collect()
    }

    /// Called about once a second: hands partitions over when this host
    /// owns more than its share (see the module docs).
    pub fn balance(&self) {
        if self.paused.load(Ordering::Acquire) || self.stop.load(Ordering::Acquire) {
            return;
        }
        let owned: Vec<&Arc<PartitionState>> = self
            .partitions
            .iter()
            .map(|(s, _)| s)
            .filter(|s| s.owned.load(Ordering::Acquire))
            .collect();
        let hosts = self
            .partitions
            .iter()
            .filter_map(|(s, _)| s.control())
            .map(|c| c.gauges().consumers())
            .max()
            .unwrap_or(1)
            .max(1);
        let share = usize::from(self.queue.count).div_ceil(usize::try_from(hosts).unwrap_or(1));
        if owned.len() <= share {
            return;
        }
        let settled = owned.iter().all(|s| {
            s.owned_for().is_some_and(|d| d >= SETTLE) && !s.handover.load(Ordering::Acquire)
        });
        let Ok(mut last) = self.last_handover.lock() else {
            return;
        };
        if !settled || last.is_some_and(|at| at.elapsed() < SETTLE) {
            return;
        }
        // Those taken over last: the end of a chain of handovers moves on,
        // partitions that stayed put keep their warm state.
        let mut victims = owned.clone();
        victims.sort_by_key(|s| s.owned_for());
        victims.truncate(owned.len() - share);
        *last = Some(Instant::now());
        tracing::info!(
            queue = %self.queue.base,
            owned = owned.len(),
            hosts,
            share,
            handing_over = victims.len(),
            "owning more than this host's share of partitions: handing the excess over"
        );
        for victim in victims {
            let Some(control) = victim.control() else {
                continue;
            };
            victim.handover.store(true, Ordering::Release);
            victim.suspend.store(true, Ordering::Release);
            control.end();
        }
    }
}

/// How one activation ended.
enum Ended {
    /// The host is stopping the tenant.
    Stopped,
    /// The broker connection went; another host may own it now.
    Lost,
    /// Suspended and handed to the next host in the broker's line.
    HandedOver,
}

/// A partition's thread: activations until the host stops the tenant.
fn serve_partition(ctx: &Ctx, index: u16, state: &PartitionState) {
    let tenant = &ctx.manifest.tenant;
    let mut failures = 0u32;
    while !ctx.stop.load(Ordering::Acquire) {
        match activation(ctx, index, state) {
            Ok(Ended::Stopped) => break,
            Ok(Ended::Lost) => {
                state.losses.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%tenant, partition = index, "lost the partition's broker connection: stopped emitting, waiting to be active again");
                failures = 0;
            }
            Ok(Ended::HandedOver) => {
                state.handovers.fetch_add(1, Ordering::Relaxed);
                tracing::info!(%tenant, partition = index, "partition handed over");
                failures = 0;
            }
            Err(e) => {
                failures += 1;
                tracing::warn!(%tenant, partition = index, error = %e, "partition activation failed; retrying");
                // Up to 5 s between attempts, waking for a stop.
                let wait = Duration::from_millis(200 * u64::from(failures.min(25)));
                let until = Instant::now() + wait;
                while Instant::now() < until && !ctx.stop.load(Ordering::Acquire) {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
        state.owned.store(false, Ordering::Release);
        if let Ok(mut s) = state.owned_since.lock() {
            *s = None;
        }
    }
    if let Ok(mut c) = state.control.lock() {
        *c = None;
    }
}

/// One standby → active → end cycle.
fn activation(ctx: &Ctx, index: u16, state: &PartitionState) -> Result<Ended, PartitionError> {
    let env = &ctx.env;
    let rt = &env.runtime;
    let queue = ctx.input.queue(index);
    if ctx.stop.load(Ordering::Acquire) {
        return Ok(Ended::Stopped);
    }
    state.suspend.store(false, Ordering::Release);
    state.handover.store(false, Ordering::Release);
    let (input, mut ingress) = rt
        .block_on(AmqpIngress::start(
            AmqpIngressConfig {
                skip: Vec::new(),
                commit_acks: true,
                partitioned: Some(ctx.input.clone()),
                await_activation: true,
                reconnect: false,
                ..runner::consumer(env.amqp.clone(), queue.clone(), env.prefetch)
            },
            rt.clone(),
        ))
        .map_err(|e| PartitionError::Consume {
            queue: queue.clone(),
            error: Box::new(e),
        })?;
    let control = ingress.control();
    if let Ok(mut c) = state.control.lock() {
        *c = Some(control.clone());
    }
    if ctx.paused.load(Ordering::Acquire) {
        drop(control.pause());
    }
    let Some(mut activated) = ingress.activation() else {
        return Err(PartitionError::NoActivationSignal);
    };
    // Standby until the broker delivers (or the host stops the tenant).
    let active = loop {
        if ctx.stop.load(Ordering::Acquire) {
            control.end();
            let _ = ingress.finish();
            if !ctx.suspend_on_stop.load(Ordering::Acquire) {
                flush_unowned(ctx, index, state)?;
            }
            return Ok(Ended::Stopped);
        }
        // The timer is made inside the runtime (it needs its reactor).
        let waited = rt.block_on(async {
            tokio::time::timeout(Duration::from_millis(200), &mut activated).await
        });
        match waited {
            Ok(Ok(())) => break true,
            Ok(Err(_)) => break false,
            Err(_) => continue,
        }
    };
    if !active {
        let lost = control.lost().load(Ordering::Acquire);
        let _ = ingress.finish();
        return if lost {
            Ok(Ended::Lost)
        } else {
            Err(PartitionError::StandbyEnded)
        };
    }

    // Takeover: claim (fencing the previous owner), restore, apply.
    let started = Instant::now();
    let (store, restore) = claim(ctx, index, state)?;
    let skip = runner::unacked(restore.as_ref());
    tracing::info!(
        tenant = %ctx.manifest.tenant,
        partition = index,
        generation = store.generation().unwrap_or(0),
        checkpoint = restore.as_ref().map(|c| c.id),
        took_ms = started.elapsed().as_millis() as u64,
        "took the partition over"
    );
    control.activate(skip);
    let lost = Arc::clone(control.lost());
    let result = run_partition(ctx, index, state, store, restore, input, &lost);
    state.owned.store(false, Ordering::Release);
    if lost.load(Ordering::Acquire) {
        return Ok(Ended::Lost);
    }
    let store = match result {
        Ok(store) => store,
        Err(e) => {
            // Dropping the consumer closes its connection: what it holds
            // unacked goes back to the queue for the next owner.
            drop(ingress);
            return Err(e);
        }
    };
    let report = ingress.finish().map_err(|e| PartitionError::Acknowledge {
        index,
        error: Box::new(e),
    })?;
    if state.suspend.load(Ordering::Acquire) && !report.acks_committed {
        // The last acks did not arrive (the connection went while handing
        // over): the checkpoint stays unmarked, so the next owner skips the
        // redeliveries its list of unacked messages names.
        tracing::warn!(tenant = %ctx.manifest.tenant, partition = index, "the last acks were not committed: the next owner will recognise their redeliveries");
    } else if state.suspend.load(Ordering::Acquire) {
        // Its acks are committed: the next owner expects no redelivery of
        // what the last checkpoint covers.
        let last = store.last_written.load(Ordering::Acquire);
        if last > 0 {
            if let Err(e) = store.inner.mark_acked(last) {
                tracing::warn!(tenant = %ctx.manifest.tenant, partition = index, error = %e, "marking the last checkpoint acknowledged");
            }
        }
    }
    if ctx.stop.load(Ordering::Acquire) {
        Ok(Ended::Stopped)
    } else if state.handover.load(Ordering::Acquire) {
        Ok(Ended::HandedOver)
    } else {
        Err(PartitionError::InputEnded)
    }
}

/// Claims partition `index` for this host and reads its newest checkpoint.
fn claim(
    ctx: &Ctx,
    index: u16,
    state: &PartitionState,
) -> Result<(CassandraStore, Option<Checkpoint>), PartitionError> {
    let rt = &ctx.env.runtime;
    let mut store = rt
        .block_on(CassandraStore::open(
            Arc::clone(&ctx.db.session),
            rt.clone(),
            &ctx.db.keyspace,
            &ctx.manifest.tenant,
            &checkpoint_name(&ctx.input.base, index),
            &CassandraStoreOptions::default(),
        ))
        .map_err(|e| PartitionError::OpenCheckpoints {
            index,
            error: Box::new(e),
        })?;
    let generation = store.claim(&ctx.owner).map_err(|e| PartitionError::Claim {
        index,
        error: Box::new(e),
    })?;
    let restore = runner::newest(&store).map_err(|e| PartitionError::Restore {
        index,
        error: Box::new(e),
    })?;
    if restore.is_none() {
        // The partition's first run anywhere: its figures start at zero,
        // whatever an earlier failed activation here had counted.
        state.counters.reset(&state::CounterState::default());
    }
    state.generation.store(generation, Ordering::Relaxed);
    Ok((store, restore))
}

/// Runs the partition's pipeline over `input` until it ends, emitting
/// nothing once `lost` is set. Returns the store (its last checkpoint).
fn run_partition(
    ctx: &Ctx,
    index: u16,
    state: &PartitionState,
    store: CassandraStore,
    restore: Option<Checkpoint>,
    input: Input,
    lost: &Arc<AtomicBool>,
) -> Result<Arc<PartitionStore>, PartitionError> {
    let env = &ctx.env;
    let tenant = &ctx.manifest.tenant;
    let sink = env
        .result_sink(&ctx.manifest)
        .map_err(|e| PartitionError::ResultSink {
            index,
            error: Box::new(e),
        })?;
    let live = Arc::new(Live::default());
    if let Ok(mut l) = state.live.lock() {
        *l = Some(Arc::clone(&live));
    }
    state.takeovers.fetch_add(1, Ordering::Relaxed);
    if let Ok(mut s) = state.owned_since.lock() {
        *s = Some(Instant::now());
    }
    state.owned.store(true, Ordering::Release);

    let store = Arc::new(PartitionStore {
        inner: store,
        lost: Arc::clone(lost),
        tenant: tenant.clone(),
        metrics: env.checkpoint_metrics.clone(),
        last_written: AtomicU64::new(0),
    });
    let mut sinks = Sinks::lines(
        LineSink::discard("output"),
        LineSink::discard("dead-letter"),
    );
    sinks.messages = Some(Arc::new(Gate {
        inner: Arc::new(sink) as Arc<dyn MessageSink>,
        lost: Arc::clone(lost),
    }));
    if let Some(tables) = &ctx.tables {
        sinks.tables = Some(Arc::new(Gate {
            inner: Arc::clone(tables),
            lost: Arc::clone(lost),
        }));
        sinks.store_events = true;
    }
    let runner = Runner::new(RunSpec {
        manifest: &ctx.manifest,
        module: &ctx.module,
        sinks: &sinks,
        checkpoints: Some(env.checkpoints(store.clone(), restore)),
        options: Options {
            workers: 1,
            progress: None,
            counters: Some(Arc::clone(&state.counters)),
            suspend: Some(Arc::clone(&state.suspend)),
            latency: Some(env.latency_metrics.observer(tenant)),
            live: Some(live),
            ..Options::default()
        },
    });
    let report = runner.run(input).map_err(|e| PartitionError::Pipeline {
        index,
        error: Box::new(e),
    })?;
    tracing::info!(%tenant, partition = index, summary = %report.summary, "partition run ended");
    Ok(store)
}

/// At undeploy, a partition this host does not own and no other host
/// consumes any more (it undeployed before, or left): nobody else will
/// end its stream, so this host claims it and fires its open windows from
/// its last checkpoint. Undeploy the hosts one after another: the last
/// one flushes what the others left.
fn flush_unowned(ctx: &Ctx, index: u16, state: &PartitionState) -> Result<(), PartitionError> {
    let rt = &ctx.env.runtime;
    let queue = ctx.input.queue(index);
    let consumers = rt
        .block_on(async {
            let connection = crate::amqp::connect(&ctx.env.amqp, "sluice-partition-end").await?;
            let channel = connection
                .create_channel()
                .await
                .map_err(crate::amqp::Error::amqp("opening a channel"))?;
            let depth = topology::partition_depth(&channel, &ctx.input, &queue).await;
            let _ = connection.close(200, "done".into()).await;
            depth
        })
        .map_err(|e| PartitionError::CountConsumers {
            queue: queue.clone(),
            error: Box::new(e),
        })?
        .1;
    if consumers > 0 {
        return Ok(());
    }
    let (store, restore) = claim(ctx, index, state)?;
    if restore.is_none() {
        return Ok(());
    }
    tracing::info!(tenant = %ctx.manifest.tenant, partition = index, "no host consumes the partition any more: firing its open windows");
    // An input that has ended: the pipeline flushes and checkpoints.
    let input = Input::Messages {
        rx: Box::new(crate::ingress::NoMessages),
        acks: Arc::new(NothingToAck),
    };
    let never = Arc::new(AtomicBool::new(false));
    let result = run_partition(ctx, index, state, store, restore, input, &never);
    state.owned.store(false, Ordering::Release);
    result.map(|_| ())
}

/// The acknowledger of an input with no messages.
struct NothingToAck;

impl crate::ingress::Acknowledger for NothingToAck {
    fn set_stages(&self, _stages: usize) {}
    fn settled(&self, _stage: usize, _seq: u64) {}
    fn acked(&self) -> u64 {
        0
    }
}

/// A partition's checkpoints in Cassandra: refused once the partition is
/// lost (the claim fences a stale write anyway; this one is not even
/// tried), timed for `/metrics`.
struct PartitionStore {
    inner: CassandraStore,
    lost: Arc<AtomicBool>,
    tenant: String,
    metrics: CheckpointMetrics,
    last_written: AtomicU64,
}

impl PartitionStore {
    fn refuse_if_lost(&self) -> state::Result<()> {
        if self.lost.load(Ordering::Acquire) {
            return Err(crate::cassandra::store::StoreError::Failed {
                what: "writing a checkpoint",
                message: "the partition was lost (broker connection closed)".into(),
            }
            .into());
        }
        Ok(())
    }
}

impl CheckpointStore for PartitionStore {
    fn write(&self, checkpoint: &Checkpoint) -> state::Result<()> {
        self.refuse_if_lost()?;
        let started = Instant::now();
        self.inner.write(checkpoint)?;
        self.last_written.store(checkpoint.id, Ordering::Release);
        self.metrics
            .observe(&self.tenant, started.elapsed(), self.inner.last_size());
        Ok(())
    }

    fn mark_acked(&self, id: u64) -> state::Result<()> {
        self.refuse_if_lost()?;
        self.inner.mark_acked(id)
    }

    fn latest(&self) -> state::Result<Option<Restored>> {
        self.inner.latest()
    }
}

/// A sink that emits nothing once the partition is lost: the pipeline
/// gets an error at once and ends.
struct Gate<S: ?Sized> {
    inner: Arc<S>,
    lost: Arc<AtomicBool>,
}

impl<S: ?Sized> Gate<S> {
    fn check(&self, sink: &'static str) -> sink::Result<()> {
        if self.lost.load(Ordering::Acquire) {
            return Err(sink::Error::Publish {
                sink,
                source: "the partition was lost (broker connection closed)".into(),
            });
        }
        Ok(())
    }
}

impl MessageSink for Gate<dyn MessageSink> {
    fn publish(&self, stream: Stream, batch: &Rendered) -> sink::Result<()> {
        self.check("message")?;
        self.inner.publish(stream, batch)
    }
}

impl TableSink for Gate<dyn TableSink> {
    fn write(
        &self,
        results: &Rendered,
        dead_letters: &Rendered,
        events: &EventBatch<'_>,
    ) -> sink::Result<()> {
        self.check("table")?;
        self.inner.write(results, dead_letters, events)
    }
}
