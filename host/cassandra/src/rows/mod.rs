//! A batch's results, dead letters and raw events as bound values of the
//! insert statements, grouped by partition into requests: each request is
//! one table's rows of one partition, so it becomes one unlogged batch and
//! one mutation on the server, and it is capped in rows and bytes so that
//! mutation stays far below Cassandra's limit (half a commit-log segment).
//!
//! Values borrow from the batch: nothing is copied twice.

use std::collections::BTreeMap;

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

mod grouper;

pub use grouper::Grouper;

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
}
