//! A validated, pre-instantiated tenant component. Cheap to clone: shard
//! workers each make their own [`TenantInstance`] from the same module.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wasmtime::Engine;

use super::bindings::TenantPre;
use super::engine::{LoadSource, SandboxEngine, TrapBackoff};
use super::error::{Result, SandboxError};
use super::instance::TenantInstance;
use super::limits::Limits;
use super::log::TenantLog;
use sluice_core::data::{FieldDef, FunctionKind, ModuleInfo};

#[derive(Clone)]
pub struct TenantModule {
    inner: Arc<Inner>,
}

struct Inner {
    tenant: String,
    engine: Engine,
    epoch_tick: Duration,
    /// The host's ceilings (the engine's).
    ceilings: super::ceilings::Ceilings,
    pre: TenantPre<super::instance::HostState>,
    hash: String,
    info: ModuleInfo,
    source: LoadSource,
    /// What one instance takes from the pool, counted at load.
    needs: super::needs::Needs,
    /// Instance slots of the engine's pool.
    pool_slots: u32,
    /// Calls of any instance of this module that trapped or hit a limit:
    /// the operator plane watches it to pause a tenant that keeps trapping.
    traps: AtomicU64,
    /// CPU time spent in calls of any instance of this module, in ns: the
    /// budget is CPU time (epoch deadlines, not fuel), so this is what a
    /// tenant "burns".
    guest_cpu_ns: AtomicU64,
    backoff: Option<Backoff>,
    /// Each instance's call in progress, for the host's watchdog.
    beats: CallBeats,
    /// The tenant's log, shared by the instances (one rate limit, one book).
    log: TenantLog,
}

/// The trap backoff of one tenant module, shared by its instances (one
/// per shard worker), so every worker of a trapping tenant slows down.
struct Backoff {
    config: TrapBackoff,
    /// The current delay and until when to wait (from the last trap).
    state: Mutex<(Duration, Option<Instant>)>,
    /// Not waited out while the tenant's run is stopping: a shutdown or
    /// redeploy drains what was delivered, and must not take a backoff
    /// per remaining trap.
    stopping: std::sync::atomic::AtomicBool,
}

impl TenantModule {
    pub(crate) fn new(
        engine: &SandboxEngine,
        tenant: &str,
        pre: TenantPre<super::instance::HostState>,
        hash: String,
        info: ModuleInfo,
        source: LoadSource,
        needs: super::needs::Needs,
    ) -> Self {
        TenantModule {
            inner: Arc::new(Inner {
                tenant: tenant.to_owned(),
                engine: engine.engine.clone(),
                epoch_tick: engine.config.epoch_tick,
                ceilings: engine.config.ceilings.clone(),
                pre,
                hash,
                info,
                source,
                needs,
                pool_slots: engine.config.pool_instances.max(1),
                traps: AtomicU64::new(0),
                guest_cpu_ns: AtomicU64::new(0),
                beats: CallBeats::default(),
                log: TenantLog::with_book(tenant, engine.log_book(tenant)),
                backoff: engine.config.trap_backoff.map(|config| Backoff {
                    config,
                    state: Mutex::new((Duration::ZERO, None)),
                    stopping: std::sync::atomic::AtomicBool::new(false),
                }),
            }),
        }
    }

    /// What one instance of this module takes from the instance pool.
    pub fn needs(&self) -> super::needs::Needs {
        self.inner.needs
    }

    /// The pool's size beside this module's needs, for the message of a
    /// full pool.
    pub(crate) fn pool_summary(&self) -> String {
        let (n, c) = (self.inner.pool_slots, &self.inner.ceilings);
        let needs = self.inner.needs;
        format!(
            "one instance of this module takes {} core instances, {} memories and {} tables; \
             the pool holds {n} instances of at most {} core instances, {} memories and {} \
             tables each",
            needs.core_instances,
            needs.memories,
            needs.tables,
            c.core_instances,
            c.memories,
            c.tables
        )
    }

    pub(crate) fn set_info(&mut self, info: ModuleInfo) {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.info = info;
        }
    }

    /// The tenant's log: what `sluice logs` reads is its book.
    pub fn log(&self) -> &TenantLog {
        &self.inner.log
    }

    pub fn tenant(&self) -> &str {
        &self.inner.tenant
    }

    /// SHA-256 of the component bytes, hex: the module's identity.
    pub fn hash(&self) -> &str {
        &self.inner.hash
    }

    /// Whether this load compiled the component or reused a cached artifact.
    pub fn source(&self) -> LoadSource {
        self.inner.source
    }

    /// Calls of every instance of this module so far that trapped or hit a
    /// CPU, memory or output limit.
    pub fn traps(&self) -> u64 {
        self.inner.traps.load(Ordering::Relaxed)
    }

    pub(crate) fn count_trap(&self) {
        self.inner.traps.fetch_add(1, Ordering::Relaxed);
        if let Some(b) = &self.inner.backoff {
            if let Ok(mut state) = b.state.lock() {
                let now = Instant::now();
                // A trap soon after the last one's wait doubles the delay;
                // one after a quiet spell starts over.
                let recent = state.1.is_some_and(|until| {
                    now.saturating_duration_since(until) < b.config.reset_after()
                });
                let delay = if recent {
                    (state.0 * 2).min(b.config.max)
                } else {
                    b.config.first
                };
                *state = (delay, Some(now + delay));
            }
        }
    }

    /// Whether calls wait out the trap backoff: not while a run of this
    /// module stops (it drains at full speed), again when one starts.
    pub fn set_stopping(&self, stopping: bool) {
        if let Some(b) = &self.inner.backoff {
            b.stopping.store(stopping, Ordering::Relaxed);
        }
    }

    /// Waits out a trap backoff before a call, the calling worker lowered
    /// in priority while its tenant is in backoff ([`super::priority`]).
    pub(crate) fn before_call(&self) {
        let Some(b) = &self.inner.backoff else {
            return;
        };
        let until = b.state.lock().ok().and_then(|s| s.1);
        let now = Instant::now();
        super::priority::set_lowered(
            until.is_some_and(|u| now.saturating_duration_since(u) < b.config.reset_after()),
        );
        if b.stopping.load(Ordering::Relaxed) {
            return;
        }
        if let Some(wait) = until.and_then(|u| u.checked_duration_since(now)) {
            std::thread::sleep(wait);
        }
    }

    /// CPU time the calls of every instance of this module have used.
    pub fn guest_cpu(&self) -> std::time::Duration {
        std::time::Duration::from_nanos(self.inner.guest_cpu_ns.load(Ordering::Relaxed))
    }

    pub(crate) fn add_guest_cpu(&self, used: std::time::Duration) {
        let ns = u64::try_from(used.as_nanos()).unwrap_or(u64::MAX);
        self.inner.guest_cpu_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// How long the longest call now in progress (of any instance) has
    /// been running: `sluice serve`'s watchdog reads it to find a worker
    /// stuck in a guest call, which no epoch deadline ended.
    pub fn longest_call(&self) -> Option<Duration> {
        self.inner.beats.longest()
    }

    pub(crate) fn call_beat(&self) -> Arc<AtomicU64> {
        self.inner.beats.register()
    }

    pub(crate) fn beats_origin(&self) -> Instant {
        self.inner.beats.origin
    }

    /// What the module said about itself at load.
    pub fn info(&self) -> &ModuleInfo {
        &self.inner.info
    }

    /// The kind of the named function, if the module lists it.
    pub fn function_kind(&self, name: &str) -> Option<FunctionKind> {
        self.inner
            .info
            .functions
            .iter()
            .find(|f| f.name == name)
            .map(|f| f.kind)
    }

    pub(crate) fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    pub(crate) fn epoch_tick(&self) -> Duration {
        self.inner.epoch_tick
    }

    pub(crate) fn pre(&self) -> &TenantPre<super::instance::HostState> {
        &self.inner.pre
    }

    /// A new instance with the manifest's params, input schema and limits.
    /// It is instantiated and `init` is called now, so a bad param is
    /// reported at deploy time rather than at the first event.
    pub fn instantiate(
        &self,
        params: Vec<(String, String)>,
        schema: Vec<FieldDef>,
        limits: Limits,
    ) -> Result<TenantInstance> {
        // Also checked when a manifest is loaded; here again so that no
        // path instantiates over a ceiling.
        self.inner
            .ceilings
            .check(&limits)
            .map_err(|source| SandboxError::OverCeiling {
                tenant: self.tenant().to_owned(),
                source: Box::new(source),
            })?;
        let mut instance = TenantInstance::new(self.clone(), params, schema, limits);
        instance.warm()?;
        Ok(instance)
    }

    /// The per-call output ceiling for a tenant whose per-item cap is
    /// `max_output`.
    pub(crate) fn call_output_for(&self, max_output: u64) -> u64 {
        self.inner.ceilings.call_output_for(max_output)
    }

    /// Calls `describe` on a throwaway instance (no `init`), under the
    /// default limits (the manifest's are not known yet: `describe` is how
    /// the host learns what the module is), capped by the ceilings. It
    /// runs like any call: CPU budget, memory cap, no waiting.
    pub(crate) fn describe(&self) -> Result<ModuleInfo> {
        let defaults = Limits::default();
        let limits = Limits {
            memory: defaults.memory.min(self.inner.ceilings.memory),
            call_budget: defaults.call_budget.min(self.inner.ceilings.call_budget),
            max_output: defaults.max_output.min(self.inner.ceilings.max_output),
        };
        TenantInstance::new(self.clone(), Vec::new(), Vec::new(), limits).describe()
    }
}

/// When each instance's call in progress started: ms since `origin`, plus
/// one (0: no call). Written twice per call (no lock), read by the
/// watchdog once a second.
struct CallBeats {
    origin: Instant,
    beats: Mutex<Vec<std::sync::Weak<AtomicU64>>>,
}

impl Default for CallBeats {
    fn default() -> Self {
        CallBeats {
            origin: Instant::now(),
            beats: Mutex::new(Vec::new()),
        }
    }
}

impl CallBeats {
    fn register(&self) -> Arc<AtomicU64> {
        let beat = Arc::new(AtomicU64::new(0));
        if let Ok(mut beats) = self.beats.lock() {
            beats.retain(|b| b.strong_count() > 0);
            beats.push(Arc::downgrade(&beat));
        }
        beat
    }

    fn longest(&self) -> Option<Duration> {
        let now = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        let beats = self.beats.lock().ok()?;
        beats
            .iter()
            .filter_map(std::sync::Weak::upgrade)
            .map(|b| b.load(Ordering::Relaxed))
            .filter(|&started| started > 0)
            .map(|started| Duration::from_millis(now.saturating_sub(started - 1)))
            .max()
    }
}

/// Marks an instance's call in progress for as long as it lives.
pub(crate) struct CallGuard(Arc<AtomicU64>);

impl CallGuard {
    pub(crate) fn start(beat: &Arc<AtomicU64>, origin: Instant) -> CallGuard {
        let ms = u64::try_from(origin.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
        beat.store(ms + 1, Ordering::Relaxed);
        CallGuard(Arc::clone(beat))
    }
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        self.0.store(0, Ordering::Relaxed);
    }
}
