//! The input schema and typed field handles.

use std::cell::RefCell;

use crate::types::{Column, FieldDef, FieldType, GuestError, Result};

/// The columns of every batch, as declared by the manifest and given to
/// `init`.
///
/// Resolve the fields you need once, in [`Tenant::init`](crate::Tenant::init):
/// a handle is a column index checked against the declared type, so reading
/// a field per event is an index, not a name lookup, and a type mismatch is
/// reported when the module is deployed rather than on the first event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schema {
    fields: Vec<FieldDef>,
    /// Fields a handle was resolved for: the projection returned by `init`,
    /// so the host sends only the columns the module reads.
    used: RefCell<Vec<bool>>,
}

impl Schema {
    /// Builds the schema; a field name given twice is an error.
    pub fn new(fields: Vec<FieldDef>) -> Result<Self> {
        for (i, field) in fields.iter().enumerate() {
            if fields[..i].iter().any(|earlier| earlier.name == field.name) {
                return Err(GuestError::new(format!(
                    "schema field `{}` is declared twice",
                    field.name
                )));
            }
        }
        let used = RefCell::new(vec![false; fields.len()]);
        Ok(Schema { fields, used })
    }

    /// Indices of the fields resolved through a handle so far, ascending.
    pub fn used_fields(&self) -> Vec<u32> {
        self.used
            .borrow()
            .iter()
            .enumerate()
            .filter(|(_, used)| **used)
            .filter_map(|(i, _)| u32::try_from(i).ok())
            .collect()
    }

    /// Whether a handle was resolved for field `index`.
    pub fn is_used(&self, index: usize) -> bool {
        self.used.borrow().get(index).copied().unwrap_or(false)
    }

    pub fn fields(&self) -> &[FieldDef] {
        &self.fields
    }

    pub fn len(&self) -> usize {
        self.fields.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// The column index of a field, if declared.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.fields.iter().position(|f| f.name == name)
    }

    /// A handle to a `float` field.
    pub fn float(&self, name: &str) -> Result<FloatField> {
        self.resolve(name, FieldType::Float).map(FloatField)
    }

    /// A handle to an `int` field.
    pub fn int(&self, name: &str) -> Result<IntField> {
        self.resolve(name, FieldType::Int).map(IntField)
    }

    /// A handle to a `text` field.
    pub fn text(&self, name: &str) -> Result<TextField> {
        self.resolve(name, FieldType::Text).map(TextField)
    }

    /// A handle to a `boolean` field.
    pub fn boolean(&self, name: &str) -> Result<BoolField> {
        self.resolve(name, FieldType::Boolean).map(BoolField)
    }

    /// A handle to a `timestamp` field (ms since the Unix epoch).
    pub fn timestamp(&self, name: &str) -> Result<TimestampField> {
        self.resolve(name, FieldType::Timestamp).map(TimestampField)
    }

    fn resolve(&self, name: &str, expected: FieldType) -> Result<usize> {
        let index = self.index_of(name).ok_or_else(|| {
            let known: Vec<&str> = self.fields.iter().map(|f| f.name.as_str()).collect();
            GuestError::new(format!(
                "the schema has no field `{name}` (the tenant needs it as {expected}); declared fields: [{}]",
                known.join(", ")
            ))
        })?;
        let actual = self.fields[index].ty;
        if actual != expected {
            return Err(GuestError::new(format!(
                "schema field `{name}` is declared as {actual}, but the tenant reads it as {expected}"
            )));
        }
        if let Some(used) = self.used.borrow_mut().get_mut(index) {
            *used = true;
        }
        Ok(index)
    }
}

mod sealed {
    pub trait Sealed {}
}

/// A typed handle to one column; see [`Event::get`](crate::Event::get).
///
/// Sealed: handles only come from [`Schema`], which checked the type.
pub trait Field: Copy + sealed::Sealed {
    /// What reading the field yields; text borrows from the batch.
    type Value<'a>;

    /// The column index in the schema (and in every batch).
    fn index(self) -> usize;

    #[doc(hidden)]
    fn read(self, column: &Column, row: usize) -> Self::Value<'_>;
}

macro_rules! scalar_field {
    ($(#[$doc:meta])* $name:ident, $variant:ident, $value:ty, |$v:ident| $conv:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub struct $name(usize);

        impl sealed::Sealed for $name {}

        impl Field for $name {
            type Value<'a> = $value;

            fn index(self) -> usize {
                self.0
            }

            #[inline]
            fn read(self, column: &Column, row: usize) -> $value {
                match column {
                    // Row and column type were checked when the batch was
                    // validated against the schema the handle came from.
                    Column::$variant(values) => {
                        let $v = values[row];
                        $conv
                    }
                    other => unreachable!(
                        "column {} is {}, validated as {}",
                        self.0,
                        other.field_type(),
                        FieldType::$variant
                    ),
                }
            }
        }
    };
}

scalar_field!(
    /// Handle to a `float` column; reads `f64`.
    FloatField, Float, f64, |v| v
);
scalar_field!(
    /// Handle to an `int` column; reads `i64`.
    IntField, Int, i64, |v| v
);
scalar_field!(
    /// Handle to a `timestamp` column; reads ms since the Unix epoch.
    TimestampField, Timestamp, i64, |v| v
);
scalar_field!(
    /// Handle to a `boolean` column; reads `bool`.
    BoolField, Boolean, bool, |v| v != 0
);

/// Handle to a `text` column; reads `&str` borrowed from the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TextField(usize);

impl sealed::Sealed for TextField {}

impl Field for TextField {
    type Value<'a> = &'a str;

    fn index(self) -> usize {
        self.0
    }

    #[inline]
    fn read(self, column: &Column, row: usize) -> &str {
        match column {
            // Offsets were checked (in bounds, ascending, on char
            // boundaries) when the batch was validated.
            Column::Text(text) => {
                &text.data[text.offsets[row] as usize..text.offsets[row + 1] as usize]
            }
            other => unreachable!(
                "column {} is {}, validated as text",
                self.0,
                other.field_type()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Schema {
        Schema::new(vec![
            FieldDef::new("station_id", FieldType::Text),
            FieldDef::new("value", FieldType::Float),
        ])
        .expect("unique names")
    }

    #[test]
    fn resolves_fields_by_name_and_type() {
        let s = schema();
        assert_eq!(s.text("station_id").expect("text").index(), 0);
        assert_eq!(s.float("value").expect("float").index(), 1);
    }

    #[test]
    fn wrong_type_names_field_and_both_types() {
        let err = schema().int("value").expect_err("value is float");
        assert_eq!(
            err.message,
            "schema field `value` is declared as float, but the tenant reads it as int"
        );
    }

    #[test]
    fn missing_field_lists_declared_fields() {
        let err = schema().boolean("isActive").expect_err("not declared");
        assert!(err.message.contains("no field `isActive`"), "{err}");
        assert!(err.message.contains("[station_id, value]"), "{err}");
    }

    #[test]
    fn duplicate_field_is_an_error() {
        let err = Schema::new(vec![
            FieldDef::new("a", FieldType::Int),
            FieldDef::new("a", FieldType::Float),
        ])
        .expect_err("duplicate");
        assert!(err.message.contains("`a` is declared twice"), "{err}");
    }
}
