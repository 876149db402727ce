//! The shared wasmtime engine: configuration (epoch interruption, pooling
//! allocator, no component-model concurrency), the epoch ticker that makes
//! call budgets real, the linker, and loading + validating components with a
//! content-addressed cache of compiled artifacts.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::bindings::{ModuleInfo, Tenant, TenantPre};
use super::error::{chain, RejectReason, Result, SandboxError};
use super::instance::HostState;
use super::module::TenantModule;
use super::validate;

/// Engine-wide settings. Per-tenant bounds are [`super::Limits`].
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Use the pooling allocator (pre-reserved instance slots: faster
    /// instantiation, fixed virtual-memory reservation).
    pub pooling: bool,
    /// Instance slots in the pool.
    pub pool_instances: u32,
    /// Largest memory cap any tenant may ask for (pool slot size), bytes.
    pub max_memory: u64,
    /// Epoch tick: the granularity of CPU budgets.
    pub epoch_tick: Duration,
    /// Where compiled artifacts are kept, keyed by content hash; `None`
    /// compiles every load.
    pub cache_dir: Option<PathBuf>,
    /// Delay a tenant's next call after a trap (`None`: no delay).
    pub trap_backoff: Option<TrapBackoff>,
}

/// After a trap, a tenant's calls wait `first`, doubling with each trap
/// that follows within [`TrapBackoff::reset_after`] of the last wait, up
/// to `max`. A trap costs up to a whole CPU budget; a tenant that keeps
/// trapping would otherwise spend its workers' CPU — which its neighbours
/// on the same cores need — at the rate it can fail. Successes in between
/// do not reset it: a poisoned batch is retried in halves, and the halves
/// without the poison succeed. `sluice serve` sets this; a lone `sluice
/// run` does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrapBackoff {
    pub first: Duration,
    pub max: Duration,
}

impl TrapBackoff {
    /// A trap this long after the last wait ended starts over at `first`.
    pub fn reset_after(&self) -> Duration {
        self.max * 5
    }

    /// What `sluice serve` uses: short enough for a rare poison event,
    /// bounded so a checkpoint barrier waits at most this long.
    pub const SERVE: TrapBackoff = TrapBackoff {
        first: Duration::from_millis(100),
        max: Duration::from_secs(2),
    };
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            pooling: true,
            pool_instances: 256,
            max_memory: 1 << 30,
            epoch_tick: Duration::from_millis(1),
            cache_dir: None,
            trap_backoff: None,
        }
    }
}

/// Ticks the engine's epoch from a background thread; stops on drop.
struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One per process: compiles and validates tenant components, and hands out
/// [`TenantModule`]s from which instances are made.
pub struct SandboxEngine {
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<HostState>,
    pub(crate) config: SandboxConfig,
    _ticker: EpochTicker,
}

/// How a component was obtained, for logs and benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadSource {
    Compiled,
    Cache,
}

impl SandboxEngine {
    pub fn new(config: SandboxConfig) -> Result<Self> {
        let mut wasm = Config::new();
        wasm.wasm_component_model(true)
            // Measured: concurrency support adds ≈ 0.5 µs to every sync call.
            .concurrency_support(false)
            .epoch_interruption(true)
            .cranelift_opt_level(wasmtime::OptLevel::Speed);
        if config.pooling {
            let mut pool = PoolingAllocationConfig::default();
            let n = config.pool_instances.max(1);
            pool.total_component_instances(n)
                .total_core_instances(n.saturating_mul(8))
                .total_memories(n.saturating_mul(2))
                .total_tables(n.saturating_mul(8))
                .total_stacks(n)
                .max_memories_per_component(4)
                .max_memory_size(usize::try_from(config.max_memory).unwrap_or(usize::MAX));
            wasm.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        }
        let engine = Engine::new(&wasm).map_err(|e| SandboxError::Engine(chain(&e)))?;

        let mut linker = Linker::<HostState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|e| SandboxError::Engine(chain(&e)))?;
        Tenant::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)
            .map_err(|e| SandboxError::Engine(chain(&e)))?;

        let ticker = start_ticker(&engine, config.epoch_tick)?;
        Ok(SandboxEngine {
            engine,
            linker,
            config,
            _ticker: ticker,
        })
    }

    /// Reads, validates and prepares a tenant component from a file.
    pub fn load_file(&self, tenant: &str, path: &Path) -> Result<TenantModule> {
        let bytes = std::fs::read(path).map_err(|source| SandboxError::Io {
            context: format!("tenant `{tenant}`: reading module {}", path.display()),
            source,
        })?;
        self.load(tenant, &bytes)
    }

    /// Validates and prepares a tenant component: it must be a component,
    /// compile, import nothing beyond the sandbox's interfaces, export the
    /// sluice world, and answer `describe`.
    #[tracing::instrument(skip_all, fields(tenant))]
    pub fn load(&self, tenant: &str, bytes: &[u8]) -> Result<TenantModule> {
        let reject = |reason| SandboxError::Rejected {
            tenant: tenant.to_owned(),
            reason,
        };
        validate::check_header(bytes).map_err(reject)?;
        let hash = hex::encode(Sha256::digest(bytes));
        let started = Instant::now();
        let (component, source) = self.compile(&hash, bytes).map_err(reject)?;

        let ty = component.component_type();
        let forbidden = validate::forbidden_imports(ty.imports(&self.engine).map(|(name, _)| name));
        if !forbidden.is_empty() {
            return Err(reject(RejectReason::ForbiddenImports(forbidden)));
        }
        let pre = self
            .linker
            .instantiate_pre(&component)
            .and_then(TenantPre::new)
            .map_err(|e| reject(RejectReason::WrongWorld(chain(&e))))?;
        let mut module = TenantModule::new(self, tenant, pre, hash, ModuleInfo::empty(), source);
        let info = module.describe().map_err(|e| match e {
            SandboxError::Rejected { .. } => e,
            other => reject(RejectReason::Describe(other.to_string())),
        })?;
        module.set_info(info);
        tracing::info!(
            tenant,
            module = %module.info().name,
            version = %module.info().version,
            hash = %module.hash(),
            ?source,
            elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
            "module loaded"
        );
        Ok(module)
    }

    fn compile(
        &self,
        hash: &str,
        bytes: &[u8],
    ) -> std::result::Result<(Component, LoadSource), RejectReason> {
        let Some(dir) = &self.config.cache_dir else {
            return self.compile_fresh(bytes).map(|c| (c, LoadSource::Compiled));
        };
        let path = dir.join(format!("{hash}-{}.cwasm", self.compatibility_tag()));
        if path.exists() {
            // SAFETY: the cache directory is written only by this function,
            // from artifacts this engine configuration produced; a file that
            // is not such an artifact is refused by wasmtime's header check
            // and recompiled below.
            match unsafe { Component::deserialize_file(&self.engine, &path) } {
                Ok(component) => return Ok((component, LoadSource::Cache)),
                Err(e) => tracing::warn!(path = %path.display(), error = %chain(&e),
                    "cached artifact unusable; recompiling"),
            }
        }
        let artifact = self
            .engine
            .precompile_component(bytes)
            .map_err(|e| RejectReason::Compile(chain(&e)))?;
        if let Err(e) = write_atomically(dir, &path, &artifact) {
            tracing::warn!(path = %path.display(), error = %e, "could not cache compiled module");
        }
        // SAFETY: `artifact` was produced just above by this engine.
        let component = unsafe { Component::deserialize(&self.engine, &artifact) }
            .map_err(|e| RejectReason::Compile(chain(&e)))?;
        Ok((component, LoadSource::Compiled))
    }

    fn compile_fresh(&self, bytes: &[u8]) -> std::result::Result<Component, RejectReason> {
        Component::new(&self.engine, bytes).map_err(|e| RejectReason::Compile(chain(&e)))
    }

    /// Distinguishes artifacts of different wasmtime versions or settings.
    fn compatibility_tag(&self) -> String {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.engine
            .precompile_compatibility_hash()
            .hash(&mut hasher);
        self.config.pooling.hash(&mut hasher);
        format!("{:016x}", hasher.finish())
    }
}

fn start_ticker(engine: &Engine, tick: Duration) -> Result<EpochTicker> {
    let stop = Arc::new(AtomicBool::new(false));
    let thread = {
        let engine = engine.clone();
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("sluice-epoch".into())
            .spawn(move || {
                // Ticks follow the real clock, not the number of sleeps: a
                // sleep can overrun on a loaded machine, and budgets are in
                // wall time.
                let started = Instant::now();
                let mut ticks: u128 = 0;
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    let due = started.elapsed().as_nanos() / tick.as_nanos().max(1);
                    while ticks < due {
                        engine.increment_epoch();
                        ticks += 1;
                    }
                }
            })
            .map_err(|e| SandboxError::Engine(format!("starting the epoch ticker: {e}")))?
    };
    Ok(EpochTicker {
        stop,
        thread: Some(thread),
    })
}

fn write_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

impl ModuleInfo {
    fn empty() -> Self {
        ModuleInfo {
            name: String::new(),
            version: String::new(),
            functions: Vec::new(),
        }
    }
}
