//! A batch job's results and runs in Cassandra (tables of schema
//! migration 3).
//!
//! - `batch_results ((tenant, job, range_from, range_to), window_name,
//!   window_start, key)`: one partition per job range, so a rerun over the
//!   same range writes the same primary keys and overwrites its rows — the
//!   table holds no trace of *when* a run wrote, which would make the keys
//!   differ between runs. Fields are stored like the stream's results
//!   (`fields` in the function's order plus one typed map per type, the
//!   helpers of [`rows`](super::rows)), so they read back in order.
//! - `batch_runs ((tenant, job), range_from, range_to, scope)`: one row
//!   per distinct run, overwritten by a rerun: what ran, why (`trigger`),
//!   when, what it read and how many results it wrote.
//!
//! Writes are grouped by partition into unlogged batches capped like the
//! sink's ([`MAX_BATCH_ROWS`], [`MAX_BATCH_BYTES`]: one mutation each, far
//! below the server's limit), at most `max_concurrency` in flight, each
//! retried with backoff until `give_up` when retrying can help. Every row
//! carries a write timestamp from one monotonic clock per store, so of two
//! results with the same key in one write the later wins, as it does
//! across writes.
//!
//! The store is sync-facing like [`CassandraStore`]
//! (crate::store::CassandraStore): each method blocks on the
//! runtime it was opened with (call it from a plain thread, not from
//! inside that runtime); the `*_async` methods are the same for async
//! callers.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{StreamExt, TryStreamExt};
use scylla::client::session::Session;
use scylla::deserialize::row::DeserializeRow;
use scylla::errors::ExecutionError;
use scylla::serialize::row::SerializeRow;
use scylla::statement::batch::{Batch, BatchStatement, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::value::CqlTimestamp;

use super::query::{Map, Typed};
use super::rows::{self, Fields, KeyMap, MAX_BATCH_BYTES, MAX_BATCH_ROWS};
use super::{pager_retryable, retryable, row_retryable, schema};
use super::{CassandraConfig, Error, Result, Timestamps};
use sluice_core::batch::{BatchResult, JobRange};
use sluice_core::retry::Backoff;
use sluice_core::sink::OwnedWindow;

/// The results table.
pub const RESULTS: &str = "batch_results";
/// The runs table.
pub const RUNS: &str = "batch_runs";

/// One run of a job, as `batch_runs` records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchRun {
    pub tenant: String,
    pub job: String,
    pub range: JobRange,
    /// Only events whose column had this value were read (column → value);
    /// empty: every event of the range. Part of the row's key: runs over
    /// the same range with different scopes are different runs.
    pub scope: BTreeMap<String, String>,
    /// What started the run (`cli`, `schedule`, an operator…).
    pub trigger: String,
    /// ms since the Unix epoch.
    pub started_at: i64,
    /// ms since the Unix epoch.
    pub finished_at: i64,
    /// Rows the run read.
    pub rows_in: u64,
    /// Results the run wrote.
    pub results: u64,
}

/// How the store writes and retries.
#[derive(Debug, Clone)]
pub struct BatchStoreOptions {
    /// Requests (unlogged batches) in flight at once.
    pub max_concurrency: usize,
    /// Stop retrying a request after Cassandra has refused it this long.
    pub give_up: Duration,
}

impl Default for BatchStoreOptions {
    fn default() -> Self {
        BatchStoreOptions {
            max_concurrency: 16,
            give_up: Duration::from_secs(300),
        }
    }
}

/// What the store did, for a run's summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchStoreStats {
    /// Result rows acknowledged.
    pub rows: u64,
    /// Requests (unlogged batches or single inserts) acknowledged.
    pub requests: u64,
    /// Failed attempts that were retried.
    pub retries: u64,
}

/// batch_results, as bound to the insert (the last value is the write
/// timestamp).
type ResultRow<'a> = (
    &'a str,
    &'a str,
    CqlTimestamp,
    CqlTimestamp,
    &'a str,
    CqlTimestamp,
    CqlTimestamp,
    KeyMap<'a>,
    Vec<&'a str>,
    Vec<&'a str>,
    BTreeMap<&'a str, i64>,
    BTreeMap<&'a str, f64>,
    BTreeMap<&'a str, &'a str>,
    BTreeMap<&'a str, bool>,
    i64,
);

/// batch_results, as read back (the partition key columns are known).
type StoredResult = (
    String,
    CqlTimestamp,
    CqlTimestamp,
    Option<BTreeMap<String, String>>,
    Option<Vec<String>>,
    Option<Vec<String>>,
    Map<i64>,
    Map<f64>,
    Map<String>,
    Map<bool>,
);

/// batch_runs, as read back.
type StoredRun = (
    CqlTimestamp,
    CqlTimestamp,
    Option<BTreeMap<String, String>>,
    Option<String>,
    Option<CqlTimestamp>,
    Option<CqlTimestamp>,
    Option<i64>,
    Option<i64>,
);

/// One partition's rows of one write, under the caps: one request.
#[derive(Default)]
struct Request<'a> {
    rows: Vec<ResultRow<'a>>,
    bytes: usize,
}

/// A failed attempt: whether retrying may help, and why.
struct Failure {
    retry: bool,
    message: String,
}

impl Failure {
    fn fatal(e: &dyn std::fmt::Display) -> Failure {
        Failure {
            retry: false,
            message: e.to_string(),
        }
    }
}

/// The prepared statements, one per request the store makes.
struct Statements {
    insert_result: PreparedStatement,
    insert_run: PreparedStatement,
    select_results: PreparedStatement,
    select_keys: PreparedStatement,
    select_ranges: PreparedStatement,
    select_runs: PreparedStatement,
}

/// Results and runs of batch jobs; see the module docs.
pub struct BatchResultStore {
    session: Arc<Session>,
    runtime: tokio::runtime::Handle,
    keyspace: String,
    statements: Statements,
    concurrency: usize,
    give_up: Duration,
    timestamps: Timestamps,
    rows: AtomicU64,
    requests: AtomicU64,
    retries: AtomicU64,
}

impl std::fmt::Debug for BatchResultStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchResultStore")
            .field("keyspace", &self.keyspace)
            .finish_non_exhaustive()
    }
}

/// Whether a request writes or reads (which error it ends with).
#[derive(Debug, Clone, Copy)]
enum Kind {
    Write,
    Read,
}

/// Retries `$attempt` (an expression yielding `Result<T, Failure>`) with
/// backoff until it succeeds, fails for good or `give_up` has passed.
macro_rules! retrying {
    ($store:expr, $kind:expr, $table:expr, $attempt:expr) => {{
        let mut backoff = Backoff::new();
        let started = Instant::now();
        loop {
            match $attempt {
                Ok(value) => break Ok(value),
                Err(Failure { retry, message })
                    if !retry || started.elapsed() >= $store.give_up =>
                {
                    break Err($store.failed($kind, $table, retry, message))
                }
                Err(Failure { message, .. }) => {
                    $store.retries.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        keyspace = %$store.keyspace,
                        table = $table,
                        error = %message,
                        "Cassandra request failed; retrying in {:?}",
                        backoff.peek()
                    );
                    tokio::time::sleep(backoff.advance()).await;
                }
            }
        }
    }};
}

impl BatchResultStore {
    /// Prepares the store's statements on a session whose keyspace is
    /// already migrated (as `CassandraSink::connect` and
    /// [`BatchResultStore::connect`] leave it).
    pub async fn open(
        session: Arc<Session>,
        runtime: tokio::runtime::Handle,
        keyspace: &str,
        options: &BatchStoreOptions,
    ) -> Result<BatchResultStore> {
        if !schema::valid_keyspace(keyspace) {
            return Err(Error::Keyspace(keyspace.to_owned()));
        }
        let ks = keyspace;
        let prepare = |table: &'static str, cql: String| {
            let session = Arc::clone(&session);
            async move {
                let mut prepared = session.prepare(cql).await.map_err(|e| Error::Prepare {
                    table,
                    message: e.to_string(),
                })?;
                prepared.set_is_idempotent(true);
                prepared.set_page_size(PAGE_SIZE);
                Ok::<_, Error>(prepared)
            }
        };
        let statements = Statements {
            insert_result: prepare(
                RESULTS,
                format!(
                    "INSERT INTO {ks}.batch_results (tenant, job, range_from, range_to, \
                     window_name, window_start, window_end, key, key_names, fields, \
                     ints, floats, texts, bools) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?"
                ),
            )
            .await?,
            insert_run: prepare(
                RUNS,
                format!(
                    "INSERT INTO {ks}.batch_runs (tenant, job, range_from, range_to, scope, \
                     trigger, started_at, finished_at, rows_in, results) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                ),
            )
            .await?,
            select_results: prepare(
                RESULTS,
                format!(
                    "SELECT window_name, window_start, window_end, key, key_names, fields, \
                     ints, floats, texts, bools FROM {ks}.batch_results \
                     WHERE tenant = ? AND job = ? AND range_from = ? AND range_to = ?"
                ),
            )
            .await?,
            select_keys: prepare(
                RESULTS,
                format!(
                    "SELECT window_name FROM {ks}.batch_results \
                     WHERE tenant = ? AND job = ? AND range_from = ? AND range_to = ?"
                ),
            )
            .await?,
            // The partition key is (tenant, job, range): the ranges of a
            // job are found by a scan of the table's partition keys (not
            // its rows).
            select_ranges: prepare(
                RESULTS,
                format!(
                    "SELECT DISTINCT tenant, job, range_from, range_to FROM {ks}.batch_results \
                     WHERE tenant = ? AND job = ? ALLOW FILTERING"
                ),
            )
            .await?,
            select_runs: prepare(
                RUNS,
                format!(
                    "SELECT range_from, range_to, scope, trigger, started_at, finished_at, \
                     rows_in, results FROM {ks}.batch_runs WHERE tenant = ? AND job = ?"
                ),
            )
            .await?,
        };
        Ok(BatchResultStore {
            session,
            runtime,
            keyspace: keyspace.to_owned(),
            statements,
            concurrency: options.max_concurrency.max(1),
            give_up: options.give_up,
            timestamps: Timestamps::default(),
            rows: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            retries: AtomicU64::new(0),
        })
    }

    /// Connects to `config`'s nodes, creates or migrates the schema and
    /// opens the store (concurrency and give-up from `config`).
    pub async fn connect(
        config: &CassandraConfig,
        runtime: tokio::runtime::Handle,
    ) -> Result<BatchResultStore> {
        config.check()?;
        let session = super::connect(&config.nodes).await?;
        schema::migrate(&session, &config.keyspace, &config.replication).await?;
        let options = BatchStoreOptions {
            max_concurrency: config.max_concurrency,
            give_up: config.give_up,
        };
        Self::open(Arc::new(session), runtime, &config.keyspace, &options).await
    }

    /// The session (for tests and the benchmark).
    pub fn session(&self) -> &Arc<Session> {
        &self.session
    }

    pub fn stats(&self) -> BatchStoreStats {
        BatchStoreStats {
            rows: self.rows.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
        }
    }

    /// The error a request ends with: one retrying cannot fix, or the
    /// last of those retried until `give_up`.
    fn failed(&self, kind: Kind, table: &'static str, retried: bool, message: String) -> Error {
        match (kind, retried) {
            (Kind::Write, false) => Error::Write { table, message },
            (Kind::Write, true) => Error::GaveUp {
                after: self.give_up,
                last: message,
            },
            (Kind::Read, false) => Error::Read { table, message },
            (Kind::Read, true) => Error::ReadGaveUp {
                table,
                after: self.give_up,
                last: message,
            },
        }
    }

    /// Writes `results`; returns once Cassandra acknowledged every row.
    pub fn write(&self, results: &[BatchResult]) -> Result<()> {
        self.runtime.block_on(self.write_async(results))
    }

    /// Records a run (overwriting an earlier run of the same job, range
    /// and scope).
    pub fn record_run(&self, run: &BatchRun) -> Result<()> {
        self.runtime.block_on(self.record_run_async(run))
    }

    /// The job's recorded runs, by range then scope.
    pub fn runs(&self, tenant: &str, job: &str) -> Result<Vec<BatchRun>> {
        self.runtime.block_on(self.runs_async(tenant, job))
    }

    /// The job's stored results: of `range` (one partition), or of every
    /// range it has results for (see [`BatchResultStore::ranges`]), by
    /// range, then window name, window start and key; fields in the order
    /// the function returned them.
    pub fn read(
        &self,
        tenant: &str,
        job: &str,
        range: Option<JobRange>,
    ) -> Result<Vec<BatchResult>> {
        self.runtime.block_on(self.read_async(tenant, job, range))
    }

    /// Result rows stored for the job, all ranges together (each range's
    /// rows are read, keys only: a check and a tool, not a hot path).
    pub fn count(&self, tenant: &str, job: &str) -> Result<u64> {
        self.runtime.block_on(self.count_async(tenant, job))
    }

    /// The ranges the job has results for, in order: found by listing
    /// the table's partition keys (every tenant's and job's — a scan of
    /// keys, not rows), so results a run wrote before failing to record
    /// itself are found too.
    pub fn ranges(&self, tenant: &str, job: &str) -> Result<Vec<JobRange>> {
        self.runtime.block_on(self.ranges_async(tenant, job))
    }

    /// [`BatchResultStore::write`] for async callers.
    pub async fn write_async(&self, results: &[BatchResult]) -> Result<()> {
        let requests = requests_of(results, self.timestamps.reserve(results.len()))?;
        futures_util::stream::iter(requests.iter().map(|r| self.send(r)))
            .buffer_unordered(self.concurrency)
            .try_for_each(|()| std::future::ready(Ok(())))
            .await
    }

    /// Sends one request, retrying with backoff until it is acknowledged,
    /// the error is one retrying cannot fix, or `give_up` has passed.
    async fn send(&self, request: &Request<'_>) -> Result<()> {
        retrying!(
            self,
            Kind::Write,
            RESULTS,
            self.execute(request).await.map_err(|e| Failure {
                retry: retryable(&e),
                message: e.to_string(),
            })
        )?;
        self.rows
            .fetch_add(request.rows.len() as u64, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    async fn execute(&self, request: &Request<'_>) -> std::result::Result<(), ExecutionError> {
        let prepared = &self.statements.insert_result;
        if let [row] = request.rows.as_slice() {
            return self
                .session
                .execute_unpaged(prepared, row)
                .await
                .map(|_| ());
        }
        let mut batch = Batch::new_with_statements(
            BatchType::Unlogged,
            vec![BatchStatement::PreparedStatement(prepared.clone()); request.rows.len()],
        );
        batch.set_is_idempotent(true);
        self.session.batch(&batch, &request.rows).await.map(|_| ())
    }

    /// [`BatchResultStore::record_run`] for async callers.
    pub async fn record_run_async(&self, run: &BatchRun) -> Result<()> {
        let count = |what: &str, n: u64| {
            i64::try_from(n).map_err(|_| Error::Invalid {
                table: RUNS,
                message: format!("{what} {n} does not fit a CQL bigint"),
            })
        };
        let values = (
            run.tenant.as_str(),
            run.job.as_str(),
            CqlTimestamp(run.range.from),
            CqlTimestamp(run.range.to),
            &run.scope,
            run.trigger.as_str(),
            CqlTimestamp(run.started_at),
            CqlTimestamp(run.finished_at),
            count("rows_in", run.rows_in)?,
            count("results", run.results)?,
        );
        retrying!(
            self,
            Kind::Write,
            RUNS,
            self.session
                .execute_unpaged(&self.statements.insert_run, &values)
                .await
                .map_err(|e| Failure {
                    retry: retryable(&e),
                    message: e.to_string(),
                })
        )
        .map(|_| ())
    }

    /// Every row of a paged read, retried from the start on a failure
    /// retrying may fix.
    async fn read_all<R, V>(
        &self,
        table: &'static str,
        statement: &PreparedStatement,
        values: V,
    ) -> Result<Vec<R>>
    where
        R: for<'f, 'm> DeserializeRow<'f, 'm>,
        V: SerializeRow,
    {
        retrying!(
            self,
            Kind::Read,
            table,
            self.try_read_all(statement, &values).await
        )
    }

    async fn try_read_all<R, V>(
        &self,
        statement: &PreparedStatement,
        values: &V,
    ) -> std::result::Result<Vec<R>, Failure>
    where
        R: for<'f, 'm> DeserializeRow<'f, 'm>,
        V: SerializeRow,
    {
        let mut rows = self
            .session
            .execute_iter(statement.clone(), values)
            .await
            .map_err(|e| Failure {
                retry: pager_retryable(&e),
                message: e.to_string(),
            })?
            .rows_stream::<R>()
            .map_err(|e| Failure::fatal(&e))?;
        let mut out = Vec::new();
        while let Some(row) = rows.try_next().await.map_err(|e| Failure {
            retry: row_retryable(&e),
            message: e.to_string(),
        })? {
            out.push(row);
        }
        Ok(out)
    }

    /// [`BatchResultStore::runs`] for async callers.
    pub async fn runs_async(&self, tenant: &str, job: &str) -> Result<Vec<BatchRun>> {
        let rows: Vec<StoredRun> = self
            .read_all(RUNS, &self.statements.select_runs, (tenant, job))
            .await?;
        Ok(rows
            .into_iter()
            .map(
                |(from, to, scope, trigger, started, finished, rows_in, results)| BatchRun {
                    tenant: tenant.to_owned(),
                    job: job.to_owned(),
                    range: JobRange {
                        from: from.0,
                        to: to.0,
                    },
                    scope: scope.unwrap_or_default(),
                    trigger: trigger.unwrap_or_default(),
                    started_at: started.map_or(0, |t| t.0),
                    finished_at: finished.map_or(0, |t| t.0),
                    rows_in: rows_in.map_or(0, i64::unsigned_abs),
                    results: results.map_or(0, i64::unsigned_abs),
                },
            )
            .collect())
    }

    /// [`BatchResultStore::ranges`] for async callers.
    pub async fn ranges_async(&self, tenant: &str, job: &str) -> Result<Vec<JobRange>> {
        let rows: Vec<(String, String, CqlTimestamp, CqlTimestamp)> = self
            .read_all(RESULTS, &self.statements.select_ranges, (tenant, job))
            .await?;
        let mut ranges: Vec<JobRange> = rows
            .into_iter()
            .map(|(_, _, from, to)| JobRange {
                from: from.0,
                to: to.0,
            })
            .collect();
        ranges.sort();
        Ok(ranges)
    }

    /// [`BatchResultStore::read`] for async callers.
    pub async fn read_async(
        &self,
        tenant: &str,
        job: &str,
        range: Option<JobRange>,
    ) -> Result<Vec<BatchResult>> {
        let ranges = match range {
            Some(range) => vec![range],
            None => self.ranges_async(tenant, job).await?,
        };
        let mut out = Vec::new();
        for range in ranges {
            let rows: Vec<StoredResult> = self
                .read_all(
                    RESULTS,
                    &self.statements.select_results,
                    (
                        tenant,
                        job,
                        CqlTimestamp(range.from),
                        CqlTimestamp(range.to),
                    ),
                )
                .await?;
            for (name, start, end, key, key_names, names, ints, floats, texts, bools) in rows {
                let key_names = key_names.unwrap_or_default();
                let key_map = key.unwrap_or_default();
                let key = key_names
                    .iter()
                    .map(|n| {
                        key_map.get(n).cloned().ok_or_else(|| Error::Read {
                            table: RESULTS,
                            message: format!(
                                "a stored result of job `{job}` has no value for key column `{n}`"
                            ),
                        })
                    })
                    .collect::<Result<Vec<String>>>()?;
                let fields = Typed {
                    names,
                    ints,
                    floats,
                    texts,
                    bools,
                }
                .fields();
                out.push(BatchResult {
                    tenant: tenant.to_owned(),
                    job: job.to_owned(),
                    range,
                    window: OwnedWindow {
                        name,
                        start: start.0,
                        end: end.0,
                    },
                    key_names,
                    key,
                    fields,
                });
            }
        }
        Ok(out)
    }

    /// [`BatchResultStore::count`] for async callers: reads each range's
    /// clustering keys, paged (a server-side `COUNT(*)` of a large
    /// partition can time out; pages cannot).
    pub async fn count_async(&self, tenant: &str, job: &str) -> Result<u64> {
        let mut total = 0u64;
        for range in self.ranges_async(tenant, job).await? {
            let values = (
                tenant,
                job,
                CqlTimestamp(range.from),
                CqlTimestamp(range.to),
            );
            total += retrying!(self, Kind::Read, RESULTS, self.try_count(&values).await)?;
        }
        Ok(total)
    }

    async fn try_count(&self, values: &impl SerializeRow) -> std::result::Result<u64, Failure> {
        let mut rows = self
            .session
            .execute_iter(self.statements.select_keys.clone(), values)
            .await
            .map_err(|e| Failure {
                retry: pager_retryable(&e),
                message: e.to_string(),
            })?
            .rows_stream::<(Option<String>,)>()
            .map_err(|e| Failure::fatal(&e))?;
        let mut n = 0u64;
        while rows
            .try_next()
            .await
            .map_err(|e| Failure {
                retry: row_retryable(&e),
                message: e.to_string(),
            })?
            .is_some()
        {
            n += 1;
        }
        Ok(n)
    }
}

/// Groups `results` by partition into capped requests, in order of
/// first appearance, each row with the next write timestamp from
/// `first_ts` (the caller reserved one per result); checks each result.
fn requests_of<'a>(results: &'a [BatchResult], first_ts: i64) -> Result<Vec<Request<'a>>> {
    let mut index: HashMap<(&str, &str, JobRange), usize> = HashMap::new();
    let mut open: Vec<Request<'a>> = Vec::new();
    let mut done: Vec<Request<'a>> = Vec::new();
    for (ts, r) in (first_ts..).zip(results) {
        let key = rows::key_map_of(&r.key_names, &r.key).ok_or_else(|| Error::Invalid {
            table: RESULTS,
            message: format!(
                "a result of job `{}` has {} key values for {} key names",
                r.job,
                r.key.len(),
                r.key_names.len()
            ),
        })?;
        let fields = Fields::of(&r.fields);
        let bytes = 96
            + r.tenant.len()
            + r.job.len()
            + r.window.name.len()
            + r.key_names
                .iter()
                .zip(&r.key)
                .map(|(n, v)| 2 * n.len() + v.len())
                .sum::<usize>()
            + Fields::bytes(&r.fields);
        let part = (r.tenant.as_str(), r.job.as_str(), r.range);
        let i = *index.entry(part).or_insert_with(|| {
            open.push(Request::default());
            open.len() - 1
        });
        let request = &mut open[i];
        if !request.rows.is_empty()
            && (request.rows.len() >= MAX_BATCH_ROWS || request.bytes + bytes > MAX_BATCH_BYTES)
        {
            done.push(std::mem::take(request));
        }
        let request = &mut open[i];
        request.bytes += bytes;
        request.rows.push((
            &r.tenant,
            &r.job,
            CqlTimestamp(r.range.from),
            CqlTimestamp(r.range.to),
            &r.window.name,
            CqlTimestamp(r.window.start),
            CqlTimestamp(r.window.end),
            key,
            rows::names(&r.key_names),
            fields.names,
            fields.ints,
            fields.floats,
            fields.texts,
            fields.bools,
            ts,
        ));
    }
    done.extend(open.into_iter().filter(|r| !r.rows.is_empty()));
    Ok(done)
}

/// Rows per page of the store's reads.
const PAGE_SIZE: i32 = 5000;

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::data::{DataField, Value};

    fn result(job: &str, range: JobRange, key: &str, n: i64) -> BatchResult {
        BatchResult {
            tenant: "t".into(),
            job: job.into(),
            range,
            window: OwnedWindow {
                name: "range".into(),
                start: range.from,
                end: range.to,
            },
            key_names: vec!["k".into()],
            key: vec![key.into()],
            fields: vec![DataField {
                name: "n".into(),
                value: Value::Int(n),
            }],
        }
    }

    #[test]
    fn results_are_grouped_by_range_under_the_row_cap_in_write_order() {
        let a = JobRange { from: 0, to: 10 };
        let b = JobRange { from: 10, to: 20 };
        let mut results: Vec<BatchResult> = (0..MAX_BATCH_ROWS + 3)
            .map(|i| result("j", a, &i.to_string(), i as i64))
            .collect();
        results.insert(1, result("j", b, "x", 1));
        let requests = requests_of(&results, 100).expect("valid");
        let shape: Vec<(i64, usize)> = requests
            .iter()
            .map(|r| (r.rows[0].2 .0, r.rows.len()))
            .collect();
        assert_eq!(shape, vec![(0, MAX_BATCH_ROWS), (0, 3), (10, 1)]);
        // One timestamp per result, increasing in the order given.
        let mut stamps: Vec<i64> = requests
            .iter()
            .flat_map(|r| r.rows.iter().map(|row| row.14))
            .collect();
        stamps.sort_unstable();
        assert_eq!(
            stamps,
            (100..100 + results.len() as i64).collect::<Vec<_>>()
        );
        assert_eq!(requests[2].rows[0].14, 101);
    }

    #[test]
    fn a_result_whose_key_values_do_not_match_its_names_is_refused() {
        let mut bad = result("j", JobRange { from: 0, to: 10 }, "x", 1);
        bad.key.push("extra".into());
        let err = requests_of(std::slice::from_ref(&bad), 1)
            .err()
            .expect("refused");
        assert!(
            err.to_string().contains("2 key values for 1 key names"),
            "{err}"
        );
    }
}
