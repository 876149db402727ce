//! A trapping tenant's workers yield the CPU to everyone else's.
//!
//! The trap backoff bounds how *often* a hostile tenant fails, but each
//! failing call still runs at full priority until its CPU budget is spent,
//! on cores its neighbours need. So while a tenant is in trap backoff
//! (from a trap until [`super::TrapBackoff::reset_after`] after its wait),
//! its worker threads run at a lower scheduling priority ([`TRAP_NICE`]
//! nice levels below where they started): the kernel then gives them the
//! cores other tenants' threads leave idle, and a small share (≈ 10 %
//! against one busy normal thread) otherwise. Budgets are CPU time, so a
//! lowered call is not charged for the time it waits; it only takes
//! longer in wall time.
//!
//! Applied by each worker to itself before a guest call (a thread can
//! always lower its own priority); restoring it needs `CAP_SYS_NICE` or a
//! `RLIMIT_NICE` of at least 20 (systemd: `LimitNICE=`): without either,
//! a thread once lowered stays lowered, which is logged once.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};

/// How far a trapping tenant's workers are lowered (nice values run from
/// -20 to 19, 0 normal): at nice 10 a thread weighs 110 against 1 024 for
/// a normal one in Linux's fair scheduler.
pub const TRAP_NICE: i32 = 10;

thread_local! {
    /// The thread's nice value when first seen (a host started under
    /// `nice` keeps its own level), and whether it is lowered now.
    static STATE: Cell<Option<(i32, bool)>> = const { Cell::new(None) };
}

static RESTORE_REFUSED: AtomicBool = AtomicBool::new(false);

/// Lowers the calling thread by [`TRAP_NICE`] from where it started
/// (`lowered`, at most to 19) or restores it; a no-op when it is already
/// there.
pub(crate) fn set_lowered(lowered: bool) {
    STATE.with(|state| {
        let (base, now) = state.get().unwrap_or_else(|| (own_nice(), false));
        state.set(Some((base, lowered)));
        if now == lowered {
            return;
        }
        let want = if lowered {
            (base + TRAP_NICE).min(19)
        } else {
            base
        };
        if let Err(e) = set_own_nice(want) {
            if !lowered && !RESTORE_REFUSED.swap(true, Ordering::Relaxed) {
                tracing::warn!(error = %e, "a worker lowered after its tenant trapped cannot get its priority back (needs CAP_SYS_NICE or RLIMIT_NICE >= 20); it stays lowered");
            }
        }
    });
}

/// The calling thread's nice value, as the kernel has it.
pub fn current_nice() -> i32 {
    own_nice()
}

#[cfg(target_os = "linux")]
fn set_own_nice(nice: i32) -> std::io::Result<()> {
    // SAFETY: `gettid` has no preconditions; `setpriority` on
    // `PRIO_PROCESS` with a thread id changes only that thread on Linux.
    let rc = unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice)
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(target_os = "linux")]
fn own_nice() -> i32 {
    // SAFETY: as above; -1 is a valid nice value, which the tests do not
    // use, so errno is not consulted.
    unsafe {
        let tid = libc::gettid();
        libc::getpriority(libc::PRIO_PROCESS, tid as libc::id_t)
    }
}

#[cfg(not(target_os = "linux"))]
fn set_own_nice(_: i32) -> std::io::Result<()> {
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn own_nice() -> i32 {
    0
}
