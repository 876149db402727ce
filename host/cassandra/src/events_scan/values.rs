//! The scan's columns, a stored event's values by column, and the scope's
//! conditions: a scope value read as the parser reads a CSV field, then
//! compared typed with a key part or a stored value.

use std::collections::BTreeMap;

use scylla::value::CqlTimestamp;
use sluice_core::data::FieldType;
use sluice_core::parse::TimestampFormat;

/// One input column, ready for rendering.
#[derive(Debug)]
pub(super) struct Column {
    pub(super) name: String,
    pub(super) ty: FieldType,
    /// Timestamp columns' format.
    pub(super) time: Option<TimestampFormat>,
}

/// A scope value, in the column's type.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Wanted {
    Text(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Time(i64),
}

/// One scope condition.
#[derive(Debug)]
pub(super) struct Rule {
    /// Index into the columns.
    pub(super) column: usize,
    pub(super) wanted: Wanted,
}

/// A value as stored, borrowed from its row.
#[derive(Debug, Clone, Copy)]
pub(super) enum Cell<'r> {
    Text(&'r str),
    Int(i64),
    Float(f64),
    Bool(bool),
    Time(i64),
    Absent,
}

pub(super) fn parse_bool(text: &str) -> Option<bool> {
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
    pub(super) fn parse(column: &Column, text: &str) -> Result<Wanted, String> {
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
    pub(super) fn matches_text(&self, column: &Column, text: &str) -> bool {
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
    pub(super) fn matches(&self, cell: Cell<'_>) -> bool {
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

/// A stored event's typed values by column name.
pub(super) struct Values {
    pub(super) ints: BTreeMap<String, i64>,
    pub(super) floats: BTreeMap<String, f64>,
    pub(super) texts: BTreeMap<String, String>,
    pub(super) bools: BTreeMap<String, bool>,
    pub(super) times: BTreeMap<String, CqlTimestamp>,
}

impl Values {
    /// `column`'s value: from the map of its declared type, else from any
    /// map that has it (a column whose type changed since the event was
    /// stored is written as it was stored, and the parser judges it,
    /// rather than silently dropped).
    pub(super) fn cell(&self, column: &Column) -> Cell<'_> {
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
