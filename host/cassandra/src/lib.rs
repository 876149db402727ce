//! The Cassandra sink: results, dead letters and the accepted raw events
//! of a run, written with the `scylla` driver into the tables of
//! [`schema`], which the sink creates (idempotently) when it connects.
//!
//! - **Idempotent**: every row has a deterministic primary key (tenant,
//!   key, day, window name/start/end; alerts by kind and event time; raw
//!   events by event time and position), so writing a result again — a
//!   replay, a redelivery — leaves one row.
//! - **Ordered overwrites**: each row carries a write timestamp from one
//!   monotonic clock per sink ([`Timestamps`]), so a window's late update
//!   overwrites its first emission even when both are in one batch.
//! - **Grouped**: rows are grouped by partition into unlogged batches of
//!   prepared inserts ([`rows`]); a batch of one partition is one mutation
//!   on the server, capped far below the mutation limit; large values
//!   (dead letters, checkpoints later) are chunked.
//! - **Bounded**: at most `max_concurrency` requests and
//!   `max_in_flight_bytes` in flight across all workers; a worker's
//!   [`TableSink::write`] returns only once every row of its batch is
//!   acknowledged, so a slow or absent database slows intake
//!   (backpressure) instead of growing memory.
//! - **Retried**: a failed request is retried with backoff (the input is
//!   not acknowledged meanwhile) until `give_up`; an outage is logged when
//!   it starts, every 10 s while it lasts and when it ends, and counted.

pub mod batch_results;
pub mod events_scan;
mod query;
pub mod rows;
pub mod schema;
pub mod store;

pub use query::{query, QueryFilter};

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::errors::{
    DbError, ExecutionError, NextPageError, NextRowError, PagerExecutionError, RequestAttemptError,
    RequestError,
};
use scylla::statement::batch::{Batch, BatchStatement, BatchType};
use scylla::statement::prepared::PreparedStatement;
use tokio::sync::Semaphore;

use self::rows::{Grouper, Op, Request, Rows, Table};
use sluice_core::retry::Backoff;
use sluice_core::sink::{self, EventBatch, Rendered, TableSink};

/// Result of Cassandra operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors of the Cassandra sink and `sluice query`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid keyspace name `{0}`: 1–48 letters, digits or `_`, starting with a letter")]
    Keyspace(String),
    #[error("invalid replication `{0}`: give a CQL map such as {{'class': 'SimpleStrategy', 'replication_factor': 1}}")]
    Replication(String),
    #[error("cannot connect to Cassandra at {nodes}: {message}")]
    Connect { nodes: String, message: String },
    #[error("creating the schema ({statement}): {message}")]
    Schema { statement: String, message: String },
    #[error("preparing the statements of {table}: {message}")]
    Prepare {
        table: &'static str,
        message: String,
    },
    /// Retrying cannot help (the request itself is wrong).
    #[error("writing to {table} failed: {message}")]
    Write {
        table: &'static str,
        message: String,
    },
    #[error("Cassandra did not accept writes for {after:?}; last error: {last}")]
    GaveUp { after: Duration, last: String },
    #[error("reading {table}: {message}")]
    Read {
        table: &'static str,
        message: String,
    },
    /// A row the caller asked to write cannot be stored as it is.
    #[error("cannot write to {table}: {message}")]
    Invalid {
        table: &'static str,
        message: String,
    },
    /// Reading failed for a reason retrying may fix, until `give_up`.
    #[error("reading {table}: Cassandra did not answer for {after:?}; last error: {last}")]
    ReadGaveUp {
        table: &'static str,
        after: Duration,
        last: String,
    },
}

/// Where and how to write.
#[derive(Debug, Clone)]
pub struct CassandraConfig {
    /// Contact points, `host:port`.
    pub nodes: Vec<String>,
    pub keyspace: String,
    /// Replication of the keyspace when it is created, as a CQL map.
    pub replication: String,
    /// Requests (unlogged batches) in flight at once, all workers together.
    pub max_concurrency: usize,
    /// Estimated bytes in flight at once, all workers together.
    pub max_in_flight_bytes: usize,
    /// Stop retrying a request after Cassandra has refused it this long.
    pub give_up: Duration,
}

impl CassandraConfig {
    pub const DEFAULT_KEYSPACE: &'static str = "sluice";
    pub const DEFAULT_REPLICATION: &'static str =
        "{'class': 'SimpleStrategy', 'replication_factor': 1}";
    pub const DEFAULT_MAX_CONCURRENCY: usize = 64;
    pub const DEFAULT_MAX_IN_FLIGHT_BYTES: usize = 32 << 20;

    /// Defaults for the given contact points.
    pub fn new(nodes: Vec<String>) -> CassandraConfig {
        CassandraConfig {
            nodes,
            keyspace: Self::DEFAULT_KEYSPACE.to_owned(),
            replication: Self::DEFAULT_REPLICATION.to_owned(),
            max_concurrency: Self::DEFAULT_MAX_CONCURRENCY,
            max_in_flight_bytes: Self::DEFAULT_MAX_IN_FLIGHT_BYTES,
            give_up: Duration::from_secs(300),
        }
    }

    fn check(&self) -> Result<()> {
        if !schema::valid_keyspace(&self.keyspace) {
            return Err(Error::Keyspace(self.keyspace.clone()));
        }
        let r = self.replication.trim();
        if !(r.starts_with('{') && r.ends_with('}')) || r.contains(';') {
            return Err(Error::Replication(self.replication.clone()));
        }
        Ok(())
    }
}

/// Connects a session to `nodes` (fails at once when none answers: a run
/// should not start against nothing).
pub async fn connect(nodes: &[String]) -> Result<Session> {
    let profile = ExecutionProfile::builder()
        .request_timeout(Some(Duration::from_secs(20)))
        .build();
    SessionBuilder::new()
        .known_nodes(nodes)
        .connection_timeout(Duration::from_secs(5))
        .default_execution_profile_handle(profile.into_handle())
        .build()
        .await
        .map_err(|e| Error::Connect {
            nodes: nodes.join(","),
            message: e.to_string(),
        })
}

/// What the sink did, for the run's summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SinkStats {
    /// Rows acknowledged by Cassandra (chunks of a dead letter count each).
    pub rows: u64,
    /// Requests (unlogged batches or single inserts) acknowledged.
    pub requests: u64,
    /// Failed attempts that were retried.
    pub retries: u64,
    /// Periods during which writes failed (each logged when it began).
    pub outages: u64,
}

/// Write timestamps (µs since the epoch): never behind the wall clock, and
/// strictly increasing across every row this sink writes, so the later of
/// two writes of a primary key wins.
#[derive(Debug, Default)]
pub struct Timestamps {
    last: AtomicI64,
}

impl Timestamps {
    /// Reserves `n` consecutive timestamps; returns the first.
    pub fn reserve(&self, n: usize) -> i64 {
        let n = i64::try_from(n.max(1)).unwrap_or(i64::MAX / 4);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX / 2));
        let mut last = self.last.load(Ordering::Relaxed);
        loop {
            let first = now.max(last + 1);
            match self.last.compare_exchange_weak(
                last,
                first + n - 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return first,
                Err(seen) => last = seen,
            }
        }
    }
}

/// Failure bookkeeping shared by every request of the sink.
#[derive(Debug, Default)]
struct Outage {
    /// When the current outage began, and when it was last logged.
    since: Option<(Instant, Instant)>,
}

/// Writes a run's rows to Cassandra; shared by all workers.
pub struct CassandraSink {
    session: Arc<Session>,
    runtime: tokio::runtime::Handle,
    keyspace: String,
    inserts: Vec<(Table, PreparedStatement)>,
    /// Deletes of superseded sessions (windowed_analytics, metrics).
    deletes: Vec<(Table, PreparedStatement)>,
    concurrency: Semaphore,
    /// In-flight budget in KiB units (a semaphore counts permits in u32).
    bytes: Semaphore,
    bytes_units: u32,
    give_up: Duration,
    timestamps: Timestamps,
    outage: Mutex<Outage>,
    rows: AtomicU64,
    requests: AtomicU64,
    retries: AtomicU64,
    outages: AtomicU64,
}

impl std::fmt::Debug for CassandraSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CassandraSink")
            .field("keyspace", &self.keyspace)
            .finish()
    }
}

impl CassandraSink {
    /// Connects, creates or migrates the schema and prepares the inserts.
    pub async fn connect(
        config: CassandraConfig,
        runtime: tokio::runtime::Handle,
    ) -> Result<CassandraSink> {
        config.check()?;
        let session = connect(&config.nodes).await?;
        schema::migrate(&session, &config.keyspace, &config.replication).await?;
        let mut inserts = Vec::new();
        for table in Table::ALL {
            let mut prepared = session
                .prepare(table.insert(&config.keyspace))
                .await
                .map_err(|e| Error::Prepare {
                    table: table.name(),
                    message: e.to_string(),
                })?;
            prepared.set_is_idempotent(true);
            inserts.push((table, prepared));
        }
        let mut deletes = Vec::new();
        for table in Table::ALL {
            let Some(statement) = table.delete(&config.keyspace) else {
                continue;
            };
            let mut prepared = session
                .prepare(statement)
                .await
                .map_err(|e| Error::Prepare {
                    table: table.name(),
                    message: e.to_string(),
                })?;
            prepared.set_is_idempotent(true);
            deletes.push((table, prepared));
        }
        let bytes_units =
            u32::try_from((config.max_in_flight_bytes >> 10).max(64)).unwrap_or(u32::MAX >> 4);
        Ok(CassandraSink {
            session: Arc::new(session),
            runtime,
            keyspace: config.keyspace,
            inserts,
            deletes,
            concurrency: Semaphore::new(config.max_concurrency.max(1)),
            bytes: Semaphore::new(bytes_units as usize),
            bytes_units,
            give_up: config.give_up,
            timestamps: Timestamps::default(),
            outage: Mutex::new(Outage::default()),
            rows: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            outages: AtomicU64::new(0),
        })
    }

    /// The session (for tests and the benchmark).
    pub fn session(&self) -> &Arc<Session> {
        &self.session
    }

    pub fn keyspace(&self) -> &str {
        &self.keyspace
    }

    /// The prepared insert of `table`.
    pub fn insert(&self, table: Table) -> Option<&PreparedStatement> {
        self.inserts
            .iter()
            .find(|(t, _)| *t == table)
            .map(|(_, p)| p)
    }

    /// The prepared statement of a request: `table`'s insert or delete.
    fn statement(&self, table: Table, op: Op) -> Option<&PreparedStatement> {
        match op {
            Op::Insert => self.insert(table),
            Op::Delete => self
                .deletes
                .iter()
                .find(|(t, _)| *t == table)
                .map(|(_, p)| p),
        }
    }

    pub fn stats(&self) -> SinkStats {
        SinkStats {
            rows: self.rows.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            outages: self.outages.load(Ordering::Relaxed),
        }
    }

    /// Writes every row of a batch; returns once Cassandra acknowledged all.
    pub async fn write_async(
        &self,
        results: &Rendered,
        dead_letters: &Rendered,
        events: &EventBatch<'_>,
    ) -> Result<()> {
        let results_rows = results.typed_results();
        let dead_rows = dead_letters.typed_dead_letters();
        let n = Grouper::rows_needed(results_rows, dead_rows, events);
        if n == 0 {
            return Ok(());
        }
        let mut grouper = Grouper::new(self.timestamps.reserve(n));
        for r in results_rows {
            grouper.result(r);
        }
        for d in dead_rows {
            grouper.dead_letter(d);
        }
        grouper.events(events);
        let requests = grouper.finish();
        let outcomes = futures_util::future::join_all(requests.iter().map(|r| self.send(r))).await;
        outcomes.into_iter().collect()
    }

    /// Sends one request, retrying with backoff until it is acknowledged,
    /// the error is one retrying cannot fix, or `give_up` has passed.
    async fn send(&self, request: &Request<'_>) -> Result<()> {
        let started = Instant::now();
        let mut backoff = Backoff::new();
        let units = u32::try_from(request.bytes.div_ceil(1024).max(1))
            .unwrap_or(u32::MAX)
            .min(self.bytes_units);
        loop {
            let attempt = {
                // Closed semaphores are never closed here; a failure to
                // acquire would only mean running unbounded, so proceed.
                let _slot = self.concurrency.acquire().await.ok();
                let _bytes = self.bytes.acquire_many(units).await.ok();
                self.execute(request).await
            };
            match attempt {
                Ok(()) => {
                    self.rows
                        .fetch_add(request.rows.len() as u64, Ordering::Relaxed);
                    self.requests.fetch_add(1, Ordering::Relaxed);
                    self.recovered();
                    return Ok(());
                }
                Err(e) if !retryable(&e) => {
                    return Err(Error::Write {
                        table: request.table.name(),
                        message: e.to_string(),
                    })
                }
                Err(e) if started.elapsed() >= self.give_up => {
                    return Err(Error::GaveUp {
                        after: self.give_up,
                        last: e.to_string(),
                    })
                }
                Err(e) => {
                    self.retries.fetch_add(1, Ordering::Relaxed);
                    self.failed(request.table, &e, backoff.peek());
                    tokio::time::sleep(backoff.advance()).await;
                }
            }
        }
    }

    async fn execute(&self, request: &Request<'_>) -> std::result::Result<(), ExecutionError> {
        let Some(prepared) = self.statement(request.table, request.op) else {
            return Err(ExecutionError::EmptyPlan);
        };
        macro_rules! send {
            ($rows:expr) => {
                if let [row] = $rows.as_slice() {
                    self.session
                        .execute_unpaged(prepared, row)
                        .await
                        .map(|_| ())
                } else {
                    let mut batch = Batch::new_with_statements(
                        BatchType::Unlogged,
                        vec![BatchStatement::PreparedStatement(prepared.clone()); $rows.len()],
                    );
                    batch.set_is_idempotent(true);
                    self.session.batch(&batch, $rows).await.map(|_| ())
                }
            };
        }
        match &request.rows {
            Rows::Window(rows) => send!(rows),
            Rows::Metric(rows) => send!(rows),
            Rows::Alert(rows) => send!(rows),
            Rows::Event(rows) => send!(rows),
            Rows::DeadLetter(rows) => send!(rows),
            Rows::WindowDelete(rows) => send!(rows),
            Rows::MetricDelete(rows) => send!(rows),
        }
    }

    fn failed(&self, table: Table, e: &ExecutionError, retry_in: Duration) {
        let Ok(mut outage) = self.outage.lock() else {
            return;
        };
        let now = Instant::now();
        match &mut outage.since {
            None => {
                outage.since = Some((now, now));
                self.outages.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    keyspace = %self.keyspace,
                    table = table.name(),
                    error = %e,
                    "Cassandra write failed; retrying with backoff (retry in {retry_in:?}); \
                     the input is not acknowledged meanwhile"
                );
            }
            Some((since, logged)) if now.duration_since(*logged) >= Duration::from_secs(10) => {
                *logged = now;
                tracing::warn!(
                    keyspace = %self.keyspace,
                    error = %e,
                    "Cassandra still refuses writes after {:.0} s ({} retries so far); \
                     intake is held back",
                    now.duration_since(*since).as_secs_f64(),
                    self.retries.load(Ordering::Relaxed)
                );
            }
            Some(_) => {}
        }
    }

    fn recovered(&self) {
        let Ok(mut outage) = self.outage.lock() else {
            return;
        };
        if let Some((since, _)) = outage.since.take() {
            tracing::warn!(
                keyspace = %self.keyspace,
                "Cassandra accepts writes again after {:.1} s",
                since.elapsed().as_secs_f64()
            );
        }
    }
}

impl TableSink for CassandraSink {
    fn write(
        &self,
        results: &Rendered,
        dead_letters: &Rendered,
        events: &EventBatch<'_>,
    ) -> sink::Result<()> {
        self.runtime
            .block_on(self.write_async(results, dead_letters, events))
            .map_err(|e| sink::Error::Store {
                sink: "Cassandra",
                source: Box::new(e),
            })
    }
}

/// Whether retrying may help: not when the request itself is wrong.
pub(crate) fn retryable(e: &ExecutionError) -> bool {
    match e {
        ExecutionError::BadQuery(_) => false,
        ExecutionError::LastAttemptError(attempt) => attempt_retryable(attempt),
        _ => true,
    }
}

/// Whether a failed attempt may succeed when sent again.
fn attempt_retryable(attempt: &RequestAttemptError) -> bool {
    match attempt {
        RequestAttemptError::SerializationError(_)
        | RequestAttemptError::CqlRequestSerialization(_) => false,
        RequestAttemptError::DbError(db, _) => !matches!(
            db,
            DbError::SyntaxError
                | DbError::Invalid
                | DbError::Unauthorized
                | DbError::ConfigError
                | DbError::AlreadyExists { .. }
                | DbError::FunctionFailure { .. }
        ),
        _ => true,
    }
}

/// Whether a paged read that failed to start may succeed when started
/// again: not when the statement or its values are wrong.
pub(crate) fn pager_retryable(e: &PagerExecutionError) -> bool {
    match e {
        PagerExecutionError::PrepareError(_) | PagerExecutionError::SerializationError(_) => false,
        PagerExecutionError::NextPageError(page) => page_retryable(page),
        _ => true,
    }
}

/// Whether a paged read that failed mid-way may succeed when resumed: a
/// lost connection or a timeout may, rows of unexpected types never do.
pub(crate) fn row_retryable(e: &NextRowError) -> bool {
    match e {
        NextRowError::NextPageError(page) => page_retryable(page),
        _ => false,
    }
}

fn page_retryable(e: &NextPageError) -> bool {
    match e {
        NextPageError::RequestFailure(RequestError::LastAttemptError(attempt)) => {
            attempt_retryable(attempt)
        }
        NextPageError::RequestFailure(_) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_never_repeat_and_never_go_back() {
        let ts = Timestamps::default();
        let a = ts.reserve(1000);
        let b = ts.reserve(1);
        let c = ts.reserve(5);
        assert!(b >= a + 1000, "{a} {b}");
        assert!(c > b);
    }

    #[test]
    fn invalid_requests_are_not_retried_but_lost_connections_are() {
        let invalid = ExecutionError::LastAttemptError(RequestAttemptError::DbError(
            DbError::Invalid,
            "mutation too large".into(),
        ));
        assert!(!retryable(&invalid));
        let overloaded = ExecutionError::LastAttemptError(RequestAttemptError::DbError(
            DbError::Overloaded,
            "busy".into(),
        ));
        assert!(retryable(&overloaded));
        assert!(retryable(&ExecutionError::RequestTimeout(
            Duration::from_secs(1)
        )));
    }

    #[test]
    fn keyspace_and_replication_are_checked_before_they_reach_a_statement() {
        let mut config = CassandraConfig::new(vec!["127.0.0.1:9042".into()]);
        assert!(config.check().is_ok());
        config.keyspace = "x; DROP".into();
        assert!(matches!(config.check(), Err(Error::Keyspace(_))));
        config.keyspace = "sluice".into();
        config.replication = "{'class': 'SimpleStrategy'}; DROP".into();
        assert!(matches!(config.check(), Err(Error::Replication(_))));
    }
}
