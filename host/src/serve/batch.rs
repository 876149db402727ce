//! Batch-job triggers of one tenant run inside `sluice serve`: `schedule`
//! (every multiple of `every` since the epoch) and `on_alert` (an alert of
//! a listed kind, seen once the sinks confirmed it — so the events of its
//! batch are stored). Jobs run on a thread of their own, one at a time,
//! over the stored events; a failing job is logged and counted, never the
//! stream's problem.
//!
//! Idempotence: an alert trigger runs a (job, range, scope) once per host —
//! repeated alerts of the same station in the same aligned hour are one
//! run; a schedule firing reruns its range, which overwrites the same
//! rows (the keys of `batch_results` hold no run time).

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::batch::range::{millis, now_ms};
use crate::batch::stored::{self, EventSource};
use crate::batch::{alert_range, schedule_range, JobRange, JobRun};
use crate::cassandra::batch_results::BatchResultStore;
use crate::manifest::Manifest;
use crate::pipeline;
use crate::sandbox::TenantModule;
use crate::sink::{self, EventBatch, LineSink, OutputType, Rendered, TableSink};

/// Alerts waiting for the trigger thread; beyond, new ones are dropped
/// (and counted): the stream never waits for batch jobs.
const QUEUE: usize = 1024;

/// What the host's batch triggers share: where events are read and
/// results written.
#[derive(Clone)]
pub struct BatchEnv {
    pub source: EventSource,
    pub store: Arc<BatchResultStore>,
    /// Shard workers of a job run (kept small: the streams come first).
    pub workers: usize,
}

/// Counters of a tenant's triggers.
#[derive(Debug, Default)]
pub struct TriggerStats {
    pub runs: AtomicU64,
    pub failed: AtomicU64,
    /// Alerts of a (job, range, scope) that already ran.
    pub repeated: AtomicU64,
    /// Alerts dropped because the queue was full.
    pub dropped: AtomicU64,
    /// The last [`RECENT_RUNS`] job runs, oldest first (the console).
    pub recent: std::sync::Mutex<std::collections::VecDeque<TriggerRun>>,
}

/// Job runs a tenant's [`TriggerStats`] remember.
pub const RECENT_RUNS: usize = 20;

/// One triggered job run, as the console lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TriggerRun {
    /// Seconds since the Unix epoch when it ended.
    pub at: u64,
    pub job: String,
    /// What fired it (`schedule`, `alert:<kind>`).
    pub trigger: String,
    /// The job's range, ms since the epoch.
    pub from: i64,
    pub to: i64,
    /// `column=value` of its scope, joined by `, `.
    pub scope: String,
    pub rows_in: u64,
    pub results: u64,
    pub took_ms: u64,
    /// Why it failed; `None` once its results are stored.
    pub error: Option<String>,
}

impl TriggerStats {
    fn note(&self, run: TriggerRun) {
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if recent.len() == RECENT_RUNS {
            recent.pop_front();
        }
        recent.push_back(run);
    }
}

enum Event {
    Alert {
        kind: String,
        event_time: i64,
        key: Vec<(String, String)>,
    },
    Stop,
}

/// The triggers of one run of a tenant.
pub struct Triggers {
    tx: SyncSender<Event>,
    thread: Option<JoinHandle<()>>,
    pub stats: Arc<TriggerStats>,
}

impl Triggers {
    /// Starts the trigger thread when `manifest` has triggered jobs.
    pub fn start(env: &BatchEnv, manifest: &Manifest, module: &TenantModule) -> Option<Triggers> {
        if !manifest
            .batch
            .iter()
            .any(|j| j.schedule.is_some() || j.on_alert.is_some())
        {
            return None;
        }
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let stats = Arc::new(TriggerStats::default());
        let worker = Worker {
            env: env.clone(),
            manifest: manifest.clone(),
            module: module.clone(),
            stats: Arc::clone(&stats),
            done: HashSet::new(),
        };
        let thread = std::thread::Builder::new()
            .name(format!("sluice-batch-{}", manifest.tenant))
            .spawn(move || worker.run(rx));
        match thread {
            Ok(thread) => Some(Triggers {
                tx,
                thread: Some(thread),
                stats,
            }),
            Err(e) => {
                tracing::error!(tenant = %manifest.tenant, error = %e, "cannot start the batch trigger thread");
                None
            }
        }
    }

    /// Wraps the run's table sink so alerts reach the triggers once
    /// written.
    pub fn tap(&self, inner: Arc<dyn TableSink>) -> Arc<dyn TableSink> {
        Arc::new(AlertTap {
            inner,
            tx: self.tx.clone(),
            stats: Arc::clone(&self.stats),
        })
    }

    /// Stops after the job running now, if any.
    pub fn stop(mut self) {
        let _ = self.tx.send(Event::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The table sink of a tenant with alert triggers.
struct AlertTap {
    inner: Arc<dyn TableSink>,
    tx: SyncSender<Event>,
    stats: Arc<TriggerStats>,
}

impl TableSink for AlertTap {
    fn write(
        &self,
        results: &Rendered,
        dead_letters: &Rendered,
        events: &EventBatch<'_>,
    ) -> sink::Result<()> {
        self.inner.write(results, dead_letters, events)?;
        for r in results.typed_results() {
            let (OutputType::Alert, Some((kind, event_time))) = (r.ty, &r.alert) else {
                continue;
            };
            let key = match &r.key {
                Some(k) => r
                    .key_names
                    .iter()
                    .cloned()
                    .zip(k.parts().map(str::to_owned))
                    .collect(),
                None => Vec::new(),
            };
            let event = Event::Alert {
                kind: kind.clone(),
                event_time: *event_time,
                key,
            };
            if self.tx.try_send(event).is_err() {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(())
    }
}

/// What identifies an alert run: job, range, scope.
type RunId = (String, JobRange, Vec<(String, String)>);

struct Worker {
    env: BatchEnv,
    manifest: Manifest,
    module: TenantModule,
    stats: Arc<TriggerStats>,
    /// Alert runs done.
    done: HashSet<RunId>,
}

impl Worker {
    fn run(mut self, rx: mpsc::Receiver<Event>) {
        let mut next: Vec<Option<i64>> = self
            .manifest
            .batch
            .iter()
            .map(|j| j.schedule.map(|s| next_multiple(now_ms(), millis(s.every))))
            .collect();
        loop {
            let now = now_ms();
            let wait = next
                .iter()
                .flatten()
                .map(|at| at.saturating_sub(now).max(0))
                .min()
                .map_or(Duration::from_secs(3600), |ms| {
                    Duration::from_millis(ms.unsigned_abs())
                });
            match rx.recv_timeout(wait) {
                Ok(Event::Stop) | Err(RecvTimeoutError::Disconnected) => return,
                Ok(Event::Alert {
                    kind,
                    event_time,
                    key,
                }) => self.alert(&kind, event_time, &key),
                Err(RecvTimeoutError::Timeout) => {}
            }
            let now = now_ms();
            for (i, at) in next.iter_mut().enumerate() {
                let (Some(due), Some(schedule)) = (*at, self.manifest.batch[i].schedule) else {
                    continue;
                };
                if now < due {
                    continue;
                }
                let range = schedule_range(&schedule, now);
                let name = self.manifest.batch[i].name.clone();
                self.run_job(&name, range, Vec::new(), "schedule");
                *at = Some(next_multiple(now_ms(), millis(schedule.every)));
            }
        }
    }

    fn alert(&mut self, kind: &str, event_time: i64, key: &[(String, String)]) {
        let jobs: Vec<_> = self
            .manifest
            .batch
            .iter()
            .filter_map(|j| {
                let on = j.on_alert.as_ref()?;
                on.kinds.iter().any(|k| k == kind).then(|| {
                    let scope: Vec<(String, String)> = on
                        .scope
                        .iter()
                        .filter_map(|c| key.iter().find(|(n, _)| n == c).cloned())
                        .collect();
                    (j.name.clone(), alert_range(on, event_time), scope)
                })
            })
            .collect();
        for (job, range, scope) in jobs {
            let id = (job.clone(), range, scope.clone());
            if self.done.contains(&id) {
                self.stats.repeated.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            if self.run_job(&job, range, scope, &format!("alert:{kind}")) {
                self.done.insert(id);
            }
        }
    }

    /// Runs one job; whether it completed.
    fn run_job(
        &mut self,
        job: &str,
        range: JobRange,
        scope: Vec<(String, String)>,
        trigger: &str,
    ) -> bool {
        let tenant = &self.manifest.tenant;
        let asked_scope = scope_text(scope.iter().map(|(k, v)| (k, v)));
        let run = match JobRun::new(&self.manifest, job, range, scope) {
            Ok(run) => run,
            Err(e) => {
                tracing::error!(%tenant, job, error = %e, "batch job not started");
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
                return false;
            }
        };
        let options = pipeline::Options {
            workers: self.env.workers.max(1),
            progress: None,
            ..pipeline::Options::default()
        };
        let started = std::time::Instant::now();
        let note = |scope: String, rows_in: u64, results: u64, error: Option<String>| TriggerRun {
            at: super::history::unix_now(),
            job: job.to_owned(),
            trigger: trigger.to_owned(),
            from: range.from,
            to: range.to,
            scope,
            rows_in,
            results,
            took_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            error,
        };
        match stored::run_and_store(
            &run,
            &self.module,
            &self.env.source,
            None,
            &self.env.store,
            trigger,
            LineSink::discard("batch dead letters"),
            &options,
            None,
        ) {
            Ok((outcome, record)) => {
                self.stats.runs.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    %tenant,
                    job,
                    trigger,
                    from = range.from,
                    to = range.to,
                    scope = ?record.scope,
                    rows = record.rows_in,
                    results = outcome.results.len(),
                    took_ms = started.elapsed().as_millis() as u64,
                    "batch job ran"
                );
                self.stats.note(note(
                    scope_text(record.scope.iter()),
                    record.rows_in,
                    outcome.results.len() as u64,
                    None,
                ));
                true
            }
            Err(e) => {
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
                tracing::error!(%tenant, job, trigger, error = %e, "batch job failed");
                self.stats
                    .note(note(asked_scope, 0, 0, Some(e.to_string())));
                false
            }
        }
    }
}

/// `column=value, …` of a scope.
fn scope_text<'a>(scope: impl Iterator<Item = (&'a String, &'a String)>) -> String {
    scope
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The first multiple of `every` after `now`.
fn next_multiple(now: i64, every: i64) -> i64 {
    (now.div_euclid(every) + 1).saturating_mul(every)
}
