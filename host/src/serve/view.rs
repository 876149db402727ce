//! What `sluice list` and `/metrics` show of a tenant: the views the admin
//! API serializes, built from the host's slot of each tenant.

use std::time::SystemTime;

use serde::Serialize;

use super::{PartitionView, Slot, AUTO_PAUSED};
use crate::metrics::prometheus::TenantState;
use crate::metrics::Summary;

/// A tenant's state as `sluice list` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Running,
    Paused,
    /// The run ended on an error (see `reason`).
    Failed,
}

/// One row of `sluice list`.
#[derive(Debug, Clone, Serialize)]
pub struct TenantView {
    pub tenant: String,
    pub state: State,
    /// Why it is paused or failed.
    pub reason: Option<String>,
    /// A change under way: `redeploying` (this version serves until the
    /// new one takes over) or `undeploying`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation: Option<&'static str>,
    pub module: ModuleView,
    pub queue: String,
    pub exchange: String,
    /// Seconds since the Unix epoch of the running version's deploy.
    pub deployed_at: u64,
    pub counters: CountersView,
    /// The tenant's batch triggers (this run's), when it has any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_triggers: Option<TriggersView>,
    /// A partitioned tenant's partitions as this host sees them; its
    /// `counters` are then those of the partitions this host owns.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partitions: Option<Vec<PartitionView>>,
}

/// What a tenant's batch triggers did in its current run.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct TriggersView {
    /// Job runs completed (results and run stored).
    pub runs: u64,
    pub failed: u64,
    /// Alerts for a (job, range, scope) that had already run.
    pub repeated: u64,
    /// Alerts dropped because the trigger queue was full.
    pub dropped: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ModuleView {
    pub name: String,
    pub version: String,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct CountersView {
    pub records_in: u64,
    pub bytes_in: u64,
    pub deserialization_errors: u64,
    pub late_dropped: u64,
    /// Rows dated beyond `max_future` (`future` dead letters).
    pub future_dropped: u64,
    /// Rows of keys beyond the host's `max_keys` ceiling (`limit` dead letters).
    pub limited: u64,
    pub outputs: u64,
    pub alerts: u64,
    pub poisoned: u64,
    pub guest_traps: u64,
}

/// The tenant's state as `/metrics` tells it: `/v1/tenants`'s, with a
/// stuck worker and an auto-pause told apart (the reason says the rest).
pub(super) fn metric_state(slot: &Slot) -> TenantState {
    match (&slot.fault, slot.run.ended(), &slot.paused) {
        (Some(f), _, _) if f.stuck => TenantState::Stuck,
        (Some(_), _, _) | (None, Some(_), _) => TenantState::Failed,
        (None, None, Some(reason)) if reason.starts_with(AUTO_PAUSED) => TenantState::AutoPaused,
        (None, None, Some(_)) => TenantState::Paused,
        (None, None, None) => TenantState::Running,
    }
}

pub(super) fn view(tenant: &str, slot: &Slot) -> TenantView {
    let info = slot.run.module.info();
    let (state, reason) = match (slot.run.ended(), &slot.paused) {
        _ if slot.fault.is_some() => (State::Failed, slot.fault.as_ref().map(|f| f.reason.clone())),
        (Some(Err(e)), _) => (State::Failed, Some(e.to_string())),
        (Some(Ok(())), _) => (State::Failed, Some("the run ended".to_owned())),
        (None, Some(reason)) => (State::Paused, Some(reason.clone())),
        (None, None) => (State::Running, None),
    };
    TenantView {
        tenant: tenant.to_owned(),
        state,
        reason,
        operation: slot.operation,
        module: ModuleView {
            name: info.name.clone(),
            version: info.version.clone(),
            sha256: slot.run.module.hash().to_owned(),
        },
        queue: slot.run.manifest.input.queue.clone(),
        exchange: slot.run.manifest.output.exchange.clone(),
        deployed_at: slot
            .deployed_at
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        counters: counters_view(&slot.summary(), slot.traps()),
        partitions: slot.run.partitions(),
        batch_triggers: slot.run.trigger_stats().map(|t| {
            let n = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
            TriggersView {
                runs: n(&t.runs),
                failed: n(&t.failed),
                repeated: n(&t.repeated),
                dropped: n(&t.dropped),
            }
        }),
    }
}

pub(super) fn counters_view(s: &Summary, traps: u64) -> CountersView {
    CountersView {
        records_in: s.rows_in,
        bytes_in: s.bytes_in,
        deserialization_errors: s.bad_rows,
        late_dropped: s.late_dropped,
        future_dropped: s.future_dropped,
        limited: s.limited,
        outputs: s.outputs,
        alerts: s.alerts,
        poisoned: s.poisoned,
        guest_traps: traps,
    }
}
