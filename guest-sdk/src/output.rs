//! Building results: output fields and alerts.

use std::borrow::Cow;

use crate::types::{Alert, DataField, Value};

/// Result fields of a window or an alert, in order, built fluently:
/// `Output::new().float("mean", m).int("counter", n)`.
///
/// Names are `&'static str` literals (no allocation) or, when built at run
/// time, `String`s.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Output {
    fields: Vec<DataField>,
}

impl Output {
    pub fn new() -> Self {
        Output::default()
    }

    /// Pre-sizes for `n` fields (avoids regrowth on hot paths).
    pub fn with_capacity(n: usize) -> Self {
        Output {
            fields: Vec::with_capacity(n),
        }
    }

    pub fn value(mut self, name: impl Into<Cow<'static, str>>, value: Value) -> Self {
        self.push(name, value);
        self
    }

    pub fn float(self, name: impl Into<Cow<'static, str>>, value: f64) -> Self {
        self.value(name, Value::Float(value))
    }

    pub fn int(self, name: impl Into<Cow<'static, str>>, value: i64) -> Self {
        self.value(name, Value::Int(value))
    }

    pub fn text(self, name: impl Into<Cow<'static, str>>, value: impl Into<String>) -> Self {
        self.value(name, Value::Text(value.into()))
    }

    pub fn boolean(self, name: impl Into<Cow<'static, str>>, value: bool) -> Self {
        self.value(name, Value::Boolean(value))
    }

    /// Adds a field in place (for loops).
    pub fn push(&mut self, name: impl Into<Cow<'static, str>>, value: Value) {
        self.fields.push(DataField {
            name: name.into(),
            value,
        });
    }

    pub fn fields(&self) -> &[DataField] {
        &self.fields
    }

    /// The field named `name`, if any (handy in tests).
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.fields
            .iter()
            .find(|f| f.name == name)
            .map(|f| &f.value)
    }

    pub fn into_fields(self) -> Vec<DataField> {
        self.fields
    }
}

impl From<Output> for Vec<DataField> {
    fn from(output: Output) -> Self {
        output.fields
    }
}

/// Collects the alerts an alert function raises for one key group.
#[derive(Debug, Default)]
pub struct Alerts {
    raised: Vec<Alert>,
}

impl Alerts {
    pub(crate) fn new() -> Self {
        Alerts::default()
    }

    /// Raises an alert. `kind` must be one of the kinds the function was
    /// declared with; the call fails with a [`GuestError`](crate::GuestError)
    /// otherwise, so a typo cannot reach the host as an unknown kind.
    pub fn raise(&mut self, kind: &str, event_time: i64, data: Output) {
        self.raised.push(Alert {
            kind: kind.to_string(),
            event_time,
            data: data.into_fields(),
        });
    }

    /// Alerts raised so far for this group.
    pub fn raised(&self) -> &[Alert] {
        &self.raised
    }

    pub fn len(&self) -> usize {
        self.raised.len()
    }

    pub fn is_empty(&self) -> bool {
        self.raised.is_empty()
    }

    pub(crate) fn into_vec(self) -> Vec<Alert> {
        self.raised
    }
}
