//! The shared wasmtime engine: configuration (epoch interruption, pooling
//! allocator, no component-model concurrency), the epoch ticker that makes
//! call budgets real, the linker, and loading + validating components with a
//! content-addressed cache of compiled artifacts.
//!
//! Loading is bounded by the host's [`Ceilings`]: only regular files are
//! read, at most `module_size` bytes; at most `concurrent_compiles`
//! compiles run at once, each for at most `compile_time`.
//!
//! The artifact cache belongs to the host alone: loading a cached artifact
//! trusts its bytes (it is machine code), so the directory must be owned by
//! the host's user and writable by no one else (checked when the engine
//! starts; created with mode 0700), and an artifact is used only if it is a
//! regular file of that user that no one else may write. Tenants have no
//! file access at all, and uploads land in the state directory, which
//! `host.toml` may not place the cache under.

use std::hash::{Hash, Hasher};
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::bindings::{Tenant, TenantPre};
use super::ceilings::{Ceilings, CompileSlots};
use super::error::{chain, RejectReason, Result, SandboxError};
use super::instance::HostState;
use super::limits::Limits;
use super::log_book::LogBook;
use super::module::TenantModule;
use super::validate;
use sluice_core::data::ModuleInfo;

/// Engine-wide settings. Per-tenant bounds are [`super::Limits`].
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Use the pooling allocator (pre-reserved instance slots: faster
    /// instantiation, fixed virtual-memory reservation).
    pub pooling: bool,
    /// Instance slots in the pool.
    pub pool_instances: u32,
    /// The most any tenant may declare or cause; `ceilings.memory` is also
    /// the pool's slot size.
    pub ceilings: Ceilings,
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
            ceilings: Ceilings::default(),
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
    compiles: Arc<CompileSlots>,
    /// Each tenant's log book, shared by every module of the tenant that
    /// is alive (a redeploy keeps the log; the last module gone drops it).
    books: std::sync::Mutex<std::collections::HashMap<String, std::sync::Weak<LogBook>>>,
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
            // Per slot, what the ceilings let one instance take (each
            // component's needs are checked against them at load): any mix
            // of loaded components fits in `pool_instances` instances.
            let mut pool = PoolingAllocationConfig::default();
            let n = config.pool_instances.max(1);
            let c = &config.ceilings;
            pool.total_component_instances(n)
                .total_core_instances(n.saturating_mul(c.core_instances.max(1)))
                .total_memories(n.saturating_mul(c.memories.max(1)))
                .total_tables(n.saturating_mul(c.tables.max(1)))
                .total_stacks(n)
                .max_core_instances_per_component(c.core_instances.max(1))
                .max_memories_per_component(c.memories.max(1))
                .max_tables_per_component(c.tables.max(1))
                .max_memory_size(usize::try_from(c.memory).unwrap_or(usize::MAX));
            wasm.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        }
        let engine = Engine::new(&wasm).map_err(|e| SandboxError::Engine(chain(&e)))?;

        let mut linker = Linker::<HostState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|e| SandboxError::Engine(chain(&e)))?;
        // The monotonic clock again, replaced by one that never waits (see
        // `wasi.rs`): wasmtime-wasi's would block the worker in a sleep.
        linker.allow_shadowing(true);
        wasmtime_wasi::p2::bindings::clocks::monotonic_clock::add_to_linker::<
            HostState,
            super::wasi::NoWait,
        >(&mut linker, HostState::no_wait_clock)
        .map_err(|e| SandboxError::Engine(chain(&e)))?;
        linker.allow_shadowing(false);
        Tenant::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)
            .map_err(|e| SandboxError::Engine(chain(&e)))?;

        if let Some(dir) = &config.cache_dir {
            own_cache_dir(dir)?;
        }
        let ticker = start_ticker(&engine, config.epoch_tick)?;
        Ok(SandboxEngine {
            engine,
            linker,
            compiles: Arc::new(CompileSlots::new(config.ceilings.concurrent_compiles)),
            books: std::sync::Mutex::default(),
            config,
            _ticker: ticker,
        })
    }

    /// The host's ceilings.
    /// The log book of `tenant`'s live modules, or a new one.
    pub(crate) fn log_book(&self, tenant: &str) -> Arc<LogBook> {
        let Ok(mut books) = self.books.lock() else {
            return Arc::new(LogBook::default());
        };
        if let Some(book) = books.get(tenant).and_then(std::sync::Weak::upgrade) {
            return book;
        }
        books.retain(|_, book| book.strong_count() > 0);
        let book = Arc::new(LogBook::default());
        books.insert(tenant.to_owned(), Arc::downgrade(&book));
        book
    }

    pub fn ceilings(&self) -> &Ceilings {
        &self.config.ceilings
    }

    /// Refuses a tenant's declared limits over the host's ceilings, naming
    /// the ceiling: call it when a manifest is loaded, before its module.
    pub fn check_limits(&self, tenant: &str, limits: &Limits) -> Result<()> {
        self.config
            .ceilings
            .check(limits)
            .map_err(|source| SandboxError::OverCeiling {
                tenant: tenant.to_owned(),
                source: Box::new(source),
            })
    }

    /// Reads, validates and prepares a tenant component from a file. Only
    /// a regular file is read (a device such as `/dev/zero` never ends),
    /// and at most the module-size ceiling of it.
    pub fn load_file(&self, tenant: &str, path: &Path) -> Result<TenantModule> {
        let io = |source| SandboxError::Io {
            context: format!("tenant `{tenant}`: reading module {}", path.display()),
            source,
        };
        let reject = |reason| SandboxError::Rejected {
            tenant: tenant.to_owned(),
            reason,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        let meta = file.metadata().map_err(io)?;
        if !meta.is_file() {
            let what = if meta.is_dir() {
                "a directory".to_owned()
            } else {
                format!("{} is a device, pipe or socket", path.display())
            };
            return Err(reject(RejectReason::NotAFile(what)));
        }
        let ceiling = self.config.ceilings.module_size;
        if meta.len() > ceiling {
            return Err(reject(RejectReason::TooLarge {
                size: meta.len(),
                ceiling,
            }));
        }
        // The file may grow while read: never read past the ceiling.
        let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
        file.take(ceiling.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(io)?;
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
        let ceiling = self.config.ceilings.module_size;
        if bytes.len() as u64 > ceiling {
            return Err(reject(RejectReason::TooLarge {
                size: bytes.len() as u64,
                ceiling,
            }));
        }
        validate::check_header(bytes).map_err(reject)?;
        // Counted before compiling: an instance over the ceilings could
        // never be made, so its compile is not paid for.
        let needs = super::needs::count(bytes).map_err(|e| reject(RejectReason::Compile(e)))?;
        self.config.ceilings.check_needs(&needs).map_err(reject)?;
        let hash = hex::encode(Sha256::digest(bytes));
        let started = Instant::now();
        let (component, source) = self.compile(&hash, bytes).map_err(reject)?;

        let ty = component.component_type();
        let sluice_names = ty
            .imports(&self.engine)
            .chain(ty.exports(&self.engine))
            .map(|(name, _)| name);
        if let Some(found) = validate::other_contract(sluice_names) {
            return Err(reject(RejectReason::OtherContract { found }));
        }
        let forbidden = validate::forbidden_imports(ty.imports(&self.engine).map(|(name, _)| name));
        if !forbidden.is_empty() {
            return Err(reject(RejectReason::ForbiddenImports(forbidden)));
        }
        let pre = self
            .linker
            .instantiate_pre(&component)
            .and_then(TenantPre::new)
            .map_err(|e| reject(RejectReason::WrongWorld(chain(&e))))?;
        let mut module = TenantModule::new(
            self,
            tenant,
            pre,
            hash,
            ModuleInfo::default(),
            source,
            needs,
        );
        let info = module.describe().map_err(|e| match e {
            SandboxError::Rejected { .. } => e,
            other => reject(RejectReason::Describe(other.to_string())),
        })?;
        validate::check_info(&info).map_err(|m| reject(RejectReason::Describe(m)))?;
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
            return self
                .compile_bounded(bytes)
                .map(|c| (c, LoadSource::Compiled));
        };
        let path = dir.join(format!("{hash}-{}.cwasm", self.compatibility_tag()));
        if trusted_artifact(&path) {
            // SAFETY: the cache directory and this file belong to the host's
            // user and no one else may write them (checked above and when
            // the engine started); artifacts there are written only by this
            // function, from what this engine configuration produced. A file
            // that is not such an artifact is refused by wasmtime's header
            // check and recompiled below.
            match unsafe { Component::deserialize_file(&self.engine, &path) } {
                Ok(component) => return Ok((component, LoadSource::Cache)),
                Err(e) => tracing::warn!(path = %path.display(), error = %chain(&e),
                    "cached artifact unusable; recompiling"),
            }
        }
        let artifact = self.bounded(bytes, |engine, bytes| engine.precompile_component(&bytes))?;
        if let Err(e) = write_atomically(dir, &path, &artifact) {
            tracing::warn!(path = %path.display(), error = %e, "could not cache compiled module");
        }
        // SAFETY: `artifact` was produced just above by this engine.
        let component = unsafe { Component::deserialize(&self.engine, &artifact) }
            .map_err(|e| RejectReason::Compile(chain(&e)))?;
        Ok((component, LoadSource::Compiled))
    }

    fn compile_bounded(&self, bytes: &[u8]) -> std::result::Result<Component, RejectReason> {
        self.bounded(bytes, |engine, bytes| Component::new(&engine, &bytes))
    }

    /// Runs `compile` in a thread of its own once a compile slot is free,
    /// waiting at most the compile-time ceiling for the slot and again for
    /// the compile. A compile that overruns is abandoned (its thread ends
    /// in its own time and only then frees its slot, so the number of
    /// compiles at once stays bounded).
    fn bounded<T: Send + 'static>(
        &self,
        bytes: &[u8],
        compile: fn(Engine, Vec<u8>) -> wasmtime::Result<T>,
    ) -> std::result::Result<T, RejectReason> {
        let limit = self.config.ceilings.compile_time;
        let slot = self.compiles.acquire(limit).ok_or_else(|| {
            RejectReason::CompileTime(format!(
                "no compile slot came free within {limit:?}: the host is busy compiling other \
                 modules (ceilings `concurrent_compiles` = {}, `compile_time`); try again",
                self.config.ceilings.concurrent_compiles
            ))
        })?;
        let (tx, rx) = mpsc::sync_channel(1);
        let engine = self.engine.clone();
        let bytes = bytes.to_vec();
        std::thread::Builder::new()
            .name("sluice-compile".into())
            .spawn(move || {
                let result = compile(engine, bytes);
                drop(slot);
                let _ = tx.send(result);
            })
            .map_err(|e| RejectReason::Compile(format!("starting a compile thread: {e}")))?;
        match rx.recv_timeout(limit) {
            Ok(result) => result.map_err(|e| RejectReason::Compile(chain(&e))),
            Err(_) => Err(RejectReason::CompileTime(format!(
                "compiling took longer than the host's ceiling of {limit:?} (ceiling \
                 `compile_time`)"
            ))),
        }
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

/// Where `sluice run`, `serve` and the other commands keep compiled
/// artifacts unless told otherwise: `$XDG_CACHE_HOME/sluice/artifacts`,
/// else `~/.cache/sluice/artifacts` (`None` without a home). On by default
/// because compiling a 15 MB componentize-py component takes ≈ 20 s and
/// ≈ 0.5 GB; loading its artifact takes milliseconds.
pub fn default_cache_dir() -> Option<PathBuf> {
    let base = match std::env::var_os("XDG_CACHE_HOME") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(std::env::var_os("HOME").filter(|h| !h.is_empty())?).join(".cache"),
    };
    Some(base.join("sluice").join("artifacts"))
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
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(bytes)?;
    drop(file);
    std::fs::rename(&tmp, path)
}

/// The effective user id of the host process.
fn host_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Creates the cache directory (mode 0700) or checks that it belongs to
/// the host alone: owned by the host's user, writable by no one else.
fn own_cache_dir(dir: &Path) -> Result<()> {
    let io = |source| SandboxError::Io {
        context: format!("compiled-artifact cache {}", dir.display()),
        source,
    };
    if !dir.exists() {
        std::fs::create_dir_all(dir).map_err(io)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
    }
    let meta = std::fs::symlink_metadata(dir).map_err(io)?;
    let problem = if !meta.is_dir() {
        Some("is not a directory (a symbolic link is not accepted)")
    } else if meta.uid() != host_uid() {
        Some("is owned by another user")
    } else if meta.mode() & 0o022 != 0 {
        Some("is writable by other users")
    } else {
        None
    };
    match problem {
        Some(problem) => Err(SandboxError::Engine(format!(
            "the compiled-artifact cache {} {problem}; loading a cached artifact trusts its \
             bytes, so the cache must belong to the host alone (owned by its user, mode 0700)",
            dir.display()
        ))),
        None => Ok(()),
    }
}

/// Whether a cached artifact may be loaded: a regular file (not a link) of
/// the host's user that no one else may write.
fn trusted_artifact(path: &Path) -> bool {
    match std::fs::symlink_metadata(path) {
        Ok(meta) => {
            let trusted = meta.is_file() && meta.uid() == host_uid() && meta.mode() & 0o022 == 0;
            if !trusted {
                tracing::warn!(path = %path.display(),
                    "cached artifact not owned by the host alone; ignored and recompiled");
            }
            trusted
        }
        Err(_) => false,
    }
}
