//! Opening the store: the checks on its names and options, and the
//! prepared statements, one per request it makes.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::Consistency;

use super::{valid_name, CassandraStore, CassandraStoreOptions, StoreError};
use crate::{self as sink, schema, CassandraConfig};

/// The prepared statements, one per request the store makes.
pub(super) struct Statements {
    pub(super) insert_chunk: PreparedStatement,
    pub(super) insert_marker: PreparedStatement,
    pub(super) mark_acked: PreparedStatement,
    pub(super) select_markers: PreparedStatement,
    pub(super) select_slot_chunks: PreparedStatement,
    pub(super) select_chunks: PreparedStatement,
    pub(super) select_first_chunk: PreparedStatement,
    pub(super) trim_chunks: PreparedStatement,
    pub(super) select_owner: PreparedStatement,
    pub(super) claim_first: PreparedStatement,
    pub(super) claim_next: PreparedStatement,
    pub(super) fenced_marker: PreparedStatement,
    pub(super) drop_markers_below: PreparedStatement,
    pub(super) drop_slot: PreparedStatement,
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
}
