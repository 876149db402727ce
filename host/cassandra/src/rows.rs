//! A batch's results, dead letters and raw events as bound values of the
//! insert statements, grouped by partition into requests: each request is
//! one table's rows of one partition, so it becomes one unlogged batch and
//! one mutation on the server, and it is capped in rows and bytes so that
//! mutation stays far below Cassandra's limit (half a commit-log segment).
//!
//! Values borrow from the batch: nothing is copied twice.

use std::collections::{BTreeMap, HashMap, HashSet};

use scylla::value::{CqlDate, CqlTimestamp};

use sluice_core::data::{DataField, Value};
use sluice_core::parse::{Key, OwnedValue};
use sluice_core::sink::{EventBatch, OutputType, TypedDeadLetter, TypedResult};

/// Most rows in one request (one unlogged batch of one partition).
pub const MAX_BATCH_ROWS: usize = 256;
/// Most bytes (estimated, as serialized) in one request. A Cassandra node
/// refuses a mutation above half its commit-log segment (16 MiB with the
/// default 32 MiB segment); 1 MiB stays far below it whatever the segment.
pub const MAX_BATCH_BYTES: usize = 1 << 20;
/// A dead letter's JSON longer than this is stored in chunks of this size
/// (rows `chunk = 0..chunks` of the same id), so no single value comes
/// near the mutation limit.
pub const CHUNK_BYTES: usize = 256 << 10;

/// The statement a request uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Table {
    WindowedAnalytics,
    GlobalAnalytics,
    Metrics,
    Alerts,
    Events,
    DeadLetters,
}

impl Table {
    pub const ALL: [Table; 6] = [
        Table::WindowedAnalytics,
        Table::GlobalAnalytics,
        Table::Metrics,
        Table::Alerts,
        Table::Events,
        Table::DeadLetters,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Table::WindowedAnalytics => "windowed_analytics",
            Table::GlobalAnalytics => "global_analytics",
            Table::Metrics => "metrics",
            Table::Alerts => "alerts",
            Table::Events => "events",
            Table::DeadLetters => "dead_letters",
        }
    }

    /// The table a result type is stored in.
    pub fn of(ty: OutputType) -> Table {
        match ty {
            OutputType::WindowedAnalytic => Table::WindowedAnalytics,
            OutputType::GlobalAnalytic => Table::GlobalAnalytics,
            OutputType::WindowedMetric | OutputType::GlobalMetric => Table::Metrics,
            OutputType::Alert => Table::Alerts,
        }
    }

    /// The insert statement; every one ends with `USING TIMESTAMP ?` (see
    /// [`Timestamps`](super::Timestamps)).
    pub fn insert(self, keyspace: &str) -> String {
        let (columns, n): (&str, usize) = match self {
            Table::WindowedAnalytics | Table::GlobalAnalytics => (
                "tenant, key, day, window_name, window_start, window_end, key_names, fields, \
                 ints, floats, texts, bools, late_update",
                13,
            ),
            Table::Metrics => (
                "tenant, key, day, metric_type, window_name, window_start, window_end, \
                 key_names, fields, ints, floats, texts, bools, late_update",
                14,
            ),
            Table::Alerts => (
                "tenant, key, day, kind, event_time, key_names, fields, ints, floats, texts, bools",
                11,
            ),
            Table::Events => (
                "tenant, key, day, event_time, source, line, byte_offset, key_names, \
                 ints, floats, texts, bools, times",
                13,
            ),
            Table::DeadLetters => (
                "tenant, day, kind, id, chunk, chunks, body, key, key_names, event_time, \
                 source, line, byte_offset",
                13,
            ),
        };
        let marks = vec!["?"; n].join(", ");
        format!(
            "INSERT INTO {keyspace}.{} ({columns}) VALUES ({marks}) USING TIMESTAMP ?",
            self.name()
        )
    }

    /// The delete of one superseded session's row, for the two tables a
    /// session is stored in (`None` for the others). Bound as
    /// [`WindowDelete`] / [`MetricDelete`]: the write timestamp first, then
    /// the primary key.
    pub fn delete(self, keyspace: &str) -> Option<String> {
        let metric = match self {
            Table::WindowedAnalytics => "",
            Table::Metrics => " AND metric_type = ?",
            _ => return None,
        };
        Some(format!(
            "DELETE FROM {keyspace}.{} USING TIMESTAMP ? WHERE tenant = ? AND key = ? \
             AND day = ?{metric} AND window_name = ? AND window_start = ? AND window_end = ?",
            self.name()
        ))
    }
}

/// Whether a request inserts rows or deletes superseded ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Insert,
    Delete,
}

/// A key as stored: column name → value.
pub type KeyMap<'a> = BTreeMap<&'a str, &'a str>;

/// Typed data fields: the order of names, then one map per type.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Fields<'a> {
    pub names: Vec<&'a str>,
    pub ints: BTreeMap<&'a str, i64>,
    pub floats: BTreeMap<&'a str, f64>,
    pub texts: BTreeMap<&'a str, &'a str>,
    pub bools: BTreeMap<&'a str, bool>,
}

impl<'a> Fields<'a> {
    /// The typed maps of `fields` (shared by every result table).
    pub(crate) fn of(fields: &'a [DataField]) -> Fields<'a> {
        let mut out = Fields::default();
        for f in fields {
            out.names.push(&f.name);
            match &f.value {
                Value::Int(i) => {
                    out.ints.insert(&f.name, *i);
                }
                Value::Float(x) => {
                    out.floats.insert(&f.name, *x);
                }
                Value::Text(t) => {
                    out.texts.insert(&f.name, t);
                }
                Value::Boolean(b) => {
                    out.bools.insert(&f.name, *b);
                }
            }
        }
        out
    }

    /// Estimated serialized size of `fields`, for the request caps.
    pub(crate) fn bytes(fields: &[DataField]) -> usize {
        fields
            .iter()
            .map(|f| {
                2 * f.name.len()
                    + 12
                    + match &f.value {
                        Value::Text(t) => t.len(),
                        _ => 8,
                    }
            })
            .sum()
    }
}

/// windowed_analytics, global_analytics.
pub type WindowRow<'a> = (
    &'a str,
    KeyMap<'a>,
    CqlDate,
    &'a str,
    CqlTimestamp,
    CqlTimestamp,
    Vec<&'a str>,
    Vec<&'a str>,
    BTreeMap<&'a str, i64>,
    BTreeMap<&'a str, f64>,
    BTreeMap<&'a str, &'a str>,
    BTreeMap<&'a str, bool>,
    i32,
    i64,
);

/// metrics.
pub type MetricRow<'a> = (
    &'a str,
    KeyMap<'a>,
    CqlDate,
    &'a str,
    &'a str,
    CqlTimestamp,
    CqlTimestamp,
    Vec<&'a str>,
    Vec<&'a str>,
    BTreeMap<&'a str, i64>,
    BTreeMap<&'a str, f64>,
    BTreeMap<&'a str, &'a str>,
    BTreeMap<&'a str, bool>,
    i32,
    i64,
);

/// alerts.
pub type AlertRow<'a> = (
    &'a str,
    KeyMap<'a>,
    CqlDate,
    &'a str,
    CqlTimestamp,
    Vec<&'a str>,
    Vec<&'a str>,
    BTreeMap<&'a str, i64>,
    BTreeMap<&'a str, f64>,
    BTreeMap<&'a str, &'a str>,
    BTreeMap<&'a str, bool>,
    i64,
);

/// events.
pub type EventRow<'a> = (
    &'a str,
    KeyMap<'a>,
    CqlDate,
    CqlTimestamp,
    &'a str,
    i64,
    i64,
    Vec<&'a str>,
    BTreeMap<&'a str, i64>,
    BTreeMap<&'a str, f64>,
    BTreeMap<&'a str, &'a str>,
    BTreeMap<&'a str, bool>,
    BTreeMap<&'a str, CqlTimestamp>,
    i64,
);

/// dead_letters.
pub type DeadLetterRow<'a> = (
    &'a str,
    CqlDate,
    &'a str,
    &'a str,
    i32,
    i32,
    &'a str,
    Option<KeyMap<'a>>,
    Vec<&'a str>,
    Option<CqlTimestamp>,
    Option<&'a str>,
    Option<i64>,
    Option<i64>,
    i64,
);

/// Delete of a superseded session in windowed_analytics: write timestamp,
/// tenant, key, day, window name, start, end.
pub type WindowDelete<'a> = (
    i64,
    &'a str,
    KeyMap<'a>,
    CqlDate,
    &'a str,
    CqlTimestamp,
    CqlTimestamp,
);

/// Delete of a superseded session in metrics: write timestamp, tenant,
/// key, day, metric type, window name, start, end.
pub type MetricDelete<'a> = (
    i64,
    &'a str,
    KeyMap<'a>,
    CqlDate,
    &'a str,
    &'a str,
    CqlTimestamp,
    CqlTimestamp,
);

/// One request's rows.
pub enum Rows<'a> {
    Window(Vec<WindowRow<'a>>),
    Metric(Vec<MetricRow<'a>>),
    Alert(Vec<AlertRow<'a>>),
    Event(Vec<EventRow<'a>>),
    DeadLetter(Vec<DeadLetterRow<'a>>),
    WindowDelete(Vec<WindowDelete<'a>>),
    MetricDelete(Vec<MetricDelete<'a>>),
}

impl Rows<'_> {
    pub fn len(&self) -> usize {
        match self {
            Rows::Window(r) => r.len(),
            Rows::Metric(r) => r.len(),
            Rows::Alert(r) => r.len(),
            Rows::Event(r) => r.len(),
            Rows::DeadLetter(r) => r.len(),
            Rows::WindowDelete(r) => r.len(),
            Rows::MetricDelete(r) => r.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The rows of one partition of one table (at most [`MAX_BATCH_ROWS`] and
/// about [`MAX_BATCH_BYTES`]): one unlogged batch.
pub struct Request<'a> {
    pub table: Table,
    pub op: Op,
    pub rows: Rows<'a>,
    /// Estimated serialized size, for the in-flight byte budget.
    pub bytes: usize,
}

/// UTC day of a time in ms, as CQL `date` (days since the epoch + 2³¹).
pub fn day(ms: i64) -> CqlDate {
    let days = ms.div_euclid(86_400_000);
    let days = i32::try_from(days).unwrap_or(if days < 0 { i32::MIN } else { i32::MAX });
    CqlDate((i64::from(days) + (1i64 << 31)) as u32)
}

fn key_map<'a>(names: &'a [String], key: Option<&'a Key>) -> KeyMap<'a> {
    let mut map = KeyMap::new();
    if let Some(key) = key {
        for (i, part) in key.parts().enumerate() {
            match names.get(i) {
                Some(name) => map.insert(name.as_str(), part),
                // A key has as many parts as names; never silently merge.
                None => map.insert("?", part),
            };
        }
    }
    map
}

/// A key given as parallel lists of names and values (a batch job's
/// result); `None` when their lengths differ, which would silently merge
/// or drop key parts.
pub(crate) fn key_map_of<'a>(names: &'a [String], values: &'a [String]) -> Option<KeyMap<'a>> {
    (names.len() == values.len()).then(|| {
        names
            .iter()
            .map(String::as_str)
            .zip(values.iter().map(String::as_str))
            .collect()
    })
}

pub(crate) fn names(names: &[String]) -> Vec<&str> {
    names.iter().map(String::as_str).collect()
}

/// A request's partition: table, insert or delete, tenant, joined key, day.
type Part<'a> = (Table, Op, &'a str, &'a str, u32);

/// Accumulates rows by (table, partition) in arrival order and cuts them
/// into requests. Each row gets the next write timestamp, so of two rows
/// with the same primary key in one batch (a window and its late update)
/// the later one wins, as it does across batches.
///
/// A session result that supersedes fired sessions (`replaces`) deletes
/// their rows from windowed_analytics and metrics, both, whichever line
/// carries the bounds (the merged session may have no metric line, or its
/// analytic may be dead-lettered). Why the timestamps make this safe:
///
/// - The delete takes the next timestamp after its result line, so it is
///   newer than every write of the superseded row: that write came earlier
///   in the stream, in this batch (an earlier timestamp of the same
///   sequence) or an earlier one (the sink's clock only moves forward, and
///   a restarted run starts at the wall clock, past the old run's writes).
/// - A replay (crash, redelivery) re-emits the stream from a checkpoint in
///   the same order, so a replayed write of the superseded row is followed
///   again by its delete, with newer timestamps still: the row ends
///   deleted. A replay stopped between the two leaves it, as a stopped run
///   leaves any result unwritten; finishing the replay deletes it.
/// - A replayed delete cannot remove a final row: a session only grows
///   when it absorbs others, so a superseded session's bounds differ from
///   every later session of its key and window (the engine leaves the
///   result's own bounds out of `replaces`, and a bound equal to the
///   result's is skipped here too), and rows are keyed by those bounds.
///
/// The timestamps are wall-clock based, not derived from the data: a host
/// whose clock is behind the previous writer's (another host taking over
/// a partition) could write older timestamps, as it could for inserts.
pub struct Grouper<'a> {
    next_ts: i64,
    /// Partition → index into `open`.
    index: HashMap<Part<'a>, usize>,
    /// Superseded sessions already deleted in this batch: tenant, joined
    /// key, window name, start, end.
    deleted: HashSet<(&'a str, &'a str, &'a str, i64, i64)>,
    open: Vec<Request<'a>>,
    done: Vec<Request<'a>>,
}

impl<'a> Grouper<'a> {
    /// `first_ts`: the write timestamp of the first row (µs); the caller
    /// reserved as many as there are rows.
    pub fn new(first_ts: i64) -> Grouper<'a> {
        Grouper {
            next_ts: first_ts,
            index: HashMap::new(),
            deleted: HashSet::new(),
            open: Vec::new(),
            done: Vec::new(),
        }
    }

    /// How many write timestamps a batch needs (its rows, chunks included).
    pub fn rows_needed(
        results: &[TypedResult],
        dead: &[TypedDeadLetter],
        events: &EventBatch<'_>,
    ) -> usize {
        results
            .iter()
            .map(|r| 1 + 2 * r.replaces.len())
            .sum::<usize>()
            + dead
                .iter()
                .map(|d| d.line.len().div_ceil(CHUNK_BYTES).max(1))
                .sum::<usize>()
            + events.events.len()
    }

    fn ts(&mut self) -> i64 {
        let ts = self.next_ts;
        self.next_ts += 1;
        ts
    }

    /// The open request of a partition, or a new one; a full request is
    /// closed first.
    fn slot(&mut self, part: Part<'a>, bytes: usize) -> &mut Request<'a> {
        if let Some(&i) = self.index.get(&part) {
            let r = &self.open[i];
            if r.rows.len() < MAX_BATCH_ROWS && r.bytes + bytes <= MAX_BATCH_BYTES {
                return &mut self.open[i];
            }
            let empty = Request {
                table: part.0,
                op: part.1,
                rows: empty_rows(part.0, part.1),
                bytes: 0,
            };
            let full = std::mem::replace(&mut self.open[i], empty);
            self.done.push(full);
            return &mut self.open[i];
        }
        self.index.insert(part, self.open.len());
        self.open.push(Request {
            table: part.0,
            op: part.1,
            rows: empty_rows(part.0, part.1),
            bytes: 0,
        });
        let last = self.open.len() - 1;
        &mut self.open[last]
    }

    pub fn result(&mut self, r: &'a TypedResult) {
        let table = Table::of(r.ty);
        let joined = r.key.as_ref().map_or("", Key::as_joined);
        let key = key_map(&r.key_names, r.key.as_ref());
        let fields = Fields::of(&r.fields);
        let bytes = 64
            + r.tenant.len()
            + 2 * joined.len()
            + r.key_names.iter().map(|n| 2 * n.len()).sum::<usize>()
            + Fields::bytes(&r.fields)
            + r.window.as_ref().map_or(0, |w| w.name.len());
        let ts = self.ts();
        let update = i32::try_from(r.update).unwrap_or(i32::MAX);
        match (&r.window, &r.alert) {
            (_, Some((kind, event_time))) => {
                let part = (
                    table,
                    Op::Insert,
                    r.tenant.as_str(),
                    joined,
                    day(*event_time).0,
                );
                let slot = self.slot(part, bytes);
                slot.bytes += bytes;
                if let Rows::Alert(rows) = &mut slot.rows {
                    rows.push((
                        &r.tenant,
                        key,
                        day(*event_time),
                        kind,
                        CqlTimestamp(*event_time),
                        names(&r.key_names),
                        fields.names,
                        fields.ints,
                        fields.floats,
                        fields.texts,
                        fields.bools,
                        ts,
                    ));
                }
            }
            (Some(w), None) => {
                // A global window keeps its start (the key's first event)
                // and emits forever: bucket it by the emission (its end).
                let bucket = match r.ty {
                    OutputType::GlobalAnalytic | OutputType::GlobalMetric => day(w.end),
                    _ => day(w.start),
                };
                let part = (table, Op::Insert, r.tenant.as_str(), joined, bucket.0);
                let slot = self.slot(part, bytes);
                slot.bytes += bytes;
                match &mut slot.rows {
                    Rows::Window(rows) => rows.push((
                        &r.tenant,
                        key,
                        bucket,
                        &w.name,
                        CqlTimestamp(w.start),
                        CqlTimestamp(w.end),
                        names(&r.key_names),
                        fields.names,
                        fields.ints,
                        fields.floats,
                        fields.texts,
                        fields.bools,
                        update,
                        ts,
                    )),
                    Rows::Metric(rows) => rows.push((
                        &r.tenant,
                        key,
                        bucket,
                        r.ty.as_str(),
                        &w.name,
                        CqlTimestamp(w.start),
                        CqlTimestamp(w.end),
                        names(&r.key_names),
                        fields.names,
                        fields.ints,
                        fields.floats,
                        fields.texts,
                        fields.bools,
                        update,
                        ts,
                    )),
                    _ => {}
                }
            }
            // Only alerts lack a window, and they have their kind.
            (None, None) => tracing::warn!(
                tenant = %r.tenant,
                ty = r.ty.as_str(),
                "a result without a window is not stored"
            ),
        }
        self.superseded(r);
    }

    /// Deletes of the fired sessions `r` supersedes, in both tables (see
    /// the type's doc for why their timestamps are safe).
    fn superseded(&mut self, r: &'a TypedResult) {
        let Some(w) = &r.window else { return };
        if r.replaces.is_empty()
            || !matches!(
                r.ty,
                OutputType::WindowedAnalytic | OutputType::WindowedMetric
            )
        {
            return;
        }
        let joined = r.key.as_ref().map_or("", Key::as_joined);
        let bytes = 48
            + r.tenant.len()
            + 2 * joined.len()
            + r.key_names.iter().map(|n| 2 * n.len()).sum::<usize>()
            + w.name.len();
        for &(start, end) in &r.replaces {
            // Its own row, and one already deleted by its other line.
            if (start, end) == (w.start, w.end)
                || !self
                    .deleted
                    .insert((&r.tenant, joined, &w.name, start, end))
            {
                continue;
            }
            let bucket = day(start);
            for table in [Table::WindowedAnalytics, Table::Metrics] {
                let ts = self.ts();
                let key = key_map(&r.key_names, r.key.as_ref());
                let part = (table, Op::Delete, r.tenant.as_str(), joined, bucket.0);
                let slot = self.slot(part, bytes);
                slot.bytes += bytes;
                match &mut slot.rows {
                    Rows::WindowDelete(rows) => rows.push((
                        ts,
                        &r.tenant,
                        key,
                        bucket,
                        &w.name,
                        CqlTimestamp(start),
                        CqlTimestamp(end),
                    )),
                    Rows::MetricDelete(rows) => rows.push((
                        ts,
                        &r.tenant,
                        key,
                        bucket,
                        OutputType::WindowedMetric.as_str(),
                        &w.name,
                        CqlTimestamp(start),
                        CqlTimestamp(end),
                    )),
                    _ => {}
                }
            }
        }
    }

    pub fn dead_letter(&mut self, d: &'a TypedDeadLetter) {
        let day_ms = d.event_time.unwrap_or(0);
        let chunks = split_chunks(&d.line, CHUNK_BYTES);
        let n = i32::try_from(chunks.len()).unwrap_or(i32::MAX);
        for (i, body) in chunks.into_iter().enumerate() {
            let bytes = 96 + d.tenant.len() + d.id.len() + body.len();
            let ts = self.ts();
            let part = (
                Table::DeadLetters,
                Op::Insert,
                d.tenant.as_str(),
                "",
                day(day_ms).0,
            );
            let slot = self.slot(part, bytes);
            slot.bytes += bytes;
            if let Rows::DeadLetter(rows) = &mut slot.rows {
                rows.push((
                    &d.tenant,
                    day(day_ms),
                    d.kind,
                    &d.id,
                    i32::try_from(i).unwrap_or(i32::MAX),
                    n,
                    body,
                    d.key.as_ref().map(|k| key_map(&d.key_names, Some(k))),
                    names(&d.key_names),
                    d.event_time.map(CqlTimestamp),
                    d.position.as_ref().map(|p| p.source.as_str()),
                    d.position.as_ref().map(|p| p.line as i64),
                    d.position.as_ref().map(|p| p.offset as i64),
                    ts,
                ));
            }
        }
    }

    pub fn events(&mut self, batch: &EventBatch<'a>) {
        for e in batch.events {
            let joined = e.key.as_joined();
            let mut ints = BTreeMap::new();
            let mut floats = BTreeMap::new();
            let mut texts = BTreeMap::new();
            let mut bools = BTreeMap::new();
            let mut times = BTreeMap::new();
            let mut bytes = 64 + batch.tenant.len() + 2 * joined.len() + e.position.source.len();
            for (name, value) in batch.columns.iter().zip(e.values) {
                let name = name.as_str();
                bytes += name.len() + 12;
                match value {
                    OwnedValue::Text(t) => {
                        bytes += t.len();
                        texts.insert(name, &**t);
                    }
                    OwnedValue::Int(i) => {
                        ints.insert(name, *i);
                    }
                    OwnedValue::Float(f) => {
                        floats.insert(name, *f);
                    }
                    OwnedValue::Bool(b) => {
                        bools.insert(name, *b);
                    }
                    OwnedValue::Timestamp(t) => {
                        times.insert(name, CqlTimestamp(*t));
                    }
                    OwnedValue::Absent => {}
                }
            }
            let ts = self.ts();
            let part = (
                Table::Events,
                Op::Insert,
                batch.tenant,
                joined,
                day(e.time).0,
            );
            let slot = self.slot(part, bytes);
            slot.bytes += bytes;
            if let Rows::Event(rows) = &mut slot.rows {
                rows.push((
                    batch.tenant,
                    key_map(batch.key_names, Some(e.key)),
                    day(e.time),
                    CqlTimestamp(e.time),
                    &e.position.source,
                    i64::try_from(e.position.line).unwrap_or(i64::MAX),
                    i64::try_from(e.position.offset).unwrap_or(i64::MAX),
                    names(batch.key_names),
                    ints,
                    floats,
                    texts,
                    bools,
                    times,
                    ts,
                ));
            }
        }
    }

    /// Every request, partitions in order of first appearance.
    pub fn finish(mut self) -> Vec<Request<'a>> {
        self.done.extend(self.open);
        self.done
    }
}

fn empty_rows<'a>(table: Table, op: Op) -> Rows<'a> {
    match (op, table) {
        (Op::Delete, Table::Metrics) => return Rows::MetricDelete(Vec::new()),
        (Op::Delete, _) => return Rows::WindowDelete(Vec::new()),
        (Op::Insert, _) => {}
    }
    match table {
        Table::WindowedAnalytics | Table::GlobalAnalytics => Rows::Window(Vec::new()),
        Table::Metrics => Rows::Metric(Vec::new()),
        Table::Alerts => Rows::Alert(Vec::new()),
        Table::Events => Rows::Event(Vec::new()),
        Table::DeadLetters => Rows::DeadLetter(Vec::new()),
    }
}

/// Splits `text` into pieces of at most `max` bytes at character
/// boundaries; an empty text is one empty piece.
pub fn split_chunks(text: &str, max: usize) -> Vec<&str> {
    let max = max.max(4);
    let mut out = Vec::new();
    let mut rest = text;
    while rest.len() > max {
        let mut cut = max;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let (head, tail) = rest.split_at(cut);
        out.push(head);
        rest = tail;
    }
    out.push(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_split_at_char_boundaries_and_rejoin() {
        let text = "aé".repeat(1000);
        let chunks = split_chunks(&text, 7);
        assert!(chunks.len() > 1);
        assert!(chunks.iter().all(|c| c.len() <= 7));
        assert_eq!(chunks.concat(), text);
        assert_eq!(split_chunks("", 7), vec![""]);
    }

    #[test]
    fn day_is_the_utc_day_offset_by_two_to_the_31() {
        assert_eq!(day(0).0, 1 << 31);
        assert_eq!(day(86_399_999).0, 1 << 31);
        assert_eq!(day(86_400_000).0, (1 << 31) + 1);
        assert_eq!(day(-1).0, (1 << 31) - 1);
    }

    #[test]
    fn a_partition_is_cut_into_requests_below_the_row_cap() {
        let key = Key::from_parts(["a", "b"]).expect("no separator");
        let names = vec!["x".to_owned(), "y".to_owned()];
        let columns = vec!["v".to_owned()];
        let pos = sluice_core::sink::RowPos {
            source: "f".into(),
            line: 1,
            offset: 0,
        };
        let values = vec![OwnedValue::Float(1.0)];
        let events: Vec<_> = (0..MAX_BATCH_ROWS + 10)
            .map(|i| sluice_core::sink::Event {
                key: &key,
                time: i as i64,
                values: &values,
                position: &pos,
            })
            .collect();
        let batch = EventBatch {
            tenant: "t",
            key_names: &names,
            columns: &columns,
            events: &events,
        };
        let mut g = Grouper::new(1);
        g.events(&batch);
        let requests = g.finish();
        assert_eq!(requests.len(), 2);
        assert_eq!(requests[0].rows.len(), MAX_BATCH_ROWS);
        assert_eq!(requests[1].rows.len(), 10);
    }
}
