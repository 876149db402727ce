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
//!
//! This file: the store's errors and options, [`CassandraStore`] and its
//! `CheckpointStore` implementation. `statements.rs`: opening the store,
//! its prepared statements; `write.rs`: writing the chunks, then the
//! marker; `read.rs`: reading the markers and chunks back, newest first,
//! skipping torn and corrupt checkpoints; `claim.rs`: claiming ownership
//! generations, dropping the older ones' slots; `retry.rs`: retrying a
//! request with backoff.

mod claim;

pub use claim::{prepare_owner_read, read_owner};
mod read;
mod retry;
mod statements;
mod write;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use scylla::client::session::Session;

use crate as sink;
use sluice_core::state::{self, Checkpoint, CheckpointStore, Restored};

use statements::Statements;

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

impl CassandraStore {
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
