//! Plain-Rust mirrors of the WIT types.
//!
//! Why mirrors and not the wit-bindgen types: these compile and behave the
//! same on every target, so the host can drive a tenant natively (its
//! native-baseline benchmark) and tests need no Wasm. The export glue moves
//! the `Vec`s between the two families, it does not copy elements.

use std::borrow::Cow;
use std::fmt;

/// Column types a tenant manifest can declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldType {
    Text,
    Int,
    Float,
    Boolean,
    /// Milliseconds since the Unix epoch, UTC.
    Timestamp,
}

impl FieldType {
    /// The WIT spelling, used in error messages so they match the manifest.
    pub fn as_str(self) -> &'static str {
        match self {
            FieldType::Text => "text",
            FieldType::Int => "int",
            FieldType::Float => "float",
            FieldType::Boolean => "boolean",
            FieldType::Timestamp => "timestamp",
        }
    }
}

impl fmt::Display for FieldType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One declared column of the tenant's input schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldDef {
    pub name: String,
    pub ty: FieldType,
    pub optional: bool,
}

impl FieldDef {
    /// Shorthand for tests and the native host: a required field.
    pub fn new(name: impl Into<String>, ty: FieldType) -> Self {
        FieldDef {
            name: name.into(),
            ty,
            optional: false,
        }
    }

    /// Shorthand for an optional field.
    pub fn optional(name: impl Into<String>, ty: FieldType) -> Self {
        FieldDef {
            name: name.into(),
            ty,
            optional: true,
        }
    }
}

/// Text values of a column, packed: value `i` is
/// `data[offsets[i]..offsets[i+1]]` (one more offset than rows).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TextColumn {
    pub data: String,
    pub offsets: Vec<u32>,
}

impl TextColumn {
    /// Packs values; convenient for tests and the native host.
    ///
    /// # Panics
    /// If the packed text exceeds `u32::MAX` bytes, which the WIT layout
    /// cannot express.
    pub fn from_values<S: AsRef<str>>(values: impl IntoIterator<Item = S>) -> Self {
        let mut column = TextColumn {
            data: String::new(),
            offsets: vec![0],
        };
        for value in values {
            column.data.push_str(value.as_ref());
            let end = u32::try_from(column.data.len())
                .expect("a text column is limited to 4 GiB by the WIT layout");
            column.offsets.push(end);
        }
        column
    }
}

/// The values of one column for every row of a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum Column {
    Text(TextColumn),
    Int(Vec<i64>),
    Float(Vec<f64>),
    /// 0 = false, anything else = true.
    Boolean(Vec<u8>),
    Timestamp(Vec<i64>),
}

impl Column {
    /// The declared type this column carries.
    pub fn field_type(&self) -> FieldType {
        match self {
            Column::Text(_) => FieldType::Text,
            Column::Int(_) => FieldType::Int,
            Column::Float(_) => FieldType::Float,
            Column::Boolean(_) => FieldType::Boolean,
            Column::Timestamp(_) => FieldType::Timestamp,
        }
    }

    /// Number of rows the column holds (for text: offsets minus one).
    pub fn len(&self) -> usize {
        match self {
            Column::Text(t) => t.offsets.len().saturating_sub(1),
            Column::Int(v) | Column::Timestamp(v) => v.len(),
            Column::Float(v) => v.len(),
            Column::Boolean(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A batch of events in columnar form; groups name contiguous row ranges.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Batch {
    /// Event time of each row, ms since the Unix epoch.
    pub times: Vec<i64>,
    /// One column per schema field, same order.
    pub columns: Vec<Column>,
    /// Per column, ascending rows where an optional field is absent. May be
    /// empty altogether when nothing is absent.
    pub absent: Vec<Vec<u32>>,
}

/// The events of one key inside a [`Batch`], with the key's host-held state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyGroup {
    pub key: Vec<String>,
    /// `None` = fresh accumulator / default state.
    pub state: Option<Vec<u8>>,
    pub start: u32,
    pub len: u32,
}

/// One group of an aggregate's `add` call: the batch's next `rows` rows
/// and the accumulator so far (`None`: a fresh one). Groups are
/// consecutive runs of rows; an aggregate never sees its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddGroup<'a> {
    pub rows: u32,
    pub state: Option<&'a [u8]>,
}

impl<'a> AddGroup<'a> {
    /// The add groups of key groups that are consecutive runs of rows from
    /// row 0 (their keys dropped); an error naming the first that is not.
    /// For callers that built [`KeyGroup`]s, as for an alert function.
    pub fn runs(groups: &'a [KeyGroup]) -> Result<Vec<AddGroup<'a>>> {
        let mut at = 0u32;
        groups
            .iter()
            .enumerate()
            .map(|(i, g)| {
                if g.start != at {
                    return Err(GuestError::new(format!(
                        "key group {i} starts at row {}, not {at}: add groups are consecutive",
                        g.start
                    )));
                }
                at = at.saturating_add(g.len);
                Ok(AddGroup {
                    rows: g.len,
                    state: g.state.as_deref(),
                })
            })
            .collect()
    }
}

/// The groups of an `aggregate-add` call as the contract packs them: group
/// `i` is rows `ends[i-1]..ends[i]` (from 0), its state item `i` of
/// `states` (zero or one accumulator).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddGroups {
    pub ends: Vec<u32>,
    pub states: PackedAccumulators,
}

impl AddGroups {
    /// Packs groups (what a host does).
    pub fn pack(groups: &[AddGroup<'_>]) -> Self {
        let mut at = 0u32;
        AddGroups {
            ends: groups
                .iter()
                .map(|g| {
                    at = at.saturating_add(g.rows);
                    at
                })
                .collect(),
            states: PackedAccumulators::pack(groups.iter().map(|g| g.state)),
        }
    }

    /// The groups, borrowing their states; an error naming the fault when
    /// the packing is inconsistent.
    pub fn unpack(&self) -> Result<Vec<AddGroup<'_>>> {
        if self.states.len() != self.ends.len() {
            return Err(GuestError::new(format!(
                "add groups: {} row ends but {} states",
                self.ends.len(),
                self.states.len()
            )));
        }
        let mut groups = Vec::with_capacity(self.ends.len());
        let mut at = 0u32;
        self.states.for_each_item(|i, state| {
            let end = self.ends[i];
            let rows = end.checked_sub(at).ok_or_else(|| {
                GuestError::new(format!(
                    "add groups: group {i} ends at row {end}, before {at}"
                ))
            })?;
            at = end;
            let state = match *state {
                [] => None,
                [one] => Some(one),
                _ => {
                    return Err(GuestError::new(format!(
                        "add groups: group {i} has {} states, at most 1",
                        state.len()
                    )))
                }
            };
            groups.push(AddGroup { rows, state });
            Ok(())
        })?;
        Ok(groups)
    }
}

/// Byte strings packed as the contract's `packed-bytes`: string `i` is
/// `data[ends[i-1]..ends[i]]` (from 0).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PackedBytes {
    pub data: Vec<u8>,
    pub ends: Vec<u32>,
}

impl PackedBytes {
    /// Ends the current string (the bytes appended to `data` since the
    /// last end).
    pub fn end_item(&mut self) {
        self.ends
            .push(u32::try_from(self.data.len()).unwrap_or(u32::MAX));
    }

    /// The strings, borrowed.
    pub fn items(&self) -> impl Iterator<Item = &[u8]> {
        let mut at = 0usize;
        self.ends.iter().map(move |&end| {
            let end = (end as usize).clamp(at, self.data.len());
            let item = &self.data[at..end];
            at = end;
            item
        })
    }
}

/// One fired window of one key, for a process-window function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowGroup {
    pub key: Vec<String>,
    /// `[start, end)`, ms since the Unix epoch.
    pub start: i64,
    pub end: i64,
    pub first: u32,
    pub len: u32,
}

/// A scalar result value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Int(i64),
    Float(f64),
    Text(String),
    Boolean(bool),
}

impl Value {
    /// The value of a `Float`; `None` for other variants.
    pub fn as_float(&self) -> Option<f64> {
        match self {
            Value::Float(v) => Some(*v),
            _ => None,
        }
    }

    /// The value of an `Int`; `None` for other variants.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(v) => Some(*v),
            _ => None,
        }
    }

    /// The value of a `Text`; `None` for other variants.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Value::Text(v) => Some(v),
            _ => None,
        }
    }

    /// The value of a `Boolean`; `None` for other variants.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Boolean(v) => Some(*v),
            _ => None,
        }
    }
}

/// A named result field, e.g. `("mean", Float(240.5))`.
///
/// The name is a `Cow` because it is nearly always a literal: a window's
/// fields then cost no allocation each (measured: with `String` names,
/// allocating and freeing them was ≈ 10 % of the Wasm pipeline benchmark).
#[derive(Debug, Clone, PartialEq)]
pub struct DataField {
    pub name: Cow<'static, str>,
    pub value: Value,
}

/// The accumulators of many windows (or merges), packed as the contract's
/// `packed-accumulators`: item `i` has accumulators `items[i-1]..items[i]`,
/// accumulator `j` is `data[ends[j-1]..ends[j]]` (both from 0 for the
/// first). Three vectors whatever the number of accumulators, so crossing
/// the boundary costs no allocation per accumulator.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PackedAccumulators {
    pub data: Vec<u8>,
    pub ends: Vec<u32>,
    pub items: Vec<u32>,
}

impl PackedAccumulators {
    /// Packs lists of accumulators.
    pub fn pack<I, A, B>(items: I) -> Self
    where
        I: IntoIterator<Item = A>,
        A: IntoIterator<Item = B>,
        B: AsRef<[u8]>,
    {
        let mut packed = PackedAccumulators::default();
        for item in items {
            packed.push_item(item);
        }
        packed
    }

    /// Appends one item with its accumulators.
    pub fn push_item<A, B>(&mut self, accumulators: A)
    where
        A: IntoIterator<Item = B>,
        B: AsRef<[u8]>,
    {
        for acc in accumulators {
            self.data.extend_from_slice(acc.as_ref());
            self.ends
                .push(u32::try_from(self.data.len()).unwrap_or(u32::MAX));
        }
        self.items
            .push(u32::try_from(self.ends.len()).unwrap_or(u32::MAX));
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Calls `f` on each item's accumulators in order, checking the
    /// offsets as it goes (both must only grow and stay inside `data`); one
    /// scratch list serves every item, so a call costs no allocation per
    /// item (the hot path of `aggregate-add` and `aggregate-finish`).
    pub fn for_each_item<'a>(
        &'a self,
        mut f: impl FnMut(usize, &[&'a [u8]]) -> Result<()>,
    ) -> Result<()> {
        let (mut acc, mut at) = (0usize, 0usize);
        let mut panes: Vec<&[u8]> = Vec::new();
        for (i, &item_end) in self.items.iter().enumerate() {
            let item_end = item_end as usize;
            if item_end < acc || item_end > self.ends.len() {
                return Err(GuestError::new(format!(
                    "packed accumulators: item {i} ends at accumulator {item_end}, \
                     outside {acc}..={}",
                    self.ends.len()
                )));
            }
            panes.clear();
            for &end in &self.ends[acc..item_end] {
                let end = end as usize;
                if end < at || end > self.data.len() {
                    return Err(GuestError::new(format!(
                        "packed accumulators: accumulator {acc} ends at byte {end}, \
                         outside {at}..={}",
                        self.data.len()
                    )));
                }
                panes.push(&self.data[at..end]);
                at = end;
                acc += 1;
            }
            f(i, &panes)?;
        }
        Ok(())
    }
}

/// The result fields of many windows, packed as the contract's
/// `packed-fields`: window `i` has fields `windows[i-1]..windows[i]` of
/// `name_ids` and `kinds`, each name stored once per call, and each value
/// in the column of its kind (ints and booleans in `ints`, floats in
/// `floats`, texts in `texts`, in field order). Why columns: a list of
/// variants is lowered and lifted element by element.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PackedFields {
    pub names: Vec<String>,
    pub name_ids: Vec<u32>,
    /// Per field: 0 int, 1 float, 2 text, 3 boolean.
    pub kinds: Vec<u8>,
    pub ints: Vec<i64>,
    pub floats: Vec<f64>,
    pub texts: Vec<String>,
    pub windows: Vec<u32>,
}

impl PackedFields {
    /// The id of `name`, field `k` of its window, adding it if new. The
    /// windows of one call nearly always list the same names in the same
    /// order, so name `k` is tried first; else a scan (a window's fields
    /// are few, so a scan beats a map).
    fn name_id(&mut self, k: usize, name: Cow<'static, str>) -> u32 {
        let id = if self.names.get(k).is_some_and(|n| *n == name) {
            k
        } else {
            match self.names.iter().position(|n| *n == name) {
                Some(id) => id,
                None => {
                    self.names.push(name.into_owned());
                    self.names.len() - 1
                }
            }
        };
        u32::try_from(id).unwrap_or(u32::MAX)
    }

    fn push_field(&mut self, id: u32, value: Value) {
        self.name_ids.push(id);
        let kind = match value {
            Value::Int(v) => {
                self.ints.push(v);
                0
            }
            Value::Float(v) => {
                self.floats.push(v);
                1
            }
            Value::Text(v) => {
                self.texts.push(v);
                2
            }
            Value::Boolean(v) => {
                self.ints.push(i64::from(v));
                3
            }
        };
        self.kinds.push(kind);
    }

    fn end_window(&mut self) {
        self.windows
            .push(u32::try_from(self.name_ids.len()).unwrap_or(u32::MAX));
    }

    /// Each window's fields as `(name, value)` pairs, read back as the
    /// host reads them (for tests; `None` if the packing is malformed).
    pub fn unpack(&self) -> Option<Vec<Vec<(String, Value)>>> {
        let (mut ints, mut floats, mut texts) =
            (self.ints.iter(), self.floats.iter(), self.texts.iter());
        let mut at = 0usize;
        let mut out = Vec::with_capacity(self.windows.len());
        for &end in &self.windows {
            let mut window = Vec::new();
            for f in at..end as usize {
                let name = self.names.get(*self.name_ids.get(f)? as usize)?.clone();
                let value = match self.kinds.get(f)? {
                    0 => Value::Int(*ints.next()?),
                    1 => Value::Float(*floats.next()?),
                    2 => Value::Text(texts.next()?.clone()),
                    3 => Value::Boolean(*ints.next()? != 0),
                    _ => return None,
                };
                window.push((name, value));
            }
            out.push(window);
            at = end as usize;
        }
        Some(out)
    }

    /// Number of windows.
    pub fn len(&self) -> usize {
        self.windows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.windows.is_empty()
    }
}

/// Builds [`PackedFields`] window by window, recognising a literal field
/// name by its address: the windows of one call repeat the same literals,
/// so the usual field costs a pointer comparison instead of a string
/// comparison (in Wasm a call into a byte-wise `memcmp`; measured ≈ 4 % of
/// the Wasm pipeline benchmark's instructions).
#[derive(Debug, Default)]
pub(crate) struct FieldPacker {
    packed: PackedFields,
    /// Per field position: the literal last seen there, and its name id.
    literals: Vec<Option<(&'static str, u32)>>,
}

impl FieldPacker {
    /// Appends one window's fields, naming each by its index in `names`.
    pub(crate) fn push_window(&mut self, fields: Vec<DataField>) {
        for (k, field) in fields.into_iter().enumerate() {
            let seen = self.literals.get(k).copied().flatten();
            let id = match (&field.name, seen) {
                (Cow::Borrowed(name), Some((literal, id))) if std::ptr::eq(*name, literal) => id,
                (Cow::Borrowed(name), _) => {
                    let name: &'static str = name;
                    let id = self.packed.name_id(k, field.name);
                    if self.literals.len() <= k {
                        self.literals.resize(k + 1, None);
                    }
                    self.literals[k] = Some((name, id));
                    id
                }
                (Cow::Owned(_), _) => self.packed.name_id(k, field.name),
            };
            self.packed.push_field(id, field.value);
        }
        self.packed.end_window();
    }

    pub(crate) fn finish(self) -> PackedFields {
        self.packed
    }
}

/// An alert raised by an alert function.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub kind: String,
    /// Event time of the event that raised it.
    pub event_time: i64,
    pub data: Vec<DataField>,
}

/// Result of an alert function for one key group.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertResult {
    pub state: Vec<u8>,
    pub alerts: Vec<Alert>,
}

/// What kind of named function a module implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FunctionKind {
    Aggregate,
    ProcessWindow,
    Alert,
}

impl fmt::Display for FunctionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FunctionKind::Aggregate => "aggregate",
            FunctionKind::ProcessWindow => "process-window",
            FunctionKind::Alert => "alert",
        })
    }
}

/// One named function, as listed by `describe`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionInfo {
    pub name: String,
    pub kind: FunctionKind,
    /// Result field names, or alert data field names for alert functions.
    pub outputs: Vec<String>,
    /// Alert kinds it may raise (alert functions only).
    pub alert_kinds: Vec<String>,
}

/// The module's name, version and functions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleInfo {
    pub name: String,
    pub version: String,
    pub functions: Vec<FunctionInfo>,
}

/// A failure the tenant reports on purpose: bad params, a schema that does
/// not fit, an unknown function, state bytes that do not decode.
///
/// Why one message-carrying type: it crosses the WIT boundary as
/// `guest-error { message }`, and the host shows it to an operator; a
/// message that names the param, field or function is what they need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestError {
    pub message: String,
}

impl GuestError {
    pub fn new(message: impl Into<String>) -> Self {
        GuestError {
            message: message.into(),
        }
    }

    /// Prefixes the message with where it happened (function, group).
    pub fn context(self, context: impl fmt::Display) -> Self {
        GuestError {
            message: format!("{context}: {}", self.message),
        }
    }
}

impl fmt::Display for GuestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for GuestError {}

/// `Result` with [`GuestError`] as the default error.
pub type Result<T, E = GuestError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(names: &[&'static str]) -> Vec<DataField> {
        names
            .iter()
            .zip(0..)
            .map(|(&name, i)| DataField {
                name: name.into(),
                value: Value::Int(i),
            })
            .collect()
    }

    /// Each window's fields, read back through `names[name_ids[f]]`.
    fn unpacked(p: &PackedFields) -> Vec<Vec<(String, Value)>> {
        p.unpack().expect("well-formed packing")
    }

    /// Each window's (name, value) pairs as given.
    fn expected(windows: &[Vec<DataField>]) -> Vec<Vec<(String, Value)>> {
        windows
            .iter()
            .map(|w| {
                w.iter()
                    .map(|f| (f.name.to_string(), f.value.clone()))
                    .collect()
            })
            .collect()
    }

    #[test]
    fn windows_pack_with_each_name_once_whatever_their_order() {
        let windows = [
            fields(&["mean", "max", "min"]),
            fields(&["max", "mean"]),
            fields(&[]),
            fields(&["min", "count", "mean", "max"]),
            vec![DataField {
                name: format!("bin:{}", 2.5).into(),
                value: Value::Float(1.0),
            }],
        ];
        let mut packer = FieldPacker::default();
        for w in &windows {
            packer.push_window(w.clone());
        }
        let packed = packer.finish();
        assert_eq!(packed.names, ["mean", "max", "min", "count", "bin:2.5"]);
        assert_eq!(unpacked(&packed), expected(&windows));
    }

    #[test]
    fn key_groups_become_add_groups_only_when_consecutive() {
        let group = |start, len, state: Option<Vec<u8>>| KeyGroup {
            key: vec!["k".into()],
            state,
            start,
            len,
        };
        let runs = [
            group(0, 2, None),
            group(2, 0, Some(vec![7])),
            group(2, 3, None),
        ];
        assert_eq!(
            AddGroup::runs(&runs).expect("consecutive"),
            [
                AddGroup {
                    rows: 2,
                    state: None
                },
                AddGroup {
                    rows: 0,
                    state: Some(&[7][..])
                },
                AddGroup {
                    rows: 3,
                    state: None
                },
            ]
        );
        let gap = [group(0, 2, None), group(3, 1, None)];
        let err = AddGroup::runs(&gap).expect_err("a gap");
        assert!(
            err.message.contains("key group 1 starts at row 3, not 2"),
            "{err}"
        );
    }

    #[test]
    fn the_literal_cache_names_fields_by_their_text() {
        // The same text at another address, and literals that move between
        // positions: the cache must fall back to comparing text.
        let twin: &'static str = Box::leak(String::from("mean").into_boxed_str());
        let windows = [
            fields(&["mean", "max"]),
            fields(&["mean", "min"]),
            fields(&[twin, "max"]),
            fields(&["max", "mean"]),
            fields(&["mean", "max", "min"]),
            vec![DataField {
                name: Cow::Owned("max".into()),
                value: Value::Int(9),
            }],
            fields(&["min", "mean"]),
        ];
        let mut cached = FieldPacker::default();
        for w in &windows {
            cached.push_window(w.clone());
        }
        let cached = cached.finish();
        assert_eq!(cached.names, ["mean", "max", "min"]);
        assert_eq!(unpacked(&cached), expected(&windows));
    }
}
