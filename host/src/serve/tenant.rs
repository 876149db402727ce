//! One run of one tenant inside `sluice serve`: the tenant's queue consumed
//! by the same AMQP ingress as `sluice run --amqp`, the same
//! pipeline ([`Runner`]) on a thread of its own, results to the tenant's
//! exchange (and Cassandra), checkpoints in the tenant's state directory.
//!
//! A run ends in one of two ways, both at a checkpoint barrier:
//! - **suspend** (shutdown, redeploy): consumption stops, what was
//!   delivered is processed, the state — open windows included — is
//!   checkpointed and the input acked; the next run restores it and carries
//!   on, so nothing is lost or applied twice;
//! - **finish** (undeploy): as the end of a `--until-idle` input, every
//!   window fires first.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use crate::amqp::ingress::IngressGauges;
use crate::amqp::ingress::{AmqpIngress, AmqpIngressConfig, IngressControl};
use crate::manifest::Manifest;
use crate::metrics::prometheus::{CheckpointMetrics, LastCheckpoint};
use crate::metrics::Counters;
use crate::pipeline::{self, Live, Options, Sinks};
use crate::runner::{self, RunSpec, Runner};
use crate::sandbox::TenantModule;
use crate::sink::LineSink;
use crate::state::local::LocalStore;
use crate::state::{self, Checkpoint, CheckpointStore, Restored};

use super::batch::Triggers;
use super::env::RunEnv;
use super::partition::{PartitionError, PartitionView, PartitionedRun};
use super::{Error, Result};
use crate::metrics::Summary;

/// Why a tenant's run ended in failure (`sluice list` shows it as the
/// reason). Cloned for each view of the run, hence the `Arc`s. A message
/// that carries its cause's text does not also return it from `source()`.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RunError {
    /// The pipeline stopped on an error.
    #[error(transparent)]
    Pipeline(Arc<pipeline::Error>),
    #[error("acknowledging the input: {0}")]
    Acknowledge(Arc<crate::amqp::Error>),
    #[error("the tenant thread panicked")]
    Panicked,
    /// Threads of a partitioned run panicked.
    #[error(transparent)]
    Partitions(Arc<PartitionError>),
}

/// A running (or just ended) tenant: one pipeline, or its partitions.
pub struct Run {
    pub manifest: Manifest,
    pub module: TenantModule,
    pub started: Instant,
    /// Where the tenant's last checkpoint is noted (the console shows its age).
    checkpoint_metrics: CheckpointMetrics,
    body: Body,
    /// The tenant's batch triggers, when it has any and Cassandra is set.
    triggers: Option<Triggers>,
}

enum Body {
    /// One pipeline over the tenant's queue.
    Single {
        control: IngressControl,
        suspend: Arc<AtomicBool>,
        thread: Option<JoinHandle<()>>,
        /// Set by the run's thread when it ends: `Err` says why it failed.
        outcome: Arc<Mutex<Option<Result<(), RunError>>>>,
        /// The run's input watermark.
        live: Arc<Live>,
    },
    /// `[input] partitions`: a pipeline per partition this host owns.
    Partitioned(PartitionedRun),
}

impl Run {
    /// Starts consuming `manifest`'s queue with `module`, restoring the
    /// newest checkpoint in `checkpoints` (a previous run of the tenant).
    pub fn start(
        env: &RunEnv,
        manifest: Manifest,
        module: TenantModule,
        checkpoints: &Path,
        counters: Arc<Counters>,
    ) -> Result<Run> {
        let tenant = manifest.tenant.clone();
        // A module restarted after a stop (a failed redeploy's rollback)
        // backs off again.
        module.set_stopping(false);
        if let Some(count) = manifest.input.partitions {
            return Self::start_partitioned(env, manifest, module, count);
        }
        let store = Arc::new(MeteredStore {
            inner: LocalStore::open(checkpoints, 3).map_err(|source| Error::State {
                tenant: tenant.clone(),
                source: Box::new(source),
            })?,
            tenant: tenant.clone(),
            metrics: env.checkpoint_metrics.clone(),
        });
        let restore = runner::newest(store.as_ref()).map_err(|source| Error::State {
            tenant: tenant.clone(),
            source: Box::new(source),
        })?;
        if let Some(c) = &restore {
            tracing::info!(%tenant, checkpoint = c.id, rows_in = c.counters.rows_in, "resuming from a checkpoint");
        }
        let skip = runner::unacked(restore.as_ref());
        let broker = |source| Error::Broker {
            tenant: tenant.clone(),
            source: Box::new(source),
        };
        let sink = env.result_sink(&manifest).map_err(broker)?;
        let (input, ingress) = env
            .runtime
            .block_on(AmqpIngress::start(
                AmqpIngressConfig {
                    skip,
                    commit_acks: true,
                    ..runner::consumer(env.amqp.clone(), manifest.input.queue.clone(), env.prefetch)
                },
                env.runtime.clone(),
            ))
            .map_err(broker)?;
        let mut sinks = Sinks::lines(
            LineSink::discard("output"),
            LineSink::discard("dead-letter"),
        );
        sinks.messages = Some(env.tapped(&tenant, sink));
        let triggers = env
            .batch
            .as_ref()
            .and_then(|b| Triggers::start(b, &manifest, &module));
        if env.batch.is_none()
            && manifest
                .batch
                .iter()
                .any(|j| j.schedule.is_some() || j.on_alert.is_some())
        {
            tracing::warn!(
                %tenant,
                "the manifest's batch triggers stay off: they read the stored events, and this \
                 host has no `cassandra` in host.toml"
            );
        }
        if let Some(tables) = &env.tables {
            sinks.tables = Some(match &triggers {
                Some(t) => t.tap(Arc::clone(tables)),
                None => Arc::clone(tables),
            });
            sinks.store_events = true;
        }
        // Keys are sharded by worker count: a tenant keeps the count its
        // checkpoint was taken with (a changed `workers` in host.toml
        // applies to tenants deployed from then on), rather than fail.
        let workers = match restore.as_ref().map(|c| c.shards.len()) {
            Some(saved) if saved > 0 && saved != env.workers => {
                tracing::info!(%tenant, workers = saved, host_workers = env.workers, "keeping the worker count of the tenant's checkpoint");
                saved
            }
            _ => env.workers,
        };
        let suspend = Arc::new(AtomicBool::new(false));
        let live = Arc::new(Live::watermark_only());
        let checkpoints = env.checkpoints(store.clone(), restore);
        let options = Options {
            workers,
            progress: None,
            counters: Some(counters),
            suspend: Some(Arc::clone(&suspend)),
            latency: Some(env.latency_metrics.observer(&tenant)),
            live: Some(Arc::clone(&live)),
            ..Options::default()
        };
        let control = ingress.control();
        let outcome: Arc<Mutex<Option<Result<(), RunError>>>> = Arc::new(Mutex::new(None));
        let thread = {
            let manifest = manifest.clone();
            let module = module.clone();
            let outcome = Arc::clone(&outcome);
            let suspend = Arc::clone(&suspend);
            std::thread::Builder::new()
                .name(format!("sluice-tenant-{tenant}"))
                .spawn(move || {
                    let runner = Runner::new(RunSpec {
                        manifest: &manifest,
                        module: &module,
                        sinks: &sinks,
                        checkpoints: Some(checkpoints),
                        options,
                    });
                    let result = run_to_end(&manifest, &runner, input, ingress, &store, &suspend);
                    if let Err(e) = &result {
                        tracing::error!(tenant = %manifest.tenant, error = %e, "tenant run failed");
                        module
                            .log()
                            .host_note("error", &format!("the run failed: {e}"));
                    }
                    if let Ok(mut o) = outcome.lock() {
                        *o = Some(result);
                    }
                })
                .map_err(|e| Error::Internal(format!("starting the tenant thread: {e}")))?
        };
        Ok(Run {
            manifest,
            module,
            started: Instant::now(),
            checkpoint_metrics: env.checkpoint_metrics.clone(),
            body: Body::Single {
                control,
                suspend,
                thread: Some(thread),
                outcome,
                live,
            },
            triggers,
        })
    }

    /// A partitioned tenant: a standby consumer per partition, which
    /// becomes a pipeline when the broker makes this host its active one.
    /// Checkpoints and ownership live in Cassandra, so it is required.
    fn start_partitioned(
        env: &RunEnv,
        manifest: Manifest,
        module: TenantModule,
        count: u16,
    ) -> Result<Run> {
        let tenant = manifest.tenant.clone();
        let Some(db) = env.state_db.clone() else {
            return Err(Error::Conflict {
                tenant,
                message: "a partitioned input (`[input] partitions`) keeps its partitions' \
                          checkpoints in Cassandra, so any host can take them over: give \
                          the host `cassandra` in host.toml"
                    .into(),
            });
        };
        let triggers = env
            .batch
            .as_ref()
            .and_then(|b| Triggers::start(b, &manifest, &module));
        let tables = env.tables.as_ref().map(|tables| match &triggers {
            Some(t) => t.tap(Arc::clone(tables)),
            None => Arc::clone(tables),
        });
        let partitions = PartitionedRun::start(env, db, &manifest, &module, tables, count)
            .map_err(|e| Error::Internal(e.to_string()))?;
        Ok(Run {
            manifest,
            module,
            started: Instant::now(),
            checkpoint_metrics: env.checkpoint_metrics.clone(),
            body: Body::Partitioned(partitions),
            triggers,
        })
    }

    /// Pauses the consumer; the receiver completes once the broker has
    /// confirmed (nothing more is delivered from then on). Partitions are
    /// paused without waiting.
    pub fn pause(&self) -> tokio::sync::oneshot::Receiver<()> {
        match &self.body {
            Body::Single { control, .. } => control.pause(),
            Body::Partitioned(p) => {
                p.pause();
                let (tx, rx) = tokio::sync::oneshot::channel();
                let _ = tx.send(());
                rx
            }
        }
    }

    pub fn resume(&self) {
        match &self.body {
            Body::Single { control, .. } => control.resume(),
            Body::Partitioned(p) => p.resume(),
        }
    }

    /// The partitions as this host sees them (partitioned tenants).
    pub fn partitions(&self) -> Option<Vec<PartitionView>> {
        match &self.body {
            Body::Single { .. } => None,
            Body::Partitioned(p) => Some(p.views()),
        }
    }

    /// The tenant's last checkpoint written on this host.
    pub fn last_checkpoint(&self) -> Option<LastCheckpoint> {
        self.checkpoint_metrics.last(&self.manifest.tenant)
    }

    /// The input watermark, ms since the epoch: the run's, or the lowest
    /// of the partitions this host owns; `None` before any row.
    pub fn watermark(&self) -> Option<i64> {
        match &self.body {
            Body::Single { live, .. } => {
                Some(live.watermark.load(Ordering::Relaxed)).filter(|w| *w != i64::MIN)
            }
            Body::Partitioned(p) => p.views().iter().filter_map(|v| v.watermark).min(),
        }
    }

    /// The counters of the partitions this host owns (partitioned
    /// tenants; a single run counts into the slot's counters).
    pub fn partition_summary(&self) -> Option<Summary> {
        match &self.body {
            Body::Single { .. } => None,
            Body::Partitioned(p) => Some(p.summary()),
        }
    }

    /// Once a second: a partitioned tenant hands a partition over when
    /// this host owns more than its share.
    pub fn balance(&self) {
        if let Body::Partitioned(p) = &self.body {
            p.balance();
        }
    }

    /// The counters of the run's batch triggers, when it has any.
    pub fn trigger_stats(&self) -> Option<&super::batch::TriggerStats> {
        self.triggers.as_ref().map(|t| &*t.stats)
    }

    /// Messages waiting in the input and the lag (waiting plus delivered
    /// and not acked) as last sampled.
    pub fn backlog(&self) -> (u64, u64) {
        match &self.body {
            Body::Single { control, .. } => {
                let g: &IngressGauges = control.gauges();
                (g.queue_depth(), g.lag())
            }
            Body::Partitioned(p) => p.depth_and_lag(),
        }
    }

    /// `None` while running; why it ended otherwise. Partitions never end
    /// on their own: a failed activation is retried.
    pub fn ended(&self) -> Option<Result<(), RunError>> {
        match &self.body {
            Body::Single { outcome, .. } => outcome.lock().ok().and_then(|o| o.clone()),
            Body::Partitioned(_) => None,
        }
    }

    /// Starts ending the run at a checkpoint barrier, without waiting:
    /// `suspend` keeps the open windows in the checkpoint (a later run
    /// resumes them); otherwise every window fires first. [`Run::ended`]
    /// (or [`Run::finished`]) tells when it is over. A partitioned run
    /// starts ending every partition the same way, so the control plane
    /// polls both kinds alike and never joins a thread still at work.
    pub fn begin_stop(&self, suspend: bool) {
        self.module.set_stopping(true);
        match &self.body {
            Body::Single {
                control,
                suspend: flag,
                ..
            } => {
                flag.store(suspend, Ordering::Release);
                control.end();
            }
            Body::Partitioned(p) => p.begin_stop(suspend),
        }
    }

    /// Whether the run's threads are over (a stop can be joined at once).
    pub fn finished(&self) -> bool {
        match &self.body {
            Body::Single { thread, .. } => thread.as_ref().is_none_or(JoinHandle::is_finished),
            Body::Partitioned(p) => p.finished(),
        }
    }

    /// Waits for the run to end: [`Run::begin_stop`] must come first, and
    /// the control plane calls this only once [`Run::finished`], so the
    /// join does not wait on a tenant's data path.
    pub fn finish(self) -> Result<(), RunError> {
        let Run { body, triggers, .. } = self;
        let result = match body {
            Body::Single {
                thread, outcome, ..
            } => {
                let joined = thread.map(JoinHandle::join);
                if matches!(joined, Some(Err(_))) {
                    Err(RunError::Panicked)
                } else {
                    outcome
                        .lock()
                        .ok()
                        .and_then(|o| o.clone())
                        .unwrap_or(Ok(()))
                }
            }
            Body::Partitioned(p) => p.join().map_err(|e| RunError::Partitions(Arc::new(e))),
        };
        if let Some(triggers) = triggers {
            triggers.stop();
        }
        result
    }

    /// Gives up on a run whose thread is stuck in a guest call: its thread
    /// (a partitioned run's stuck partitions) is left to itself — it holds
    /// no lock of the host —, the rest stops.
    pub fn abandon(self) {
        let Run { body, triggers, .. } = self;
        // A partitioned run was told to stop (`begin_stop` comes first):
        // its partitions not stuck end on their own.
        if let Body::Single { control, .. } = &body {
            control.end();
        }
        drop(body);
        if let Some(triggers) = triggers {
            triggers.stop();
        }
    }
}

/// The run's thread: the pipeline until its input ends, then the final
/// acks; after a suspend, the last checkpoint is marked acknowledged so
/// the next run expects no redelivery of what it covers.
fn run_to_end(
    manifest: &Manifest,
    runner: &Runner<'_>,
    input: crate::ingress::Input,
    ingress: AmqpIngress,
    store: &MeteredStore,
    suspend: &AtomicBool,
) -> Result<(), RunError> {
    let report = runner
        .run(input)
        .map_err(|e| RunError::Pipeline(Arc::new(e)))?;
    let acks = ingress
        .finish()
        .map_err(|e| RunError::Acknowledge(Arc::new(e)))?;
    if suspend.load(Ordering::Acquire) {
        if let Ok(Some(latest)) = store.latest() {
            if let Err(e) = store.mark_acked(latest.checkpoint.id) {
                tracing::warn!(tenant = %manifest.tenant, error = %e, "marking the last checkpoint acknowledged");
            }
        }
    }
    tracing::info!(
        tenant = %manifest.tenant,
        suspended = suspend.load(Ordering::Acquire),
        messages = acks.messages,
        summary = %report.summary,
        "tenant run ended"
    );
    Ok(())
}

/// The tenant's checkpoint directory, timing each write and recording its
/// size for `/metrics`.
struct MeteredStore {
    inner: LocalStore,
    tenant: String,
    metrics: CheckpointMetrics,
}

impl CheckpointStore for MeteredStore {
    fn write(&self, checkpoint: &Checkpoint) -> state::Result<()> {
        let started = Instant::now();
        self.inner.write(checkpoint)?;
        let took = started.elapsed();
        let bytes = self.inner.size_of(checkpoint.id).unwrap_or(0);
        self.metrics.observe(&self.tenant, took, bytes);
        Ok(())
    }

    fn mark_acked(&self, id: u64) -> state::Result<()> {
        self.inner.mark_acked(id)
    }

    fn latest(&self) -> state::Result<Option<Restored>> {
        self.inner.latest()
    }
}

/// Where a tenant keeps its checkpoints and its deployed files.
pub fn checkpoint_dir(tenant_dir: &Path) -> PathBuf {
    tenant_dir.join("checkpoints")
}
