//! Per-call and per-instance bounds: CPU (epoch deadline), memory (a
//! `ResourceLimiter` that refuses growth softly and remembers it did), and
//! output size.

use std::time::Duration;

pub use sluice_core::data::Limits;

/// Caps the instance's memory. Growth past the cap makes `memory.grow`
/// return -1 (the guest's allocator then aborts, which traps); the flag lets
/// the host report that trap as a memory limit rather than a plain trap.
#[derive(Debug)]
pub(crate) struct MemoryCap {
    cap: usize,
    total: usize,
    pub(crate) hit: bool,
}

impl MemoryCap {
    pub(crate) fn new(cap: u64) -> Self {
        MemoryCap {
            cap: usize::try_from(cap).unwrap_or(usize::MAX),
            total: 0,
            hit: false,
        }
    }

    /// Bytes of linear memory the instance holds now.
    pub(crate) fn in_use(&self) -> usize {
        self.total
    }
}

/// Tables are small in Rust guests; this only stops a table bomb.
const MAX_TABLE_ELEMENTS: usize = 1 << 20;

impl wasmtime::ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let grown = self.total.saturating_sub(current).saturating_add(desired);
        if grown > self.cap {
            self.hit = true;
            return Ok(false);
        }
        self.total = grown;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

/// CPU time consumed by the calling thread so far.
pub(crate) fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_THREAD_CPUTIME_ID is
    // supported on every Linux the host runs on. On failure `ts` stays zero
    // and the budget degrades to the epoch deadline alone.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    )
}
