//! The keyspace and its tables, created by the host when it connects:
//! versioned migrations, each applied once and recorded in
//! `schema_migrations`, every statement idempotent (`IF NOT EXISTS`) so a
//! migration interrupted half-way, or run by two hosts at once, is simply
//! applied again.
//!
//! Layout (every partition key starts with the tenant):
//! - Keys differ between tenants, so a key is a `frozen<map<text, text>>`
//!   (column → value) plus `key_names`, the manifest's key order, so the
//!   JSON comes back with its key in order.
//! - Data fields are typed: `ints` (bigint), `floats` (double), `texts`,
//!   `bools`, each a frozen map by field name, plus `fields`, the names in
//!   the order the function returned them. Frozen, so an overwrite replaces
//!   the value without the tombstone a non-frozen collection leaves.
//! - Results and events are bucketed by UTC day (`day`) so no partition
//!   grows without end: a window by its start (a global window, whose
//!   start stays put, by its end), an alert and an event by their event
//!   time.
//! - Primary keys are deterministic, so writing a result again (a replay, a
//!   late update of the same window) overwrites its row.
//! - Checkpoints (migration 2, used by `state::cassandra`) live in
//!   `checkpoints` (a completion marker per slot) and `checkpoint_chunks`
//!   (the encoded bytes in chunks of one small mutation each).
//! - Batch jobs (migration 3, used by `batch_results`): `batch_results`,
//!   a job's results in one partition per (job, range), keyed by window
//!   and key so a rerun overwrites them; `batch_runs`, one row per
//!   distinct run (job, range, scope) with its trigger, times and counts.
//! - Partition ownership (migration 4, `state::cassandra`): static
//!   `owner_generation` and `owner` in `checkpoints`.

use scylla::client::session::Session;

use super::{Error, Result};

/// One versioned step of the schema. `{ks}` in a statement is replaced by
/// the keyspace name.
struct Migration {
    version: i32,
    description: &'static str,
    statements: &'static [&'static str],
}

/// Tracks applied migrations; created before any migration runs.
const MIGRATIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS {ks}.schema_migrations (
    version int PRIMARY KEY,
    description text,
    applied_at timestamp)";

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "results, alerts, raw events and dead letters",
        statements: &[
            "CREATE TABLE IF NOT EXISTS {ks}.windowed_analytics (
            tenant text, key frozen<map<text, text>>, day date,
            window_name text, window_start timestamp, window_end timestamp,
            key_names frozen<list<text>>, fields frozen<list<text>>,
            ints frozen<map<text, bigint>>, floats frozen<map<text, double>>,
            texts frozen<map<text, text>>, bools frozen<map<text, boolean>>,
            late_update int,
            PRIMARY KEY ((tenant, key, day), window_name, window_start, window_end))",
            "CREATE TABLE IF NOT EXISTS {ks}.global_analytics (
            tenant text, key frozen<map<text, text>>, day date,
            window_name text, window_start timestamp, window_end timestamp,
            key_names frozen<list<text>>, fields frozen<list<text>>,
            ints frozen<map<text, bigint>>, floats frozen<map<text, double>>,
            texts frozen<map<text, text>>, bools frozen<map<text, boolean>>,
            late_update int,
            PRIMARY KEY ((tenant, key, day), window_name, window_start, window_end))",
            "CREATE TABLE IF NOT EXISTS {ks}.metrics (
            tenant text, key frozen<map<text, text>>, day date,
            metric_type text,
            window_name text, window_start timestamp, window_end timestamp,
            key_names frozen<list<text>>, fields frozen<list<text>>,
            ints frozen<map<text, bigint>>, floats frozen<map<text, double>>,
            texts frozen<map<text, text>>, bools frozen<map<text, boolean>>,
            late_update int,
            PRIMARY KEY ((tenant, key, day), metric_type, window_name, window_start, window_end))",
            "CREATE TABLE IF NOT EXISTS {ks}.alerts (
            tenant text, key frozen<map<text, text>>, day date,
            kind text, event_time timestamp,
            key_names frozen<list<text>>, fields frozen<list<text>>,
            ints frozen<map<text, bigint>>, floats frozen<map<text, double>>,
            texts frozen<map<text, text>>, bools frozen<map<text, boolean>>,
            PRIMARY KEY ((tenant, key, day), kind, event_time))",
            "CREATE TABLE IF NOT EXISTS {ks}.events (
            tenant text, key frozen<map<text, text>>, day date,
            event_time timestamp, source text, line bigint,
            byte_offset bigint, key_names frozen<list<text>>,
            ints frozen<map<text, bigint>>, floats frozen<map<text, double>>,
            texts frozen<map<text, text>>, bools frozen<map<text, boolean>>,
            times frozen<map<text, timestamp>>,
            PRIMARY KEY ((tenant, key, day), event_time, source, line))",
            "CREATE TABLE IF NOT EXISTS {ks}.dead_letters (
            tenant text, day date, kind text, id text, chunk int,
            chunks int, body text,
            key frozen<map<text, text>>, key_names frozen<list<text>>,
            event_time timestamp, source text, line bigint, byte_offset bigint,
            PRIMARY KEY ((tenant, day), kind, id, chunk))",
        ],
    },
    Migration {
        version: 2,
        description: "checkpoints: a marker per slot, chunks per slot",
        statements: &[
            // One row per slot (`id % keep`): the checkpoint the slot holds,
            // written only once all its chunks are acknowledged — a checkpoint
            // is complete exactly when its marker names it. Slots are
            // overwritten in place, never deleted, so the partition holds
            // `keep` rows and no tombstones however many checkpoints a run
            // takes (a delete per checkpoint would pile up tombstones that
            // every restore has to scan).
            "CREATE TABLE IF NOT EXISTS {ks}.checkpoints (
            tenant text, pipeline text, slot int,
            id bigint, chunks int, length bigint, crc32 bigint, chunk_bytes int,
            written_at timestamp, acked_id bigint,
            PRIMARY KEY ((tenant, pipeline), slot))",
            // The encoded checkpoint in chunks, a partition per slot so one
            // partition never holds more than one checkpoint. Each chunk row
            // names the checkpoint it belongs to, so a slot overwritten half
            // way is recognised and not mistaken for its old checkpoint.
            "CREATE TABLE IF NOT EXISTS {ks}.checkpoint_chunks (
            tenant text, pipeline text, slot int, chunk int,
            id bigint, data blob,
            PRIMARY KEY ((tenant, pipeline, slot), chunk))",
        ],
    },
    Migration {
        version: 3,
        description: "batch jobs: their results per range, and the runs",
        statements: &[
            // A job run's results: one partition per (job, range), so a
            // rerun over the same range writes the same primary keys and
            // overwrites its rows instead of adding any. Nothing of the run
            // itself (when, by whom) is in this table: that would make the
            // keys differ between runs; `batch_runs` holds it.
            "CREATE TABLE IF NOT EXISTS {ks}.batch_results (
            tenant text, job text, range_from timestamp, range_to timestamp,
            window_name text, window_start timestamp, window_end timestamp,
            key frozen<map<text, text>>, key_names frozen<list<text>>,
            fields frozen<list<text>>,
            ints frozen<map<text, bigint>>, floats frozen<map<text, double>>,
            texts frozen<map<text, text>>, bools frozen<map<text, boolean>>,
            PRIMARY KEY ((tenant, job, range_from, range_to), window_name, window_start, key))",
            // One row per distinct run (job, range, scope): a rerun
            // overwrites it, so operators and triggers see what ran, when,
            // and what it read and produced.
            "CREATE TABLE IF NOT EXISTS {ks}.batch_runs (
            tenant text, job text, range_from timestamp, range_to timestamp,
            scope frozen<map<text, text>>, trigger text,
            started_at timestamp, finished_at timestamp,
            rows_in bigint, results bigint,
            PRIMARY KEY ((tenant, job), range_from, range_to, scope))",
        ],
    },
    Migration {
        version: 4,
        description: "partition ownership: a generation per checkpointed pipeline",
        statements: &[
            // Static, so one lightweight transaction in the partition of a
            // pipeline's markers both claims it and fences their writes.
            "ALTER TABLE {ks}.checkpoints ADD IF NOT EXISTS owner_generation bigint static",
            "ALTER TABLE {ks}.checkpoints ADD IF NOT EXISTS owner text static",
        ],
    },
];

/// The newest schema version this host knows.
pub const SCHEMA_VERSION: i32 = 4;

/// Creates the keyspace (with `replication`, a CQL map literal) and
/// applies every migration not yet recorded.
pub async fn migrate(session: &Session, keyspace: &str, replication: &str) -> Result<()> {
    let ddl = |text: &str| text.replace("{ks}", keyspace);
    run(
        session,
        &format!("CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = {replication}"),
    )
    .await?;
    run(session, &ddl(MIGRATIONS_TABLE)).await?;
    let applied = applied_versions(session, keyspace).await?;
    for migration in MIGRATIONS {
        if applied.contains(&migration.version) {
            continue;
        }
        tracing::info!(
            keyspace,
            version = migration.version,
            description = migration.description,
            "applying a schema migration"
        );
        for statement in migration.statements {
            run(session, &ddl(statement)).await?;
        }
        session
            .query_unpaged(
                ddl(
                    "INSERT INTO {ks}.schema_migrations (version, description, applied_at) \
                     VALUES (?, ?, toTimestamp(now()))",
                ),
                (migration.version, migration.description),
            )
            .await
            .map_err(|e| Error::Schema {
                statement: "recording a migration".into(),
                message: e.to_string(),
            })?;
    }
    session
        .await_schema_agreement()
        .await
        .map_err(|e| Error::Schema {
            statement: "waiting for schema agreement".into(),
            message: e.to_string(),
        })?;
    Ok(())
}

async fn run(session: &Session, statement: &str) -> Result<()> {
    session
        .query_unpaged(statement, &[])
        .await
        .map(|_| ())
        .map_err(|e| Error::Schema {
            statement: first_line(statement),
            message: e.to_string(),
        })
}

async fn applied_versions(session: &Session, keyspace: &str) -> Result<Vec<i32>> {
    let failed = |e: &dyn std::fmt::Display| Error::Schema {
        statement: "reading schema_migrations".into(),
        message: e.to_string(),
    };
    let result = session
        .query_unpaged(
            format!("SELECT version FROM {keyspace}.schema_migrations"),
            &[],
        )
        .await
        .map_err(|e| failed(&e))?;
    let rows = result.into_rows_result().map_err(|e| failed(&e))?;
    let mut versions = Vec::new();
    for row in rows.rows::<(i32,)>().map_err(|e| failed(&e))? {
        versions.push(row.map_err(|e| failed(&e))?.0);
    }
    Ok(versions)
}

fn first_line(statement: &str) -> String {
    statement
        .lines()
        .next()
        .unwrap_or(statement)
        .trim()
        .to_owned()
}

/// Whether `name` is a keyspace name Cassandra accepts unquoted (it is
/// written into statements).
pub fn valid_keyspace(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 48
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
}
