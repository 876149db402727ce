//! A bounded input over a tenant's stored raw events (`events`, written by
//! the stream's Cassandra sink): what a batch job reads when it runs over
//! what the stream already stored.
//!
//! The pipeline reads CSV bytes, so the scan renders each stored event
//! back into a CSV line of the manifest's schema and the pipeline parses it
//! again — a batch run is a run of the stream over a bounded input. Values
//! are written so the parser reads back exactly the stored values: floats
//! in Rust's shortest round-trip form, bools `true`/`false`, ints in
//! decimal, timestamps in the column's strftime format (UTC; a stored time
//! the format cannot hold fails the scan instead of shifting the event),
//! text quoted by the `csv` writer where needed, an absent value as an
//! empty field. Lines carry no header (a caller whose manifest says
//! `header = true` must not let the pipeline skip the first event).
//!
//! How (the partition key is `(tenant, key, day)`, so a tenant's events
//! cannot be listed by the tenant alone):
//! 1. the Murmur3 token ring is split into `parallelism × 4` ranges; each
//!    range's partition keys are listed, paged (`SELECT DISTINCT … WHERE
//!    token(…) > ? AND token(…) <= ?`), and a partition is kept when it is
//!    the tenant's, its day meets the range, and its key agrees with the
//!    scope's key columns;
//! 2. each kept partition's events of the range are read, paged, in
//!    clustering order; scope columns that are not key columns are checked
//!    per row. At most `parallelism` partitions are read at once.
//!
//! Lines come in partition order, each partition in event-time order; the
//! input as a whole is not time-ordered (a batch run holds its watermark
//! until the input ends, so that does not matter).
//!
//! The scan runs on the given tokio runtime and hands chunks of lines to
//! the reader through a bounded channel, so a slow pipeline slows the scan
//! (memory stays at a few pages per partition read plus the channel).
//! A failed page is retried with backoff and resumed after the last row or
//! partition it delivered (no row twice, none lost); a failure retrying
//! cannot fix, or [`MAX_ATTEMPTS`] failures in a row, ends the scan, and
//! the reader returns it as an `io::Error` — the pipeline fails the run
//! with it. The reader ends cleanly only after every range and partition
//! was read to its end: an ended scan is never mistaken for a complete
//! one.

//!
//! This file: what to scan ([`EventScan`]), its errors and counters, and
//! [`start`]. `values.rs`: the columns, a stored event's values and the
//! scope's conditions, compared typed; `plan.rs`: the checked scan and its
//! statements, which partitions to keep; `list.rs`: the scan's tasks and
//! the token-range listing; `read.rs`: partition reads; `attempts.rs`:
//! failures, retries and stops; `lines.rs`: rendering rows into CSV lines;
//! `reader.rs`: the blocking reader.

mod attempts;
mod lines;
mod list;
mod plan;
mod read;
mod reader;
#[cfg(test)]
mod tests;
mod values;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use indicatif::ProgressBar;
use scylla::client::session::Session;
use scylla::value::CqlTimestamp;
use tokio::sync::mpsc;

use sluice_core::batch::JobRange;
use sluice_core::ingress::Input;
use sluice_core::manifest::ColumnSpec;

use list::coordinate;
use plan::Plan;
use reader::{ScanReader, State};

/// Rows (or partition keys) per page.
pub const PAGE_SIZE: i32 = 5000;
/// Token ranges per unit of parallelism: more ranges than readers, so a
/// range full of other tenants' partitions does not hold the scan back.
pub const RANGES_PER_TASK: usize = 4;
/// Bytes of CSV handed to the reader at a time (about).
pub const CHUNK_BYTES: usize = 64 << 10;
/// Failures in a row (without a row read in between) after which a token
/// range or partition read gives up.
pub const MAX_ATTEMPTS: u32 = 8;

/// What to scan.
#[derive(Debug, Clone)]
pub struct EventScan {
    pub keyspace: String,
    pub tenant: String,
    /// Events with `range.from <= event_time < range.to`.
    pub range: JobRange,
    /// Only events whose column has this value (column = value, each
    /// value in the column's CSV spelling: a timestamp in its format).
    pub scope: Vec<(String, String)>,
    /// The CSV columns: order, types, timestamp formats, optional.
    pub columns: Vec<ColumnSpec>,
    /// The manifest's field delimiter.
    pub delimiter: u8,
    /// Partitions read at once (and token-range listings).
    pub parallelism: usize,
}

/// Why a scan cannot start. Failures while it runs come out of the reader.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid keyspace name `{0}`: 1–48 letters, digits or `_`, starting with a letter")]
    Keyspace(String),
    #[error("the range [{from}, {to}) ends before it starts")]
    Range { from: i64, to: i64 },
    #[error("the scan has no columns to write")]
    NoColumns,
    #[error("scope column `{0}` is not a column of the input")]
    ScopeColumn(String),
    #[error("scope `{column} = {value}`: {message}")]
    ScopeValue {
        column: String,
        value: String,
        message: String,
    },
    #[error("timestamp column `{column}`: {message}")]
    TimeFormat { column: String, message: String },
    #[error("preparing the scan of {keyspace}.events ({statement}): {message}")]
    Prepare {
        keyspace: String,
        statement: &'static str,
        message: String,
    },
}

/// What a scan did so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScanStats {
    /// The tenant's partitions (key and day) read to their end.
    pub partitions: u64,
    /// Events handed to the reader as CSV lines.
    pub rows: u64,
    /// Events of scanned partitions left out by a non-key scope column.
    pub filtered: u64,
    /// Partition keys listed, every tenant's (the cost of the listing).
    pub listed: u64,
    /// Failed pages that were retried.
    pub retries: u64,
}

#[derive(Debug, Default)]
struct Counters {
    partitions: AtomicU64,
    rows: AtomicU64,
    filtered: AtomicU64,
    listed: AtomicU64,
    retries: AtomicU64,
}

/// A running scan's counters (cheap to clone; readable from any thread).
#[derive(Debug, Clone)]
pub struct ScanHandle {
    counters: Arc<Counters>,
}

impl ScanHandle {
    pub fn stats(&self) -> ScanStats {
        let c = &self.counters;
        ScanStats {
            partitions: c.partitions.load(Ordering::Relaxed),
            rows: c.rows.load(Ordering::Relaxed),
            filtered: c.filtered.load(Ordering::Relaxed),
            listed: c.listed.load(Ordering::Relaxed),
            retries: c.retries.load(Ordering::Relaxed),
        }
    }
}

/// Starts the scan on `runtime` and returns its input (the name says
/// which keyspace and tenant) and counters. Blocks while the statements
/// are prepared: call it from a plain thread, not from inside `runtime`
/// (async callers use [`start_async`]). `progress`, when given, is
/// advanced by one per partition read.
pub fn start(
    session: Arc<Session>,
    runtime: tokio::runtime::Handle,
    scan: EventScan,
    progress: Option<ProgressBar>,
) -> Result<(Input, ScanHandle), Error> {
    runtime.block_on(start_async(session, scan, progress))
}

/// [`start`] on the current runtime. The returned input's reader blocks
/// on the scan: read it from a plain thread (as the pipeline does).
pub async fn start_async(
    session: Arc<Session>,
    scan: EventScan,
    progress: Option<ProgressBar>,
) -> Result<(Input, ScanHandle), Error> {
    let plan = Arc::new(Plan::new(session, scan, progress).await?);
    let name = format!("{}.events:{}", plan.keyspace, plan.tenant);
    let counters = Arc::clone(&plan.counters);
    let (tx, rx) = mpsc::channel(plan.parallelism * 2 + 2);
    tokio::spawn(coordinate(plan, tx));
    let reader = ScanReader {
        rx,
        chunk: Vec::new(),
        pos: 0,
        state: State::Open,
        name: name.clone(),
    };
    Ok((
        Input::bytes(Box::new(reader), name),
        ScanHandle { counters },
    ))
}

/// A typed map column of `events` (absent when empty).
pub type Map<V> = Option<BTreeMap<String, V>>;

/// An `events` row as the scan selects it (the benchmark's driver-alone
/// read decodes the same).
pub type StoredEvent = (
    CqlTimestamp,
    String,
    i64,
    Map<i64>,
    Map<f64>,
    Map<String>,
    Map<bool>,
    Map<CqlTimestamp>,
);
