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
//! sink's ([`MAX_BATCH_ROWS`](crate::rows::MAX_BATCH_ROWS),
//! [`MAX_BATCH_BYTES`](crate::rows::MAX_BATCH_BYTES): one mutation each, far
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
//!
//! This file: the tables' names, [`BatchRun`], the options and counters,
//! [`BatchResultStore`] (opening it, the blocking methods). `write.rs`:
//! results grouped into capped requests, runs recorded; `read.rs`: results,
//! runs and ranges read back; `retry.rs`: retrying a request with backoff
//! and the error it ends with.

mod read;
mod retry;
mod write;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;

use super::{schema, CassandraConfig, Error, Result, Timestamps};
use sluice_core::batch::{BatchResult, JobRange};

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
}

/// Rows per page of the store's reads.
const PAGE_SIZE: i32 = 5000;
