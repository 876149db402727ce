//! `sluice serve`: one long-lived host running many tenants, each its own
//! manifest, module, queue, windows and limits, each its own
//! [`tenant::Run`] of the ordinary pipeline. The admin API
//! (`crate::admin`) calls the operations here: deploy (and redeploy, which
//! swaps the module at a checkpoint barrier), undeploy, pause, resume,
//! list; `/metrics` reads [`Host::figures`].
//!
//! Layout of `state_dir`: `tenants/<tenant>/checkpoints/` (the runs'
//! checkpoints) and `tenants/<tenant>/deployed/{manifest.toml,module.wasm}`
//! (what was deployed through the API, started again with the host).
//!
//! Decisions:
//! - A deploy is checked completely — manifest, module (compiles, sluice
//!   world, allowed imports), manifest against module, and the module's
//!   `init` with the manifest's params — *before* the running version is
//!   touched: a bad upload never stops a working tenant.
//! - A redeploy keeps the tenant's keyed state and open windows, so its
//!   input schema, key and windows must stay as they are (the checkpoint's
//!   shape); a redeploy that changes them is refused — undeploy first.
//! - Undeploy fires the tenant's open windows (its stream is over), acks,
//!   and deletes its state; its queue and exchange are left to the broker's
//!   owner.

pub mod batch;
pub mod config;
pub mod partition;
pub mod tenant;

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use crate::manifest::{self, Manifest};
use crate::metrics::prometheus::{
    CheckpointMetrics, LatencyMetrics, PartitionFigures, TenantFigures, TenantSource,
};
use crate::metrics::{Counters, Summary};
use crate::sandbox::{SandboxEngine, SandboxError, TenantModule};

pub use batch::BatchEnv;
pub use config::HostConfig;
pub use partition::{PartitionView, StateDb};
use tenant::{Run, RunEnv};

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why an operation failed. The admin API maps each to a status code;
/// the messages name the tenant but never another tenant's data.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid manifest: {0}")]
    Manifest(Box<manifest::Error>),
    #[error("the manifest is for tenant `{manifest}`, not `{path}`")]
    TenantMismatch { manifest: String, path: String },
    #[error("invalid module: {0}")]
    Module(Box<SandboxError>),
    /// Manifest and module are each fine but do not fit together.
    #[error("{0}")]
    Mismatch(Box<manifest::Error>),
    #[error("tenant `{0}` is not deployed")]
    NotFound(String),
    #[error("tenant `{tenant}`: {message}")]
    Conflict { tenant: String, message: String },
    #[error("tenant `{tenant}`: broker: {source}")]
    Broker {
        tenant: String,
        #[source]
        source: Box<crate::broker::Error>,
    },
    #[error("tenant `{tenant}`: state: {source}")]
    State {
        tenant: String,
        #[source]
        source: Box<crate::state::Error>,
    },
    #[error("tenant `{tenant}`: {message}")]
    Io { tenant: String, message: String },
    #[error("{0}")]
    Internal(String),
}

impl From<manifest::Error> for Error {
    fn from(e: manifest::Error) -> Error {
        Error::Manifest(Box::new(e))
    }
}

impl Error {
    fn module(e: SandboxError) -> Error {
        Error::Module(Box::new(e))
    }
}

/// A tenant's state as `sluice list` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Running,
    Paused,
    /// The run ended on an error (see `reason`).
    Failed,
}

/// One row of `sluice list`.
#[derive(Debug, Clone, Serialize)]
pub struct TenantView {
    pub tenant: String,
    pub state: State,
    /// Why it is paused or failed.
    pub reason: Option<String>,
    pub module: ModuleView,
    pub queue: String,
    pub exchange: String,
    /// Seconds since the Unix epoch of the running version's deploy.
    pub deployed_at: u64,
    pub counters: CountersView,
    /// The tenant's batch triggers (this run's), when it has any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_triggers: Option<TriggersView>,
    /// A partitioned tenant's partitions as this host sees them; its
    /// `counters` are then those of the partitions this host owns.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partitions: Option<Vec<PartitionView>>,
}

/// What a tenant's batch triggers did in its current run.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct TriggersView {
    /// Job runs completed (results and run stored).
    pub runs: u64,
    pub failed: u64,
    /// Alerts for a (job, range, scope) that had already run.
    pub repeated: u64,
    /// Alerts dropped because the trigger queue was full.
    pub dropped: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ModuleView {
    pub name: String,
    pub version: String,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct CountersView {
    pub records_in: u64,
    pub bytes_in: u64,
    pub deserialization_errors: u64,
    pub late_dropped: u64,
    pub outputs: u64,
    pub alerts: u64,
    pub poisoned: u64,
    pub guest_traps: u64,
}

/// Everything the host keeps about one tenant across its runs.
struct Slot {
    run: Run,
    /// Counters the runs count into (restored from checkpoints).
    counters: Arc<Counters>,
    /// Of earlier module versions (a module counts its own).
    before: GuestUse,
    paused: Option<String>,
    deployed_at: SystemTime,
    /// (when, traps) samples of the last minute, for auto-pause.
    trap_samples: VecDeque<(Instant, u64)>,
    /// (when, records in) samples of the last [`RATE_WINDOW`], for events/s.
    rate_samples: VecDeque<(Instant, u64)>,
}

/// What a tenant's guest calls have cost.
#[derive(Debug, Clone, Copy, Default)]
struct GuestUse {
    traps: u64,
    cpu: Duration,
}

/// Events/s is the records read over about this long.
const RATE_WINDOW: Duration = Duration::from_secs(10);

impl Slot {
    fn new(run: Run, counters: Arc<Counters>, before: GuestUse, paused: Option<String>) -> Slot {
        Slot {
            run,
            counters,
            before,
            paused,
            deployed_at: SystemTime::now(),
            trap_samples: since_now(before.traps),
            rate_samples: VecDeque::new(),
        }
    }

    fn traps(&self) -> u64 {
        self.before.traps + self.run.module.traps()
    }

    fn guest_use(&self) -> GuestUse {
        GuestUse {
            traps: self.traps(),
            cpu: self.before.cpu + self.run.module.guest_cpu(),
        }
    }

    /// The tenant's counters on this host: the run's, or of the
    /// partitions it owns.
    fn summary(&self) -> Summary {
        self.run
            .partition_summary()
            .unwrap_or_else(|| self.counters.snapshot(Duration::ZERO))
    }

    fn sample_rate(&mut self, now: Instant) {
        let rows = self.summary().rows_in;
        self.rate_samples.push_back((now, rows));
        while self
            .rate_samples
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) > RATE_WINDOW)
        {
            self.rate_samples.pop_front();
        }
    }

    /// Records per second between the oldest and newest sample.
    fn events_per_sec(&self) -> f64 {
        match (self.rate_samples.front(), self.rate_samples.back()) {
            (Some((t0, n0)), Some((t1, n1))) if t1 > t0 => {
                n1.saturating_sub(*n0) as f64 / t1.duration_since(*t0).as_secs_f64()
            }
            _ => 0.0,
        }
    }
}

/// What a host keeps in Cassandra, when `host.toml` names one: results
/// (the table sink), triggered batch jobs, partitions' checkpoints and
/// ownership. All `None` without Cassandra.
#[derive(Clone, Default)]
pub struct Storage {
    pub tables: Option<Arc<dyn crate::sink::TableSink>>,
    pub batch: Option<BatchEnv>,
    pub state_db: Option<StateDb>,
}

/// The serving host.
pub struct Host {
    config: HostConfig,
    engine: SandboxEngine,
    env: RunEnv,
    tenants: Mutex<BTreeMap<String, Slot>>,
    /// One deploy/undeploy at a time: they stop and start runs, which takes
    /// a checkpoint barrier, and must not interleave for a tenant.
    ops: Mutex<()>,
    /// Deploys so far (names staging files).
    deploys: AtomicU64,
}

impl Host {
    pub fn new(
        config: HostConfig,
        engine: SandboxEngine,
        storage: Storage,
        runtime: tokio::runtime::Handle,
        checkpoint_metrics: CheckpointMetrics,
        latency_metrics: LatencyMetrics,
    ) -> Host {
        let Storage {
            tables,
            batch,
            state_db,
        } = storage;
        let env = RunEnv {
            state_db,
            host_name: format!(
                "{} pid {} admin {}",
                hostname(),
                std::process::id(),
                config.listen
            ),
            amqp: config.amqp.clone(),
            tables,
            batch,
            runtime,
            workers: config.workers,
            prefetch: config.prefetch,
            checkpoint_interval: config.checkpoint_interval,
            checkpoint_metrics,
            latency_metrics,
        };
        Host {
            config,
            engine,
            env,
            tenants: Mutex::new(BTreeMap::new()),
            ops: Mutex::new(()),
            deploys: AtomicU64::new(0),
        }
    }

    pub fn config(&self) -> &HostConfig {
        &self.config
    }

    fn tenants(&self) -> MutexGuard<'_, BTreeMap<String, Slot>> {
        self.tenants.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn tenant_dir(&self, tenant: &str) -> PathBuf {
        self.config.state_dir.join("tenants").join(tenant)
    }

    /// Starts the tenants of the config and those deployed through the API
    /// before the last shutdown (their deployed copy wins: it is newer).
    pub fn start_tenants(&self) -> Result<()> {
        let mut manifests: BTreeMap<String, Manifest> = BTreeMap::new();
        for path in &self.config.tenants {
            let m = Manifest::from_path(path)?;
            manifests.insert(m.tenant.clone(), m);
        }
        let root = self.config.state_dir.join("tenants");
        if let Ok(entries) = std::fs::read_dir(&root) {
            for entry in entries.flatten() {
                let deployed = entry.path().join("deployed").join("manifest.toml");
                if deployed.is_file() {
                    let m = Manifest::from_path(&deployed)?;
                    manifests.insert(m.tenant.clone(), m);
                }
            }
        }
        for (tenant, manifest) in manifests {
            let module = self
                .engine
                .load_file(&tenant, &manifest.module)
                .map_err(Error::module)?;
            check(&manifest, &module)?;
            self.launch(manifest, module)?;
        }
        Ok(())
    }

    /// Deploys or redeploys `tenant` from an uploaded manifest and module.
    /// Everything is checked before a running version is touched; a
    /// redeploy then stops the running version at a checkpoint and starts
    /// the new one from that checkpoint.
    pub fn deploy(&self, tenant: &str, manifest_text: &str, wasm: &[u8]) -> Result<TenantView> {
        let _op = self.ops.lock().unwrap_or_else(|e| e.into_inner());
        let origin = Path::new("manifest.toml");
        let mut manifest = Manifest::parse(manifest_text, origin)?;
        if manifest.tenant != tenant {
            return Err(Error::TenantMismatch {
                manifest: manifest.tenant,
                path: tenant.to_owned(),
            });
        }
        let module = self.engine.load(tenant, wasm).map_err(Error::module)?;
        check(&manifest, &module)?;
        if let Some(slot) = self.tenants().get(tenant) {
            compatible(&slot.run.manifest, &manifest)?;
        }
        self.unclaimed(&manifest)?;

        let dir = self.tenant_dir(tenant).join("deployed");
        manifest.module = dir.join("module.wasm");

        let old = self.tenants().remove(tenant);
        let mut previous = None;
        let (counters, before, paused) = match old {
            Some(slot) => {
                let before = slot.guest_use();
                previous = Some((slot.run.manifest.clone(), slot.run.module.clone()));
                let stopped = slot.run.stop(true);
                if let Err(e) = stopped {
                    tracing::warn!(%tenant, error = %e, "the previous version ended with an error");
                }
                (slot.counters, before, slot.paused)
            }
            None => (Arc::new(Counters::new()), GuestUse::default(), None),
        };
        let checkpoints = tenant::checkpoint_dir(&self.tenant_dir(tenant));
        let run = match Run::start(
            &self.env,
            manifest,
            module,
            &checkpoints,
            Arc::clone(&counters),
        ) {
            Ok(run) => run,
            Err(e) => {
                // Put the previous version back (from the checkpoint it just
                // took) rather than leave the tenant stopped.
                if let Some((manifest, module)) = previous {
                    match Run::start(
                        &self.env,
                        manifest,
                        module,
                        &checkpoints,
                        Arc::clone(&counters),
                    ) {
                        Ok(run) => {
                            if paused.is_some() {
                                drop(run.pause());
                            }
                            self.tenants().insert(
                                tenant.to_owned(),
                                Slot::new(run, counters, before, paused),
                            );
                        }
                        Err(again) => {
                            tracing::error!(%tenant, error = %again, "restarting the previous version failed too");
                        }
                    }
                }
                return Err(e);
            }
        };
        if paused.is_some() {
            drop(run.pause());
        }
        // Keep the files of the version now running: the host restarts
        // with them.
        let n = self.deploys.fetch_add(1, Ordering::Relaxed);
        let stored = std::fs::create_dir_all(&dir)
            .and_then(|()| {
                write_atomic(
                    &dir.join(format!(".module.{n}.tmp")),
                    &dir.join("module.wasm"),
                    wasm,
                )
            })
            .and_then(|()| {
                // The stored manifest points at the stored module.
                let text = rewrite_module(manifest_text, "module.wasm");
                write_atomic(
                    &dir.join(format!(".manifest.{n}.tmp")),
                    &dir.join("manifest.toml"),
                    text.as_bytes(),
                )
            });
        if let Err(e) = stored {
            tracing::error!(%tenant, error = %e, "storing the deployed files failed: a restart will not bring this version back");
        }
        let slot = Slot::new(run, counters, before, paused);
        let view = view(tenant, &slot);
        self.tenants().insert(tenant.to_owned(), slot);
        tracing::info!(%tenant, module = %view.module.sha256, "deployed");
        Ok(view)
    }

    /// Refuses a manifest naming another tenant's queue or exchange: a
    /// tenant must not read another's input or write into its results.
    fn unclaimed(&self, manifest: &Manifest) -> Result<()> {
        let tenants = self.tenants();
        for (other, slot) in tenants.iter().filter(|(t, _)| **t != manifest.tenant) {
            let theirs = &slot.run.manifest;
            let clash = if theirs.input.queue == manifest.input.queue {
                Some("input queue")
            } else if theirs.output.exchange == manifest.output.exchange {
                Some("output exchange")
            } else {
                None
            };
            if let Some(what) = clash {
                tracing::warn!(tenant = %manifest.tenant, %other, what, "refused: names another tenant's broker resource");
                return Err(Error::Conflict {
                    tenant: manifest.tenant.clone(),
                    message: format!("its {what} belongs to another tenant"),
                });
            }
        }
        Ok(())
    }

    fn launch(&self, manifest: Manifest, module: TenantModule) -> Result<()> {
        self.unclaimed(&manifest)?;
        let tenant = manifest.tenant.clone();
        let counters = Arc::new(Counters::new());
        let run = Run::start(
            &self.env,
            manifest,
            module,
            &tenant::checkpoint_dir(&self.tenant_dir(&tenant)),
            Arc::clone(&counters),
        )?;
        self.tenants()
            .insert(tenant, Slot::new(run, counters, GuestUse::default(), None));
        Ok(())
    }

    /// Stops `tenant` for good: its open windows fire, its input is acked,
    /// its state and deployed files are deleted.
    pub fn undeploy(&self, tenant: &str) -> Result<TenantView> {
        let _op = self.ops.lock().unwrap_or_else(|e| e.into_inner());
        let slot = self
            .tenants()
            .remove(tenant)
            .ok_or_else(|| Error::NotFound(tenant.to_owned()))?;
        let mut last = view(tenant, &slot);
        let partitioned = slot.run.manifest.input.partitions.is_some();
        if let Err(e) = slot.run.stop(false) {
            tracing::warn!(%tenant, error = %e, "the tenant's run ended with an error");
        }
        if !partitioned {
            // A partitioned tenant's owned partitions are gone now: keep
            // the figures from before the stop.
            last.counters = counters_view(
                &slot.counters.snapshot(Duration::ZERO),
                last.counters.guest_traps,
            );
        }
        self.env.checkpoint_metrics.remove(tenant);
        self.env.latency_metrics.remove(tenant);
        let dir = self.tenant_dir(tenant);
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            tracing::warn!(%tenant, error = %e, "removing the tenant's state");
        }
        tracing::info!(%tenant, "undeployed");
        Ok(last)
    }

    /// Pauses `tenant`'s consumer and returns once the broker has
    /// confirmed: messages published from then on wait in the queue. Blocks
    /// (call it off the async runtime).
    pub fn pause(&self, tenant: &str, reason: &str) -> Result<TenantView> {
        let confirmed = {
            let mut tenants = self.tenants();
            let slot = tenants
                .get_mut(tenant)
                .ok_or_else(|| Error::NotFound(tenant.to_owned()))?;
            if slot.paused.is_some() {
                return Ok(view(tenant, slot));
            }
            slot.paused = Some(reason.to_owned());
            tracing::info!(%tenant, reason, "paused");
            slot.run.pause()
        };
        // An error means the consumer has ended: nothing is delivered either.
        let _ = confirmed.blocking_recv();
        self.get(tenant)
            .ok_or_else(|| Error::NotFound(tenant.to_owned()))
    }

    pub fn resume(&self, tenant: &str) -> Result<TenantView> {
        let mut tenants = self.tenants();
        let slot = tenants
            .get_mut(tenant)
            .ok_or_else(|| Error::NotFound(tenant.to_owned()))?;
        if slot.paused.take().is_some() {
            slot.run.resume();
            // A fresh minute for auto-pause.
            slot.trap_samples = since_now(slot.traps());
            tracing::info!(%tenant, "resumed");
        }
        Ok(view(tenant, slot))
    }

    pub fn list(&self) -> Vec<TenantView> {
        self.tenants().iter().map(|(t, s)| view(t, s)).collect()
    }

    pub fn get(&self, tenant: &str) -> Option<TenantView> {
        self.tenants().get(tenant).map(|s| view(tenant, s))
    }

    /// Ready: every tenant's run is going (none failed).
    pub fn ready(&self) -> bool {
        self.tenants().values().all(|s| s.run.ended().is_none())
    }

    /// Called about once a second: samples each tenant's input rate, and
    /// pauses tenants whose guest trapped more than the configured number
    /// of times within the last minute.
    pub fn watch(&self) {
        let limit = self.config.max_traps_per_minute;
        let now = Instant::now();
        let mut tenants = self.tenants();
        for (tenant, slot) in tenants.iter_mut() {
            slot.sample_rate(now);
            slot.run.balance();
            if limit == 0 {
                continue;
            }
            let traps = slot.traps();
            slot.trap_samples.push_back((now, traps));
            while slot
                .trap_samples
                .front()
                .is_some_and(|(at, _)| now.duration_since(*at) > Duration::from_secs(60))
            {
                slot.trap_samples.pop_front();
            }
            let oldest = slot.trap_samples.front().map_or(traps, |(_, n)| *n);
            let recent = traps.saturating_sub(oldest);
            if slot.paused.is_none() && recent > limit {
                let reason =
                    format!("auto-paused: {recent} guest traps within a minute (limit {limit})");
                tracing::warn!(%tenant, %reason, "pausing a trapping tenant");
                // Not waited for: this runs on the async runtime.
                drop(slot.run.pause());
                slot.paused = Some(reason);
            }
        }
    }

    /// Suspends every tenant at a checkpoint (open windows kept for the
    /// next start) and waits for their final acks.
    pub fn shutdown(&self) {
        let _op = self.ops.lock().unwrap_or_else(|e| e.into_inner());
        let slots: Vec<(String, Slot)> = std::mem::take(&mut *self.tenants()).into_iter().collect();
        for (tenant, slot) in slots {
            match slot.run.stop(true) {
                Ok(()) => tracing::info!(%tenant, "suspended"),
                Err(e) => {
                    tracing::warn!(%tenant, error = %e, "the tenant's run ended with an error")
                }
            }
        }
    }
}

impl TenantSource for Host {
    fn figures(&self) -> Vec<TenantFigures> {
        self.tenants()
            .iter()
            .map(|(t, s)| {
                let (queue_depth, consumer_lag) = s.run.backlog();
                TenantFigures {
                    tenant: t.clone(),
                    summary: s.summary(),
                    traps: s.traps(),
                    guest_cpu: s.guest_use().cpu,
                    queue_depth,
                    consumer_lag,
                    partitions: s
                        .run
                        .partitions()
                        .unwrap_or_default()
                        .iter()
                        .map(|p| PartitionFigures {
                            partition: p.partition,
                            owned: p.state == "active",
                            lag: p.lag,
                            watermark_ms: p.watermark,
                        })
                        .collect(),
                    events_per_sec: s.events_per_sec(),
                    paused: s.paused.is_some(),
                    running: s.run.ended().is_none(),
                }
            })
            .collect()
    }
}

/// The checks of a deploy that need no running state.
fn check(manifest: &Manifest, module: &TenantModule) -> Result<()> {
    manifest
        .check_module(module.info())
        .map_err(|e| Error::Mismatch(Box::new(e)))?;
    // `init` with the manifest's params: a bad param fails the deploy, not
    // the first event.
    module
        .instantiate(
            manifest.params_list(),
            manifest.schema(),
            manifest.limits.clone(),
        )
        .map_err(Error::module)?;
    Ok(())
}

/// A redeploy carries state over only when its shape stays.
fn compatible(old: &Manifest, new: &Manifest) -> Result<()> {
    let what = if old.input.columns != new.input.columns {
        "its columns"
    } else if old.input.key != new.input.key {
        "its key"
    } else if old.windows != new.windows {
        "its windows"
    } else if old.input.queue != new.input.queue {
        "its input queue"
    } else if old.input.partitions != new.input.partitions {
        "its partitions"
    } else {
        return Ok(());
    };
    Err(Error::Conflict {
        tenant: new.tenant.clone(),
        message: format!(
            "a redeploy keeps the running state, so it cannot change {what}; undeploy first"
        ),
    })
}

/// Auto-pause samples starting now at `traps`: traps from this moment on
/// count, also those before the watcher's next look.
fn since_now(traps: u64) -> VecDeque<(Instant, u64)> {
    VecDeque::from([(Instant::now(), traps)])
}

fn view(tenant: &str, slot: &Slot) -> TenantView {
    let info = slot.run.module.info();
    let (state, reason) = match (slot.run.ended(), &slot.paused) {
        (Some(Err(e)), _) => (State::Failed, Some(e)),
        (Some(Ok(())), _) => (State::Failed, Some("the run ended".to_owned())),
        (None, Some(reason)) => (State::Paused, Some(reason.clone())),
        (None, None) => (State::Running, None),
    };
    TenantView {
        tenant: tenant.to_owned(),
        state,
        reason,
        module: ModuleView {
            name: info.name.clone(),
            version: info.version.clone(),
            sha256: slot.run.module.hash().to_owned(),
        },
        queue: slot.run.manifest.input.queue.clone(),
        exchange: slot.run.manifest.output.exchange.clone(),
        deployed_at: slot
            .deployed_at
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        counters: counters_view(&slot.summary(), slot.traps()),
        partitions: slot.run.partitions(),
        batch_triggers: slot.run.trigger_stats().map(|t| {
            let n = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
            TriggersView {
                runs: n(&t.runs),
                failed: n(&t.failed),
                repeated: n(&t.repeated),
                dropped: n(&t.dropped),
            }
        }),
    }
}

fn counters_view(s: &Summary, traps: u64) -> CountersView {
    CountersView {
        records_in: s.rows_in,
        bytes_in: s.bytes_in,
        deserialization_errors: s.bad_rows,
        late_dropped: s.late_dropped,
        outputs: s.outputs,
        alerts: s.alerts,
        poisoned: s.poisoned,
        guest_traps: traps,
    }
}

/// The machine's name, for partition ownership records.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".to_owned())
}

/// Writes `bytes` to `tmp`, fsyncs, renames over `path`.
fn write_atomic(tmp: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(tmp, path)
}

/// The manifest text with its top-level `module = …` pointing at `module`
/// (the uploaded manifest names the module where its author built it).
fn rewrite_module(text: &str, module: &str) -> String {
    let mut out = String::with_capacity(text.len() + 32);
    let mut in_table = false;
    let mut done = false;
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with('[') {
            in_table = true;
        }
        if !in_table
            && !done
            && trimmed.starts_with("module")
            && trimmed[6..].trim_start().starts_with('=')
        {
            out.push_str(&format!("module = {module:?}\n"));
            done = true;
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stored_manifest_points_at_the_stored_module() {
        let text = "tenant = \"bts\"\nmodule = \"../../target/components/bts.wasm\"\n[input]\nmodule = 1\n";
        let out = rewrite_module(text, "module.wasm");
        assert_eq!(
            out,
            "tenant = \"bts\"\nmodule = \"module.wasm\"\n[input]\nmodule = 1\n"
        );
    }
}
