//! Checkpoints in Cassandra, for runs that write there anyway: a host that
//! restarts on another machine finds its state where its results are.
//!
//! Layout (schema migration 2): a pipeline's checkpoints are kept in
//! `keep` *slots*; checkpoint `id` goes to slot `id % keep`, so the newest
//! `keep` are kept and older ones are overwritten in place — never
//! deleted, so no tombstones pile up at one checkpoint a second.
//!
//! - `checkpoint_chunks ((tenant, pipeline, slot), chunk)`: the encoded
//!   checkpoint (the SLCK format of [`Checkpoint::encode`]) cut into
//!   chunks of `chunk_bytes`. A chunk is one insert, so one mutation, well
//!   under half the commit-log segment (Cassandra refuses a larger one;
//!   the default segment is 32 MiB, the default chunk 1 MiB). Every chunk
//!   row names the checkpoint `id` it belongs to.
//! - `checkpoints ((tenant, pipeline), slot)`: the marker — id, chunk
//!   count, length, CRC-32 of the encoded bytes — written only after every
//!   chunk is acknowledged. That is the atomic step: a checkpoint exists
//!   once its marker names it. A crash before it leaves the slot's old
//!   marker, whose chunks now name another id, so it is skipped as
//!   overwritten, and the newest complete checkpoint is another slot's.
//! - On restore, markers are tried newest first; a checkpoint with a
//!   chunk missing, a chunk of another id, a wrong length or checksum, or
//!   that does not decode, is skipped with a warning and the previous one
//!   is used.
//!
//! **Ownership** (partitions of `sluice serve`, schema migration 4): a
//! pipeline that several hosts may run, one at a time, is *claimed*
//! before it is restored ([`CassandraStore::claim`]): a lightweight
//! transaction raises the static `owner_generation` of its `checkpoints`
//! partition by one. From then on the store's markers are written
//! conditionally (`IF owner_generation = <ours>`), so a host that lost the
//! partition — its broker connection gone, the next owner already
//! restoring — can write no further checkpoint: its write fails as
//! [`StoreError::Fenced`]. Each generation writes its own slots
//! (`generation × keep + id % keep`), so a stale owner's chunk writes
//! never touch the slots of the one after it; the older generations'
//! slots are dropped once the new one has written its first checkpoint.
//!
//! Writes and reads are at `LOCAL_QUORUM`, so a restore that sees a marker
//! sees the chunks acknowledged before it. Requests that fail for a reason
//! retrying can fix are retried with backoff for up to `give_up`; the
//! pipeline waits meanwhile (its input is not acknowledged past the last
//! checkpoint).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{StreamExt, TryStreamExt};
use scylla::client::session::Session;
use scylla::errors::ExecutionError;
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::Consistency;

use crate::{self as sink, schema, CassandraConfig};
use sluice_core::retry::Backoff;
use sluice_core::state::{self, failpoint, Checkpoint, CheckpointStore, Restored};

/// Errors of the Cassandra checkpoint store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("invalid checkpoint name `{0}`: 1–256 characters, no control characters")]
    Name(String),
    #[error(
        "checkpoint chunk size {0} B: give {min} B to {max} B (a chunk is one mutation, \
         which Cassandra refuses above half its commit-log segment)",
        min = CassandraStoreOptions::MIN_CHUNK_BYTES,
        max = CassandraStoreOptions::MAX_CHUNK_BYTES
    )]
    ChunkSize(usize),
    #[error("checkpoint id {0} does not fit a CQL bigint")]
    Id(u64),
    #[error("checkpoint {id} needs {chunks} chunks, more than a CQL int counts")]
    TooLarge { id: u64, chunks: usize },
    #[error(transparent)]
    Connect(#[from] sink::Error),
    #[error("preparing `{statement}`: {message}")]
    Prepare {
        statement: &'static str,
        message: String,
    },
    /// Retrying cannot help (the request itself is wrong).
    #[error("{what}: {message}")]
    Failed { what: &'static str, message: String },
    /// Another host claimed the pipeline after this one did.
    #[error(
        "checkpoint {pipeline}: the partition was claimed by another host (generation {now}, \
         this host holds {ours}); not writing"
    )]
    Fenced {
        pipeline: String,
        ours: i64,
        now: i64,
    },
    #[error("{what}: Cassandra did not answer for {after:?}; last error: {last}")]
    GaveUp {
        what: &'static str,
        after: Duration,
        last: String,
    },
}

/// How checkpoints are stored.
#[derive(Debug, Clone)]
pub struct CassandraStoreOptions {
    /// Checkpoints kept (slots); at least 2, so a corrupt newest one still
    /// leaves one to fall back on.
    pub keep: usize,
    /// Bytes per chunk (one mutation each).
    pub chunk_bytes: usize,
    /// Chunk inserts in flight at once: bounds the memory a write takes
    /// beyond the encoded checkpoint (about `concurrency × chunk_bytes`).
    pub concurrency: usize,
    /// Stop retrying a request after this long.
    pub give_up: Duration,
}

impl CassandraStoreOptions {
    pub const DEFAULT_CHUNK_BYTES: usize = 1 << 20;
    pub const MIN_CHUNK_BYTES: usize = 1 << 10;
    /// Half the smallest commit-log segment an operator is likely to set
    /// (16 MiB), so a chunk is accepted even then.
    pub const MAX_CHUNK_BYTES: usize = 8 << 20;
}

impl Default for CassandraStoreOptions {
    fn default() -> Self {
        CassandraStoreOptions {
            keep: 3,
            chunk_bytes: Self::DEFAULT_CHUNK_BYTES,
            concurrency: 4,
            give_up: Duration::from_secs(300),
        }
    }
}

/// The prepared statements, one per request the store makes.
struct Statements {
    insert_chunk: PreparedStatement,
    insert_marker: PreparedStatement,
    mark_acked: PreparedStatement,
    select_markers: PreparedStatement,
    select_slot_chunks: PreparedStatement,
    select_chunks: PreparedStatement,
    select_first_chunk: PreparedStatement,
    trim_chunks: PreparedStatement,
    select_owner: PreparedStatement,
    claim_first: PreparedStatement,
    claim_next: PreparedStatement,
    fenced_marker: PreparedStatement,
    drop_markers_below: PreparedStatement,
    drop_slot: PreparedStatement,
}

/// A pipeline's checkpoints in Cassandra; see the module docs.
pub struct CassandraStore {
    session: Arc<Session>,
    runtime: tokio::runtime::Handle,
    keyspace: String,
    tenant: String,
    pipeline: String,
    slots: i32,
    chunk_bytes: usize,
    concurrency: usize,
    give_up: Duration,
    statements: Statements,
    /// Whether this store has cut its first slot back yet: the first write
    /// after a start also drops chunks a torn write of an earlier run may
    /// have left beyond the new checkpoint's end.
    trimmed_once: AtomicBool,
    /// The ownership generation claimed ([`CassandraStore::claim`]): its
    /// markers are written only while it is still the owner's.
    generation: Option<i64>,
    /// Whether the older generations' slots were dropped.
    dropped_older: AtomicBool,
    /// Encoded size of the last checkpoint written (for `/metrics`).
    last_bytes: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for CassandraStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CassandraStore")
            .field("keyspace", &self.keyspace)
            .field("tenant", &self.tenant)
            .field("pipeline", &self.pipeline)
            .finish()
    }
}

/// A failed attempt: whether retrying may help, and why.
struct Failure {
    retry: bool,
    message: String,
}

impl Failure {
    fn execution(e: &ExecutionError) -> Failure {
        Failure {
            retry: sink::retryable(e),
            message: e.to_string(),
        }
    }

    /// A failed read (paging, a lost connection): worth another attempt.
    fn transient(e: &dyn std::fmt::Display) -> Failure {
        Failure {
            retry: true,
            message: e.to_string(),
        }
    }

    /// Rows that do not have the expected types: a schema this host does
    /// not know; retrying cannot help.
    fn fatal(e: &dyn std::fmt::Display) -> Failure {
        Failure {
            retry: false,
            message: e.to_string(),
        }
    }
}

/// One slot's marker as read back; every column may be missing (a row
/// made only by `mark_acked`, a foreign write), so all are optional.
type MarkerRow = (
    Option<i32>,
    Option<i64>,
    Option<i32>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
);

/// A marker row with its slot.
type Marker6 = (
    i32,
    Option<i64>,
    Option<i32>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
);

/// A complete-looking marker.
#[derive(Debug, Clone, Copy)]
struct Marker {
    slot: i32,
    id: i64,
    chunks: i32,
    length: i64,
    crc32: i64,
    acked: bool,
}

/// Retries `$attempt` (an expression yielding `Result<T, Failure>`) with
/// backoff until it succeeds, fails for good or `give_up` has passed.
macro_rules! retrying {
    ($store:expr, $what:expr, $attempt:expr) => {{
        let mut backoff = Backoff::new();
        let started = Instant::now();
        loop {
            match $attempt {
                Ok(value) => break Ok(value),
                Err(failure) => {
                    if let Err(e) = $store.failed($what, started, &mut backoff, failure).await {
                        break Err(e);
                    }
                }
            }
        }
    }};
}

impl CassandraStore {
    /// Prepares the store's statements on a session whose keyspace is
    /// already migrated (as `CassandraSink::connect` leaves it).
    /// `pipeline` names this run's checkpoints among the tenant's.
    pub async fn open(
        session: Arc<Session>,
        runtime: tokio::runtime::Handle,
        keyspace: &str,
        tenant: &str,
        pipeline: &str,
        options: &CassandraStoreOptions,
    ) -> Result<CassandraStore, StoreError> {
        if !schema::valid_keyspace(keyspace) {
            return Err(StoreError::Connect(sink::Error::Keyspace(
                keyspace.to_owned(),
            )));
        }
        if !valid_name(pipeline) {
            return Err(StoreError::Name(pipeline.to_owned()));
        }
        if !(CassandraStoreOptions::MIN_CHUNK_BYTES..=CassandraStoreOptions::MAX_CHUNK_BYTES)
            .contains(&options.chunk_bytes)
        {
            return Err(StoreError::ChunkSize(options.chunk_bytes));
        }
        let ks = keyspace;
        let prepare = |statement: &'static str, cql: String, idempotent: bool| {
            let session = Arc::clone(&session);
            async move {
                let mut prepared = session
                    .prepare(cql)
                    .await
                    .map_err(|e| StoreError::Prepare {
                        statement,
                        message: e.to_string(),
                    })?;
                prepared.set_consistency(Consistency::LocalQuorum);
                prepared.set_is_idempotent(idempotent);
                Ok::<_, StoreError>(prepared)
            }
        };
        let mut select_chunks = prepare(
            "select chunks",
            format!(
                "SELECT chunk, id, data FROM {ks}.checkpoint_chunks \
                 WHERE tenant = ? AND pipeline = ? AND slot = ? AND chunk < ?"
            ),
            true,
        )
        .await?;
        // Chunks are large: a few per page keeps a restore's memory at the
        // checkpoint plus a few chunks.
        select_chunks.set_page_size(4);
        let lwt = |mut p: PreparedStatement| {
            p.set_serial_consistency(Some(scylla::statement::SerialConsistency::LocalSerial));
            p.set_is_idempotent(false);
            p
        };
        let select_owner = {
            let mut p = prepare(
                "read the owner",
                format!(
                    "SELECT owner_generation, owner FROM {ks}.checkpoints \
                     WHERE tenant = ? AND pipeline = ? LIMIT 1"
                ),
                true,
            )
            .await?;
            // A linearizable read: sees every claim that was applied.
            p.set_consistency(Consistency::LocalSerial);
            p
        };
        let statements = Statements {
            select_owner,
            claim_first: lwt(prepare(
                "claim a pipeline",
                format!(
                    "UPDATE {ks}.checkpoints SET owner_generation = ?, owner = ? \
                     WHERE tenant = ? AND pipeline = ? IF owner_generation = null"
                ),
                false,
            )
            .await?),
            claim_next: lwt(prepare(
                "claim a pipeline",
                format!(
                    "UPDATE {ks}.checkpoints SET owner_generation = ?, owner = ? \
                     WHERE tenant = ? AND pipeline = ? IF owner_generation = ?"
                ),
                false,
            )
            .await?),
            fenced_marker: lwt(prepare(
                "write a fenced marker",
                format!(
                    "UPDATE {ks}.checkpoints SET id = ?, chunks = ?, length = ?, crc32 = ?, \
                     chunk_bytes = ?, written_at = toTimestamp(now()) \
                     WHERE tenant = ? AND pipeline = ? AND slot = ? IF owner_generation = ?"
                ),
                false,
            )
            .await?),
            drop_markers_below: prepare(
                "drop older markers",
                format!(
                    "DELETE FROM {ks}.checkpoints WHERE tenant = ? AND pipeline = ? AND slot < ?"
                ),
                true,
            )
            .await?,
            drop_slot: prepare(
                "drop a slot",
                format!(
                    "DELETE FROM {ks}.checkpoint_chunks \
                     WHERE tenant = ? AND pipeline = ? AND slot = ?"
                ),
                true,
            )
            .await?,
            insert_chunk: prepare(
                "insert a chunk",
                format!(
                    "INSERT INTO {ks}.checkpoint_chunks (tenant, pipeline, slot, chunk, id, data) \
                     VALUES (?, ?, ?, ?, ?, ?)"
                ),
                true,
            )
            .await?,
            insert_marker: prepare(
                "insert a marker",
                format!(
                    "INSERT INTO {ks}.checkpoints \
                     (tenant, pipeline, slot, id, chunks, length, crc32, chunk_bytes, written_at) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, toTimestamp(now()))"
                ),
                true,
            )
            .await?,
            mark_acked: prepare(
                "mark acked",
                format!(
                    "UPDATE {ks}.checkpoints SET acked_id = ? \
                     WHERE tenant = ? AND pipeline = ? AND slot = ?"
                ),
                true,
            )
            .await?,
            select_markers: prepare(
                "select markers",
                format!(
                    "SELECT slot, id, chunks, length, crc32, acked_id FROM {ks}.checkpoints \
                     WHERE tenant = ? AND pipeline = ?"
                ),
                true,
            )
            .await?,
            select_slot_chunks: prepare(
                "select a slot's chunk count",
                format!(
                    "SELECT chunks FROM {ks}.checkpoints \
                     WHERE tenant = ? AND pipeline = ? AND slot = ?"
                ),
                true,
            )
            .await?,
            select_chunks,
            select_first_chunk: prepare(
                "select a slot's first chunk id",
                format!(
                    "SELECT id FROM {ks}.checkpoint_chunks \
                     WHERE tenant = ? AND pipeline = ? AND slot = ? AND chunk = 0"
                ),
                true,
            )
            .await?,
            trim_chunks: prepare(
                "trim a slot",
                format!(
                    "DELETE FROM {ks}.checkpoint_chunks \
                     WHERE tenant = ? AND pipeline = ? AND slot = ? AND chunk >= ?"
                ),
                true,
            )
            .await?,
        };
        Ok(CassandraStore {
            generation: None,
            dropped_older: AtomicBool::new(false),
            last_bytes: std::sync::atomic::AtomicU64::new(0),
            session,
            runtime,
            keyspace: keyspace.to_owned(),
            tenant: tenant.to_owned(),
            pipeline: pipeline.to_owned(),
            slots: i32::try_from(options.keep.clamp(2, 1000)).unwrap_or(3),
            chunk_bytes: options.chunk_bytes,
            concurrency: options.concurrency.max(1),
            give_up: options.give_up,
            statements,
            trimmed_once: AtomicBool::new(false),
        })
    }

    /// Connects to `config`'s nodes, creates or migrates the schema, and
    /// opens the store (for tools and tests that have no sink).
    pub async fn connect(
        config: &CassandraConfig,
        runtime: tokio::runtime::Handle,
        tenant: &str,
        pipeline: &str,
        options: &CassandraStoreOptions,
    ) -> Result<CassandraStore, StoreError> {
        let session = sink::connect(&config.nodes).await?;
        schema::migrate(&session, &config.keyspace, &config.replication).await?;
        Self::open(
            Arc::new(session),
            runtime,
            &config.keyspace,
            tenant,
            pipeline,
            options,
        )
        .await
    }

    /// The session (for tests and the benchmark).
    pub fn session(&self) -> &Arc<Session> {
        &self.session
    }

    /// The slot checkpoint `id` lives in: `id % keep`, after the slots of
    /// the earlier generations when the pipeline was claimed.
    pub fn slot(&self, id: u64) -> i32 {
        // `slots` is at least 2 and fits an i32, so the remainder does too.
        let within = i64::try_from(id % self.slots.unsigned_abs() as u64).unwrap_or(0);
        let base = self.generation.map_or(0, |g| g * i64::from(self.slots));
        i32::try_from(base + within).unwrap_or(i32::MAX)
    }

    /// Encoded bytes of the last checkpoint this store wrote.
    pub fn last_size(&self) -> u64 {
        self.last_bytes.load(Ordering::Relaxed)
    }

    /// The generation this store writes under, once claimed.
    pub fn generation(&self) -> Option<i64> {
        self.generation
    }

    /// Claims the pipeline for `owner` (a name for logs and
    /// `checkpoints.owner`): the next ownership generation, through a
    /// lightweight transaction, so two hosts never hold the same one. From
    /// now on this store's checkpoints are written only while no later
    /// claim was made. Returns the generation.
    pub fn claim(&mut self, owner: &str) -> Result<i64, StoreError> {
        let generation = self.runtime.clone().block_on(self.claim_async(owner))?;
        self.generation = Some(generation);
        self.dropped_older.store(false, Ordering::Relaxed);
        Ok(generation)
    }

    async fn claim_async(&self, owner: &str) -> Result<i64, StoreError> {
        // A unique name per attempt: after a claim whose outcome was not
        // known (a timeout), the read that follows says whether it was ours.
        static CLAIMS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let me = format!(
            "{owner} #{}.{nanos}.{}",
            std::process::id(),
            CLAIMS.fetch_add(1, Ordering::Relaxed)
        );
        let (tenant, pipeline) = (self.tenant.as_str(), self.pipeline.as_str());
        let what = "claiming a partition";
        let fatal = |e: &dyn std::fmt::Display| StoreError::Failed {
            what,
            message: e.to_string(),
        };
        for _ in 0..100 {
            let current = self
                .execute(what, &self.statements.select_owner, (tenant, pipeline))
                .await?
                .into_rows_result()
                .map_err(|e| fatal(&e))?
                .maybe_first_row::<(Option<i64>, Option<String>)>()
                .map_err(|e| fatal(&e))?;
            let (now, holder) = current.unwrap_or((None, None));
            if let (Some(g), Some(h)) = (now, &holder) {
                if *h == me {
                    return Ok(g);
                }
            }
            let next = now.unwrap_or(0) + 1;
            let attempt = match now {
                None => {
                    self.session
                        .execute_unpaged(
                            &self.statements.claim_first,
                            (next, me.as_str(), tenant, pipeline),
                        )
                        .await
                }
                Some(g) => {
                    self.session
                        .execute_unpaged(
                            &self.statements.claim_next,
                            (next, me.as_str(), tenant, pipeline, g),
                        )
                        .await
                }
            };
            match attempt {
                Ok(result) => {
                    if applied(result).map_err(|e| fatal(&e))? {
                        return Ok(next);
                    }
                    // Another claim came first: read again.
                }
                Err(e) if sink::retryable(&e) => {
                    tracing::warn!(%pipeline, error = %e, "claim: outcome unknown; reading the owner again");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(fatal(&e)),
            }
        }
        Err(StoreError::Failed {
            what,
            message: "100 claims in a row were beaten by other hosts".into(),
        })
    }

    /// Writes `slot`'s marker, conditionally when the pipeline was claimed.
    #[allow(clippy::too_many_arguments)]
    async fn write_marker(
        &self,
        slot: i32,
        id: i64,
        chunks: i32,
        length: i64,
        crc: i64,
        chunk_bytes: i32,
    ) -> Result<(), StoreError> {
        let (tenant, pipeline) = (self.tenant.as_str(), self.pipeline.as_str());
        let Some(generation) = self.generation else {
            self.execute(
                "writing a checkpoint marker",
                &self.statements.insert_marker,
                (tenant, pipeline, slot, id, chunks, length, crc, chunk_bytes),
            )
            .await?;
            return Ok(());
        };
        let what = "writing a checkpoint marker";
        // Retried as a whole: a repeated conditional write of the same
        // values by the owner is harmless.
        let result = self
            .execute(
                what,
                &self.statements.fenced_marker,
                (
                    id,
                    chunks,
                    length,
                    crc,
                    chunk_bytes,
                    tenant,
                    pipeline,
                    slot,
                    generation,
                ),
            )
            .await?;
        let fatal = |e: &dyn std::fmt::Display| StoreError::Failed {
            what,
            message: e.to_string(),
        };
        let rows = result.into_rows_result().map_err(|e| fatal(&e))?;
        let row = rows
            .maybe_first_row::<scylla::value::Row>()
            .map_err(|e| fatal(&e))?;
        let column = |i: usize| {
            row.as_ref()
                .and_then(|r| r.columns.get(i).cloned().flatten())
        };
        match column(0) {
            Some(scylla::value::CqlValue::Boolean(true)) => Ok(()),
            _ => {
                let now = match column(1) {
                    Some(scylla::value::CqlValue::BigInt(g)) => g,
                    _ => 0,
                };
                Err(StoreError::Fenced {
                    pipeline: self.pipeline.clone(),
                    ours: generation,
                    now,
                })
            }
        }
    }

    /// After the first checkpoint of a claimed generation: the slots of
    /// earlier generations (their markers and chunks) are not needed any
    /// more. A failure only leaves them for the next claim to drop.
    async fn drop_older_generations(&self) {
        let Some(generation) = self.generation else {
            return;
        };
        if self.dropped_older.swap(true, Ordering::Relaxed) {
            return;
        }
        let base = i32::try_from(generation * i64::from(self.slots)).unwrap_or(i32::MAX);
        let (tenant, pipeline) = (self.tenant.as_str(), self.pipeline.as_str());
        let old: Vec<i32> = match self.markers().await {
            Ok(rows) => rows
                .into_iter()
                .map(|r| r.0)
                .filter(|s| *s < base)
                .collect(),
            Err(e) => {
                tracing::warn!(%pipeline, error = %e, "listing older checkpoint slots");
                return;
            }
        };
        for slot in &old {
            if let Err(e) = self
                .execute(
                    "dropping a slot",
                    &self.statements.drop_slot,
                    (tenant, pipeline, *slot),
                )
                .await
            {
                tracing::warn!(%pipeline, slot, error = %e, "dropping an older checkpoint slot");
                return;
            }
        }
        if !old.is_empty() {
            if let Err(e) = self
                .execute(
                    "dropping older markers",
                    &self.statements.drop_markers_below,
                    (tenant, pipeline, base),
                )
                .await
            {
                tracing::warn!(%pipeline, error = %e, "dropping older checkpoint markers");
            }
        }
    }

    /// After a failed attempt: waits before the next one, or says why
    /// there will be none.
    async fn failed(
        &self,
        what: &'static str,
        started: Instant,
        backoff: &mut Backoff,
        failure: Failure,
    ) -> Result<(), StoreError> {
        if !failure.retry {
            return Err(StoreError::Failed {
                what,
                message: failure.message,
            });
        }
        if started.elapsed() >= self.give_up {
            return Err(StoreError::GaveUp {
                what,
                after: self.give_up,
                last: failure.message,
            });
        }
        tracing::warn!(
            keyspace = %self.keyspace,
            pipeline = %self.pipeline,
            error = %failure.message,
            "checkpoint store: {what} failed; retrying in {:?}",
            backoff.peek()
        );
        tokio::time::sleep(backoff.advance()).await;
        Ok(())
    }

    async fn execute(
        &self,
        what: &'static str,
        statement: &PreparedStatement,
        values: impl scylla::serialize::row::SerializeRow + Clone,
    ) -> Result<scylla::response::query_result::QueryResult, StoreError> {
        retrying!(
            self,
            what,
            self.session
                .execute_unpaged(statement, values.clone())
                .await
                .map_err(|e| Failure::execution(&e))
        )
    }

    /// Writes the chunks, then the marker; see the module docs.
    async fn write_bytes(&self, id: u64, bytes: &[u8]) -> Result<(), StoreError> {
        let cql_id = i64::try_from(id).map_err(|_| StoreError::Id(id))?;
        let slot = self.slot(id);
        let chunks: Vec<&[u8]> = bytes.chunks(self.chunk_bytes).collect();
        let count = i32::try_from(chunks.len()).map_err(|_| StoreError::TooLarge {
            id,
            chunks: chunks.len(),
        })?;
        let (tenant, pipeline) = (self.tenant.as_str(), self.pipeline.as_str());
        let before = self.slot_chunks(slot).await?;

        let insert = &self.statements.insert_chunk;
        futures_util::stream::iter(chunks.iter().enumerate())
            .map(|(n, data)| {
                // `n < count`, which fits an i32.
                let n = i32::try_from(n).unwrap_or(i32::MAX);
                self.execute(
                    "writing a checkpoint chunk",
                    insert,
                    (tenant, pipeline, slot, n, cql_id, *data),
                )
            })
            .buffer_unordered(self.concurrency)
            .try_for_each(|_| std::future::ready(Ok(())))
            .await?;

        failpoint::hit("after-checkpoint-write-before-rename");
        let crc = i64::from(crc32fast::hash(bytes));
        let length = i64::try_from(bytes.len()).unwrap_or(i64::MAX);
        let chunk_bytes = i32::try_from(self.chunk_bytes).unwrap_or(i32::MAX);
        self.write_marker(slot, cql_id, count, length, crc, chunk_bytes)
            .await?;
        self.drop_older_generations().await;

        // Chunks past the new end (an older, larger checkpoint in this
        // slot, or a torn write of an earlier run) are never read —
        // reads stop at the marker's count — but they hold space: drop
        // them when there may be some. Rarely, so range tombstones stay
        // few.
        let first = !self.trimmed_once.swap(true, Ordering::Relaxed);
        if first || before.is_some_and(|b| b > count) {
            self.execute(
                "trimming a checkpoint slot",
                &self.statements.trim_chunks,
                (tenant, pipeline, slot, count),
            )
            .await?;
        }
        Ok(())
    }

    /// The chunk count of the checkpoint `slot` holds now, if any.
    async fn slot_chunks(&self, slot: i32) -> Result<Option<i32>, StoreError> {
        let what = "reading a checkpoint slot";
        let result = self
            .execute(
                what,
                &self.statements.select_slot_chunks,
                (&self.tenant, &self.pipeline, slot),
            )
            .await?;
        let fatal = |e: &dyn std::fmt::Display| StoreError::Failed {
            what,
            message: e.to_string(),
        };
        let rows = result.into_rows_result().map_err(|e| fatal(&e))?;
        let row = rows
            .maybe_first_row::<(Option<i32>,)>()
            .map_err(|e| fatal(&e))?;
        Ok(row.and_then(|(chunks,)| chunks))
    }

    async fn markers(&self) -> Result<Vec<Marker6>, StoreError> {
        let what = "reading checkpoint markers";
        let result = self
            .execute(
                what,
                &self.statements.select_markers,
                (&self.tenant, &self.pipeline),
            )
            .await?;
        let fatal = |e: &dyn std::fmt::Display| StoreError::Failed {
            what,
            message: e.to_string(),
        };
        let rows = result.into_rows_result().map_err(|e| fatal(&e))?;
        let mut out = Vec::new();
        for row in rows.rows::<MarkerRow>().map_err(|e| fatal(&e))? {
            let row = row.map_err(|e| fatal(&e))?;
            // A claimed partition with no checkpoint yet has its static
            // owner columns only: a row without a slot.
            if let (Some(slot), id, chunks, length, crc32, acked_id) = row {
                out.push((slot, id, chunks, length, crc32, acked_id));
            }
        }
        Ok(out)
    }

    /// The id named by chunk 0 of `slot`, if there is one.
    async fn first_chunk_id(&self, slot: i32) -> Result<Option<i64>, StoreError> {
        let what = "reading a checkpoint chunk";
        let result = self
            .execute(
                what,
                &self.statements.select_first_chunk,
                (&self.tenant, &self.pipeline, slot),
            )
            .await?;
        let fatal = |e: &dyn std::fmt::Display| StoreError::Failed {
            what,
            message: e.to_string(),
        };
        let rows = result.into_rows_result().map_err(|e| fatal(&e))?;
        let row = rows
            .maybe_first_row::<(Option<i64>,)>()
            .map_err(|e| fatal(&e))?;
        Ok(row.and_then(|(id,)| id))
    }

    /// The encoded checkpoint `marker` names, or why it is unusable.
    async fn read_chunks(&self, marker: &Marker) -> Result<Result<Vec<u8>, String>, StoreError> {
        retrying!(
            self,
            "reading checkpoint chunks",
            self.try_read_chunks(marker).await
        )
    }

    async fn try_read_chunks(&self, m: &Marker) -> Result<Result<Vec<u8>, String>, Failure> {
        let mut rows = self
            .session
            .execute_iter(
                self.statements.select_chunks.clone(),
                (&self.tenant, &self.pipeline, m.slot, m.chunks),
            )
            .await
            .map_err(|e| Failure::transient(&e))?
            .rows_stream::<(i32, Option<i64>, Option<Vec<u8>>)>()
            .map_err(|e| Failure::fatal(&e))?;
        // The length comes from the database: reserve at most 64 MiB up
        // front, so a corrupt marker cannot ask for an absurd allocation.
        let reserve = usize::try_from(m.length).unwrap_or(0).min(64 << 20);
        let mut bytes = Vec::with_capacity(reserve);
        let mut next = 0i32;
        while let Some((chunk, id, data)) =
            rows.try_next().await.map_err(|e| Failure::transient(&e))?
        {
            if chunk != next {
                return Ok(Err(format!("chunk {next} of {} is missing", m.chunks)));
            }
            if id != Some(m.id) {
                return Ok(Err(format!(
                    "chunk {chunk} belongs to checkpoint {} (the slot was being overwritten)",
                    id.map_or("?".to_owned(), |i| i.to_string())
                )));
            }
            let Some(data) = data else {
                return Ok(Err(format!("chunk {chunk} has no data")));
            };
            bytes.extend_from_slice(&data);
            if bytes.len() as u64 > m.length.unsigned_abs() {
                return Ok(Err(format!(
                    "longer than the {} bytes its marker names",
                    m.length
                )));
            }
            next += 1;
        }
        if next != m.chunks {
            return Ok(Err(format!("chunk {next} of {} is missing", m.chunks)));
        }
        if bytes.len() as i64 != m.length {
            return Ok(Err(format!(
                "{} bytes, its marker names {}",
                bytes.len(),
                m.length
            )));
        }
        if i64::from(crc32fast::hash(&bytes)) != m.crc32 {
            return Ok(Err("checksum mismatch (a chunk is corrupt)".to_owned()));
        }
        Ok(Ok(bytes))
    }

    async fn latest_async(&self) -> Result<Option<Restored>, StoreError> {
        let mut markers = Vec::new();
        for (slot, id, chunks, length, crc32, acked_id) in self.markers().await? {
            match (id, chunks, length, crc32) {
                (Some(id), Some(chunks), Some(length), Some(crc32)) => markers.push(Marker {
                    slot,
                    id,
                    chunks,
                    length,
                    crc32,
                    acked: acked_id == Some(id),
                }),
                _ => tracing::warn!(
                    pipeline = %self.pipeline,
                    slot,
                    "checkpoint marker without its id, size or checksum skipped"
                ),
            }
        }
        markers.sort_by_key(|m| std::cmp::Reverse(m.id));

        // Checkpoints are written one after the other, so a write that did
        // not complete is the one after the newest marker: say so.
        let newest = markers.first().map_or(0, |m| m.id);
        if let Some(next) = newest.checked_add(1).and_then(|n| u64::try_from(n).ok()) {
            if self.first_chunk_id(self.slot(next)).await? == Some(newest + 1) {
                tracing::warn!(
                    pipeline = %self.pipeline,
                    "checkpoint {next} was not completed (its marker was never written): skipped"
                );
            }
        }

        for marker in &markers {
            let name = format!(
                "{}.checkpoints[{}/{}] id {}",
                self.keyspace, self.tenant, self.pipeline, marker.id
            );
            let reason = match self.read_chunks(marker).await? {
                Ok(bytes) => match Checkpoint::decode(&bytes, &name) {
                    Ok(checkpoint) if checkpoint.id == marker.id.unsigned_abs() => {
                        return Ok(Some(Restored {
                            checkpoint,
                            acked: marker.acked,
                        }))
                    }
                    Ok(checkpoint) => format!("its bytes are checkpoint {}", checkpoint.id),
                    Err(e) => e.to_string(),
                },
                Err(reason) => reason,
            };
            tracing::warn!(
                checkpoint = %name,
                reason = %reason,
                "unusable checkpoint skipped; trying the previous one"
            );
        }
        Ok(None)
    }
}

/// The store's failures as the pipeline carries them: boxed, so the core
/// does not name the driver's errors.
impl From<StoreError> for state::Error {
    fn from(e: StoreError) -> state::Error {
        state::Error::Store {
            store: "Cassandra",
            source: Box::new(e),
        }
    }
}

impl CheckpointStore for CassandraStore {
    fn write(&self, checkpoint: &Checkpoint) -> state::Result<()> {
        let bytes = checkpoint.encode()?;
        self.runtime
            .block_on(self.write_bytes(checkpoint.id, &bytes))
            .map_err(state::Error::from)?;
        self.last_bytes.store(bytes.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    fn mark_acked(&self, id: u64) -> state::Result<()> {
        let cql_id = i64::try_from(id).map_err(|_| StoreError::Id(id))?;
        // The pipeline marks only its newest checkpoint, so the slot holds
        // it; were it overwritten already, `acked_id` would name an id the
        // slot's marker does not, and read as not acked.
        self.runtime
            .block_on(self.execute(
                "marking a checkpoint acked",
                &self.statements.mark_acked,
                (cql_id, &self.tenant, &self.pipeline, self.slot(id)),
            ))
            .map(|_| ())
            .map_err(state::Error::from)
    }

    fn latest(&self) -> state::Result<Option<Restored>> {
        self.runtime
            .block_on(self.latest_async())
            .map_err(state::Error::from)
    }
}

/// Whether a lightweight transaction was applied (its `[applied]` column).
fn applied(
    result: scylla::response::query_result::QueryResult,
) -> Result<bool, Box<dyn std::error::Error + Send + Sync>> {
    let rows = result.into_rows_result()?;
    let row = rows.maybe_first_row::<scylla::value::Row>()?;
    Ok(matches!(
        row.and_then(|r| r.columns.into_iter().next().flatten()),
        Some(scylla::value::CqlValue::Boolean(true))
    ))
}

/// Whether `name` can name a pipeline's checkpoints (it is a bound value,
/// never spliced into a statement; the limits keep it readable in logs).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.chars().count() <= 256 && !name.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(valid_name("bts.csv"));
        assert!(valid_name("queue bts-input"));
        assert!(!valid_name(""));
        assert!(!valid_name("a\nb"));
        assert!(!valid_name(&"x".repeat(257)));
    }
}
