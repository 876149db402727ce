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
//! - The control plane never waits on a tenant's data path: the map of
//!   tenants is locked only for moments (never across a guest call, a
//!   compile or a checkpoint barrier), and deploy and undeploy serialise per
//!   tenant (a second one for the same tenant is refused with 409, not
//!   queued). See `control.rs`.
//! - Every path under `state_dir` is built from a [`TenantName`], checked
//!   at each entry point (API path, manifest, `host.toml`).
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
//!
//! Files: `mod.rs` the [`Host`] and its tenants' slots; `control.rs`
//! deploy, undeploy and shutdown; `checks.rs` a deploy's checks (module,
//! redeploy compatibility, broker resources no two tenants share);
//! `view.rs` what `sluice list` and `/metrics` show; `tenant.rs` one run of
//! a tenant; `partition/` a partitioned tenant; `batch.rs` batch triggers;
//! `env.rs` what every run shares; `config.rs` `host.toml`.

pub mod batch;
mod checks;
pub mod config;
mod control;
pub mod dead_letters;
pub mod env;
pub mod history;
pub mod partition;
pub mod tenant;
mod view;

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use crate::data::{RejectReason, SandboxError};
use crate::manifest::{self, Manifest, TenantName};
use crate::metrics::prometheus::{
    CheckpointMetrics, LatencyMetrics, PartitionFigures, TenantFigures, TenantSource,
};
use crate::metrics::{Counters, Summary};
use crate::sandbox::{LogPage, SandboxEngine, TenantModule};

pub use batch::BatchEnv;
use checks::{check, compatible, unclaimed_in, Claim};
pub use config::HostConfig;
pub use control::Deployed;
pub use dead_letters::KeptLetter;
pub use env::{RunEnv, StateDb};
use history::{History, HistoryView, Sample};
pub use partition::PartitionView;
use tenant::Run;
use view::{counters_view, manifest_view, metric_state, view};
pub use view::{CountersView, LiveView, ManifestView, ModuleView, State, TenantView, TriggersView};

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
    /// The manifest asks for more than this host's ceilings allow.
    #[error("tenant `{tenant}`: {source}")]
    OverCeiling {
        tenant: String,
        #[source]
        source: crate::pipeline::CeilingError,
    },
    #[error("tenant `{0}` is not deployed")]
    NotFound(String),
    #[error("tenant `{tenant}`: {message}")]
    Conflict { tenant: String, message: String },
    #[error("tenant `{tenant}`: broker: {source}")]
    Broker {
        tenant: String,
        #[source]
        source: Box<crate::amqp::Error>,
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
    /// The deploy's client went away before it was committed: nothing of
    /// it was applied.
    #[error(
        "tenant `{0}`: the deploy was cancelled: its client disconnected before it was applied"
    )]
    Cancelled(String),
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
    /// Set when the tenant failed outside its run: the watchdog found a
    /// worker stuck in a guest call, or a redeploy could not restart it.
    fault: Option<Fault>,
    /// A redeploy or undeploy under way.
    operation: Option<&'static str>,
    /// The console's sparklines: 15 min at 10 s (kept across a redeploy).
    history: History,
}

/// Why a tenant failed outside its run. Kept apart from the reason's
/// text so `/metrics` can tell a stuck worker from a failed restart.
#[derive(Debug, Clone)]
struct Fault {
    /// The watchdog found a worker stuck in a guest call.
    stuck: bool,
    reason: String,
}

/// What a tenant's guest calls have cost.
#[derive(Debug, Clone, Copy, Default)]
struct GuestUse {
    traps: u64,
    cpu: Duration,
}

/// How long a pause waits for the broker's confirmation.
const PAUSE_WAIT: Duration = Duration::from_secs(5);

/// Events/s is the records read over about this long.
const RATE_WINDOW: Duration = Duration::from_secs(10);

/// The reason's start of a pause by the trap watcher (`/metrics` tells
/// it from a pause asked for).
const AUTO_PAUSED: &str = "auto-paused: ";

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
            fault: None,
            operation: None,
            history: History::default(),
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

    /// Adds a point to the history when one is due.
    fn sample_history(&mut self, now: Instant) {
        if !self.history.due(now) {
            return;
        }
        let s = self.summary();
        let sample = Sample {
            at: history::unix_now(),
            events_per_sec: self.events_per_sec(),
            consumer_lag: self.run.backlog().1,
            records_in: s.rows_in,
            guest_traps: self.traps(),
            dead_lettered: s.bad_rows + s.late_dropped + s.future_dropped + s.limited,
        };
        self.history.push(now, sample);
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
    /// Locked only for moments: never across tenant work.
    tenants: Mutex<BTreeMap<String, Slot>>,
    /// Tenants with a deploy or undeploy under way: one at a time per
    /// tenant (they stop and start its run at a checkpoint barrier).
    busy: Mutex<std::collections::BTreeSet<String>>,
    /// The input queue and output exchange of each committed deploy whose
    /// run is not in `tenants` yet (its slot is inserted later, on the
    /// deploy's thread). Checked and taken under the `tenants` lock, so
    /// two tenants deployed at once cannot both claim a queue. Lock order:
    /// `tenants`, then `claims`.
    claims: Mutex<BTreeMap<String, Claim>>,
    /// Set by [`Host::shutdown`]: no run is started from then on.
    shutting_down: AtomicBool,
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
            dead_letters: env::DeadLetterBooks::default(),
        };
        Host {
            config,
            engine,
            env,
            tenants: Mutex::new(BTreeMap::new()),
            busy: Mutex::new(std::collections::BTreeSet::new()),
            claims: Mutex::new(BTreeMap::new()),
            shutting_down: AtomicBool::new(false),
            deploys: AtomicU64::new(0),
        }
    }

    pub fn config(&self) -> &HostConfig {
        &self.config
    }

    fn tenants(&self) -> MutexGuard<'_, BTreeMap<String, Slot>> {
        self.tenants.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The only way to a path under the state directory: from a checked
    /// name, which cannot be `.`, `..` or contain a separator.
    fn tenant_dir(&self, tenant: &TenantName) -> PathBuf {
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
                // Only directories a deploy can have made.
                let Some(name) = entry
                    .file_name()
                    .to_str()
                    .and_then(|n| TenantName::parse(n).ok())
                else {
                    tracing::warn!(entry = %entry.path().display(), "ignoring a state directory entry that is no tenant name");
                    continue;
                };
                let deployed = self
                    .tenant_dir(&name)
                    .join("deployed")
                    .join("manifest.toml");
                if deployed.is_file() {
                    let m = Manifest::from_path(&deployed)?;
                    if m.tenant != name.as_str() {
                        tracing::warn!(dir = %name, tenant = %m.tenant, "ignoring a deployed manifest of another tenant");
                        continue;
                    }
                    manifests.insert(m.tenant.clone(), m);
                }
            }
        }
        for (tenant, manifest) in manifests {
            let module = match self.engine.load_file(&tenant, &manifest.module) {
                Ok(module) => module,
                // After a host upgrade: one tenant's module is not the
                // others' problem, and its state waits for the rebuilt one.
                Err(
                    e @ SandboxError::Rejected {
                        reason: RejectReason::OtherContract { .. },
                        ..
                    },
                ) => {
                    tracing::error!(%tenant, error = %e, "not started; deploy the rebuilt module to resume it");
                    continue;
                }
                Err(e) => return Err(Error::module(e)),
            };
            check(&manifest, &module)?;
            self.launch(manifest, module)?;
        }
        Ok(())
    }

    fn claims(&self) -> MutexGuard<'_, BTreeMap<String, Claim>> {
        self.claims.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Refuses a manifest naming another tenant's queue or exchange.
    fn unclaimed(&self, manifest: &Manifest) -> Result<()> {
        let tenants = self.tenants();
        unclaimed_in(&tenants, &self.claims(), manifest)
    }

    fn launch(&self, manifest: Manifest, module: TenantModule) -> Result<()> {
        self.unclaimed(&manifest)?;
        let tenant = manifest.tenant.clone();
        let name = TenantName::parse(&tenant).map_err(|e| Error::Internal(e.to_string()))?;
        let counters = Arc::new(Counters::new());
        let run = Run::start(
            &self.env,
            manifest,
            module,
            &tenant::checkpoint_dir(&self.tenant_dir(&name)),
            Arc::clone(&counters),
        )?;
        self.tenants()
            .insert(tenant, Slot::new(run, counters, GuestUse::default(), None));
        Ok(())
    }

    /// Pauses `tenant`'s consumer and returns once the broker has
    /// confirmed: messages published from then on wait in the queue. Blocks
    /// (call it off the async runtime).
    pub fn pause(&self, tenant: &TenantName, reason: &str) -> Result<TenantView> {
        let confirmed = {
            let mut tenants = self.tenants();
            let slot = tenants
                .get_mut(tenant.as_str())
                .ok_or_else(|| Error::NotFound(tenant.to_string()))?;
            if slot.paused.is_some() {
                return Ok(view(tenant, slot));
            }
            slot.paused = Some(reason.to_owned());
            tracing::info!(%tenant, reason, "paused");
            slot.run.pause()
        };
        // An error means the consumer has ended: nothing is delivered
        // either. Bounded: a broker that does not confirm must not hold
        // the control plane.
        let waited = self
            .env
            .runtime
            .block_on(tokio::time::timeout(PAUSE_WAIT, confirmed));
        if waited.is_err() {
            tracing::warn!(%tenant, "the broker has not confirmed the pause yet");
        }
        self.get(tenant)
            .ok_or_else(|| Error::NotFound(tenant.to_string()))
    }

    pub fn resume(&self, tenant: &TenantName) -> Result<TenantView> {
        let mut tenants = self.tenants();
        let slot = tenants
            .get_mut(tenant.as_str())
            .ok_or_else(|| Error::NotFound(tenant.to_string()))?;
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

    pub fn get(&self, tenant: &TenantName) -> Option<TenantView> {
        self.tenants().get(tenant.as_str()).map(|s| view(tenant, s))
    }

    /// The tenant's log entries numbered above `after`, at most `limit`.
    pub fn logs(&self, tenant: &TenantName, after: u64, limit: usize) -> Option<LogPage> {
        let book = Arc::clone(self.tenants().get(tenant.as_str())?.run.module.log().book());
        Some(book.after(after, limit))
    }

    /// The tenant's history of the last 15 minutes (empty after a restart).
    pub fn history(&self, tenant: &TenantName) -> Option<HistoryView> {
        self.tenants()
            .get(tenant.as_str())
            .map(|s| s.history.view())
    }

    /// The tenant's last dead letters, newest first.
    pub fn dead_letters(&self, tenant: &TenantName) -> Option<Vec<KeptLetter>> {
        if !self.tenants().contains_key(tenant.as_str()) {
            return None;
        }
        Some(self.env.dead_letters.book(tenant).newest_first())
    }

    /// The running version's manifest, as the console shows it.
    pub fn manifest(&self, tenant: &TenantName) -> Option<ManifestView> {
        self.tenants()
            .get(tenant.as_str())
            .map(|s| manifest_view(&s.run.manifest))
    }

    /// The control plane's own health: it answers (the tenants' map can
    /// be locked) and is not shutting down. A failed or stuck tenant does
    /// not make the shared host unready: it shows in `/v1/tenants` and
    /// `/metrics`.
    pub fn ready(&self) -> bool {
        if self.shutting_down.load(Ordering::Acquire) {
            return false;
        }
        drop(self.tenants());
        true
    }

    /// A worker stuck in a guest call far past its budget — something no
    /// epoch deadline ended — fails its tenant with the reason, and its
    /// consumer is paused: nothing more is delivered to a run that cannot
    /// take it. The tenant's other workers and every other tenant go on.
    fn watchdog(&self, tenant: &str, slot: &mut Slot) {
        if slot.fault.is_some() {
            return;
        }
        let Some(running) = slot.run.module.longest_call() else {
            return;
        };
        let budget = slot.run.manifest.limits.call_budget;
        if running <= budget.saturating_add(self.config.stuck_after) {
            return;
        }
        let reason = format!(
            "stuck: a guest call has been running for {}, past its budget of {} \
             (the watchdog allows {} more); its worker cannot be stopped: undeploy the tenant",
            manifest::format_duration(Duration::from_secs(running.as_secs())),
            manifest::format_duration(budget),
            manifest::format_duration(self.config.stuck_after),
        );
        tracing::error!(%tenant, %reason, "watchdog: a tenant's worker is stuck");
        slot.run.module.log().host_note("error", &reason);
        drop(slot.run.pause());
        slot.fault = Some(Fault {
            stuck: true,
            reason,
        });
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
            slot.sample_history(now);
            slot.run.balance();
            self.watchdog(tenant, slot);
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
                    format!("{AUTO_PAUSED}{recent} guest traps within a minute (limit {limit})");
                tracing::warn!(%tenant, %reason, "pausing a trapping tenant");
                slot.run.module.log().host_note("warn", &reason);
                // Not waited for: this runs on the async runtime.
                drop(slot.run.pause());
                slot.paused = Some(reason);
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
                    running: s.run.ended().is_none() && s.fault.is_none(),
                    state: metric_state(s),
                }
            })
            .collect()
    }
}

/// Auto-pause samples starting now at `traps`: traps from this moment on
/// count, also those before the watcher's next look.
fn since_now(traps: u64) -> VecDeque<(Instant, u64)> {
    VecDeque::from([(Instant::now(), traps)])
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
