//! Owned, typed copies of a batch's results and dead letters, and the raw
//! events of a batch: what a sink that stores columns (Cassandra) needs
//! instead of JSON text. [`Rendered`](super::Rendered) makes the copies
//! only when such a sink is attached, so the JSON-lines path pays nothing
//! for them.

use std::sync::Arc;

use crate::data::DataField;
use crate::parse::{Key, OwnedValue, Position};

use super::OutputType;

/// A fired window's bounds, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedWindow {
    pub name: String,
    /// ms since the Unix epoch, `[start, end)`.
    pub start: i64,
    pub end: i64,
}

/// One result, as its JSON line says it, with typed data.
#[derive(Debug, Clone)]
pub struct TypedResult {
    pub tenant: String,
    pub ty: OutputType,
    /// Every type but `Alert` has one.
    pub window: Option<OwnedWindow>,
    /// The manifest's key column names, in key order.
    pub key_names: Vec<String>,
    /// `None` for tenant-level results (`"key": {}`).
    pub key: Option<Key>,
    /// An alert's kind and event time (the first two `data` entries).
    pub alert: Option<(String, i64)>,
    /// The data fields in the order the function returned them.
    pub fields: Vec<DataField>,
    /// 0 for a first emission, N for a window's N-th late update.
    pub update: u32,
    /// Bounds of the earlier results this one supersedes (sessions).
    pub replaces: Vec<(i64, i64)>,
}

/// One dead letter: its JSON line and what identifies and places it.
#[derive(Debug, Clone)]
pub struct TypedDeadLetter {
    pub tenant: String,
    /// `bad-row`, `late` or `poison`.
    pub kind: &'static str,
    /// Deterministic id (a hash of the line), the same as its message id.
    pub id: String,
    /// The JSON line, without its terminator.
    pub line: String,
    pub key_names: Vec<String>,
    pub key: Option<Key>,
    pub event_time: Option<i64>,
    /// Where a bad row was read.
    pub position: Option<Position>,
}

/// Where a parsed row was read: its source (file or message id), line and
/// byte offset. The source is shared by every row of a file or message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowPos {
    pub source: Arc<str>,
    /// 1-based line within the source.
    pub line: u64,
    /// Byte offset of the row's first byte within the source.
    pub offset: u64,
}

/// One raw event: a parsed row and where it was read.
#[derive(Debug, Clone, Copy)]
pub struct Event<'a> {
    pub key: &'a Key,
    /// Event time, ms since the Unix epoch.
    pub time: i64,
    /// One value per column, in schema order.
    pub values: &'a [OwnedValue],
    pub position: &'a RowPos,
}

/// The raw events of one batch with the names that label them.
#[derive(Debug, Clone, Copy)]
pub struct EventBatch<'a> {
    pub tenant: &'a str,
    pub key_names: &'a [String],
    /// Column names, in schema order (`values` of each event follow them).
    pub columns: &'a [String],
    pub events: &'a [Event<'a>],
}

impl EventBatch<'_> {
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
}
