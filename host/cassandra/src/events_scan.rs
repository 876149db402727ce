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

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, Read};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use futures_util::TryStreamExt;
use indicatif::ProgressBar;
use scylla::client::session::Session;
use scylla::errors::{NextRowError, PagerExecutionError};
use scylla::statement::prepared::PreparedStatement;
use scylla::value::{CqlDate, CqlTimestamp};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use crate::rows::day;
use crate::{pager_retryable, row_retryable, schema};
use sluice_core::batch::JobRange;
use sluice_core::data::FieldType;
use sluice_core::ingress::Input;
use sluice_core::manifest::ColumnSpec;
use sluice_core::parse::TimestampFormat;
use sluice_core::retry::Backoff;

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

/// One input column, ready for rendering.
#[derive(Debug)]
struct Column {
    name: String,
    ty: FieldType,
    /// Timestamp columns' format.
    time: Option<TimestampFormat>,
}

/// A scope value, in the column's type.
#[derive(Debug, Clone, PartialEq)]
enum Wanted {
    Text(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Time(i64),
}

/// One scope condition.
#[derive(Debug)]
struct Rule {
    /// Index into the columns.
    column: usize,
    wanted: Wanted,
}

/// A value as stored, borrowed from its row.
#[derive(Debug, Clone, Copy)]
enum Cell<'r> {
    Text(&'r str),
    Int(i64),
    Float(f64),
    Bool(bool),
    Time(i64),
    Absent,
}

fn parse_bool(text: &str) -> Option<bool> {
    if text.eq_ignore_ascii_case("true") {
        Some(true)
    } else if text.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

impl Wanted {
    /// The scope value `text` read as `column` reads a CSV field.
    fn parse(column: &Column, text: &str) -> Result<Wanted, String> {
        match column.ty {
            FieldType::Text => Ok(Wanted::Text(text.to_owned())),
            FieldType::Int => text
                .parse()
                .map(Wanted::Int)
                .map_err(|_| "not an integer".to_owned()),
            FieldType::Float => match text.parse::<f64>() {
                Ok(v) if v.is_finite() => Ok(Wanted::Float(v)),
                _ => Err("not a finite float".to_owned()),
            },
            FieldType::Boolean => parse_bool(text)
                .map(Wanted::Bool)
                .ok_or_else(|| "not a bool (true or false)".to_owned()),
            FieldType::Timestamp => column
                .time
                .as_ref()
                .and_then(|f| f.parse(text.as_bytes()))
                .map(Wanted::Time)
                .ok_or_else(|| {
                    format!(
                        "not a time in the format `{}`",
                        column.time.as_ref().map_or("", TimestampFormat::as_str)
                    )
                }),
        }
    }

    /// Whether a key-map value (a key part's text) is this value.
    fn matches_text(&self, column: &Column, text: &str) -> bool {
        match self {
            Wanted::Text(s) => s == text,
            Wanted::Int(i) => text.parse::<i64>().is_ok_and(|v| v == *i),
            Wanted::Float(f) => text.parse::<f64>().is_ok_and(|v| v == *f),
            Wanted::Bool(b) => parse_bool(text) == Some(*b),
            Wanted::Time(t) => {
                column.time.as_ref().and_then(|f| f.parse(text.as_bytes())) == Some(*t)
            }
        }
    }

    /// Whether a stored value is this value.
    fn matches(&self, cell: Cell<'_>) -> bool {
        match (self, cell) {
            (Wanted::Text(s), Cell::Text(c)) => s == c,
            (Wanted::Int(i), Cell::Int(c)) => *i == c,
            (Wanted::Float(f), Cell::Float(c)) => *f == c,
            (Wanted::Float(f), Cell::Int(c)) => *f == c as f64,
            (Wanted::Bool(b), Cell::Bool(c)) => *b == c,
            (Wanted::Time(t), Cell::Time(c)) => *t == c,
            _ => false,
        }
    }
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

/// A stored event's typed values by column name.
struct Values {
    ints: BTreeMap<String, i64>,
    floats: BTreeMap<String, f64>,
    texts: BTreeMap<String, String>,
    bools: BTreeMap<String, bool>,
    times: BTreeMap<String, CqlTimestamp>,
}

impl Values {
    /// `column`'s value: from the map of its declared type, else from any
    /// map that has it (a column whose type changed since the event was
    /// stored is written as it was stored, and the parser judges it,
    /// rather than silently dropped).
    fn cell(&self, column: &Column) -> Cell<'_> {
        let name = column.name.as_str();
        let text = || self.texts.get(name).map(|t| Cell::Text(t));
        let int = || self.ints.get(name).map(|i| Cell::Int(*i));
        let float = || self.floats.get(name).map(|f| Cell::Float(*f));
        let boolean = || self.bools.get(name).map(|b| Cell::Bool(*b));
        let time = || self.times.get(name).map(|t| Cell::Time(t.0));
        let declared = match column.ty {
            FieldType::Text => text(),
            FieldType::Int => int(),
            FieldType::Float => float(),
            FieldType::Boolean => boolean(),
            FieldType::Timestamp => time(),
        };
        declared
            .or_else(text)
            .or_else(int)
            .or_else(float)
            .or_else(boolean)
            .or_else(time)
            .unwrap_or(Cell::Absent)
    }
}

/// A partition to read, and the scope rules its rows must pass.
#[derive(Debug)]
struct Partition {
    key: BTreeMap<String, String>,
    day: CqlDate,
    /// Indices of the rules on columns that are not key columns.
    row_rules: Vec<usize>,
}

/// Everything the scan's tasks share.
struct Plan {
    session: Arc<Session>,
    keyspace: String,
    tenant: String,
    from: i64,
    to: i64,
    /// First and last UTC day (as CQL `date`) the range meets.
    days: (u32, u32),
    columns: Vec<Column>,
    rules: Vec<Rule>,
    delimiter: u8,
    parallelism: usize,
    list_partitions: PreparedStatement,
    read_partition: PreparedStatement,
    counters: Arc<Counters>,
    progress: Option<ProgressBar>,
}

impl Plan {
    async fn new(
        session: Arc<Session>,
        scan: EventScan,
        progress: Option<ProgressBar>,
    ) -> Result<Plan, Error> {
        if !schema::valid_keyspace(&scan.keyspace) {
            return Err(Error::Keyspace(scan.keyspace));
        }
        let JobRange { from, to } = scan.range;
        if from > to {
            return Err(Error::Range { from, to });
        }
        if scan.columns.is_empty() {
            return Err(Error::NoColumns);
        }
        let mut columns = Vec::with_capacity(scan.columns.len());
        for c in scan.columns {
            let time = match (c.ty, &c.format) {
                (FieldType::Timestamp, Some(f)) => Some(TimestampFormat::new(f).map_err(
                    |message| Error::TimeFormat {
                        column: c.name.clone(),
                        message,
                    },
                )?),
                (FieldType::Timestamp, None) => {
                    return Err(Error::TimeFormat {
                        column: c.name,
                        message: "no format".to_owned(),
                    })
                }
                _ => None,
            };
            columns.push(Column {
                name: c.name,
                ty: c.ty,
                time,
            });
        }
        let mut rules = Vec::with_capacity(scan.scope.len());
        for (name, value) in scan.scope {
            let Some(i) = columns.iter().position(|c| c.name == name) else {
                return Err(Error::ScopeColumn(name));
            };
            let wanted =
                Wanted::parse(&columns[i], &value).map_err(|message| Error::ScopeValue {
                    column: name.clone(),
                    value: value.clone(),
                    message,
                })?;
            rules.push(Rule { column: i, wanted });
        }
        let ks = &scan.keyspace;
        let prepare = |statement: &'static str, cql: String| {
            let session = Arc::clone(&session);
            let keyspace = ks.clone();
            async move {
                let mut prepared = session.prepare(cql).await.map_err(|e| Error::Prepare {
                    keyspace,
                    statement,
                    message: e.to_string(),
                })?;
                prepared.set_is_idempotent(true);
                prepared.set_page_size(PAGE_SIZE);
                Ok::<_, Error>(prepared)
            }
        };
        let list_partitions = prepare(
            "listing partitions",
            format!(
                "SELECT DISTINCT tenant, key, day, token(tenant, key, day) FROM {ks}.events \
                 WHERE token(tenant, key, day) > ? AND token(tenant, key, day) <= ?"
            ),
        )
        .await?;
        let read_partition = prepare(
            "reading a partition",
            format!(
                "SELECT event_time, source, line, ints, floats, texts, bools, times \
                 FROM {ks}.events WHERE tenant = ? AND key = ? AND day = ? \
                 AND event_time >= ? AND event_time < ?"
            ),
        )
        .await?;
        // The days of the first and last instant of [from, to); an empty
        // range has none (the scan then ends at once).
        let days = (day(from).0, day(to.saturating_sub(1)).0);
        Ok(Plan {
            session,
            keyspace: scan.keyspace,
            tenant: scan.tenant,
            from,
            to,
            days,
            columns,
            rules,
            delimiter: scan.delimiter,
            parallelism: scan.parallelism.max(1),
            list_partitions,
            read_partition,
            counters: Arc::new(Counters::default()),
            progress,
        })
    }

    /// The rules a listed partition's rows must pass, or `None` when the
    /// partition is not to be read (another tenant, a day outside the
    /// range, a key the scope excludes).
    fn keep(
        &self,
        tenant: &str,
        key: &BTreeMap<String, String>,
        day: CqlDate,
    ) -> Option<Vec<usize>> {
        if tenant != self.tenant || day.0 < self.days.0 || day.0 > self.days.1 {
            return None;
        }
        let mut row_rules = Vec::new();
        for (i, rule) in self.rules.iter().enumerate() {
            let column = &self.columns[rule.column];
            match key.get(&column.name) {
                Some(text) if rule.wanted.matches_text(column, text) => {}
                Some(_) => return None,
                None => row_rules.push(i),
            }
        }
        Some(row_rules)
    }

    /// What a failure message names: the scan and where it failed.
    fn context(&self, what: &str) -> String {
        format!(
            "scanning the stored events of tenant `{}` in {}.events ({what})",
            self.tenant, self.keyspace
        )
    }
}

/// A partition for messages: its key and UTC day.
fn describe(part: &Partition) -> String {
    let days = i64::from(part.day.0) - (1i64 << 31);
    let date = chrono::DateTime::from_timestamp(days * 86_400, 0)
        .map_or_else(|| days.to_string(), |d| d.format("%Y-%m-%d").to_string());
    let key: Vec<String> = part.key.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("partition {} of {date}", key.join(","))
}

/// What the reader receives.
#[derive(Debug)]
enum Piece {
    Lines(Vec<u8>),
    /// Every range and partition was read to its end.
    End,
    Failed(String),
}

/// Why a task stopped early.
#[derive(Debug)]
enum Stop {
    /// The reader is gone (the pipeline stopped): nothing to report.
    Closed,
    Failed(String),
}

/// A failed attempt: whether retrying may help, and why.
#[derive(Debug)]
struct Failure {
    retry: bool,
    message: String,
}

/// How an attempt ended early: a stop, or a failure that may be retried.
#[derive(Debug)]
enum Interrupt {
    Stop(Stop),
    Failure(Failure),
}

impl Interrupt {
    fn pager(e: &PagerExecutionError) -> Interrupt {
        Interrupt::Failure(Failure {
            retry: pager_retryable(e),
            message: e.to_string(),
        })
    }

    fn row(e: &NextRowError) -> Interrupt {
        Interrupt::Failure(Failure {
            retry: row_retryable(e),
            message: e.to_string(),
        })
    }

    fn fatal(e: &dyn std::fmt::Display) -> Interrupt {
        Interrupt::Failure(Failure {
            retry: false,
            message: e.to_string(),
        })
    }
}

/// Consecutive failures of one listing or partition read.
struct Attempts {
    failures: u32,
    backoff: Backoff,
}

impl Attempts {
    fn new() -> Attempts {
        Attempts {
            failures: 0,
            backoff: Backoff::new(),
        }
    }

    /// A row arrived: the next failure is a first one again.
    fn progress(&mut self) {
        if self.failures > 0 {
            self.failures = 0;
            self.backoff.reset();
        }
    }

    /// Waits before the next attempt, or says why there is none.
    async fn failed(&mut self, plan: &Plan, what: &str, failure: Failure) -> Result<(), Stop> {
        self.failures += 1;
        if !failure.retry {
            return Err(Stop::Failed(format!(
                "{}: {}",
                plan.context(what),
                failure.message
            )));
        }
        if self.failures >= MAX_ATTEMPTS {
            return Err(Stop::Failed(format!(
                "{}: {} (gave up after {} attempts)",
                plan.context(what),
                failure.message,
                self.failures
            )));
        }
        plan.counters.retries.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            keyspace = %plan.keyspace,
            tenant = %plan.tenant,
            error = %failure.message,
            "event scan: {what} failed; resuming in {:?}",
            self.backoff.peek()
        );
        tokio::time::sleep(self.backoff.advance()).await;
        Ok(())
    }
}

/// Runs the scan, then tells the reader how it ended.
async fn coordinate(plan: Arc<Plan>, out: mpsc::Sender<Piece>) {
    let last = match drive(&plan, &out).await {
        Ok(()) => Piece::End,
        Err(Stop::Closed) => return,
        Err(Stop::Failed(message)) => Piece::Failed(message),
    };
    // The reader may be gone; then nobody is waiting for the outcome.
    let _ = out.send(last).await;
}

/// Lists the token ranges' partitions and reads the kept ones, at most
/// `parallelism` at once; returns once every task ended, or at the first
/// failure (dropping the task sets aborts the others).
async fn drive(plan: &Arc<Plan>, out: &mpsc::Sender<Piece>) -> Result<(), Stop> {
    if plan.from >= plan.to {
        return Ok(());
    }
    let ranges = Arc::new(token_ranges(plan.parallelism * RANGES_PER_TASK));
    let next = Arc::new(AtomicUsize::new(0));
    let (parts_tx, mut parts_rx) = mpsc::channel::<Partition>(plan.parallelism * 2);
    let mut listings = JoinSet::new();
    for _ in 0..plan.parallelism.min(ranges.len()) {
        listings.spawn(list(
            Arc::clone(plan),
            Arc::clone(&ranges),
            Arc::clone(&next),
            parts_tx.clone(),
        ));
    }
    drop(parts_tx);
    let permits = Arc::new(Semaphore::new(plan.parallelism));
    let mut reads = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            Some(done) = reads.join_next(), if !reads.is_empty() => ended(done)?,
            Some(done) = listings.join_next(), if !listings.is_empty() => ended(done)?,
            part = parts_rx.recv() => match part {
                Some(part) => {
                    let permit = Arc::clone(&permits)
                        .acquire_owned()
                        .await
                        .map_err(|e| Stop::Failed(plan.context(&e.to_string())))?;
                    reads.spawn(read(Arc::clone(plan), part, out.clone(), permit));
                }
                // Every listing task has ended.
                None => break,
            },
        }
    }
    while let Some(done) = listings.join_next().await {
        ended(done)?;
    }
    while let Some(done) = reads.join_next().await {
        ended(done)?;
    }
    Ok(())
}

/// A task's outcome; a panic is a failure like any other.
fn ended(done: Result<Result<(), Stop>, tokio::task::JoinError>) -> Result<(), Stop> {
    match done {
        Ok(outcome) => outcome,
        Err(e) => Err(Stop::Failed(format!("a scan task ended abnormally: {e}"))),
    }
}

/// The Murmur3 ring `(i64::MIN, i64::MAX]` cut into `n` ranges `(a, b]`
/// (the partitioner never yields `i64::MIN`).
fn token_ranges(n: usize) -> Vec<(i64, i64)> {
    let n = i128::try_from(n.max(1)).unwrap_or(1);
    let lo = i128::from(i64::MIN);
    let span = i128::from(i64::MAX) - lo;
    let at = |i: i128| i64::try_from(lo + span * i / n).unwrap_or(i64::MAX);
    (0..n).map(|i| (at(i), at(i + 1))).collect()
}

/// Lists the partitions of the ranges it takes (until none are left) and
/// hands the kept ones on.
async fn list(
    plan: Arc<Plan>,
    ranges: Arc<Vec<(i64, i64)>>,
    next: Arc<AtomicUsize>,
    parts: mpsc::Sender<Partition>,
) -> Result<(), Stop> {
    while let Some(&(lo, hi)) = ranges.get(next.fetch_add(1, Ordering::Relaxed)) {
        let mut after = lo;
        let mut attempts = Attempts::new();
        loop {
            match list_from(&plan, &mut after, hi, &parts, &mut attempts).await {
                Ok(()) => break,
                Err(Interrupt::Stop(stop)) => return Err(stop),
                Err(Interrupt::Failure(failure)) => {
                    let what = format!("listing the partitions of tokens ({after}, {hi}]");
                    attempts.failed(&plan, &what, failure).await?;
                }
            }
        }
    }
    Ok(())
}

/// One attempt at listing `(after, hi]`; `after` follows the partitions
/// handed on, so a retry resumes behind the last one.
async fn list_from(
    plan: &Plan,
    after: &mut i64,
    hi: i64,
    parts: &mpsc::Sender<Partition>,
    attempts: &mut Attempts,
) -> Result<(), Interrupt> {
    let mut rows = plan
        .session
        .execute_iter(plan.list_partitions.clone(), (*after, hi))
        .await
        .map_err(|e| Interrupt::pager(&e))?
        .rows_stream::<(String, BTreeMap<String, String>, CqlDate, i64)>()
        .map_err(|e| Interrupt::fatal(&e))?;
    while let Some((tenant, key, day, token)) =
        rows.try_next().await.map_err(|e| Interrupt::row(&e))?
    {
        attempts.progress();
        plan.counters.listed.fetch_add(1, Ordering::Relaxed);
        if let Some(row_rules) = plan.keep(&tenant, &key, day) {
            parts
                .send(Partition {
                    key,
                    day,
                    row_rules,
                })
                .await
                .map_err(|_| Interrupt::Stop(Stop::Closed))?;
        }
        *after = token;
    }
    Ok(())
}

/// The clustering key of the last row read: a retry skips up to it.
type Cursor = Option<(i64, String, i64)>;

/// Reads one partition's events of the range into CSV chunks for the
/// reader; holds a permit of the read concurrency while it runs.
async fn read(
    plan: Arc<Plan>,
    part: Partition,
    out: mpsc::Sender<Piece>,
    _permit: OwnedSemaphorePermit,
) -> Result<(), Stop> {
    let mut lines = Lines::new(plan.delimiter);
    let mut cursor: Cursor = None;
    let mut attempts = Attempts::new();
    loop {
        match read_from(&plan, &part, &mut cursor, &mut lines, &out, &mut attempts).await {
            Ok(()) => break,
            Err(Interrupt::Stop(stop)) => return Err(stop),
            Err(Interrupt::Failure(failure)) => {
                attempts.failed(&plan, &describe(&part), failure).await?;
            }
        }
    }
    lines.send(&plan, &out).await?;
    plan.counters.partitions.fetch_add(1, Ordering::Relaxed);
    if let Some(progress) = &plan.progress {
        progress.inc(1);
    }
    Ok(())
}

/// One attempt at reading the partition from `cursor` on.
async fn read_from(
    plan: &Plan,
    part: &Partition,
    cursor: &mut Cursor,
    lines: &mut Lines,
    out: &mpsc::Sender<Piece>,
    attempts: &mut Attempts,
) -> Result<(), Interrupt> {
    let from = cursor.as_ref().map_or(plan.from, |c| c.0);
    let values = (
        plan.tenant.as_str(),
        &part.key,
        part.day,
        CqlTimestamp(from),
        CqlTimestamp(plan.to),
    );
    let mut rows = plan
        .session
        .execute_iter(plan.read_partition.clone(), values)
        .await
        .map_err(|e| Interrupt::pager(&e))?
        .rows_stream::<StoredEvent>()
        .map_err(|e| Interrupt::fatal(&e))?;
    while let Some(row) = rows.try_next().await.map_err(|e| Interrupt::row(&e))? {
        attempts.progress();
        let (time, source, line, ints, floats, texts, bools, times) = row;
        if let Some((t, s, l)) = cursor.as_ref() {
            // Rows come in clustering order; a resumed read starts at the
            // last row's event time and skips what was already written.
            if (time.0, source.as_str(), line) <= (*t, s.as_str(), *l) {
                continue;
            }
        }
        let values = Values {
            ints: ints.unwrap_or_default(),
            floats: floats.unwrap_or_default(),
            texts: texts.unwrap_or_default(),
            bools: bools.unwrap_or_default(),
            times: times.unwrap_or_default(),
        };
        let passes = part
            .row_rules
            .iter()
            .filter_map(|&i| plan.rules.get(i))
            .all(|rule| {
                plan.columns
                    .get(rule.column)
                    .is_some_and(|c| rule.wanted.matches(values.cell(c)))
            });
        if passes {
            lines.push(&plan.columns, &values).map_err(|message| {
                Interrupt::Stop(Stop::Failed(format!(
                    "{}: {message}",
                    plan.context(&describe(part))
                )))
            })?;
        } else {
            plan.counters.filtered.fetch_add(1, Ordering::Relaxed);
        }
        *cursor = Some((time.0, source, line));
        if lines.len() >= CHUNK_BYTES {
            lines.send(plan, out).await.map_err(Interrupt::Stop)?;
        }
    }
    Ok(())
}

/// CSV lines being written for the reader.
struct Lines {
    csv: csv::Writer<Vec<u8>>,
    delimiter: u8,
    rows: u64,
    field: String,
}

impl Lines {
    fn new(delimiter: u8) -> Lines {
        Lines {
            csv: Self::writer(delimiter),
            delimiter,
            rows: 0,
            field: String::new(),
        }
    }

    /// The writer the parser's reader reads back: same delimiter, `\n`
    /// terminated, quotes only where needed (`"` doubled).
    fn writer(delimiter: u8) -> csv::Writer<Vec<u8>> {
        csv::WriterBuilder::new()
            .has_headers(false)
            .delimiter(delimiter)
            .terminator(csv::Terminator::Any(b'\n'))
            .quote_style(csv::QuoteStyle::Necessary)
            .double_quote(true)
            .from_writer(Vec::with_capacity(CHUNK_BYTES + (8 << 10)))
    }

    /// Bytes written so far (the writer's own buffer, at most 8 KiB, not
    /// counted).
    fn len(&self) -> usize {
        self.csv.get_ref().len()
    }

    /// Writes one event as a line of `columns`.
    fn push(&mut self, columns: &[Column], values: &Values) -> Result<(), String> {
        let written = |e: csv::Error| format!("writing a CSV line: {e}");
        for column in columns {
            let cell = values.cell(column);
            self.field.clear();
            let text: &str = match cell {
                Cell::Text(t) => t,
                Cell::Absent => "",
                Cell::Int(i) => {
                    let _ = write!(self.field, "{i}");
                    &self.field
                }
                // Display of an f64 is the shortest text that parses back
                // to the same value.
                Cell::Float(f) => {
                    let _ = write!(self.field, "{f}");
                    &self.field
                }
                Cell::Bool(b) => {
                    if b {
                        "true"
                    } else {
                        "false"
                    }
                }
                Cell::Time(ms) => match &column.time {
                    Some(format) => {
                        if !format.format_into(ms, &mut self.field)
                            || format.parse(self.field.as_bytes()) != Some(ms)
                        {
                            return Err(format!(
                                "column `{}`: the stored time {ms} ms cannot be written in \
                                 the format `{}` so that it reads back the same (`{}`); the \
                                 format is coarser than the stored events",
                                column.name,
                                format.as_str(),
                                self.field
                            ));
                        }
                        &self.field
                    }
                    // A time stored for a column that is no timestamp now.
                    None => {
                        let _ = write!(self.field, "{ms}");
                        &self.field
                    }
                },
            };
            self.csv.write_field(text).map_err(written)?;
        }
        self.csv
            .write_record(std::iter::empty::<&[u8]>())
            .map_err(written)?;
        self.rows += 1;
        Ok(())
    }

    /// Hands the lines written so far to the reader (waiting while its
    /// channel is full) and counts them.
    async fn send(&mut self, plan: &Plan, out: &mpsc::Sender<Piece>) -> Result<(), Stop> {
        if self.rows == 0 {
            return Ok(());
        }
        let csv = std::mem::replace(&mut self.csv, Self::writer(self.delimiter));
        let bytes = csv
            .into_inner()
            .map_err(|e| Stop::Failed(plan.context(&format!("writing CSV: {}", e.error()))))?;
        out.send(Piece::Lines(bytes))
            .await
            .map_err(|_| Stop::Closed)?;
        plan.counters.rows.fetch_add(self.rows, Ordering::Relaxed);
        self.rows = 0;
        Ok(())
    }
}

/// How far the reader is.
#[derive(Debug)]
enum State {
    Open,
    Ended,
    Failed(String),
}

/// The scan as a byte stream: chunks of lines until the scan says it
/// ended; its failure, or a scan that stops without saying so, is an
/// error (repeated on every later read).
struct ScanReader {
    rx: mpsc::Receiver<Piece>,
    chunk: Vec<u8>,
    pos: usize,
    state: State,
    name: String,
}

impl Read for ScanReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.pos < self.chunk.len() {
                let n = buf.len().min(self.chunk.len() - self.pos);
                buf[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
                self.pos += n;
                return Ok(n);
            }
            match &self.state {
                State::Ended => return Ok(0),
                State::Failed(message) => return Err(io::Error::other(message.clone())),
                State::Open => {}
            }
            match self.rx.blocking_recv() {
                Some(Piece::Lines(bytes)) => {
                    self.chunk = bytes;
                    self.pos = 0;
                }
                Some(Piece::End) => self.state = State::Ended,
                Some(Piece::Failed(message)) => self.state = State::Failed(message),
                None => {
                    self.state = State::Failed(format!(
                        "the scan of {} stopped before it finished (its runtime shut down?)",
                        self.name
                    ))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_ranges_cover_the_ring_without_gaps_or_overlaps() {
        for n in [1, 2, 3, 7, 16, 1000] {
            let ranges = token_ranges(n);
            assert_eq!(ranges.len(), n);
            assert_eq!(ranges[0].0, i64::MIN);
            assert_eq!(ranges[n - 1].1, i64::MAX);
            for pair in ranges.windows(2) {
                assert_eq!(pair[0].1, pair[1].0, "{n}: {pair:?}");
                assert!(pair[0].0 < pair[0].1);
            }
        }
    }

    fn column(name: &str, ty: FieldType, format: Option<&str>) -> Column {
        Column {
            name: name.into(),
            ty,
            time: format.map(|f| TimestampFormat::new(f).expect("format")),
        }
    }

    #[test]
    fn scope_values_are_read_like_csv_fields_and_compared_typed() {
        let float = column("v", FieldType::Float, None);
        let wanted = Wanted::parse(&float, "80").expect("a float");
        assert!(wanted.matches(Cell::Float(80.0)));
        assert!(wanted.matches(Cell::Int(80)));
        assert!(!wanted.matches(Cell::Float(80.5)));
        assert!(!wanted.matches(Cell::Absent));
        assert!(Wanted::parse(&float, "NaN").is_err());

        let int = column("id", FieldType::Int, None);
        let wanted = Wanted::parse(&int, "7").expect("an int");
        assert!(wanted.matches_text(&int, "7"));
        assert!(!wanted.matches_text(&int, "07x"));

        let flag = column("on", FieldType::Boolean, None);
        assert!(Wanted::parse(&flag, "TRUE")
            .expect("a bool")
            .matches(Cell::Bool(true)));

        let time = column("t", FieldType::Timestamp, Some("%Y-%m-%d %H:%M:%S UTC"));
        let wanted = Wanted::parse(&time, "2017-02-18 18:28:05 UTC").expect("a time");
        assert!(wanted.matches(Cell::Time(1_487_442_485_000)));
        assert!(Wanted::parse(&time, "yesterday").is_err());
    }

    fn values() -> Values {
        Values {
            ints: BTreeMap::from([("n".to_owned(), -3)]),
            floats: BTreeMap::from([("x".to_owned(), 0.1 + 0.2), ("z".to_owned(), -0.0)]),
            texts: BTreeMap::from([("s".to_owned(), "a,\"b\"".to_owned())]),
            bools: BTreeMap::from([("b".to_owned(), false)]),
            times: BTreeMap::from([("t".to_owned(), CqlTimestamp(1_487_442_485_000))]),
        }
    }

    fn render(columns: &[Column], delimiter: u8, values: &Values) -> Result<String, String> {
        let mut lines = Lines::new(delimiter);
        lines.push(columns, values)?;
        let bytes = lines.csv.into_inner().map_err(|e| e.error().to_string())?;
        String::from_utf8(bytes).map_err(|e| e.to_string())
    }

    #[test]
    fn values_are_written_the_way_the_parser_reads_them() {
        let line = render(
            &[
                column("s", FieldType::Text, None),
                column("n", FieldType::Int, None),
                column("x", FieldType::Float, None),
                column("z", FieldType::Float, None),
                column("b", FieldType::Boolean, None),
                column("t", FieldType::Timestamp, Some("%Y-%m-%d %H:%M:%S UTC")),
                column("missing", FieldType::Text, None),
            ],
            b',',
            &values(),
        )
        .expect("rendered");
        assert_eq!(
            line,
            "\"a,\"\"b\"\"\",-3,0.30000000000000004,-0,false,2017-02-18 18:28:05 UTC,\n"
        );
        let semicolons = render(
            &[
                column("s", FieldType::Text, None),
                column("n", FieldType::Float, None),
            ],
            b';',
            &values(),
        )
        .expect("rendered");
        // The comma needs no quoting with `;`, the quotes still do; an int
        // stored for a float column is written as stored.
        assert_eq!(semicolons, "\"a,\"\"b\"\"\";-3\n");
    }

    #[test]
    fn a_time_the_format_cannot_hold_fails_instead_of_shifting_the_event() {
        let mut v = values();
        v.times
            .insert("t".to_owned(), CqlTimestamp(1_487_442_485_250));
        let err = render(
            &[column(
                "t",
                FieldType::Timestamp,
                Some("%Y-%m-%d %H:%M:%S UTC"),
            )],
            b',',
            &v,
        )
        .expect_err("the milliseconds do not fit");
        assert!(err.contains("coarser than the stored events"), "{err}");
    }
}
