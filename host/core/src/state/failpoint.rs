//! Test-only fail points: `SLUICE_FAILPOINT=<name>` makes the process
//! abort at that point, so crash tests can stop it at the hardest moments
//! deterministically. Names: `after-checkpoint-write-before-rename`,
//! `after-checkpoint-before-ack`, `after-output-before-checkpoint`
//! (`after-checkpoint-write-before-rename` is, in the Cassandra store, after
//! the chunks and before the marker that completes the checkpoint).
//! `SLUICE_FAILPOINT_SKIP=N` lets the point pass N times first.
//!
//! A few points do not abort but make something fail there ([`armed`]):
//! `final-acks-lost` drops the acks a consumer sends after its input
//! ended (a partition being handed over), as a connection cut at that
//! moment does: the connection then closes and the broker requeues them.
//!
//! `guest-call-hangs:<tenant>` makes every guest call of that tenant hang
//! for good ([`hang_if_armed`]): a worker stuck as no deadline can end it,
//! for the tests of `sluice serve`'s watchdog and control plane.
//! `swap-delay:<tenant>` holds a committed deploy 1 s before its run
//! starts, which widens the window in which it is committed but not yet
//! running (the tests of concurrent deploys). `<tenant>` may be `*`: every
//! tenant.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

static ARMED: OnceLock<Option<(String, u64)>> = OnceLock::new();
static HITS: AtomicU64 = AtomicU64::new(0);

fn armed_from_env() -> Option<(String, u64)> {
    let name = std::env::var("SLUICE_FAILPOINT").ok()?;
    let skip = std::env::var("SLUICE_FAILPOINT_SKIP")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Some((name, skip))
}

/// Aborts the process if `name` is the armed fail point (after its skips).
pub fn hit(name: &str) {
    if armed(name) {
        eprintln!("sluice: fail point `{name}` reached: aborting");
        std::process::abort();
    }
}

/// Whether `name` is the armed fail point (after its skips): the caller
/// fails there in its own way.
pub fn armed(name: &str) -> bool {
    let armed = ARMED.get_or_init(armed_from_env);
    match armed {
        Some((armed, skip)) => armed == name && HITS.fetch_add(1, Ordering::Relaxed) >= *skip,
        None => false,
    }
}

/// Whether `<name>:<tenant>` (or `<name>:*`) is the armed fail point (no
/// skips).
fn armed_for(name: &str, tenant: &str) -> bool {
    let armed = ARMED.get_or_init(armed_from_env);
    armed.as_ref().is_some_and(|(armed, _)| {
        armed
            .strip_prefix(name)
            .and_then(|rest| rest.strip_prefix(':'))
            .is_some_and(|t| t == tenant || t == "*")
    })
}

/// Sleeps `delay` when `<name>:<tenant>` is the armed fail point:
/// `deploy-delay:<tenant>` holds a deploy of that tenant just before its
/// commit point, so a test can disconnect its client there.
pub fn delay_if_armed(name: &str, tenant: &str, delay: std::time::Duration) {
    if armed_for(name, tenant) {
        tracing::warn!(%tenant, "fail point `{name}`: waiting {delay:?}");
        std::thread::sleep(delay);
    }
}

/// Hangs the calling thread for good when `<name>:<tenant>` is the armed
/// fail point (no skips).
pub fn hang_if_armed(name: &str, tenant: &str) {
    if armed_for(name, tenant) {
        tracing::warn!(%tenant, "fail point `{name}`: this guest call hangs for good");
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
}
