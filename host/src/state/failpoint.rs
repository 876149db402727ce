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

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

static ARMED: OnceLock<Option<(String, u64)>> = OnceLock::new();
static HITS: AtomicU64 = AtomicU64::new(0);

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
    let armed = ARMED.get_or_init(|| {
        let name = std::env::var("SLUICE_FAILPOINT").ok()?;
        let skip = std::env::var("SLUICE_FAILPOINT_SKIP")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        Some((name, skip))
    });
    match armed {
        Some((armed, skip)) => armed == name && HITS.fetch_add(1, Ordering::Relaxed) >= *skip,
        None => false,
    }
}
