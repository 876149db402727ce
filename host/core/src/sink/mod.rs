//! Sinks: where results and dead letters go. The embedded mode writes JSON
//! lines — one result object per line to the output, one dead letter per
//! line to the dead-letter sink.
//!
//! Lines are rendered here, by the shard workers, into plain strings, and
//! only the finished text crosses to the writer: serialising is per-shard
//! work that spreads over the cores, writing is one `write_all` per batch,
//! or per [`SPILL_BYTES`] of a batch's results when only line sinks are
//! attached ([`Sinks::spill`]). A worker's lines keep their order; lines of
//! different workers (and the coordinator's) interleave in whole lines.
//!
//! The result shape is fixed by the product (`{"tenant", "type", "window",
//! "key", "data"}`): keys in the manifest's key order with string values,
//! counts as JSON integers and measurements as floats that always carry a
//! decimal point or an exponent (`241.0`, never `241`), so a consumer can
//! tell a count from a measurement without a schema. Non-finite floats
//! become `null` (JSON has no NaN).
//!
//! Besides the line writers a run may have a message sink (a broker: one
//! message per line) and a table sink (Cassandra: typed rows of results,
//! dead letters and the raw events). Both confirm synchronously: a batch's
//! input is acknowledged only after every sink has it.

mod json;
mod line_sink;
mod packed;
mod rendered;
#[cfg(test)]
mod tests;
mod typed;

pub use line_sink::LineSink;
pub use packed::{Packed, MAX_PACKED};
pub use rendered::{message_id, routing_key, Rendered, Route};
pub use typed::{Event, EventBatch, OwnedWindow, RowPos, TypedDeadLetter, TypedResult};

use std::sync::Arc;

use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde::Serialize;

use crate::data::{DataField, Value};
use crate::parse::{BadRow, Key, OwnedValue, ParsedRow};

/// Result of sink operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors of writing to a sink.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The underlying writer failed (disk full, closed pipe).
    #[error("writing to the {sink} sink: {source}")]
    Write {
        sink: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// A writer's lock was poisoned by a panicking thread.
    #[error("the {0} sink is unusable: a thread panicked while writing to it")]
    Poisoned(&'static str),
    /// A message sink could not get its messages confirmed (it retries
    /// across reconnects first; this is after it gave up).
    #[error("publishing to the {sink} sink: {source}")]
    Publish {
        sink: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A table sink could not get a batch stored (it retries with backoff
    /// first; this is after it gave up).
    #[error("storing to the {sink} sink: {source}")]
    Store {
        sink: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// The two streams a run produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Results,
    DeadLetters,
}

/// A sink that sends each rendered line as its own message (a broker).
/// `publish` returns only once every message of the batch is confirmed:
/// the input is acknowledged after that, never before.
pub trait MessageSink: Send + Sync {
    fn publish(&self, stream: Stream, batch: &Rendered) -> Result<()>;
}

/// A sink that stores typed rows (a database). `write` returns only once
/// the store has acknowledged every row of the batch — results, dead
/// letters and raw events — retrying meanwhile: that wait is the
/// backpressure that slows intake when the store is slow or away.
pub trait TableSink: Send + Sync {
    fn write(
        &self,
        results: &Rendered,
        dead_letters: &Rendered,
        events: &EventBatch<'_>,
    ) -> Result<()>;
}

/// Where a run's results and dead letters go: line writers always (a file,
/// stdout, or nothing), a message sink when a broker is attached, a table
/// sink when a database is.
#[derive(Clone)]
pub struct Sinks {
    pub output: LineSink,
    pub dead_letter: LineSink,
    pub messages: Option<Arc<dyn MessageSink>>,
    pub tables: Option<Arc<dyn TableSink>>,
    /// Also hand the raw events (every parsed row) to the table sink.
    pub store_events: bool,
}

impl std::fmt::Debug for Sinks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sinks")
            .field("output", &self.output)
            .field("dead_letter", &self.dead_letter)
            .field("messages", &self.messages.is_some())
            .field("tables", &self.tables.is_some())
            .finish()
    }
}

impl Sinks {
    /// Line sinks only (the embedded default).
    pub fn lines(output: LineSink, dead_letter: LineSink) -> Sinks {
        Sinks {
            output,
            dead_letter,
            messages: None,
            tables: None,
            store_events: false,
        }
    }

    /// A fresh buffer for one batch, routed when a message sink needs it,
    /// typed when a table sink does.
    pub fn buffer(&self) -> Rendered {
        Rendered::new(self.messages.is_some(), self.tables.is_some())
    }

    /// Whether raw events are wanted (a table sink that stores them).
    pub fn stores_events(&self) -> bool {
        self.tables.is_some() && self.store_events
    }

    /// Writes one batch — its results, dead letters and (with a table
    /// sink) raw events — to every sink; returns once all have it.
    pub fn batch(
        &self,
        results: &Rendered,
        dead_letters: &Rendered,
        events: &EventBatch<'_>,
    ) -> Result<()> {
        self.write(Stream::Results, &self.output, results)?;
        self.write(Stream::DeadLetters, &self.dead_letter, dead_letters)?;
        if let Some(tables) = &self.tables {
            if !(results.is_empty() && dead_letters.is_empty() && events.is_empty()) {
                tables.write(results, dead_letters, events)?;
            }
        }
        Ok(())
    }

    fn write(&self, stream: Stream, lines: &LineSink, batch: &Rendered) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        lines.write_chunk(&batch.lines)?;
        if let Some(messages) = &self.messages {
            messages.publish(stream, batch)?;
        }
        Ok(())
    }

    /// Writes the result lines rendered so far to the output line sink once
    /// they reach [`SPILL_BYTES`], so a worker's lines go out while still
    /// in its core's cache; only when the line sinks are the only sinks (a
    /// message or table sink takes the batch whole, with its routes and
    /// typed copies). The rest goes with [`Sinks::batch`] as before.
    pub fn spill(&self, results: &mut Rendered) -> Result<()> {
        if results.lines.len() < SPILL_BYTES || self.messages.is_some() || self.tables.is_some() {
            return Ok(());
        }
        self.output.write_chunk(&results.lines)?;
        results.lines.clear();
        Ok(())
    }

    /// Flushes the line writers (message sinks confirm as they go).
    pub fn flush(&self) -> Result<()> {
        self.output.flush()?;
        self.dead_letter.flush()
    }

    /// Makes the line sinks durable (fsync of file sinks).
    pub fn sync(&self) -> Result<()> {
        self.output.sync()?;
        self.dead_letter.sync()
    }
}

pub use crate::data::OutputType;

/// Rendered result bytes a worker holds before writing them
/// ([`Sinks::spill`]). Written whole, a batch's lines (3.6 MB for 4096 BTS
/// rows on one worker) had left the core's 2 MiB L2 by the time `write`
/// copied them into the page cache: ≈ 1.1 s of system time per 880 MB of
/// output, against ≈ 0.45 s in pieces that are still cached (issue 22).
/// 1 MiB rather than less: two workers then take the sink's lock about as
/// often as with whole batches (at 256 KiB their spills queued on each
/// other and cost the 2-worker run what they saved).
pub const SPILL_BYTES: usize = 1 << 20;

/// The `"window"` object: which window, and its bounds (ms since the epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowRef<'a> {
    pub name: &'a str,
    pub start: i64,
    pub end: i64,
}

/// What goes under `"data"`.
#[derive(Debug, Clone, Copy)]
pub enum Data<'a> {
    /// Result fields of a window, in the order the function returned them.
    Fields(&'a [DataField]),
    /// An alert: `{"kind", "event_time", ...fields}`.
    Alert {
        kind: &'a str,
        event_time: i64,
        fields: &'a [DataField],
    },
}

/// One result line, borrowed from wherever the result lives.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    pub tenant: &'a str,
    pub ty: OutputType,
    pub window: Option<WindowRef<'a>>,
    /// The manifest's key column names, in key order.
    pub key_names: &'a [String],
    /// `None` for tenant-level results (`"key": {}`).
    pub key: Option<&'a Key>,
    pub data: Data<'a>,
    /// 0 for the first emission; N ≥ 1 for the N-th late update of a window.
    pub update: u32,
    /// `[start, end)` of the earlier lines of this window and key this one
    /// supersedes (a session that absorbed fired sessions); written as
    /// `"replaces":[{"start":…,"end":…},…]` when not empty.
    pub replaces: &'a [(i64, i64)],
}

impl Record<'_> {
    /// Appends the record as one JSON line (with its `\n`) to `out`: the
    /// bytes serde_json writes for the record's `Serialize`, written by hand
    /// (see [`json`]).
    pub fn write_line(&self, out: &mut Vec<u8>) {
        self.write_opening(out);
        self.write_after_opening(out, None);
    }

    /// [`Self::write_line`], copying the parts most lines repeat — the
    /// opening up to the window's start, and the key object — from
    /// `fragments` instead of writing them again (written, they were ≈ 1/3
    /// of a line's cost).
    pub(crate) fn write_line_cached(&self, out: &mut Vec<u8>, fragments: &mut Fragments) {
        out.extend_from_slice(fragments.opening(self));
        self.write_after_opening(out, Some(fragments));
    }

    /// `{"tenant":…,"type":…` and, with a window, `,"window":{"name":…,"start":`.
    fn write_opening(&self, out: &mut Vec<u8>) {
        out.push(b'{');
        json::key(out, "tenant");
        json::string(out, self.tenant);
        out.extend_from_slice(b",\"type\":");
        json::string(out, self.ty.as_str());
        if let Some(w) = &self.window {
            out.extend_from_slice(b",\"window\":{\"name\":");
            json::string(out, w.name);
            out.extend_from_slice(b",\"start\":");
        }
    }

    /// The rest of the line after [`Self::write_opening`]; the key object
    /// from `fragments` when given.
    fn write_after_opening(&self, out: &mut Vec<u8>, fragments: Option<&mut Fragments>) {
        if let Some(w) = &self.window {
            json::int(out, w.start);
            out.extend_from_slice(b",\"end\":");
            json::int(out, w.end);
            out.push(b'}');
        }
        out.extend_from_slice(b",\"key\":");
        match (self.key, fragments) {
            (Some(key), Some(fragments)) => {
                out.extend_from_slice(fragments.key(self.key_names, key));
            }
            (Some(key), None) => write_key_object(out, self.key_names, key),
            (None, _) => out.extend_from_slice(b"{}"),
        }
        out.extend_from_slice(b",\"data\":{");
        let fields = match self.data {
            Data::Fields(fields) => fields,
            Data::Alert {
                kind,
                event_time,
                fields,
            } => {
                json::key(out, "kind");
                json::string(out, kind);
                out.extend_from_slice(b",\"event_time\":");
                json::int(out, event_time);
                if !fields.is_empty() {
                    out.push(b',');
                }
                fields
            }
        };
        for (i, field) in fields.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            json::key(out, &field.name);
            value(out, &field.value);
        }
        out.push(b'}');
        if self.update > 0 {
            out.extend_from_slice(b",\"update\":");
            json::uint(out, u64::from(self.update));
        }
        if !self.replaces.is_empty() {
            out.extend_from_slice(b",\"replaces\":[");
            for (i, &(start, end)) in self.replaces.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(b"{\"start\":");
                json::int(out, start);
                out.extend_from_slice(b",\"end\":");
                json::int(out, end);
                out.push(b'}');
            }
            out.push(b']');
        }
        out.extend_from_slice(b"}\n");
    }

    /// The record as a JSON line without the terminator (for tests and
    /// logs).
    pub fn to_line(&self) -> String {
        let mut out = Vec::new();
        self.write_line(&mut out);
        out.pop();
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// Rendered pieces of result lines, reused across lines: the opening
/// (`{"tenant":…,"type":…,"window":{"name":…,"start":`) of the last line
/// and each key's object. A shard's lines share a handful of openings and
/// its keys; the key objects are bounded by [`Fragments::MAX_KEYS`].
#[derive(Debug, Default)]
pub(crate) struct Fragments {
    /// (tenant, type, window name) of `opening`.
    opened: Option<(String, OutputType, Option<String>)>,
    opening: Vec<u8>,
    /// The key names the key objects were written with.
    key_names: Vec<String>,
    keys: rustc_hash::FxHashMap<Key, Box<[u8]>>,
}

impl Fragments {
    /// Key objects kept at most; past this the map starts again, so
    /// memory stays bounded whatever the key cardinality.
    const MAX_KEYS: usize = 1 << 16;

    fn opening(&mut self, record: &Record<'_>) -> &[u8] {
        let name = record.window.as_ref().map(|w| w.name);
        let same = self.opened.as_ref().is_some_and(|(tenant, ty, window)| {
            tenant == record.tenant && *ty == record.ty && window.as_deref() == name
        });
        if !same {
            self.opening.clear();
            record.write_opening(&mut self.opening);
            self.opened = Some((record.tenant.to_owned(), record.ty, name.map(str::to_owned)));
        }
        &self.opening
    }

    fn key(&mut self, key_names: &[String], key: &Key) -> &[u8] {
        if self.key_names != key_names {
            self.key_names = key_names.to_vec();
            self.keys.clear();
        }
        // Looked up by reference: `entry` takes an owned key, a clone (two
        // atomic reference count changes) per line.
        if !self.keys.contains_key(key) {
            if self.keys.len() >= Self::MAX_KEYS {
                self.keys.clear();
            }
            let mut out = Vec::new();
            write_key_object(&mut out, key_names, key);
            self.keys.insert(key.local_copy(), out.into_boxed_slice());
        }
        self.keys.get(key).map_or(&[][..], |object| &object[..])
    }
}

/// `{"<name>":"<part>",…}`: the key's parts named by the manifest's key
/// columns (`key<i>` past them).
fn write_key_object(out: &mut Vec<u8>, key_names: &[String], key: &Key) {
    out.push(b'{');
    for (i, part) in key.parts().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        match key_names.get(i) {
            Some(name) => json::key(out, name),
            None => json::key(out, &format!("key{i}")),
        }
        json::string(out, part);
    }
    out.push(b'}');
}

impl Serialize for Record<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("tenant", self.tenant)?;
        map.serialize_entry("type", self.ty.as_str())?;
        if let Some(w) = &self.window {
            map.serialize_entry("window", &WindowJson(w))?;
        }
        map.serialize_entry(
            "key",
            &KeyJson {
                names: self.key_names,
                key: self.key,
            },
        )?;
        map.serialize_entry("data", &DataJson(&self.data))?;
        if self.update > 0 {
            map.serialize_entry("update", &self.update)?;
        }
        if !self.replaces.is_empty() {
            map.serialize_entry("replaces", &ReplacesJson(self.replaces))?;
        }
        map.end()
    }
}

/// `[{"start":…,"end":…},…]`.
struct ReplacesJson<'a>(&'a [(i64, i64)]);

impl Serialize for ReplacesJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
        for &(start, end) in self.0 {
            seq.serialize_element(&Bounds { start, end })?;
        }
        seq.end()
    }
}

#[derive(Serialize)]
struct Bounds {
    start: i64,
    end: i64,
}

struct WindowJson<'a>(&'a WindowRef<'a>);

impl Serialize for WindowJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(3))?;
        map.serialize_entry("name", self.0.name)?;
        map.serialize_entry("start", &self.0.start)?;
        map.serialize_entry("end", &self.0.end)?;
        map.end()
    }
}

/// A key as `{"column": "value", ...}` in key order; `{}` for none.
struct KeyJson<'a> {
    names: &'a [String],
    key: Option<&'a Key>,
}

impl Serialize for KeyJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        if let Some(key) = self.key {
            for (i, part) in key.parts().enumerate() {
                // A key always has as many parts as the manifest has key
                // columns; a positional name keeps any mismatch visible.
                match self.names.get(i) {
                    Some(name) => map.serialize_entry(name.as_str(), part)?,
                    None => map.serialize_entry(&format!("key{i}"), part)?,
                }
            }
        }
        map.end()
    }
}

struct DataJson<'a>(&'a Data<'a>);

impl Serialize for DataJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        let fields = match self.0 {
            Data::Fields(fields) => fields,
            Data::Alert {
                kind,
                event_time,
                fields,
            } => {
                map.serialize_entry("kind", kind)?;
                map.serialize_entry("event_time", event_time)?;
                fields
            }
        };
        for field in *fields {
            map.serialize_entry(&field.name, &ValueJson(&field.value))?;
        }
        map.end()
    }
}

/// Appends a result value as [`ValueJson`] serialises it.
fn value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Int(i) => json::int(out, *i),
        Value::Float(f) => json::float(out, *f),
        Value::Text(t) => json::string(out, t),
        Value::Boolean(b) => json::boolean(out, *b),
    }
}

/// A result value. serde_json writes an `f64` with the shortest text that
/// reads back the same and always keeps a `.0` or exponent on integral
/// values (`241.0`), and writes non-finite values as `null`; the sink tests
/// pin both.
pub(crate) struct ValueJson<'a>(pub(crate) &'a Value);

impl Serialize for ValueJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        match self.0 {
            Value::Int(i) => serializer.serialize_i64(*i),
            Value::Float(f) => serializer.serialize_f64(*f),
            Value::Text(t) => serializer.serialize_str(t),
            Value::Boolean(b) => serializer.serialize_bool(*b),
        }
    }
}

/// Why a record went to the dead-letter sink.
#[derive(Debug, Clone, Copy)]
pub enum DeadLetter<'a> {
    /// A row that did not parse (a deserialization error).
    BadRow(&'a BadRow),
    /// A row that arrived after its windows were closed for good (event
    /// time older than the watermark minus the allowed lateness), and
    /// where it was read.
    Late {
        row: &'a ParsedRow,
        position: Option<&'a RowPos>,
    },
    /// A parsed row left out by a host ceiling (a new key beyond the
    /// tenant's key ceiling), with the ceiling it hit and where it was
    /// read.
    Limit {
        row: &'a ParsedRow,
        reason: &'a str,
        position: Option<&'a RowPos>,
    },
    /// Events (or a window) of one key whose guest call failed even when
    /// called alone, with the error: an alert function's key group, a
    /// window's key group (`rows`), or a fired window (`bounds`).
    Poison {
        /// The alert function, when it was an alert call.
        function: Option<&'a str>,
        /// The window, when it was a window call.
        window: Option<&'a str>,
        bounds: Option<(i64, i64)>,
        key: &'a Key,
        rows: &'a [&'a ParsedRow],
        error: &'a str,
    },
}

/// A dead letter with the context that names it.
#[derive(Debug, Clone, Copy)]
pub struct DeadLetterRecord<'a> {
    pub tenant: &'a str,
    pub key_names: &'a [String],
    /// Column names, to render a late row's values.
    pub columns: &'a [String],
    pub letter: DeadLetter<'a>,
}

impl DeadLetterRecord<'_> {
    /// A parsed row's position, key, event time and values: what a `late`
    /// and a `limit` letter carry (the position where a `bad-row` has it).
    fn parsed_row<M: serde::ser::SerializeMap>(
        &self,
        map: &mut M,
        row: &ParsedRow,
        position: Option<&RowPos>,
    ) -> std::result::Result<(), M::Error> {
        if let Some(position) = position {
            map.serialize_entry(
                "position",
                &PositionJson {
                    source: &position.source,
                    line: position.line,
                    offset: position.offset,
                },
            )?;
        }
        map.serialize_entry(
            "key",
            &KeyJson {
                names: self.key_names,
                key: Some(&row.key),
            },
        )?;
        map.serialize_entry("event_time", &row.time)?;
        map.serialize_entry(
            "row",
            &RowJson {
                columns: self.columns,
                values: &row.values,
            },
        )
    }

    /// Appends the dead letter as one JSON line (with its `\n`) to `out`.
    pub fn write_line(&self, out: &mut Vec<u8>) {
        if serde_json::to_writer(&mut *out, self).is_ok() {
            out.push(b'\n');
        }
    }
}

impl Serialize for DeadLetterRecord<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("tenant", self.tenant)?;
        match self.letter {
            DeadLetter::BadRow(bad) => {
                map.serialize_entry("kind", bad.kind.dead_letter_kind())?;
                map.serialize_entry("raw", &bad.raw)?;
                map.serialize_entry("reason", &bad.reason)?;
                if let crate::parse::BadKind::TooLong { length } = bad.kind {
                    map.serialize_entry("length", &length)?;
                }
                map.serialize_entry(
                    "position",
                    &PositionJson {
                        source: &bad.position.source,
                        line: bad.position.line,
                        offset: bad.position.offset,
                    },
                )?;
                let key = KeyJson {
                    names: self.key_names,
                    key: bad.key.as_ref(),
                };
                if bad.key.is_some() {
                    map.serialize_entry("key", &key)?;
                }
                if let Some(time) = bad.time {
                    map.serialize_entry("event_time", &time)?;
                }
            }
            DeadLetter::Late { row, position } => {
                map.serialize_entry("kind", "late")?;
                map.serialize_entry(
                    "reason",
                    "event time is older than the watermark minus the allowed lateness",
                )?;
                self.parsed_row(&mut map, row, position)?;
            }
            DeadLetter::Limit {
                row,
                reason,
                position,
            } => {
                map.serialize_entry("kind", "limit")?;
                map.serialize_entry("reason", reason)?;
                self.parsed_row(&mut map, row, position)?;
            }
            DeadLetter::Poison {
                function,
                window,
                bounds,
                key,
                rows,
                error,
            } => {
                map.serialize_entry("kind", "poison")?;
                map.serialize_entry("reason", error)?;
                if let Some(function) = function {
                    map.serialize_entry("function", function)?;
                }
                if let Some(window) = window {
                    map.serialize_entry("window", window)?;
                }
                if let Some((start, end)) = bounds {
                    map.serialize_entry("start", &start)?;
                    map.serialize_entry("end", &end)?;
                }
                map.serialize_entry(
                    "key",
                    &KeyJson {
                        names: self.key_names,
                        key: Some(key),
                    },
                )?;
                let rows: Vec<RowJson<'_>> = rows
                    .iter()
                    .map(|row| RowJson {
                        columns: self.columns,
                        values: &row.values,
                    })
                    .collect();
                map.serialize_entry("rows", &rows)?;
            }
        }
        map.end()
    }
}

#[derive(Serialize)]
struct PositionJson<'a> {
    source: &'a str,
    line: u64,
    offset: u64,
}

/// A parsed row as `{"column": value, ...}`; absent optional fields omitted.
struct RowJson<'a> {
    columns: &'a [String],
    values: &'a [OwnedValue],
}

impl Serialize for RowJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        for (name, value) in self.columns.iter().zip(self.values) {
            match value {
                OwnedValue::Text(t) => map.serialize_entry(name, &**t)?,
                OwnedValue::Int(i) | OwnedValue::Timestamp(i) => map.serialize_entry(name, i)?,
                OwnedValue::Float(f) => map.serialize_entry(name, f)?,
                OwnedValue::Bool(b) => map.serialize_entry(name, b)?,
                OwnedValue::Absent => {}
            }
        }
        map.end()
    }
}
