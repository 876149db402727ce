//! Views of a batch: the events of one group, one event, one key.

use std::fmt;
use std::ops::Range;

use crate::schema::{Field, Schema};
use crate::types::{Batch, Column, GuestError, Result};

/// The events of one group (a key's rows, or a window's rows): a contiguous
/// row range of a validated [`Batch`]. Cheap to copy.
#[derive(Clone, Copy)]
pub struct Events<'a> {
    batch: &'a Batch,
    start: usize,
    end: usize,
}

impl<'a> Events<'a> {
    /// `rows` must have been checked with [`group_rows`] against a batch
    /// checked with [`validate_batch`].
    pub(crate) fn new(batch: &'a Batch, rows: Range<usize>) -> Self {
        Events {
            batch,
            start: rows.start,
            end: rows.end,
        }
    }

    pub fn len(&self) -> usize {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// The `i`-th event of the group (not of the batch).
    pub fn get(&self, i: usize) -> Option<Event<'a>> {
        (i < self.len()).then(|| Event {
            batch: self.batch,
            row: self.start + i,
        })
    }

    pub fn first(&self) -> Option<Event<'a>> {
        self.get(0)
    }

    pub fn last(&self) -> Option<Event<'a>> {
        self.len().checked_sub(1).and_then(|i| self.get(i))
    }

    /// The event times of the group, as one slice.
    pub fn times(&self) -> &'a [i64] {
        &self.batch.times[self.start..self.end]
    }

    pub fn iter(&self) -> EventIter<'a> {
        EventIter {
            batch: self.batch,
            rows: self.start..self.end,
        }
    }
}

impl<'a> IntoIterator for Events<'a> {
    type Item = Event<'a>;
    type IntoIter = EventIter<'a>;

    fn into_iter(self) -> EventIter<'a> {
        self.iter()
    }
}

impl<'a> IntoIterator for &Events<'a> {
    type Item = Event<'a>;
    type IntoIter = EventIter<'a>;

    fn into_iter(self) -> EventIter<'a> {
        self.iter()
    }
}

impl fmt::Debug for Events<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Events")
            .field("rows", &(self.start..self.end))
            .finish()
    }
}

/// Iterator over [`Events`].
#[derive(Clone)]
pub struct EventIter<'a> {
    batch: &'a Batch,
    rows: Range<usize>,
}

impl<'a> Iterator for EventIter<'a> {
    type Item = Event<'a>;

    #[inline]
    fn next(&mut self) -> Option<Event<'a>> {
        self.rows.next().map(|row| Event {
            batch: self.batch,
            row,
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.rows.size_hint()
    }
}

impl DoubleEndedIterator for EventIter<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.rows.next_back().map(|row| Event {
            batch: self.batch,
            row,
        })
    }
}

impl ExactSizeIterator for EventIter<'_> {}

/// One event: a row of a validated batch.
#[derive(Clone, Copy)]
pub struct Event<'a> {
    batch: &'a Batch,
    row: usize,
}

impl<'a> Event<'a> {
    /// Event time, ms since the Unix epoch.
    #[inline]
    pub fn time(&self) -> i64 {
        self.batch.times[self.row]
    }

    /// Reads a field. For an optional field that is absent on this row this
    /// is whatever placeholder the host put in the column; use
    /// [`get_opt`](Self::get_opt) for optional fields.
    #[inline]
    pub fn get<F: Field>(&self, field: F) -> F::Value<'a> {
        field.read(&self.batch.columns[field.index()], self.row)
    }

    /// Reads a field, `None` where the host marked it absent.
    #[inline]
    pub fn get_opt<F: Field>(&self, field: F) -> Option<F::Value<'a>> {
        if self.is_absent(field) {
            None
        } else {
            Some(self.get(field))
        }
    }

    /// Whether the host marked this field absent on this row.
    pub fn is_absent<F: Field>(&self, field: F) -> bool {
        // Batches are validated to hold at most u32::MAX rows.
        let row = self.row as u32;
        self.batch
            .absent
            .get(field.index())
            .is_some_and(|rows| !rows.is_empty() && rows.binary_search(&row).is_ok())
    }

    /// Row index in the batch (for diagnostics).
    pub fn row(&self) -> usize {
        self.row
    }
}

impl fmt::Debug for Event<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("row", &self.row)
            .field("time", &self.time())
            .finish()
    }
}

/// The key values of a group, in the order of the manifest's key columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key<'a> {
    values: &'a [String],
}

impl<'a> Key<'a> {
    pub(crate) fn new(values: &'a [String]) -> Self {
        Key { values }
    }

    pub fn values(&self) -> &'a [String] {
        self.values
    }

    /// The `i`-th key value.
    pub fn get(&self, i: usize) -> Option<&'a str> {
        self.values.get(i).map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

impl fmt::Display for Key<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.values.join("/"))
    }
}

/// Bounds of a fired window, `[start, end)`, ms since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowInfo {
    pub start: i64,
    pub end: i64,
}

/// Checks a batch against the schema, once per call, so that per-event
/// reads can index without checks.
pub(crate) fn validate_batch(schema: &Schema, batch: &Batch) -> Result<()> {
    let rows = batch.times.len();
    if u32::try_from(rows).is_err() {
        return Err(GuestError::new(format!(
            "batch has {rows} rows, more than a u32 row index can address"
        )));
    }
    if batch.columns.len() != schema.len() {
        return Err(GuestError::new(format!(
            "batch has {} columns but the schema declares {} fields",
            batch.columns.len(),
            schema.len()
        )));
    }
    for (index, (column, field)) in batch.columns.iter().zip(schema.fields()).enumerate() {
        let actual = column.field_type();
        if actual != field.ty {
            return Err(GuestError::new(format!(
                "batch column `{}` is {actual}, but the schema declares {}",
                field.name, field.ty
            )));
        }
        // The host may send columns the module does not read empty.
        let skipped = !schema.is_used(index)
            && match column {
                Column::Text(text) => text.offsets.len() <= 1 && text.data.is_empty(),
                other => other.is_empty(),
            };
        if skipped {
            continue;
        }
        if let Column::Text(text) = column {
            if text.offsets.len() != rows + 1 {
                return Err(GuestError::new(format!(
                    "batch column `{}` has {} text offsets for {rows} rows (expected {})",
                    field.name,
                    text.offsets.len(),
                    rows + 1
                )));
            }
            let mut previous = 0usize;
            for &offset in &text.offsets {
                let offset = offset as usize;
                if offset < previous
                    || offset > text.data.len()
                    || !text.data.is_char_boundary(offset)
                {
                    return Err(GuestError::new(format!(
                        "batch column `{}` has a bad text offset {offset} (data is {} bytes; offsets must ascend and fall on character boundaries)",
                        field.name,
                        text.data.len()
                    )));
                }
                previous = offset;
            }
        } else if column.len() != rows {
            return Err(GuestError::new(format!(
                "batch column `{}` has {} values for {rows} rows",
                field.name,
                column.len()
            )));
        }
    }
    if !batch.absent.is_empty() && batch.absent.len() != schema.len() {
        return Err(GuestError::new(format!(
            "batch has {} absent lists; expected none or one per field ({})",
            batch.absent.len(),
            schema.len()
        )));
    }
    for (absent, field) in batch.absent.iter().zip(schema.fields()) {
        if absent.is_empty() {
            continue;
        }
        if !field.optional {
            return Err(GuestError::new(format!(
                "batch marks rows absent in field `{}`, which is not optional",
                field.name
            )));
        }
        let ascending = absent.windows(2).all(|w| w[0] < w[1]);
        let in_range = absent.last().is_some_and(|&last| (last as usize) < rows);
        if !ascending || !in_range {
            return Err(GuestError::new(format!(
                "batch absent rows of field `{}` must ascend strictly and be below {rows}",
                field.name
            )));
        }
    }
    Ok(())
}

/// Checks a group's row range against the batch.
pub(crate) fn group_rows(batch: &Batch, start: u32, len: u32) -> Result<Range<usize>> {
    let rows = batch.times.len();
    let start = start as usize;
    match start.checked_add(len as usize) {
        Some(end) if end <= rows => Ok(start..end),
        _ => Err(GuestError::new(format!(
            "rows {start}..{start}+{len} are outside the batch of {rows} rows"
        ))),
    }
}
