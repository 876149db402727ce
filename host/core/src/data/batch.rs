//! The columnar batches tenant functions are given, and the builder that
//! makes them from typed rows. Rows are appended key by key; each key's
//! rows form one contiguous group.

use super::{FieldDef, FieldType};

/// Text values of a column, packed: value `i` is
/// `data[offsets[i]..offsets[i+1]]` (one bulk copy across the boundary,
/// not an allocation per value).
#[derive(Debug, Clone, PartialEq)]
pub struct TextColumn {
    pub data: String,
    pub offsets: Vec<u32>,
}

/// The values of one column for every row of a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum Column {
    Text(TextColumn),
    Int(Vec<i64>),
    Float(Vec<f64>),
    /// 0 = false, 1 = true.
    Boolean(Vec<u8>),
    Timestamp(Vec<i64>),
}

/// A batch of events in columnar form; rows are grouped by key.
#[derive(Debug, Clone, PartialEq)]
pub struct EventBatch {
    /// Event time of each row, ms since the Unix epoch.
    pub times: Vec<i64>,
    /// One column per schema field; columns the module does not read may
    /// be empty.
    pub columns: Vec<Column>,
    /// Per column, the rows where an optional field is absent (ascending).
    pub absent: Vec<Vec<u32>>,
}

/// The rows of one key inside an [`EventBatch`], with that key's held
/// state (`None`: fresh).
#[derive(Debug, Clone, PartialEq)]
pub struct KeyGroup {
    pub key: Vec<String>,
    pub state: Option<Vec<u8>>,
    /// First row of this group in the batch.
    pub start: u32,
    pub len: u32,
}

/// One window of one key passed to a process-window function.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowGroup {
    pub key: Vec<String>,
    /// Window bounds, ms since the Unix epoch, `[start, end)`.
    pub start: i64,
    pub end: i64,
    /// Rows of this window in the batch, in event-time order.
    pub first: u32,
    pub len: u32,
}

/// One group of an `aggregate-add` call: the batch's next `rows` rows and
/// the accumulator so far (`None`: a fresh one), borrowed from its pane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddGroup<'a> {
    pub rows: u32,
    pub state: Option<&'a [u8]>,
}

/// One field value of a row, as the parser produces it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FieldValue<'a> {
    Text(&'a str),
    Int(i64),
    Float(f64),
    Bool(bool),
    Timestamp(i64),
    /// An optional field that the row does not have.
    Absent,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BatchError {
    #[error("row has {got} values, the schema has {want} fields")]
    Arity { got: usize, want: usize },
    #[error("field `{field}` is {want:?} but the row holds {got}")]
    Type {
        field: String,
        want: FieldType,
        got: String,
    },
    #[error("a row was pushed before any key group was begun")]
    NoGroup,
    #[error("batch exceeds u32::MAX rows or bytes")]
    TooLarge,
}

/// Accumulates rows into columns matching the schema given to `init`.
pub struct BatchBuilder {
    schema: Vec<FieldDef>,
    /// Per field: is its column filled? (projection; all by default)
    filled: Vec<bool>,
    times: Vec<i64>,
    columns: Vec<Column>,
    absent: Vec<Vec<u32>>,
    groups: Vec<KeyGroup>,
}

impl BatchBuilder {
    /// Fills every column.
    pub fn new(schema: &[FieldDef]) -> Self {
        Self::projected(schema, &(0..schema.len() as u32).collect::<Vec<_>>())
    }

    /// Fills only the columns of the fields in `reads` (what the module's
    /// `init` asked for) and leaves the others empty: fewer bytes lowered
    /// into the guest per event. Rows are still type-checked in full.
    pub fn projected(schema: &[FieldDef], reads: &[u32]) -> Self {
        let filled: Vec<bool> = (0..schema.len())
            .map(|i| reads.iter().any(|r| *r as usize == i))
            .collect();
        let columns = schema
            .iter()
            .map(|f| match f.ty {
                FieldType::Text => Column::Text(TextColumn {
                    data: String::new(),
                    offsets: Vec::new(),
                }),
                FieldType::Int => Column::Int(Vec::new()),
                FieldType::Float => Column::Float(Vec::new()),
                FieldType::Boolean => Column::Boolean(Vec::new()),
                FieldType::Timestamp => Column::Timestamp(Vec::new()),
            })
            .collect();
        let mut builder = BatchBuilder {
            schema: schema.to_vec(),
            filled,
            times: Vec::new(),
            columns,
            absent: vec![Vec::new(); schema.len()],
            groups: Vec::new(),
        };
        for (column, filled) in builder.columns.iter_mut().zip(&builder.filled) {
            if let (Column::Text(t), true) = (column, filled) {
                t.offsets.push(0);
            }
        }
        builder
    }

    /// Rows pushed so far.
    pub fn len(&self) -> usize {
        self.times.len()
    }

    pub fn is_empty(&self) -> bool {
        self.times.is_empty()
    }

    /// Starts the group of the next rows, with the key's held state.
    pub fn begin_group(
        &mut self,
        key: Vec<String>,
        state: Option<Vec<u8>>,
    ) -> Result<(), BatchError> {
        let start = u32::try_from(self.times.len()).map_err(|_| BatchError::TooLarge)?;
        self.groups.push(KeyGroup {
            key,
            state,
            start,
            len: 0,
        });
        Ok(())
    }

    /// Appends one row to the current group; values follow the schema order.
    pub fn push_row(&mut self, time: i64, values: &[FieldValue<'_>]) -> Result<(), BatchError> {
        if values.len() != self.schema.len() {
            return Err(BatchError::Arity {
                got: values.len(),
                want: self.schema.len(),
            });
        }
        let row = u32::try_from(self.times.len()).map_err(|_| BatchError::TooLarge)?;
        // Type-check first so a bad row leaves the columns untouched.
        for (field, value) in self.schema.iter().zip(values) {
            let ok = matches!(
                (field.ty, value),
                (FieldType::Text, FieldValue::Text(_))
                    | (FieldType::Int, FieldValue::Int(_))
                    | (FieldType::Float, FieldValue::Float(_))
                    | (FieldType::Boolean, FieldValue::Bool(_))
                    | (FieldType::Timestamp, FieldValue::Timestamp(_))
            ) || (field.optional && *value == FieldValue::Absent);
            if !ok {
                return Err(BatchError::Type {
                    field: field.name.clone(),
                    want: field.ty,
                    got: format!("{value:?}"),
                });
            }
        }
        let group = self.groups.last_mut().ok_or(BatchError::NoGroup)?;
        group.len += 1;
        self.times.push(time);
        for (i, (column, value)) in self.columns.iter_mut().zip(values).enumerate() {
            if !self.filled[i] {
                continue;
            }
            if *value == FieldValue::Absent {
                self.absent[i].push(row);
            }
            match (column, *value) {
                (Column::Text(t), v) => {
                    if let FieldValue::Text(s) = v {
                        t.data.push_str(s);
                    }
                    let end = u32::try_from(t.data.len()).map_err(|_| BatchError::TooLarge)?;
                    t.offsets.push(end);
                }
                (Column::Int(c), v) => c.push(if let FieldValue::Int(x) = v { x } else { 0 }),
                (Column::Float(c), v) => c.push(if let FieldValue::Float(x) = v { x } else { 0.0 }),
                (Column::Boolean(c), v) => c.push(u8::from(v == FieldValue::Bool(true))),
                (Column::Timestamp(c), v) => c.push(if let FieldValue::Timestamp(x) = v {
                    x
                } else {
                    0
                }),
            }
        }
        Ok(())
    }

    /// The key groups and the batch, ready for a call.
    pub fn finish(self) -> (Vec<KeyGroup>, EventBatch) {
        (
            self.groups,
            EventBatch {
                times: self.times,
                columns: self.columns,
                absent: self.absent,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Vec<FieldDef> {
        vec![
            FieldDef {
                name: "id".into(),
                ty: FieldType::Text,
                optional: false,
            },
            FieldDef {
                name: "v".into(),
                ty: FieldType::Float,
                optional: false,
            },
            FieldDef {
                name: "note".into(),
                ty: FieldType::Text,
                optional: true,
            },
        ]
    }

    #[test]
    fn rows_land_in_columns_and_groups() {
        let mut b = BatchBuilder::new(&schema());
        b.begin_group(vec!["a".into()], None).expect("group");
        b.push_row(
            10,
            &[
                FieldValue::Text("a"),
                FieldValue::Float(1.5),
                FieldValue::Absent,
            ],
        )
        .expect("row");
        b.push_row(
            11,
            &[
                FieldValue::Text("a"),
                FieldValue::Float(2.5),
                FieldValue::Text("hi"),
            ],
        )
        .expect("row");
        b.begin_group(vec!["b".into()], Some(vec![7]))
            .expect("group");
        b.push_row(
            12,
            &[
                FieldValue::Text("bb"),
                FieldValue::Float(3.0),
                FieldValue::Absent,
            ],
        )
        .expect("row");
        let (groups, batch) = b.finish();
        assert_eq!(groups.len(), 2);
        assert_eq!((groups[1].start, groups[1].len), (2, 1));
        assert_eq!(batch.times, vec![10, 11, 12]);
        let Column::Text(ids) = &batch.columns[0] else {
            panic!("text column expected")
        };
        assert_eq!(ids.data, "aabb");
        assert_eq!(ids.offsets, vec![0, 1, 2, 4]);
        assert_eq!(batch.absent[2], vec![0, 2]);
        assert!(batch.absent[1].is_empty());
    }

    #[test]
    fn a_projected_batch_fills_only_the_columns_read() {
        let mut b = BatchBuilder::projected(&schema(), &[1]);
        b.begin_group(vec!["a".into()], None).expect("group");
        b.push_row(
            10,
            &[
                FieldValue::Text("a"),
                FieldValue::Float(1.5),
                FieldValue::Absent,
            ],
        )
        .expect("row");
        let (_, batch) = b.finish();
        assert_eq!(batch.columns[1], Column::Float(vec![1.5]));
        assert_eq!(
            batch.columns[0],
            Column::Text(TextColumn {
                data: String::new(),
                offsets: Vec::new()
            })
        );
        assert!(batch.absent[2].is_empty());
    }

    #[test]
    fn a_mistyped_row_is_refused_and_leaves_the_batch_unchanged() {
        let mut b = BatchBuilder::new(&schema());
        b.begin_group(vec!["a".into()], None).expect("group");
        let err = b
            .push_row(
                1,
                &[
                    FieldValue::Text("a"),
                    FieldValue::Int(1),
                    FieldValue::Absent,
                ],
            )
            .expect_err("int in a float column");
        assert!(matches!(err, BatchError::Type { ref field, .. } if field == "v"));
        let err = b
            .push_row(
                1,
                &[
                    FieldValue::Absent,
                    FieldValue::Float(1.0),
                    FieldValue::Absent,
                ],
            )
            .expect_err("required field absent");
        assert!(matches!(err, BatchError::Type { ref field, .. } if field == "id"));
        assert!(b.is_empty());
    }
}
