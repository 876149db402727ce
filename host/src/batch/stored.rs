//! A job run against Cassandra: over the tenant's stored events (or a
//! file), its results written to `batch_results` and the run to
//! `batch_runs` — what `sluice batch --cassandra` and the triggers of
//! `sluice serve` both do.

use std::collections::BTreeMap;
use std::sync::Arc;

use indicatif::ProgressBar;
use scylla::client::session::Session;

use crate::cassandra::batch_results::{BatchResultStore, BatchRun};
use crate::cassandra::events_scan::{self, EventScan};
use crate::ingress::Input;
use crate::pipeline;
use crate::sandbox::TenantModule;
use crate::sink::LineSink;

use super::range::now_ms;
use super::{JobOutcome, JobRun};

/// Errors of a stored run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("batch job `{job}`: cannot scan the stored events: {source}")]
    Scan {
        job: String,
        #[source]
        source: events_scan::Error,
    },
    #[error(transparent)]
    Run(#[from] super::Error),
    #[error("batch job `{job}`: storing the results: {source}")]
    Store {
        job: String,
        #[source]
        source: crate::cassandra::Error,
    },
}

/// Where stored events are read.
#[derive(Clone)]
pub struct EventSource {
    pub session: Arc<Session>,
    pub runtime: tokio::runtime::Handle,
    pub keyspace: String,
    /// Partitions read at once.
    pub parallelism: usize,
}

impl EventSource {
    /// The scan of the tenant's events `run` covers, as an input.
    pub fn input(&self, run: &JobRun<'_>, progress: Option<ProgressBar>) -> Result<Input, Error> {
        let input = &run.manifest.input;
        let scan = EventScan {
            keyspace: self.keyspace.clone(),
            tenant: run.manifest.tenant.clone(),
            range: run.range,
            scope: run.job.filter.iter().chain(&run.scope).cloned().collect(),
            columns: input.columns.clone(),
            delimiter: input.delimiter,
            parallelism: self.parallelism.max(1),
        };
        events_scan::start(
            Arc::clone(&self.session),
            self.runtime.clone(),
            scan,
            progress,
        )
        .map(|(input, _)| input)
        .map_err(|source| Error::Scan {
            job: run.job.name.clone(),
            source,
        })
    }
}

/// Runs `run` over `input` (the stored events when `None`) and stores its
/// results and the run; `trigger` says what started it (`cli`,
/// `schedule`, `alert:<kind>`).
#[allow(clippy::too_many_arguments)]
pub fn run_and_store(
    run: &JobRun<'_>,
    module: &TenantModule,
    source: &EventSource,
    input: Option<(Input, bool)>,
    store: &BatchResultStore,
    trigger: &str,
    dead_letter: LineSink,
    options: &pipeline::Options,
    progress: Option<ProgressBar>,
) -> Result<(JobOutcome, BatchRun), Error> {
    let started_at = now_ms();
    let (input, header) = match input {
        Some(given) => given,
        None => (source.input(run, progress)?, false),
    };
    let outcome = run.run(module, input, header, dead_letter, options)?;
    let stored = |source| Error::Store {
        job: run.job.name.clone(),
        source,
    };
    store.write(&outcome.results).map_err(stored)?;
    let record = BatchRun {
        tenant: run.manifest.tenant.clone(),
        job: run.job.name.clone(),
        range: run.range,
        scope: run.scope.iter().cloned().collect::<BTreeMap<_, _>>(),
        trigger: trigger.to_owned(),
        started_at,
        finished_at: now_ms(),
        rows_in: outcome.rows_used(),
        results: outcome.results.len() as u64,
    };
    store.record_run(&record).map_err(stored)?;
    Ok((outcome, record))
}
