//! What `sluice list` and `/metrics` show of a tenant: the views the admin
//! API serializes, built from the host's slot of each tenant.

use std::time::SystemTime;

use serde::Serialize;

use super::{PartitionView, Slot, AUTO_PAUSED};
use crate::manifest::{format_duration, Manifest, WindowFunction, WindowKind};
use crate::metrics::prometheus::{LastCheckpoint, TenantState};
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
    /// `state` with its causes told apart, as `/metrics`'
    /// `sluice_tenant_state` names them: `running`, `paused`,
    /// `auto_paused`, `failed`, `stuck`.
    pub condition: &'static str,
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
    /// How fast and how far behind, now.
    pub live: LiveView,
    /// The tenant's batch triggers (this run's), when it has any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_triggers: Option<TriggersView>,
    /// A partitioned tenant's partitions as this host sees them; its
    /// `counters` are then those of the partitions this host owns.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partitions: Option<Vec<PartitionView>>,
}

/// A tenant's pace and delay as this host sees them now.
#[derive(Debug, Clone, Serialize)]
pub struct LiveView {
    /// Records read per second over the last 10 s.
    pub events_per_sec: f64,
    /// Messages ready in the input queue (sampled each second).
    pub queue_depth: u64,
    /// Ready in the queue, or delivered and not yet acked.
    pub consumer_lag: u64,
    /// The input watermark, ms since the epoch (`None` before any row).
    pub watermark: Option<i64>,
    /// How far the watermark is behind this host's clock, ms (negative
    /// for event times ahead of it).
    pub watermark_delay_ms: Option<i64>,
    /// The last checkpoint written since this host started.
    pub last_checkpoint: Option<LastCheckpoint>,
    /// Seconds since then.
    pub checkpoint_age_secs: Option<u64>,
}

/// What a tenant's batch triggers did in its current run.
#[derive(Debug, Clone, Serialize)]
pub struct TriggersView {
    /// Job runs completed (results and run stored).
    pub runs: u64,
    pub failed: u64,
    /// Alerts for a (job, range, scope) that had already run.
    pub repeated: u64,
    /// Alerts dropped because the trigger queue was full.
    pub dropped: u64,
    /// The last 20 job runs, newest first.
    pub recent: Vec<super::batch::TriggerRun>,
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
    let (queue_depth, consumer_lag) = slot.run.backlog();
    let now_ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let watermark = slot.run.watermark();
    let last_checkpoint = slot.run.last_checkpoint();
    let live = LiveView {
        events_per_sec: slot.events_per_sec(),
        queue_depth,
        consumer_lag,
        watermark,
        watermark_delay_ms: watermark.map(|w| now_ms.saturating_sub(w)),
        last_checkpoint,
        checkpoint_age_secs: last_checkpoint.map(|c| {
            u64::try_from(now_ms / 1000)
                .unwrap_or(0)
                .saturating_sub(c.at)
        }),
    };
    TenantView {
        tenant: tenant.to_owned(),
        state,
        condition: metric_state(slot).as_str(),
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
        live,
        partitions: slot.run.partitions(),
        batch_triggers: slot.run.trigger_stats().map(|t| {
            let n = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
            TriggersView {
                runs: n(&t.runs),
                failed: n(&t.failed),
                repeated: n(&t.repeated),
                dropped: n(&t.dropped),
                recent: t
                    .recent
                    .lock()
                    .map(|r| r.iter().rev().cloned().collect())
                    .unwrap_or_default(),
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

/// A tenant's manifest as the console shows it: input, key, windows,
/// alerts, params and limits. Durations and sizes as a manifest writes
/// them.
#[derive(Debug, Clone, Serialize)]
pub struct ManifestView {
    pub tenant: String,
    pub queue: String,
    pub exchange: String,
    pub partitions: Option<u16>,
    pub columns: Vec<ColumnView>,
    pub key: Vec<String>,
    pub event_time: String,
    pub max_out_of_orderness: String,
    pub allowed_lateness: String,
    pub windows: Vec<WindowView>,
    /// The alert function, when the tenant has one.
    pub alerts: Option<String>,
    pub params: std::collections::BTreeMap<String, String>,
    pub limits: LimitsView,
    /// Names of its `[[batch]]` jobs.
    pub batch_jobs: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ColumnView {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: &'static str,
    pub optional: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct WindowView {
    pub name: String,
    pub kind: &'static str,
    /// Its shape: `size 10s`, `size 1h slide 5m`, `gap 45s`, …
    pub shape: String,
    /// `aggregate NAME` or `process NAME`.
    pub function: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct LimitsView {
    pub memory_bytes: u64,
    pub call_budget: String,
    pub max_output_bytes: u64,
}

pub(super) fn manifest_view(m: &Manifest) -> ManifestView {
    let d = format_duration;
    ManifestView {
        tenant: m.tenant.clone(),
        queue: m.input.queue.clone(),
        exchange: m.output.exchange.clone(),
        partitions: m.input.partitions,
        columns: m
            .input
            .columns
            .iter()
            .map(|c| ColumnView {
                name: c.name.clone(),
                ty: type_name(c.ty),
                optional: c.optional,
            })
            .collect(),
        key: m.input.key.clone(),
        event_time: m.input.event_time.clone(),
        max_out_of_orderness: d(m.input.max_out_of_orderness),
        allowed_lateness: d(m.input.allowed_lateness),
        windows: m
            .windows
            .iter()
            .map(|w| WindowView {
                name: w.name.clone(),
                kind: w.kind.name(),
                shape: match w.kind {
                    WindowKind::Tumbling { size } => format!("size {}", d(size)),
                    WindowKind::Sliding { size, slide } => {
                        format!("size {} slide {}", d(size), d(slide))
                    }
                    WindowKind::Count { n } => format!("{n} events"),
                    WindowKind::Global { emit_every } => format!("emit every {}", d(emit_every)),
                    WindowKind::Session { gap, max_duration } => match max_duration {
                        Some(max) => format!("gap {} max {}", d(gap), d(max)),
                        None => format!("gap {}", d(gap)),
                    },
                },
                function: match &w.function {
                    WindowFunction::Aggregate(f) => format!("aggregate {f}"),
                    WindowFunction::Process(f) => format!("process {f}"),
                },
            })
            .collect(),
        alerts: m.alerts.as_ref().map(|a| a.function.clone()),
        params: m.params.clone(),
        limits: LimitsView {
            memory_bytes: m.limits.memory,
            call_budget: d(m.limits.call_budget),
            max_output_bytes: m.limits.max_output,
        },
        batch_jobs: m.batch.iter().map(|j| j.name.clone()).collect(),
    }
}

fn type_name(ty: crate::data::FieldType) -> &'static str {
    use crate::data::FieldType;
    match ty {
        FieldType::Text => "text",
        FieldType::Int => "int",
        FieldType::Float => "float",
        FieldType::Boolean => "bool",
        FieldType::Timestamp => "timestamp",
    }
}
