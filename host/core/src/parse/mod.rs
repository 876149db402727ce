//! Parsing records (CSV lines) against the tenant's declared columns into
//! typed, keyed rows, or into bad rows that say which column failed and why.
//!
//! Records are split on `\n` here, before CSV parsing, and each line is
//! parsed on its own: a stray quote in one bad record then spoils only that
//! record, not every record after it in the message or file (quoted fields
//! therefore cannot span lines; the sensor formats we read never do). A
//! trailing `\r` is dropped, so CRLF input reads the same.
//!
//! Empty and missing fields of an *optional* column are both
//! [`OwnedValue::Absent`], whatever the column's type: the BTS files end
//! every row with an empty `storedtime`, and "no value" is what that means.
//! A required field that is empty is a bad row.

mod key;
#[cfg(test)]
pub(crate) mod tests;

use std::io::{self, BufRead, Read, Seek, SeekFrom};

use crate::data::{FieldType, FieldValue};
use crate::manifest::InputSpec;

pub use crate::manifest::time_format::{check_time_format, TimestampFormat, BTS_TIME_FORMAT};
pub use key::{Key, KeySeparatorError, KEY_SEPARATOR};

/// Result of parse operations that are not per-row (rows give
/// `Result<ParsedRow, BadRow>`).
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a [`RowParser`] cannot be built from an input spec. A spec that came
/// from [`crate::manifest::Manifest`] never fails these checks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("{role} column `{name}` is not a declared column")]
    UnknownColumn { role: &'static str, name: String },
    #[error("the input declares no key columns")]
    NoKey,
    #[error("key column `{0}` must be a required text or int column")]
    BadKeyColumn(String),
    #[error("event-time column `{0}` must be a required timestamp column")]
    BadTimeColumn(String),
    #[error("timestamp column `{column}`: {message}")]
    TimeFormat { column: String, message: String },
}

/// Where a record came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Position {
    /// A file path or a message id.
    pub source: String,
    /// 1-based line within the source.
    pub line: u64,
    /// Byte offset of the record's first byte within the source.
    pub offset: u64,
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.source, self.line)
    }
}

/// A typed field value owned by a parsed row.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum OwnedValue {
    Text(Box<str>),
    Int(i64),
    Float(f64),
    Bool(bool),
    /// Milliseconds since the Unix epoch, UTC.
    Timestamp(i64),
    /// An optional field that is empty or missing.
    Absent,
}

impl OwnedValue {
    /// Borrowed view, as `BatchBuilder::push_row` takes it.
    #[inline]
    pub fn as_field_value(&self) -> FieldValue<'_> {
        match self {
            OwnedValue::Text(s) => FieldValue::Text(s),
            OwnedValue::Int(i) => FieldValue::Int(*i),
            OwnedValue::Float(f) => FieldValue::Float(*f),
            OwnedValue::Bool(b) => FieldValue::Bool(*b),
            OwnedValue::Timestamp(t) => FieldValue::Timestamp(*t),
            OwnedValue::Absent => FieldValue::Absent,
        }
    }

    /// Whether the value reads as `text`: a text column's value itself, an
    /// int in decimal (how key values are compared); never for other types,
    /// whose spelling is not unique.
    pub fn text_equals(&self, text: &str) -> bool {
        match self {
            OwnedValue::Text(s) => &**s == text,
            OwnedValue::Int(i) => text.parse::<i64>() == Ok(*i),
            _ => false,
        }
    }
}

/// A record that parsed.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ParsedRow {
    pub key: Key,
    /// Event time, ms since the Unix epoch.
    pub time: i64,
    /// One value per declared column, in schema order.
    pub values: Vec<OwnedValue>,
}

impl ParsedRow {
    /// The values as `BatchBuilder::push_row` takes them.
    pub fn field_values(&self) -> Vec<FieldValue<'_>> {
        self.values.iter().map(OwnedValue::as_field_value).collect()
    }
}

/// A record that did not parse: kept whole for the dead-letter sink, with
/// its key and time when those could still be read (so the error can be
/// counted against the key and its window).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{position}: {reason}")]
pub struct BadRow {
    /// The record, lossily decoded, without its line terminator. (Boxed
    /// strings keep `Result<ParsedRow, BadRow>`, which every row is, small.)
    pub raw: Box<str>,
    /// Which column failed and why, e.g. ``column `value`: `FalseData` is
    /// not a float``.
    pub reason: Box<str>,
    pub position: Position,
    /// Present when every key column is present, non-empty and valid.
    pub key: Option<Key>,
    /// Present when the event-time field parsed.
    pub time: Option<i64>,
    /// Why the record is dead-lettered: it did not parse, it was too long
    /// to read, or it parsed but its event time is not believed.
    pub kind: BadKind,
}

/// What is wrong with a [`BadRow`]; decides its dead letter's `kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BadKind {
    /// A deserialization error (`bad-row`).
    #[default]
    Malformed,
    /// A line over the input's line-length limit (`bad-row`): `raw` holds
    /// only its first bytes, `length` is the whole line's, terminator
    /// excluded. It was never held whole.
    TooLong { length: u64 },
    /// A row that parsed but whose event time is too far ahead of the
    /// host's clock (`future`): `key` and `time` are what it claimed. It
    /// never moves the watermark.
    Future,
}

impl BadKind {
    /// The dead letter's `kind`.
    pub fn dead_letter_kind(self) -> &'static str {
        match self {
            BadKind::Malformed | BadKind::TooLong { .. } => "bad-row",
            BadKind::Future => "future",
        }
    }
}

/// One declared column, ready for parsing.
#[derive(Debug, Clone)]
struct Column {
    name: String,
    ty: FieldType,
    optional: bool,
    time: Option<TimestampFormat>,
}

/// The source `csv::Reader` reads one line from: refilled per record, then
/// the reader is rewound onto it. One reader (and its buffers) is reused
/// for every record instead of building one per line.
#[derive(Debug, Default)]
struct LineSource {
    data: Vec<u8>,
    pos: usize,
}

impl Read for LineSource {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let rest = self.data.get(self.pos..).unwrap_or_default();
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        self.pos += n;
        Ok(n)
    }
}

impl Seek for LineSource {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let len = self.data.len() as i128;
        let target = match to {
            SeekFrom::Start(n) => i128::from(n),
            SeekFrom::End(d) => len + i128::from(d),
            SeekFrom::Current(d) => self.pos as i128 + i128::from(d),
        };
        let clamped = target.clamp(0, len);
        self.pos = usize::try_from(clamped).unwrap_or(self.data.len());
        Ok(self.pos as u64)
    }
}

/// What failed in a field, before it is turned into a message.
enum FieldError {
    Empty,
    NotUtf8,
    NotInt,
    NotFloat,
    NotFinite,
    NotBool,
    NotTime,
    Separator,
}

/// Parses records of one tenant input. Not shared between threads: give
/// each ingress thread its own (`Clone` is cheap enough for that).
pub struct RowParser {
    columns: Vec<Column>,
    key_columns: Vec<usize>,
    time_column: usize,
    /// Fields a row must have: up to and including the last required column.
    min_fields: usize,
    header: bool,
    delimiter: u8,
    csv: csv::Reader<LineSource>,
    record: csv::ByteRecord,
    key_buf: String,
}

impl std::fmt::Debug for RowParser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RowParser")
            .field("columns", &self.columns)
            .field("key_columns", &self.key_columns)
            .field("time_column", &self.time_column)
            .finish_non_exhaustive()
    }
}

impl Clone for RowParser {
    fn clone(&self) -> Self {
        RowParser {
            columns: self.columns.clone(),
            key_columns: self.key_columns.clone(),
            time_column: self.time_column,
            min_fields: self.min_fields,
            header: self.header,
            delimiter: self.delimiter,
            csv: csv_reader(self.delimiter),
            record: csv::ByteRecord::new(),
            key_buf: String::new(),
        }
    }
}

fn csv_reader(delimiter: u8) -> csv::Reader<LineSource> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .terminator(csv::Terminator::Any(b'\n'))
        .buffer_capacity(4096)
        .from_reader(LineSource::default());
    // Read the (empty) "header" now so later rewinds never consume a record
    // for it.
    if reader.byte_headers().is_err() {
        tracing::warn!("csv reader: reading an empty header failed");
    }
    reader
}

impl RowParser {
    /// A parser for `spec`'s columns, key and event time.
    pub fn new(spec: &InputSpec) -> Result<RowParser> {
        let mut columns = Vec::with_capacity(spec.columns.len());
        for c in &spec.columns {
            let time = match (c.ty, &c.format) {
                (FieldType::Timestamp, Some(f)) => Some(TimestampFormat::new(f).map_err(
                    |message| Error::TimeFormat {
                        column: c.name.clone(),
                        message,
                    },
                )?),
                (FieldType::Timestamp, None) => {
                    return Err(Error::TimeFormat {
                        column: c.name.clone(),
                        message: "no format".to_owned(),
                    })
                }
                _ => None,
            };
            columns.push(Column {
                name: c.name.clone(),
                ty: c.ty,
                optional: c.optional,
                time,
            });
        }
        if spec.key.is_empty() {
            return Err(Error::NoKey);
        }
        let mut key_columns = Vec::with_capacity(spec.key.len());
        for name in &spec.key {
            let i = spec
                .column_index(name)
                .ok_or_else(|| Error::UnknownColumn {
                    role: "key",
                    name: name.clone(),
                })?;
            if columns[i].optional || !matches!(columns[i].ty, FieldType::Text | FieldType::Int) {
                return Err(Error::BadKeyColumn(name.clone()));
            }
            key_columns.push(i);
        }
        let time_column =
            spec.column_index(&spec.event_time)
                .ok_or_else(|| Error::UnknownColumn {
                    role: "event-time",
                    name: spec.event_time.clone(),
                })?;
        if columns[time_column].optional || columns[time_column].ty != FieldType::Timestamp {
            return Err(Error::BadTimeColumn(spec.event_time.clone()));
        }
        let min_fields = columns
            .iter()
            .rposition(|c| !c.optional)
            .map_or(0, |i| i + 1);
        Ok(RowParser {
            columns,
            key_columns,
            time_column,
            min_fields,
            header: spec.header,
            delimiter: spec.delimiter,
            csv: csv_reader(spec.delimiter),
            record: csv::ByteRecord::new(),
            key_buf: String::new(),
        })
    }

    /// Whether the first line of an input *file* is a header to skip
    /// ([`RowParser::read_file`] does so).
    pub fn skips_header(&self) -> bool {
        self.header
    }

    /// Parses one record (one line, with or without its terminator).
    pub fn parse_record(
        &mut self,
        record: &[u8],
        source: &str,
        line: u64,
        offset: u64,
    ) -> std::result::Result<ParsedRow, BadRow> {
        let record = strip_terminator(record);
        match self.try_parse(record) {
            Ok(row) => Ok(row),
            Err(reason) => Err(self.bad_row(record, reason, source, line, offset)),
        }
    }

    /// Parses every record of a message (or any in-memory text): one result
    /// per line, empty lines included (as bad rows); a final terminator does
    /// not start an extra empty record.
    pub fn parse_message<'p, 'b>(
        &'p mut self,
        bytes: &'b [u8],
        source: &'b str,
    ) -> MessageRows<'p, 'b> {
        MessageRows {
            parser: self,
            rest: bytes,
            source,
            line: 0,
            offset: 0,
        }
    }

    /// Parses an input file line by line, skipping its first line when the
    /// manifest says `header = true`.
    pub fn read_file<'p, R: BufRead>(&'p mut self, reader: R, source: &str) -> FileRows<'p, R> {
        FileRows {
            skip_header: self.header,
            parser: self,
            reader,
            source: source.to_owned(),
            buf: Vec::with_capacity(256),
            line: 0,
            offset: 0,
        }
    }

    /// The fast path of [`RowParser::parse_record`]: a reason string only
    /// when the record is bad.
    fn try_parse(&mut self, record: &[u8]) -> std::result::Result<ParsedRow, String> {
        if record.is_empty() {
            return Err("empty line".to_owned());
        }
        if record.contains(&b'\n') {
            return Err("contains a line break; records are one per line".to_owned());
        }
        self.split(record)?;
        let mut values = Vec::with_capacity(self.columns.len());
        for (i, column) in self.columns.iter().enumerate() {
            let field = self.record.get(i).unwrap_or_default();
            match parse_field(column, field) {
                Ok(v) => values.push(v),
                Err(e) => return Err(describe(column, field, &e)),
            }
        }
        let time = match values.get(self.time_column) {
            Some(OwnedValue::Timestamp(t)) => *t,
            _ => return Err("event time missing".to_owned()),
        };
        self.key_buf.clear();
        for (n, &i) in self.key_columns.iter().enumerate() {
            if n > 0 {
                self.key_buf.push(KEY_SEPARATOR);
            }
            match &values[i] {
                OwnedValue::Text(s) => {
                    if s.contains(KEY_SEPARATOR) {
                        let column = &self.columns[i];
                        let field = self.record.get(i).unwrap_or_default();
                        return Err(describe(column, field, &FieldError::Separator));
                    }
                    self.key_buf.push_str(s);
                }
                OwnedValue::Int(v) => {
                    use std::fmt::Write;
                    let _ = write!(self.key_buf, "{v}");
                }
                _ => {
                    return Err(format!(
                        "key column `{}` has no value",
                        self.columns[i].name
                    ))
                }
            }
        }
        Ok(ParsedRow {
            key: Key::from_joined(&self.key_buf),
            time,
            values,
        })
    }

    /// Splits the record into `self.record`; checks the field count.
    fn split(&mut self, record: &[u8]) -> std::result::Result<(), String> {
        let source = self.csv.get_mut();
        source.data.clear();
        source.data.extend_from_slice(record);
        source.data.push(b'\n');
        source.pos = 0;
        self.csv
            .seek_raw(SeekFrom::Start(0), csv::Position::new())
            .and_then(|()| self.csv.read_byte_record(&mut self.record))
            .map_err(|e| format!("not a CSV record: {e}"))?;
        let fields = self.record.len();
        if let Some(last) = self.record.iter().next_back() {
            if last.ends_with(b"\n") {
                return Err(format!(
                    "column `{}`: unterminated quote",
                    self.columns
                        .get(fields - 1)
                        .map_or("(extra)", |c| c.name.as_str())
                ));
            }
        }
        if fields > self.columns.len() {
            return Err(format!(
                "has {fields} fields, the schema has {} columns",
                self.columns.len()
            ));
        }
        if self.record.iter().all(<[u8]>::is_empty) && self.min_fields > 0 {
            return Err(format!("all {fields} fields are empty"));
        }
        if fields < self.min_fields {
            let missing = &self.columns[fields];
            return Err(format!(
                "has {fields} fields, expected {} (column `{}` is missing)",
                if self.min_fields == self.columns.len() {
                    self.min_fields.to_string()
                } else {
                    format!("{} to {}", self.min_fields, self.columns.len())
                },
                missing.name
            ));
        }
        Ok(())
    }

    /// Builds the bad row, salvaging the key and time if they are readable.
    fn bad_row(
        &mut self,
        record: &[u8],
        reason: String,
        source: &str,
        line: u64,
        offset: u64,
    ) -> BadRow {
        // `self.record` holds this record's fields unless it failed before
        // splitting (empty line, line break) — then there is nothing to read.
        let split = !record.is_empty() && !record.contains(&b'\n');
        let mut key = None;
        let mut time = None;
        if split {
            let t = &self.columns[self.time_column];
            if let (Some(field), Some(format)) = (self.record.get(self.time_column), &t.time) {
                time = format.parse(field);
            }
            let mut parts = Vec::with_capacity(self.key_columns.len());
            for &i in &self.key_columns {
                let value = self
                    .record
                    .get(i)
                    .and_then(|f| parse_field(&self.columns[i], f).ok());
                match value {
                    Some(OwnedValue::Text(s)) => parts.push(s.into_string()),
                    Some(OwnedValue::Int(v)) => parts.push(v.to_string()),
                    _ => break,
                }
            }
            if parts.len() == self.key_columns.len() {
                key = Key::from_parts(parts).ok();
            }
        }
        BadRow {
            raw: String::from_utf8_lossy(record).into(),
            reason: reason.into(),
            position: Position {
                source: source.to_owned(),
                line,
                offset,
            },
            key,
            time,
            kind: BadKind::Malformed,
        }
    }
}

/// Drops one trailing `\n` and then one trailing `\r`.
fn strip_terminator(record: &[u8]) -> &[u8] {
    let record = record.strip_suffix(b"\n").unwrap_or(record);
    record.strip_suffix(b"\r").unwrap_or(record)
}

#[inline]
fn parse_field(column: &Column, field: &[u8]) -> std::result::Result<OwnedValue, FieldError> {
    if field.is_empty() {
        return if column.optional {
            Ok(OwnedValue::Absent)
        } else {
            Err(FieldError::Empty)
        };
    }
    if let Some(format) = &column.time {
        return format
            .parse(field)
            .map(OwnedValue::Timestamp)
            .ok_or(FieldError::NotTime);
    }
    let text = std::str::from_utf8(field).map_err(|_| FieldError::NotUtf8)?;
    match column.ty {
        FieldType::Text => Ok(OwnedValue::Text(text.into())),
        FieldType::Int => text
            .parse()
            .map(OwnedValue::Int)
            .map_err(|_| FieldError::NotInt),
        FieldType::Float => {
            let v: f64 = text.parse().map_err(|_| FieldError::NotFloat)?;
            if v.is_finite() {
                Ok(OwnedValue::Float(v))
            } else {
                Err(FieldError::NotFinite)
            }
        }
        FieldType::Boolean => {
            if text.eq_ignore_ascii_case("true") {
                Ok(OwnedValue::Bool(true))
            } else if text.eq_ignore_ascii_case("false") {
                Ok(OwnedValue::Bool(false))
            } else {
                Err(FieldError::NotBool)
            }
        }
        // Timestamp columns always have a format (checked in `new`).
        FieldType::Timestamp => Err(FieldError::NotTime),
    }
}

/// Field text for a message: lossy, and cut at 60 characters.
fn shown(field: &[u8]) -> String {
    let text = String::from_utf8_lossy(field);
    match text.char_indices().nth(60) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.into_owned(),
    }
}

fn describe(column: &Column, field: &[u8], error: &FieldError) -> String {
    let name = &column.name;
    let value = shown(field);
    match error {
        FieldError::Empty => format!("column `{name}` is empty, but it is required"),
        FieldError::NotUtf8 => format!("column `{name}`: `{value}` is not valid UTF-8"),
        FieldError::NotInt => format!("column `{name}`: `{value}` is not an integer"),
        FieldError::NotFloat => format!("column `{name}`: `{value}` is not a float"),
        FieldError::NotFinite => format!("column `{name}`: `{value}` is not a finite number"),
        FieldError::NotBool => {
            format!("column `{name}`: `{value}` is not a bool (expected true or false)")
        }
        FieldError::NotTime => format!(
            "column `{name}`: `{value}` is not a time in the format `{}`",
            column.time.as_ref().map_or("", TimestampFormat::as_str)
        ),
        FieldError::Separator => format!(
            "column `{name}`: `{value}` contains U+001F, which keys reserve as their separator"
        ),
    }
}

/// Rows of an in-memory message, one per line.
pub struct MessageRows<'p, 'b> {
    parser: &'p mut RowParser,
    rest: &'b [u8],
    source: &'b str,
    line: u64,
    offset: u64,
}

impl Iterator for MessageRows<'_, '_> {
    type Item = std::result::Result<ParsedRow, BadRow>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let (record, consumed) = match memchr::memchr(b'\n', self.rest) {
            Some(end) => (&self.rest[..end], end + 1),
            None => (self.rest, self.rest.len()),
        };
        self.rest = &self.rest[consumed..];
        self.line += 1;
        let offset = self.offset;
        self.offset += consumed as u64;
        Some(
            self.parser
                .parse_record(record, self.source, self.line, offset),
        )
    }
}

/// Rows of an input file, one per line; I/O errors end the iteration.
pub struct FileRows<'p, R> {
    parser: &'p mut RowParser,
    reader: R,
    source: String,
    buf: Vec<u8>,
    skip_header: bool,
    line: u64,
    offset: u64,
}

impl<R: BufRead> Iterator for FileRows<'_, R> {
    type Item = io::Result<std::result::Result<ParsedRow, BadRow>>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            self.buf.clear();
            let n = match self.reader.read_until(b'\n', &mut self.buf) {
                Ok(0) => return None,
                Ok(n) => n,
                Err(e) => return Some(Err(e)),
            };
            self.line += 1;
            let offset = self.offset;
            self.offset += n as u64;
            if std::mem::take(&mut self.skip_header) {
                continue;
            }
            return Some(Ok(self.parser.parse_record(
                &self.buf,
                &self.source,
                self.line,
                offset,
            )));
        }
    }
}
