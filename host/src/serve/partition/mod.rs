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
//!
//! Files: `mod.rs` the [`PartitionedRun`] (start, balance, suspend, the
//! views); `takeover.rs` a partition's thread (standby → takeover → run →
//! end) and the flush of partitions no host consumes; `gate.rs` the sinks
//! and checkpoint store a partition's run writes through, gated on the
//! lost flag.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::amqp::ingress::IngressControl;
use crate::amqp::topology::Partitioned;
use crate::manifest::Manifest;
use crate::metrics::{Counters, Summary};
use crate::pipeline::Live;
use crate::sandbox::TenantModule;

use crate::sink::TableSink;
use crate::state;

use super::env::{RunEnv, StateDb};

mod gate;
mod takeover;

use gate::{Gate, NothingToAck, PartitionStore};
use takeover::serve_partition;

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
    /// Ownership generation: this host's activation while `active`; the
    /// owner's, as last read from the ownership record (every 2 s), while
    /// `standby` (0: none yet).
    pub generation: i64,
    /// The host running it, as ownership records name it: this host while
    /// `active`; while `standby`, the owner last read (`None` before the
    /// first read, or when no host has claimed it yet).
    pub owner: Option<String>,
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
    /// The owner's generation and name as last read while standing by.
    standby_owner: Mutex<Option<(i64, String)>>,
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
    /// This host as ownership records name it (a partition's `owner`).
    host_name: String,
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
            host_name: env.host_name.clone(),
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
                let (generation, owner) = if owned {
                    (
                        state.generation.load(Ordering::Relaxed),
                        Some(self.host_name.clone()),
                    )
                } else {
                    match state.standby_owner.lock().ok().and_then(|o| o.clone()) {
                        Some((generation, owner)) => (generation, Some(owner)),
                        None => (state.generation.load(Ordering::Relaxed), None),
                    }
                };
                PartitionView {
                    partition: index,
                    queue: self.queue.queue(index),
                    state: if owned { "active" } else { "standby" },
                    generation,
                    owner,
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
