//! One live instance of a tenant module, owned by one shard worker.
//!
//! Every call is bounded (epoch deadline, memory cap, output cap). State is
//! passed in and returned by value, so a failed call changes nothing the
//! host holds; after a trap the `Store` is discarded (wasmtime cannot enter
//! it again) and rebuilt lazily before the next call.

use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

use wasmtime::component::ResourceTable;
use wasmtime::{Store, Trap};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::{self as wit, Analytics, GuestError, LogLevel, Tenant};
use super::convert;
use super::error::{chain, cut_message, Limit, Result, SandboxError};
use super::limits::{thread_cpu_time, Limits, MemoryCap};
use super::log::TenantLog;
use super::module::TenantModule;
use super::output::{self, Caps, Declared, Refusal};
use super::packed;
use super::wasi::{deterministic_ctx, NoWaitClock, PinnedClock, SeededRandom, WaitRefused};
use sluice_core::data::{
    AddGroup, AlertResult, DataField, EventBatch, FieldDef, KeyGroup, ModuleInfo, WindowGroup,
};

/// The data of a tenant's `Store`.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    log: TenantLog,
    /// The instant the guest's monotonic clock shows (the WASI context has
    /// the same clock; this one serves the no-wait clock).
    clock: PinnedClock,
    pub(crate) limiter: MemoryCap,
    /// The thread's CPU time when the current call started.
    cpu_start: Duration,
}

impl HostState {
    /// The guest's monotonic clock, which never waits.
    pub(crate) fn no_wait_clock(&mut self) -> NoWaitClock<'_> {
        NoWaitClock {
            clock: &self.clock,
            table: &mut self.table,
        }
    }
}

/// How a call failed short of a trap.
enum Failed {
    /// The guest returned an error value.
    Guest(GuestError),
    /// The host refused what it returned.
    Refused(Refusal),
}

impl From<GuestError> for Failed {
    fn from(e: GuestError) -> Self {
        Failed::Guest(e)
    }
}

impl From<Refusal> for Failed {
    fn from(r: Refusal) -> Self {
        Failed::Refused(r)
    }
}

/// Innermost frames that, all in one to three functions, make an
/// out-of-bounds access a stack overflow: a Rust guest's stack lives in its
/// linear memory, and running off its end is an out-of-bounds access, not
/// wasmtime's stack-overflow trap (safe Rust makes none otherwise).
const RECURSION_FRAMES: usize = 16;

/// A trap's message on one line: what happened, without wasmtime's
/// backtrace, naming a stack overflow and an `exit` as such.
fn trap_message(err: &wasmtime::Error) -> String {
    if let Some(exit) = err.downcast_ref::<wasmtime_wasi::I32Exit>() {
        return format!(
            "the guest called exit (status {}); a tenant must return, not exit",
            exit.0
        );
    }
    match err.downcast_ref::<Trap>() {
        Some(Trap::StackOverflow) => {
            "stack overflow (wasm call stack exhausted: recursion too deep)".to_owned()
        }
        Some(Trap::MemoryOutOfBounds) if recursing(err) => {
            "stack overflow (the guest's stack, in its linear memory, ran out: recursion \
             too deep)"
                .to_owned()
        }
        // Its Display starts "wasm trap: ", which the caller's "trapped:"
        // already says.
        Some(trap) => {
            let text = trap.to_string();
            text.strip_prefix("wasm trap: ").unwrap_or(&text).to_owned()
        }
        None => chain(err),
    }
}

/// Whether the captured backtrace (its innermost frames, up to wasmtime's
/// default 20) is a recursion: full, and only a function or three.
fn recursing(err: &wasmtime::Error) -> bool {
    let Some(bt) = err.downcast_ref::<wasmtime::WasmBacktrace>() else {
        return false;
    };
    let frames = bt.frames();
    if frames.len() < RECURSION_FRAMES {
        return false;
    }
    let mut functions: Vec<u32> = frames.iter().map(|f| f.func_index()).collect();
    functions.sort_unstable();
    functions.dedup();
    functions.len() <= 3
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl super::bindings::sluice::analytics::host::Host for HostState {
    fn log(&mut self, level: LogLevel, message: String) {
        self.log.line(level, &message);
    }
}

impl super::bindings::sluice::analytics::types::Host for HostState {}

/// Counters of one instance, for metrics and benchmarks.
#[derive(Debug, Clone, Default)]
pub struct InstanceStats {
    pub calls: u64,
    pub traps: u64,
    pub limit_hits: u64,
    pub instantiations: u64,
    /// Instances retired after a call for holding over [`RETIRE_AT`] of
    /// their memory cap (not traps: the call succeeded).
    pub retired: u64,
    /// Time of the last instantiation (new `Store` + instantiate + `init`).
    pub last_instantiate: Duration,
}

fn live_memory(live: &Option<Live>) -> usize {
    live.as_ref()
        .map_or(0, |live| live.store.data().limiter.in_use())
}

/// The share of its memory cap (in quarters) past which an instance is
/// retired after a successful call; the next call gets a fresh one. Why:
/// linear memory never shrinks, and engines whose heaps only grow
/// (CPython, SpiderMonkey: each call's lifted lists land in fresh
/// buffers the GC is slow to reuse) crept to the cap and trapped there —
/// a call lost and run again, and a trap counted against the tenant — about
/// once per 60 000 rows for the JS BTS tenant under 64 MiB.
const RETIRE_AT: usize = 3;

struct Live {
    store: Store<HostState>,
    bindings: Tenant,
}

pub struct TenantInstance {
    module: TenantModule,
    params: Vec<(String, String)>,
    /// The tenant's schema as `init` is given it.
    schema: Vec<wit::FieldDef>,
    limits: Limits,
    log: TenantLog,
    clock: PinnedClock,
    random: SeededRandom,
    live: Option<Live>,
    stats: InstanceStats,
    /// Schema fields the module reads, as its `init` returned them.
    reads: Vec<u32>,
    /// This instance's call in progress, for the host's watchdog.
    beat: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// CPU time of the last call, and what calls cost per row or window:
    /// how big a piece of a batch fits the call budget (`pieces.rs`).
    pub(crate) last_cpu: Duration,
    pub(crate) sizer: super::pieces::Sizer,
    /// The output cap of a batch cut into pieces and what its pieces
    /// returned so far, bytes; `None` between batches (`pieces.rs`).
    pub(crate) piece_output: Option<(u64, u64)>,
}

impl TenantInstance {
    pub(crate) fn new(
        module: TenantModule,
        params: Vec<(String, String)>,
        schema: Vec<FieldDef>,
        limits: Limits,
    ) -> Self {
        let log = module.log().for_instance();
        let beat = module.call_beat();
        TenantInstance {
            module,
            params,
            schema: schema.iter().map(Into::into).collect(),
            limits,
            log,
            clock: PinnedClock::default(),
            random: SeededRandom::default(),
            live: None,
            stats: InstanceStats::default(),
            reads: Vec::new(),
            beat,
            last_cpu: Duration::ZERO,
            sizer: super::pieces::Sizer::default(),
            piece_output: None,
        }
    }

    pub fn module(&self) -> &TenantModule {
        &self.module
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn stats(&self) -> &InstanceStats {
        &self.stats
    }

    /// Indices of the schema fields the module reads (its `init` answer):
    /// build batches with [`super::BatchBuilder::projected`] to send only
    /// those columns.
    pub fn reads(&self) -> &[u32] {
        &self.reads
    }

    /// The host refused state the tenant made it hold (an alert state, an
    /// accumulator or buffered rows over a state ceiling): a limit hit that
    /// counts as a trap, so the trap backoff and auto-pause act on it. The
    /// instance is kept — it did nothing wrong inside the sandbox.
    pub fn breached_limit(&mut self) {
        self.stats.limit_hits += 1;
        self.stats.traps += 1;
        self.module.count_trap();
    }

    /// The tenant's log (lines written and dropped).
    pub fn log(&self) -> &TenantLog {
        &self.log
    }

    /// Bytes of linear memory the live instance holds (0 when none).
    pub fn memory_in_use(&self) -> usize {
        live_memory(&self.live)
    }

    /// Makes sure a live, initialised instance exists (instantiates and
    /// calls `init` if not), so the next call pays no set-up.
    pub fn warm(&mut self) -> Result<()> {
        self.ready(true).map(|_| ())
    }

    /// Drops the live instance; the next call builds a fresh one. Used by
    /// benchmarks to time instantiation, and after traps.
    pub fn discard(&mut self) {
        self.live = None;
    }

    pub(crate) fn call_budget(&self) -> Duration {
        self.limits.call_budget
    }

    fn deadline_ticks(&self) -> u64 {
        let tick = self.module.epoch_tick().as_nanos().max(1);
        let ticks = self.limits.call_budget.as_nanos().div_ceil(tick);
        // +1: the current tick may be almost over when the call starts.
        u64::try_from(ticks).unwrap_or(u64::MAX).saturating_add(1)
    }

    fn ready(&mut self, init: bool) -> Result<&mut Live> {
        if self.live.is_none() {
            let live = self.instantiate(init)?;
            self.live = Some(live);
        }
        self.live
            .as_mut()
            .ok_or_else(|| SandboxError::Engine("instance vanished".into()))
    }

    fn instantiate(&mut self, init: bool) -> Result<Live> {
        let started = Instant::now();
        let fixed_seed = u128::from(seed_of(&[self.module.tenant()], 0));
        let state = HostState {
            wasi: deterministic_ctx(&self.log, &self.clock, &self.random, fixed_seed),
            table: ResourceTable::new(),
            log: self.log.clone(),
            clock: self.clock.clone(),
            limiter: MemoryCap::new(self.limits.memory),
            cpu_start: thread_cpu_time(),
        };
        let mut store = Store::new(self.module.engine(), state);
        store.limiter(|state| &mut state.limiter);
        // The epoch deadline is wall time; the budget is CPU time. At each
        // deadline, a call that has not used its budget on this thread (it
        // was descheduled on a busy machine) gets the rest; one that has is
        // interrupted. Limits stay independent of machine load.
        let budget = self.limits.call_budget;
        let tick = self.module.epoch_tick().max(Duration::from_nanos(1));
        store.epoch_deadline_callback(move |ctx| {
            let used = thread_cpu_time().saturating_sub(ctx.data().cpu_start);
            if used >= budget {
                return Ok(wasmtime::UpdateDeadline::Interrupt);
            }
            let left = (budget - used).as_nanos().div_ceil(tick.as_nanos()).max(1);
            Ok(wasmtime::UpdateDeadline::Continue(
                u64::try_from(left).unwrap_or(u64::MAX),
            ))
        });
        // Set before instantiating: a zero deadline would trap in `start`.
        store.set_epoch_deadline(self.deadline_ticks());
        store.data_mut().cpu_start = thread_cpu_time();
        self.clock.set(0);
        self.random.reseed(fixed_seed as u64);
        let bindings = match self.module.pre().instantiate(&mut store) {
            Ok(bindings) => bindings,
            Err(err) => {
                let memory_hit = store.data().limiter.hit;
                return Err(self.classify("instantiate", &err, memory_hit));
            }
        };
        let mut live = Live { store, bindings };
        if init {
            live.store.set_epoch_deadline(self.deadline_ticks());
            live.store.data_mut().cpu_start = thread_cpu_time();
            let result = live.bindings.sluice_analytics_analytics().call_init(
                &mut live.store,
                &self.params,
                &self.schema,
            );
            match result {
                Ok(Ok(reads)) => {
                    if let Some(bad) = reads.iter().find(|i| **i as usize >= self.schema.len()) {
                        return Err(SandboxError::Contract {
                            tenant: self.module.tenant().to_owned(),
                            function: "init".into(),
                            message: format!(
                                "asked for field {bad}, the schema has {} fields",
                                self.schema.len()
                            ),
                        });
                    }
                    self.reads = reads;
                }
                Ok(Err(GuestError { message })) => {
                    return Err(SandboxError::Guest {
                        tenant: self.module.tenant().to_owned(),
                        function: "init".into(),
                        message: cut_message(message),
                    })
                }
                Err(err) => {
                    let memory_hit = live.store.data().limiter.hit;
                    return Err(self.classify("init", &err, memory_hit));
                }
            }
        }
        self.stats.instantiations += 1;
        self.stats.last_instantiate = started.elapsed();
        Ok(live)
    }

    fn classify(
        &mut self,
        function: &str,
        err: &wasmtime::Error,
        memory_hit: bool,
    ) -> SandboxError {
        let tenant = self.module.tenant().to_owned();
        let function = function.to_owned();
        // A full pool is the host's capacity, not the tenant's doing: a
        // limit with the numbers, never a trap (no backoff, no auto-pause).
        if let Some(full) = err.downcast_ref::<wasmtime::PoolConcurrencyLimitError>() {
            self.stats.limit_hits += 1;
            return SandboxError::LimitExceeded {
                tenant,
                function,
                limit: Limit::Pool {
                    pool: format!("{full}; {}", self.module.pool_summary()),
                },
            };
        }
        let waited = err
            .downcast_ref::<WaitRefused>()
            .map(|w| Limit::Wait { requested: w.0 });
        let limit = if memory_hit {
            Some(Limit::Memory {
                cap: self.limits.memory,
            })
        } else if waited.is_some() {
            waited
        } else if err.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
            Some(Limit::Cpu {
                budget: self.limits.call_budget,
            })
        } else {
            None
        };
        let error = match limit {
            Some(limit) => {
                self.stats.limit_hits += 1;
                SandboxError::LimitExceeded {
                    tenant,
                    function,
                    limit,
                }
            }
            None => {
                let mut message = trap_message(err);
                if let Some(said) = self.log.recent_stdio() {
                    message.push_str(&format!(" (guest wrote: {said})"));
                }
                SandboxError::Trap {
                    tenant,
                    function,
                    message: cut_message(message),
                }
            }
        };
        self.stats.traps += 1;
        self.module.count_trap();
        self.log
            .failure("guest call failed; instance discarded", &error);
        error
    }

    /// A refusal of what a call returned, as an error: an item over the
    /// output cap counts as a trap (backoff, auto-pause); the per-call
    /// ceiling and contract faults do not.
    fn refused(&mut self, function: &str, refusal: Refusal) -> SandboxError {
        let tenant = self.module.tenant().to_owned();
        let function = function.to_owned();
        let limit = match refusal {
            Refusal::Contract(message) => {
                return SandboxError::Contract {
                    tenant,
                    function,
                    message: cut_message(message),
                }
            }
            Refusal::Item { size } => Limit::Output {
                cap: self.limits.max_output,
                size,
            },
            Refusal::Call { size } => match self.piece_output {
                Some((cap, spent)) => Limit::CallOutput {
                    cap,
                    size: spent.saturating_add(size),
                },
                None => Limit::CallOutput {
                    cap: self.module.call_output_for(self.limits.max_output),
                    size,
                },
            },
        };
        self.stats.limit_hits += 1;
        let error = SandboxError::LimitExceeded {
            tenant,
            function,
            limit,
        };
        if error.counts_as_trap() {
            self.stats.traps += 1;
            self.module.count_trap();
            self.log.failure("guest result refused", &error);
        }
        error
    }

    /// Runs one export call with the deadline, pinned clock and seed set.
    /// `f` makes the call and checks what it returned against the caps
    /// (before building the host's copy, where it unpacks).
    fn call<R>(
        &mut self,
        function: &str,
        at_ms: i64,
        seed: u64,
        expected: usize,
        f: impl FnOnce(
            &Analytics,
            &mut Store<HostState>,
            &Caps<'_>,
        ) -> wasmtime::Result<Result<Vec<R>, Failed>>,
    ) -> Result<Vec<R>> {
        self.stats.calls += 1;
        let _beat = super::module::CallGuard::start(&self.beat, self.module.beats_origin());
        sluice_core::state::failpoint::hang_if_armed("guest-call-hangs", self.module.tenant());
        self.module.before_call();
        self.log.clear_recent_stdio();
        self.clock.set(at_ms);
        self.random.reseed(seed);
        let ticks = self.deadline_ticks();
        let module = self.module.clone();
        // A function `describe` does not list declares nothing: the guest
        // answers it with its own error, or any field it returns is refused.
        let declared = Declared::of(module.info(), function).unwrap_or(Declared {
            function,
            outputs: &[],
            kinds: &[],
        });
        let caps = Caps {
            item: self.limits.max_output,
            call: match self.piece_output {
                Some((cap, spent)) => cap.saturating_sub(spent),
                None => module.call_output_for(self.limits.max_output),
            },
            declared: &declared,
            total: Default::default(),
        };
        let live = self.ready(true)?;
        live.store.set_epoch_deadline(ticks);
        live.store.data_mut().cpu_start = thread_cpu_time();
        live.store.data_mut().limiter.hit = false;
        let outcome = f(
            live.bindings.sluice_analytics_analytics(),
            &mut live.store,
            &caps,
        );
        let memory_hit = live.store.data().limiter.hit;
        let used = thread_cpu_time().saturating_sub(live.store.data().cpu_start);
        module.add_guest_cpu(used);
        self.last_cpu = used;
        let tenant = module.tenant();
        if let (Some((_, spent)), Ok(Ok(_))) = (&mut self.piece_output, &outcome) {
            *spent = spent.saturating_add(caps.total.get());
        }
        match outcome {
            Ok(Ok(results)) => {
                let cap = usize::try_from(self.limits.memory).unwrap_or(usize::MAX);
                let in_use = live_memory(&self.live);
                if in_use > cap / 4 * RETIRE_AT {
                    tracing::debug!(
                        tenant,
                        function,
                        in_use,
                        cap,
                        "instance retired near its memory cap"
                    );
                    self.live = None;
                    self.stats.retired += 1;
                }
                if results.len() != expected {
                    return Err(SandboxError::Contract {
                        tenant: tenant.to_owned(),
                        function: function.to_owned(),
                        message: format!(
                            "returned {} results for {expected} inputs",
                            results.len()
                        ),
                    });
                }
                Ok(results)
            }
            Ok(Err(Failed::Guest(GuestError { message }))) => Err(SandboxError::Guest {
                tenant: tenant.to_owned(),
                function: function.to_owned(),
                message: cut_message(message),
            }),
            Ok(Err(Failed::Refused(refusal))) => Err(self.refused(function, refusal)),
            Err(err) => {
                self.live = None;
                Err(self.classify(function, &err, memory_hit))
            }
        }
    }

    /// The module's self-description (no `init` needed).
    pub fn describe(&mut self) -> Result<ModuleInfo> {
        let ticks = self.deadline_ticks();
        let live = self.ready(false)?;
        // Bounded like any call: a module that loops in `describe` is
        // rejected at load instead of hanging the deploy.
        live.store.set_epoch_deadline(ticks);
        live.store.data_mut().cpu_start = thread_cpu_time();
        match live
            .bindings
            .sluice_analytics_analytics()
            .call_describe(&mut live.store)
        {
            Ok(info) => Ok(info.into()),
            Err(err) => {
                let memory_hit = live.store.data().limiter.hit;
                self.live = None;
                Err(self.classify("describe", &err, memory_hit))
            }
        }
    }

    /// Adds each group's events to its accumulator; returns the new
    /// accumulators in group order. Groups are consecutive runs of the
    /// batch's rows.
    pub(crate) fn aggregate_add_whole(
        &mut self,
        function: &str,
        groups: &[AddGroup<'_>],
        batch: &EventBatch,
        (at, seed): (i64, u64),
    ) -> Result<Vec<Vec<u8>>> {
        let packed = packed::pack_add_groups(groups);
        let batch = wit::EventBatch::from(batch);
        self.call(function, at, seed, groups.len(), |guest, store, caps| {
            let added = guest.call_aggregate_add(store, function, &packed, &batch)?;
            // Malformed packing is the guest's fault, like any bad result.
            Ok(added
                .map_err(Failed::from)
                .and_then(|b| packed::unpack_bytes(b, caps).map_err(Failed::from)))
        })
    }

    /// Merges each list of accumulators into one. `at_ms` is the instant the
    /// guest's clock shows (the watermark or window end being processed).
    /// A list is anything of byte slices: `Vec<Vec<u8>>`, or `&[&[u8]]`
    /// borrowed from where the accumulators are kept; they are packed
    /// into one buffer for the call.
    pub(crate) fn aggregate_merge_whole<L, P>(
        &mut self,
        function: &str,
        accumulators: &[L],
        at_ms: i64,
    ) -> Result<Vec<Vec<u8>>>
    where
        L: AsRef<[P]>,
        P: AsRef<[u8]>,
    {
        let seed = seed_of(&[self.module.tenant(), function], at_ms);
        let packed = packed::pack(accumulators);
        self.call(
            function,
            at_ms,
            seed,
            accumulators.len(),
            |guest, store, caps| {
                let merged = guest.call_aggregate_merge(store, function, &packed)?;
                Ok(merged.map_err(Failed::from).and_then(|merged| {
                    caps.sizes(merged.iter().map(|m| m.len() as u64))?;
                    Ok(merged)
                }))
            },
        )
    }

    /// Merges each window's panes and finishes them into output fields
    /// (windows as in [`Self::aggregate_merge`]).
    pub(crate) fn aggregate_finish_whole<W, P>(
        &mut self,
        function: &str,
        windows: &[W],
        at_ms: i64,
    ) -> Result<Vec<Vec<DataField>>>
    where
        W: AsRef<[P]>,
        P: AsRef<[u8]>,
    {
        let seed = seed_of(&[self.module.tenant(), function], at_ms);
        let packed = packed::pack(windows);
        self.call(
            function,
            at_ms,
            seed,
            windows.len(),
            |guest, store, caps| {
                let fields = guest.call_aggregate_finish(store, function, &packed)?;
                // Malformed packing is the guest's fault, like any bad result:
                // the windows of the call are isolated and dead-lettered.
                Ok(fields
                    .map_err(Failed::from)
                    .and_then(|f| packed::unpack_fields(f, caps).map_err(Failed::from)))
            },
        )
    }

    /// Runs an alert function over the events of many keys.
    pub(crate) fn alert_whole(
        &mut self,
        function: &str,
        groups: &[KeyGroup],
        batch: &EventBatch,
        (at, seed): (i64, u64),
    ) -> Result<Vec<AlertResult>> {
        let wit_groups: Vec<wit::KeyGroup> = groups.iter().map(Into::into).collect();
        let batch = wit::EventBatch::from(batch);
        let results = self.call(function, at, seed, groups.len(), |guest, store, caps| {
            let results = guest.call_alert(store, function, &wit_groups, &batch)?;
            Ok(results.map_err(Failed::from).and_then(|results| {
                output::check_alerts(&results, groups, caps)?;
                Ok(results)
            }))
        })?;
        Ok(results.into_iter().map(Into::into).collect())
    }

    /// Runs a process-window function over many fired windows.
    pub(crate) fn process_window_whole(
        &mut self,
        function: &str,
        windows: &[WindowGroup],
        batch: &EventBatch,
        (at, seed): (i64, u64),
    ) -> Result<Vec<Vec<DataField>>> {
        let wit_windows: Vec<wit::WindowGroup> = windows.iter().map(Into::into).collect();
        let batch = wit::EventBatch::from(batch);
        let results = self.call(function, at, seed, windows.len(), |guest, store, caps| {
            let results = guest.call_process_window(store, function, &wit_windows, &batch)?;
            Ok(results.map_err(Failed::from).and_then(|results| {
                output::check_windows(&results, caps)?;
                Ok(results)
            }))
        })?;
        Ok(convert::fields(results))
    }

    /// Clock (latest event time of the batch) and seed (tenant, function,
    /// first key, first event time) of a batched call.
    pub(crate) fn batch_context(
        &self,
        function: &str,
        key: Option<&[String]>,
        batch: &EventBatch,
    ) -> (i64, u64) {
        let at = batch.times.iter().copied().max().unwrap_or(0);
        let first = batch.times.first().copied().unwrap_or(0);
        let mut parts: Vec<&str> = vec![self.module.tenant(), function];
        if let Some(key) = key {
            parts.extend(key.iter().map(String::as_str));
        }
        (at, seed_of(&parts, first))
    }
}

/// A deterministic 64-bit seed: SipHash with fixed keys over the parts.
fn seed_of(parts: &[&str], time: i64) -> u64 {
    #[allow(deprecated)]
    let mut hasher = std::hash::SipHasher::new_with_keys(0x736c_7569_6365, 0x7365_6564);
    for part in parts {
        part.hash(&mut hasher);
    }
    time.hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trap_reads_without_a_doubled_prefix() {
        let err = wasmtime::Error::new(Trap::UnreachableCodeReached);
        let message = trap_message(&err);
        assert_eq!(message, "wasm `unreachable` instruction executed");
    }
}
