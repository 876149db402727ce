//! `/metrics` of `sluice serve`: every tenant's run counters, trap count,
//! guest CPU time, input backlog, events/s and state, its checkpoints'
//! duration and size, and its window-fire and end-to-end latencies, in the
//! OpenMetrics text format (which Prometheus scrapes) with a `tenant` label.
//!
//! The counters are not kept twice: a [`Collector`] reads the pipelines'
//! live [`Counters`](super::Counters) (through [`TenantSource`]) at each
//! scrape, so `/metrics`, `sluice list` and a run's summary always agree.
//! Checkpoint figures and latencies are observed as they happen
//! ([`CheckpointMetrics`], [`LatencyMetrics`]).

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::{LatencyObserver, Summary};

/// The metric names (OpenMetrics adds `_total` to counters on the wire).
pub mod names {
    pub const RECORDS_IN: &str = "sluice_records_in";
    pub const INPUT_BYTES: &str = "sluice_input_bytes";
    pub const DESERIALIZATION_ERRORS: &str = "sluice_deserialization_errors";
    pub const LATE_DROPPED: &str = "sluice_late_events_dropped";
    pub const FUTURE_DROPPED: &str = "sluice_future_events_dropped";
    pub const LIMITED: &str = "sluice_limited";
    pub const OUTPUTS: &str = "sluice_outputs";
    pub const ALERTS: &str = "sluice_alerts";
    pub const POISONED: &str = "sluice_poisoned";
    pub const GUEST_TRAPS: &str = "sluice_guest_traps";
    /// CPU time in guest calls: the sandbox meters CPU time (epoch
    /// deadlines), not fuel, so this is the tenant's "fuel used".
    pub const GUEST_CPU: &str = "sluice_guest_cpu_seconds";
    pub const QUEUE_DEPTH: &str = "sluice_input_queue_messages";
    pub const CONSUMER_LAG: &str = "sluice_consumer_lag_messages";
    pub const EVENTS_PER_SECOND: &str = "sluice_events_per_second";
    pub const WINDOW_FIRE_LATENCY: &str = "sluice_window_fire_latency_seconds";
    pub const END_TO_END_LATENCY: &str = "sluice_end_to_end_latency_seconds";
    pub const PAUSED: &str = "sluice_tenant_paused";
    pub const RUNNING: &str = "sluice_tenant_running";
    pub const STATE: &str = "sluice_tenant_state";
    pub const CHECKPOINT_DURATION: &str = "sluice_checkpoint_write_duration_seconds";
    pub const CHECKPOINT_SIZE: &str = "sluice_checkpoint_size_bytes";
    pub const PARTITION_OWNED: &str = "sluice_partition_owned";
    pub const PARTITION_LAG: &str = "sluice_partition_lag_messages";
    pub const PARTITION_WATERMARK: &str = "sluice_partition_watermark_seconds";
    /// The OpenMetrics content type `/metrics` answers with.
    pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TenantLabel {
    pub tenant: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    tenant: String,
    state: &'static str,
}

/// What a tenant is doing, for `sluice_tenant_state`: the `state` of
/// `/v1/tenants` with its causes told apart, so an alert can tell a
/// stuck worker from a failed run or an auto-pause without the reason's
/// text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TenantState {
    Running,
    /// Paused by the operator or the tenant.
    Paused,
    /// Paused by the host: its guest calls trapped too often.
    AutoPaused,
    /// Its run ended on an error, or a redeploy could not restart it.
    Failed,
    /// The watchdog found a worker stuck in a guest call.
    Stuck,
}

impl TenantState {
    /// Every state, each a series of every tenant (as kube-state-metrics
    /// does): the set of series stays the same when a tenant changes
    /// state, so a query never sees a stale one.
    pub const ALL: [TenantState; 5] = [
        TenantState::Running,
        TenantState::Paused,
        TenantState::AutoPaused,
        TenantState::Failed,
        TenantState::Stuck,
    ];

    /// The `state` label's value.
    pub fn as_str(self) -> &'static str {
        match self {
            TenantState::Running => "running",
            TenantState::Paused => "paused",
            TenantState::AutoPaused => "auto_paused",
            TenantState::Failed => "failed",
            TenantState::Stuck => "stuck",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartitionLabel {
    tenant: String,
    partition: String,
}

/// One partition of a partitioned tenant as this host sees it.
#[derive(Debug, Clone, Copy)]
pub struct PartitionFigures {
    pub partition: u16,
    /// This host runs it now.
    pub owned: bool,
    /// Messages ready in its queue plus delivered here and not acked.
    pub lag: u64,
    /// Its input watermark, ms, while owned.
    pub watermark_ms: Option<i64>,
}

/// One tenant's figures at scrape time.
#[derive(Debug, Clone)]
pub struct TenantFigures {
    pub tenant: String,
    pub summary: Summary,
    pub traps: u64,
    pub guest_cpu: Duration,
    /// Messages ready in the input queue.
    pub queue_depth: u64,
    /// Messages ready or delivered and not yet acked.
    pub consumer_lag: u64,
    /// Records per second over the last few seconds.
    pub events_per_sec: f64,
    pub paused: bool,
    pub running: bool,
    pub state: TenantState,
    /// A partitioned tenant's partitions (empty otherwise).
    pub partitions: Vec<PartitionFigures>,
}

/// Where the collector reads the tenants from (the serving host).
pub trait TenantSource: Send + Sync + 'static {
    fn figures(&self) -> Vec<TenantFigures>;
}

/// Checkpoint duration and size per tenant, observed by the checkpoint
/// store as each one is written.
#[derive(Clone, Debug)]
pub struct CheckpointMetrics {
    duration: Family<TenantLabel, Histogram>,
    size: Family<TenantLabel, Gauge>,
    /// Each tenant's last checkpoint, for the console (its age).
    last: Arc<std::sync::Mutex<std::collections::BTreeMap<String, LastCheckpoint>>>,
}

/// A tenant's last checkpoint as written.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct LastCheckpoint {
    /// Seconds since the Unix epoch when it was written.
    pub at: u64,
    pub bytes: u64,
    /// How long writing it took, seconds.
    pub took_secs: f64,
}

impl CheckpointMetrics {
    pub fn observe(&self, tenant: &str, took: Duration, bytes: u64) {
        let label = TenantLabel {
            tenant: tenant.to_owned(),
        };
        self.duration
            .get_or_create(&label)
            .observe(took.as_secs_f64());
        self.size
            .get_or_create(&label)
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        let at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.last.lock().unwrap_or_else(|e| e.into_inner()).insert(
            tenant.to_owned(),
            LastCheckpoint {
                at,
                bytes,
                took_secs: took.as_secs_f64(),
            },
        );
    }

    /// The tenant's last checkpoint since this host started.
    pub fn last(&self, tenant: &str) -> Option<LastCheckpoint> {
        self.last
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(tenant)
            .copied()
    }

    /// Drops an undeployed tenant's series.
    pub fn remove(&self, tenant: &str) {
        let label = TenantLabel {
            tenant: tenant.to_owned(),
        };
        self.duration.remove(&label);
        self.size.remove(&label);
        self.last
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(tenant);
    }
}

/// Window-fire and end-to-end latency histograms per tenant.
#[derive(Clone, Debug)]
pub struct LatencyMetrics {
    window_fire: Family<TenantLabel, Histogram>,
    end_to_end: Family<TenantLabel, Histogram>,
}

impl LatencyMetrics {
    /// What one tenant's pipeline reports into.
    pub fn observer(&self, tenant: &str) -> Arc<dyn LatencyObserver> {
        let label = TenantLabel {
            tenant: tenant.to_owned(),
        };
        Arc::new(TenantLatency {
            window_fire: self.window_fire.get_or_create(&label).clone(),
            end_to_end: self.end_to_end.get_or_create(&label).clone(),
        })
    }

    /// Drops an undeployed tenant's series.
    pub fn remove(&self, tenant: &str) {
        let label = TenantLabel {
            tenant: tenant.to_owned(),
        };
        self.window_fire.remove(&label);
        self.end_to_end.remove(&label);
    }
}

/// One tenant's histograms (handles to the family's series).
struct TenantLatency {
    window_fire: Histogram,
    end_to_end: Histogram,
}

impl LatencyObserver for TenantLatency {
    fn window_fire(&self, took: Duration) {
        self.window_fire.observe(took.as_secs_f64());
    }

    fn end_to_end(&self, took: Duration) {
        self.end_to_end.observe(took.as_secs_f64());
    }
}

/// The registry behind `/metrics`.
pub struct HostMetrics {
    registry: Registry,
    pub checkpoints: CheckpointMetrics,
    pub latency: LatencyMetrics,
}

impl std::fmt::Debug for HostMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostMetrics").finish_non_exhaustive()
    }
}

impl HostMetrics {
    pub fn new(source: Arc<dyn TenantSource>) -> HostMetrics {
        let mut registry = Registry::default();
        let duration = Family::<TenantLabel, Histogram>::new_with_constructor(|| {
            // 1 ms … ≈ 16 s.
            Histogram::new(exponential_buckets(0.001, 2.0, 15))
        });
        let size = Family::<TenantLabel, Gauge>::default();
        registry.register(
            names::CHECKPOINT_DURATION,
            "Time to write a checkpoint durably (encode, write, fsync, rename)",
            duration.clone(),
        );
        registry.register(
            names::CHECKPOINT_SIZE,
            "Size of the tenant's last checkpoint",
            size.clone(),
        );
        // 1 ms … ≈ 65 s: a window fires within ms; an input backlog
        // makes end-to-end latency grow to seconds and more.
        let latency = || Histogram::new(exponential_buckets(0.001, 2.0, 17));
        let window_fire = Family::<TenantLabel, Histogram>::new_with_constructor(latency);
        let end_to_end = Family::<TenantLabel, Histogram>::new_with_constructor(latency);
        registry.register(
            names::WINDOW_FIRE_LATENCY,
            "From the watermark passing a window's end to its output being in the sinks",
            window_fire.clone(),
        );
        registry.register(
            names::END_TO_END_LATENCY,
            "From the input message's publish time to the outputs it triggered being in the sinks",
            end_to_end.clone(),
        );
        registry.register_collector(Box::new(TenantCollector { source }));
        HostMetrics {
            registry,
            checkpoints: CheckpointMetrics {
                duration,
                size,
                last: Arc::default(),
            },
            latency: LatencyMetrics {
                window_fire,
                end_to_end,
            },
        }
    }

    /// The exposition, `# EOF` included.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

struct TenantCollector {
    source: Arc<dyn TenantSource>,
}

impl std::fmt::Debug for TenantCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantCollector").finish_non_exhaustive()
    }
}

type Pick = fn(&TenantFigures) -> u64;
type Flag = fn(&TenantFigures) -> bool;

impl Collector for TenantCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let tenants = self.source.figures();
        let counters: [(&str, &str, Pick); 10] = [
            (names::RECORDS_IN, "Records read (good and bad)", |t| {
                t.summary.rows_in
            }),
            (
                names::INPUT_BYTES,
                "Bytes of the records read, line terminators included",
                |t| t.summary.bytes_in,
            ),
            (
                names::DESERIALIZATION_ERRORS,
                "Records that did not parse against the tenant's schema (dead-lettered)",
                |t| t.summary.bad_rows,
            ),
            (
                names::LATE_DROPPED,
                "Records later than the allowed lateness (dead-lettered)",
                |t| t.summary.late_dropped,
            ),
            (
                names::FUTURE_DROPPED,
                "Records dated beyond max_future ahead of the host's clock (dead-lettered)",
                |t| t.summary.future_dropped,
            ),
            (
                names::LIMITED,
                "Records of keys beyond the host's key ceiling (dead-lettered)",
                |t| t.summary.limited,
            ),
            (names::OUTPUTS, "Results emitted, alerts included", |t| {
                t.summary.outputs
            }),
            (names::ALERTS, "Alerts emitted", |t| t.summary.alerts),
            (
                names::POISONED,
                "Key groups or windows dead-lettered because a guest call failed on them",
                |t| t.summary.poisoned,
            ),
            (
                names::GUEST_TRAPS,
                "Guest calls that trapped or hit a CPU, memory or output limit",
                |t| t.traps,
            ),
        ];
        for (name, help, pick) in counters {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for t in &tenants {
                ConstCounter::new(pick(t)).encode(family.encode_family(&label(t))?)?;
            }
        }
        let gauges: [(&str, &str, Flag); 2] = [
            (
                names::PAUSED,
                "1 while the tenant's consumer is paused",
                |t| t.paused,
            ),
            (names::RUNNING, "1 while the tenant's pipeline runs", |t| {
                t.running
            }),
        ];
        for (name, help, pick) in gauges {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for t in &tenants {
                ConstGauge::new(i64::from(pick(t))).encode(family.encode_family(&label(t))?)?;
            }
        }
        {
            let mut family = encoder.encode_descriptor(
                names::STATE,
                "1 for the tenant's current state (running, paused, auto_paused, failed, stuck), \
                 0 for the others",
                None,
                MetricType::Gauge,
            )?;
            for t in &tenants {
                for state in TenantState::ALL {
                    let l = StateLabel {
                        tenant: t.tenant.clone(),
                        state: state.as_str(),
                    };
                    ConstGauge::new(i64::from(t.state == state))
                        .encode(family.encode_family(&l)?)?;
                }
            }
        }
        let mut family = encoder.encode_descriptor(
            names::GUEST_CPU,
            "CPU time spent in the tenant's guest calls (the sandbox meters CPU time, not fuel)",
            None,
            MetricType::Counter,
        )?;
        for t in &tenants {
            ConstCounter::new(t.guest_cpu.as_secs_f64())
                .encode(family.encode_family(&label(t))?)?;
        }
        let backlog: [(&str, &str, Pick); 2] = [
            (
                names::QUEUE_DEPTH,
                "Messages ready in the tenant's input queue (sampled each second)",
                |t| t.queue_depth,
            ),
            (
                names::CONSUMER_LAG,
                "Input messages not yet done with: ready in the queue or delivered and not yet acked",
                |t| t.consumer_lag,
            ),
        ];
        for (name, help, pick) in backlog {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for t in &tenants {
                let n = i64::try_from(pick(t)).unwrap_or(i64::MAX);
                ConstGauge::new(n).encode(family.encode_family(&label(t))?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            names::EVENTS_PER_SECOND,
            "Records read per second over the last 10 s",
            None,
            MetricType::Gauge,
        )?;
        for t in &tenants {
            ConstGauge::new(t.events_per_sec).encode(family.encode_family(&label(t))?)?;
        }
        encode_partitions(&mut encoder, &tenants)
    }
}

/// Per partition: whether this host owns it, its lag, its watermark.
fn encode_partitions(
    encoder: &mut DescriptorEncoder,
    tenants: &[TenantFigures],
) -> Result<(), std::fmt::Error> {
    let partitions = || {
        tenants.iter().flat_map(|t| {
            t.partitions.iter().map(move |p| {
                (
                    PartitionLabel {
                        tenant: t.tenant.clone(),
                        partition: p.partition.to_string(),
                    },
                    p,
                )
            })
        })
    };
    {
        let mut family = encoder.encode_descriptor(
            names::PARTITION_OWNED,
            "1 while this host runs the partition (the broker made it the active consumer)",
            None,
            MetricType::Gauge,
        )?;
        for (l, p) in partitions() {
            ConstGauge::new(i64::from(p.owned)).encode(family.encode_family(&l)?)?;
        }
    }
    {
        let mut family = encoder.encode_descriptor(
            names::PARTITION_LAG,
            "Messages of the partition not yet done with: ready in its queue or delivered here and not acked",
            None,
            MetricType::Gauge,
        )?;
        for (l, p) in partitions() {
            ConstGauge::new(i64::try_from(p.lag).unwrap_or(i64::MAX))
                .encode(family.encode_family(&l)?)?;
        }
    }
    let mut family = encoder.encode_descriptor(
        names::PARTITION_WATERMARK,
        "The partition's input watermark (event time, s since the epoch) on the host that owns it",
        None,
        MetricType::Gauge,
    )?;
    for (l, p) in partitions() {
        if let Some(ms) = p.watermark_ms {
            ConstGauge::new(ms as f64 / 1000.0).encode(family.encode_family(&l)?)?;
        }
    }
    Ok(())
}

fn label(t: &TenantFigures) -> TenantLabel {
    TenantLabel {
        tenant: t.tenant.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Two;

    impl TenantSource for Two {
        fn figures(&self) -> Vec<TenantFigures> {
            ["a", "b"]
                .iter()
                .enumerate()
                .map(|(i, t)| TenantFigures {
                    tenant: (*t).to_owned(),
                    summary: Summary {
                        rows_in: 10 + i as u64,
                        ..Summary::default()
                    },
                    traps: 0,
                    guest_cpu: Duration::from_millis(1500),
                    queue_depth: 7,
                    consumer_lag: 9,
                    events_per_sec: 12.5,
                    paused: i == 1,
                    running: true,
                    state: if i == 1 {
                        TenantState::AutoPaused
                    } else {
                        TenantState::Stuck
                    },
                    partitions: if i == 1 {
                        vec![PartitionFigures {
                            partition: 3,
                            owned: true,
                            lag: 4,
                            watermark_ms: Some(1_487_442_540_000),
                        }]
                    } else {
                        Vec::new()
                    },
                })
                .collect()
        }
    }

    #[test]
    fn counters_carry_the_tenant_label_and_the_total_suffix() {
        let m = HostMetrics::new(Arc::new(Two));
        m.checkpoints.observe("a", Duration::from_millis(3), 1234);
        m.latency
            .observer("b")
            .end_to_end(Duration::from_millis(20));
        let text = m.encode().expect("encodes");
        assert!(
            text.contains("sluice_records_in_total{tenant=\"a\"} 10"),
            "{text}"
        );
        assert!(
            text.contains("sluice_records_in_total{tenant=\"b\"} 11"),
            "{text}"
        );
        assert!(
            text.contains("sluice_tenant_paused{tenant=\"b\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("sluice_checkpoint_size_bytes{tenant=\"a\"} 1234"),
            "{text}"
        );
        for line in [
            "sluice_guest_cpu_seconds_total{tenant=\"a\"} 1.5",
            "sluice_input_queue_messages{tenant=\"a\"} 7",
            "sluice_consumer_lag_messages{tenant=\"b\"} 9",
            "sluice_events_per_second{tenant=\"a\"} 12.5",
            "sluice_end_to_end_latency_seconds_count{tenant=\"b\"} 1",
            "sluice_end_to_end_latency_seconds_sum{tenant=\"b\"} 0.02",
            "sluice_partition_owned{tenant=\"b\",partition=\"3\"} 1",
            "sluice_partition_lag_messages{tenant=\"b\",partition=\"3\"} 4",
            "sluice_partition_watermark_seconds{tenant=\"b\",partition=\"3\"} 1487442540.0",
            "sluice_tenant_state{tenant=\"a\",state=\"stuck\"} 1",
            "sluice_tenant_state{tenant=\"a\",state=\"running\"} 0",
            "sluice_tenant_state{tenant=\"b\",state=\"auto_paused\"} 1",
            "sluice_tenant_state{tenant=\"b\",state=\"paused\"} 0",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
        // One series per tenant and state, exactly one of them 1.
        for t in ["a", "b"] {
            let states: Vec<&str> = text
                .lines()
                .filter(|l| l.starts_with(&format!("sluice_tenant_state{{tenant=\"{t}\",")))
                .collect();
            assert_eq!(states.len(), TenantState::ALL.len(), "{text}");
            assert_eq!(states.iter().filter(|l| l.ends_with(" 1")).count(), 1);
        }
        assert!(text.trim_end().ends_with("# EOF"), "{text}");
    }
}
