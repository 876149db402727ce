//! One run of a batch job: the job turned into a pipeline (its key, its
//! windows, no alerts, a watermark that never moves before the input ends),
//! run over a bounded input, its analytics collected as [`BatchResult`]s.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::ingress::Input;
use crate::manifest::{BatchJobSpec, BatchSpan, Manifest, WindowKind, WindowSpec};
use crate::metrics::Summary;
use crate::pipeline::{self, RowSelect};
use crate::runner::{RunSpec, Runner};
use crate::sandbox::TenantModule;
use crate::sink::{self, EventBatch, LineSink, OutputType, Rendered, Sinks, TableSink};

use super::{BatchResult, JobRange};

/// A range window runs as one tumbling window this long: every event of
/// any range since 1970 falls in its first window, `[0, RANGE_SIZE)`,
/// which is then reported as the job's range.
const RANGE_SIZE: Duration = Duration::from_millis(1 << 52);

/// Errors of a job run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the manifest has no batch job `{job}` (jobs: {jobs})")]
    UnknownJob { job: String, jobs: String },
    #[error("batch job `{job}`: the range [{from}, {to}) is empty")]
    EmptyRange { job: String, from: i64, to: i64 },
    #[error("batch job `{job}`: scope column `{column}` is not a column of the input")]
    Scope { job: String, column: String },
    #[error(
        "batch job `{job}`: scope column `{column}` is not a key column of the job (key: {key}); \
         runs scoped to different values of it would overwrite each other's rows"
    )]
    ScopeNotKey {
        job: String,
        column: String,
        key: String,
    },
    #[error("batch job `{job}`: {source}")]
    Pipeline {
        job: String,
        #[source]
        source: Box<pipeline::Error>,
    },
}

/// What a job run produced.
#[derive(Debug, Clone)]
pub struct JobOutcome {
    pub results: Vec<BatchResult>,
    pub summary: Summary,
    /// Parsed rows outside the range or scope, left out.
    pub rows_skipped: u64,
}

impl JobOutcome {
    /// Rows the job computed over (parsed, in range and scope).
    pub fn rows_used(&self) -> u64 {
        self.summary.rows_in.saturating_sub(self.summary.bad_rows)
    }
}

/// One run: which job, over which range, scoped to which values.
#[derive(Debug, Clone)]
pub struct JobRun<'a> {
    pub manifest: &'a Manifest,
    pub job: &'a BatchJobSpec,
    pub range: JobRange,
    /// (column, value) pairs the run is restricted to (an alert's key).
    pub scope: Vec<(String, String)>,
}

impl<'a> JobRun<'a> {
    /// The run of `manifest`'s job called `name`.
    pub fn new(
        manifest: &'a Manifest,
        name: &str,
        range: JobRange,
        scope: Vec<(String, String)>,
    ) -> Result<JobRun<'a>, Error> {
        let job = manifest
            .batch
            .iter()
            .find(|j| j.name == name)
            .ok_or_else(|| Error::UnknownJob {
                job: name.to_owned(),
                jobs: if manifest.batch.is_empty() {
                    "none".to_owned()
                } else {
                    manifest
                        .batch
                        .iter()
                        .map(|j| j.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                },
            })?;
        if let Some((column, _)) = scope.iter().find(|(c, _)| !job.key.contains(c)) {
            return Err(Error::ScopeNotKey {
                job: name.to_owned(),
                column: column.clone(),
                key: job.key.join(", "),
            });
        }
        if range.to <= range.from {
            return Err(Error::EmptyRange {
                job: name.to_owned(),
                from: range.from,
                to: range.to,
            });
        }
        Ok(JobRun {
            manifest,
            job,
            range,
            scope,
        })
    }

    /// The tenant's manifest as this job runs it: the job's key and
    /// windows, no alerts, and an out-of-orderness as long as the range, so
    /// the watermark stays below every window until the input ends (a scan
    /// returns events in no time order) and no event is ever late.
    pub fn pipeline_manifest(&self, header: bool) -> Manifest {
        let mut m = self.manifest.clone();
        m.input.key = self.job.key.clone();
        m.input.header = header;
        let span = u64::try_from(self.range.to.saturating_sub(self.range.from)).unwrap_or(0);
        m.input.max_out_of_orderness = Duration::from_millis(span.saturating_add(1));
        m.input.allowed_lateness = Duration::ZERO;
        m.input.idle_timeout = None;
        m.alerts = None;
        m.windows = self
            .job
            .windows
            .iter()
            .map(|w| WindowSpec {
                name: w.name.clone(),
                kind: match w.span {
                    BatchSpan::Range => WindowKind::Tumbling { size: RANGE_SIZE },
                    BatchSpan::Window(kind) => kind,
                },
                function: w.function.clone(),
            })
            .collect();
        m.batch.clear();
        m
    }

    /// Which rows the run keeps: the range, the job's filter, the scope.
    pub fn select(&self) -> Result<RowSelect, Error> {
        let mut equals = Vec::new();
        for (column, value) in self.job.filter.iter().chain(&self.scope) {
            let index = self
                .manifest
                .input
                .column_index(column)
                .ok_or_else(|| Error::Scope {
                    job: self.job.name.clone(),
                    column: column.clone(),
                })?;
            equals.push((index, value.clone()));
        }
        Ok(RowSelect {
            time: Some((self.range.from, self.range.to)),
            equals,
            skipped: Default::default(),
        })
    }

    /// Runs the job over `input` (`header`: its first line is a header)
    /// with `module`; dead letters (bad rows, poison) go to `dead_letter`.
    pub fn run(
        &self,
        module: &TenantModule,
        input: Input,
        header: bool,
        dead_letter: LineSink,
        options: &pipeline::Options,
    ) -> Result<JobOutcome, Error> {
        let manifest = self.pipeline_manifest(header);
        let select = Arc::new(self.select()?);
        let collector = Arc::new(Collector::default());
        let mut sinks = Sinks::lines(LineSink::discard("batch results"), dead_letter);
        sinks.tables = Some(Arc::clone(&collector) as Arc<dyn TableSink>);
        let runner = Runner::new(RunSpec {
            manifest: &manifest,
            module,
            sinks: &sinks,
            checkpoints: None,
            options: pipeline::Options {
                select: Some(Arc::clone(&select)),
                suspend: None,
                ..options.clone()
            },
        });
        let report = runner.run(input).map_err(|source| Error::Pipeline {
            job: self.job.name.clone(),
            source: Box::new(source),
        })?;
        let typed = std::mem::take(&mut *lock(&collector.results));
        let mut results: Vec<BatchResult> =
            typed.into_iter().filter_map(|r| self.result(r)).collect();
        results.sort_by(|a, b| {
            (&a.window.name, a.window.start, &a.key).cmp(&(&b.window.name, b.window.start, &b.key))
        });
        Ok(JobOutcome {
            results,
            summary: report.summary,
            rows_skipped: select.skipped.load(Ordering::Relaxed),
        })
    }

    /// A pipeline result as a batch result: analytics only (bad-row
    /// metrics are in the summary and the dead letters); a range window's
    /// bounds are the job's range.
    fn result(&self, r: sink::TypedResult) -> Option<BatchResult> {
        if !matches!(
            r.ty,
            OutputType::WindowedAnalytic | OutputType::GlobalAnalytic
        ) {
            return None;
        }
        let mut window = r.window?;
        let spec = self.job.windows.iter().find(|w| w.name == window.name)?;
        if spec.span == BatchSpan::Range {
            window.start = self.range.from;
            window.end = self.range.to;
        }
        Some(BatchResult {
            tenant: r.tenant,
            job: self.job.name.clone(),
            range: self.range,
            window,
            key: r
                .key
                .map(|k| k.parts().map(str::to_owned).collect())
                .unwrap_or_default(),
            key_names: r.key_names,
            fields: r.fields,
        })
    }
}

/// Keeps the typed results the pipeline hands a table sink.
#[derive(Default)]
struct Collector {
    results: Mutex<Vec<sink::TypedResult>>,
}

impl TableSink for Collector {
    fn write(
        &self,
        results: &Rendered,
        _dead_letters: &Rendered,
        _events: &EventBatch<'_>,
    ) -> sink::Result<()> {
        lock(&self.results).extend(results.typed_results().iter().cloned());
        Ok(())
    }
}

/// A poisoned lock only means another worker panicked; the pipeline
/// reports that panic, the collected results are still whole.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
