//! Host-side ceilings: the most any tenant may declare or cause, whatever
//! its manifest says. A tenant's `[limits]` are its own choice; the
//! ceilings are the operator's (`sluice run` flags, `[ceilings]` in
//! `host.toml`), so one tenant cannot declare a 100-year call budget, a
//! 4 GiB output or a 1 GB module and take the shared host with it.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::limits::Limits;
use super::needs::Needs;
use sluice_core::data::error::RejectReason;

/// The host's ceilings. Defaults suit one host shared by many tenants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ceilings {
    /// Largest `[limits] call_budget` (default 10 s): a tenant spinning on
    /// every call burns at most this much of a worker's CPU per call.
    pub call_budget: Duration,
    /// Largest `[limits] memory` (default 1 GiB). Also the pooling
    /// allocator's slot size: a larger memory could never be instantiated.
    pub memory: u64,
    /// Largest `[limits] max_output` (default 64 MiB), the cap on what one
    /// key group or window may make the host emit.
    pub max_output: u64,
    /// Most bytes the results of one call may take on the host (default
    /// 256 MiB, and never less than the tenant's `max_output`). A call over
    /// it is no one key's fault: it fails without counting as a trap, and
    /// the caller retries it in smaller pieces.
    pub call_output: u64,
    /// Largest module (component) file or upload, in bytes (default
    /// 32 MiB). Compiling costs ≈ 36× the module's size in memory.
    pub module_size: u64,
    /// Longest a compile may take (default 60 s); a deploy waiting this
    /// long for its compile is refused.
    pub compile_time: Duration,
    /// Compiles at once (default: half the cores, at least 1). A compile
    /// uses every core it can get and much memory; others wait for a slot
    /// (at most `compile_time`).
    pub concurrent_compiles: usize,
    /// Most core instances one instance of a component may take (default
    /// 64): a Rust tenant takes 3, a componentize-py one 38. Also the
    /// pool's per-slot reservation: the pool holds this many per slot.
    pub core_instances: u32,
    /// Most linear memories one instance may define (default 2; Rust and
    /// componentize-py tenants define 1). Each is a `memory`-sized slot
    /// of the pool's virtual reservation.
    pub memories: u32,
    /// Most tables one instance may define (default 8; both define 2).
    pub tables: u32,
}

impl Default for Ceilings {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Ceilings {
            call_budget: Duration::from_secs(10),
            memory: 1 << 30,
            max_output: 64 << 20,
            call_output: 256 << 20,
            module_size: 32 << 20,
            compile_time: Duration::from_secs(60),
            concurrent_compiles: (cores / 2).max(1),
            core_instances: 64,
            memories: 2,
            tables: 8,
        }
    }
}

pub use sluice_core::data::error::OverCeiling;

impl Ceilings {
    /// Refuses declared limits over the ceilings, naming the first one.
    pub fn check(&self, limits: &Limits) -> Result<(), OverCeiling> {
        if limits.call_budget > self.call_budget {
            return Err(OverCeiling {
                limit: "call_budget",
                declared: format!("{:?}", limits.call_budget),
                ceiling: format!("{:?}", self.call_budget),
                setting: "call_budget",
                flag: "call-budget",
            });
        }
        if limits.memory > self.memory {
            return Err(OverCeiling {
                limit: "memory",
                declared: bytes(limits.memory),
                ceiling: bytes(self.memory),
                setting: "memory",
                flag: "memory",
            });
        }
        if limits.max_output > self.max_output {
            return Err(OverCeiling {
                limit: "max_output",
                declared: bytes(limits.max_output),
                ceiling: bytes(self.max_output),
                setting: "max_output",
                flag: "output",
            });
        }
        Ok(())
    }

    /// Refuses a component whose instances would take more of the pool
    /// than the ceilings allow, with what it needs and the ceiling.
    pub fn check_needs(&self, needs: &Needs) -> Result<(), RejectReason> {
        for (what, setting, needed, ceiling) in [
            (
                "core instances",
                "core_instances",
                needs.core_instances,
                self.core_instances,
            ),
            ("linear memories", "memories", needs.memories, self.memories),
            ("tables", "tables", needs.tables, self.tables),
        ] {
            if needed > ceiling {
                return Err(RejectReason::InstanceResources {
                    what,
                    setting,
                    needed,
                    ceiling,
                });
            }
        }
        Ok(())
    }

    /// The per-call output bound for a tenant whose per-item cap is
    /// `max_output`: a single item within its cap always fits.
    pub(crate) fn call_output_for(&self, max_output: u64) -> u64 {
        self.call_output.max(max_output)
    }
}

/// `n` bytes, with the largest binary unit that divides it.
fn bytes(n: u64) -> String {
    for (shift, unit) in [(30, "GiB"), (20, "MiB"), (10, "KiB")] {
        if n >= 1 << shift && n.is_multiple_of(1 << shift) {
            return format!("{}{unit}", n >> shift);
        }
    }
    format!("{n}B")
}

/// A counting semaphore for compiles: at most `n` at once, waits bounded.
#[derive(Debug)]
pub(crate) struct CompileSlots {
    free: Mutex<usize>,
    freed: Condvar,
}

/// One compile slot, given back on drop (also when the compile that holds
/// it outlives the deploy that started it).
pub(crate) struct Slot(Arc<CompileSlots>);

impl CompileSlots {
    pub(crate) fn new(n: usize) -> Self {
        CompileSlots {
            free: Mutex::new(n.max(1)),
            freed: Condvar::new(),
        }
    }

    /// A slot, or `None` when none came free within `wait`.
    pub(crate) fn acquire(self: &Arc<Self>, wait: Duration) -> Option<Slot> {
        let until = Instant::now() + wait;
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        while *free == 0 {
            let left = until.checked_duration_since(Instant::now())?;
            free = self
                .freed
                .wait_timeout(free, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        *free -= 1;
        Some(Slot(Arc::clone(self)))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut free = self.0.free.lock().unwrap_or_else(|e| e.into_inner());
        *free += 1;
        self.0.freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_limits_over_a_ceiling_are_refused_naming_it() {
        let ceilings = Ceilings::default();
        assert_eq!(ceilings.check(&Limits::default()), Ok(()));
        let err = ceilings
            .check(&Limits {
                call_budget: Duration::from_millis(u64::MAX),
                ..Limits::default()
            })
            .expect_err("a budget of 584 million years");
        assert_eq!(err.setting, "call_budget");
        let text = err.to_string();
        assert!(
            text.contains("call_budget") && text.contains("10s") && text.contains("ceiling"),
            "{text}"
        );
        let err = ceilings
            .check(&Limits {
                max_output: 4 << 30,
                ..Limits::default()
            })
            .expect_err("4 GiB of output");
        assert!(
            err.to_string().contains("max_output = 4GiB")
                && err.to_string().contains("64MiB")
                && err.to_string().contains("--max-output"),
            "{err}"
        );
        let err = ceilings
            .check(&Limits {
                memory: 2 << 30,
                ..Limits::default()
            })
            .expect_err("2 GiB of memory");
        assert!(err.to_string().contains("1GiB"), "{err}");
    }

    #[test]
    fn compile_slots_bound_concurrent_compiles_and_waits() {
        let slots = Arc::new(CompileSlots::new(1));
        let held = slots.acquire(Duration::ZERO).expect("a free slot");
        let started = Instant::now();
        assert!(slots.acquire(Duration::from_millis(50)).is_none());
        assert!(started.elapsed() >= Duration::from_millis(50));
        drop(held);
        assert!(slots.acquire(Duration::ZERO).is_some());
    }
}
