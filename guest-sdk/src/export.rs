//! Glue between the wit-bindgen `Guest` trait and [`Module`]: type
//! conversions and the per-instance module slot.
//!
//! Public only so that [`export_tenant!`](crate::export_tenant) can reach it
//! from the tenant's crate; not part of the SDK's API. It compiles on every
//! target so the conversions are tested natively.

use std::cell::RefCell;
use std::thread::LocalKey;

use crate::bindings::sluice::analytics::types as wit;
use crate::module::Module;
use crate::types::{
    AddGroups, Alert, AlertResult, Batch, Column, DataField, FieldDef, FieldType, FunctionInfo,
    FunctionKind, GuestError, KeyGroup, ModuleInfo, PackedAccumulators, PackedFields, Result,
    TextColumn, Value, WindowGroup,
};
use crate::Tenant;

/// Where the instance keeps its module between calls. A thread-local
/// rather than a `static` so tenants need not be `Sync`; a component
/// instance is single-threaded anyway.
pub type Slot<T> = LocalKey<RefCell<Option<Module<T>>>>;

type WitResult<R> = std::result::Result<R, wit::GuestError>;

pub fn describe<T: Tenant>() -> wit::ModuleInfo {
    Module::<T>::describe().into()
}

/// Initialises (or re-initialises) the instance's module. A failed init
/// leaves no module, so later calls fail instead of running on stale params.
pub fn init<T: Tenant>(
    slot: &'static Slot<T>,
    params: Vec<(String, String)>,
    schema: Vec<wit::FieldDef>,
) -> WitResult<Vec<u32>> {
    let schema = schema.into_iter().map(FieldDef::from).collect();
    let module = Module::<T>::init(params, schema);
    slot.with(|cell| {
        let mut current = cell
            .try_borrow_mut()
            .map_err(|_| GuestError::new("init was called re-entrantly"))?;
        match module {
            Ok(module) => {
                let reads = module.reads();
                *current = Some(module);
                Ok(reads)
            }
            Err(e) => {
                *current = None;
                Err(e)
            }
        }
    })
    .map_err(Into::into)
}

fn with_module<T: Tenant, R>(
    slot: &'static Slot<T>,
    call: impl FnOnce(&Module<T>) -> Result<R>,
) -> WitResult<R> {
    slot.with(|cell| {
        let current = cell
            .try_borrow()
            .map_err(|_| GuestError::new("a call arrived while init was running"))?;
        let module = current
            .as_ref()
            .ok_or_else(|| GuestError::new("init was not called (or the last init failed)"))?;
        call(module)
    })
    .map_err(Into::into)
}

pub fn aggregate_add<T: Tenant>(
    slot: &'static Slot<T>,
    function: String,
    groups: wit::AddGroups,
    batch: wit::EventBatch,
) -> WitResult<wit::PackedBytes> {
    let groups = AddGroups {
        ends: groups.ends,
        states: groups.states.into(),
    };
    with_module(slot, |m| {
        m.aggregate_add_packed(&function, &groups, batch.into())
    })
    .map(|b| wit::PackedBytes {
        data: b.data,
        ends: b.ends,
    })
}

pub fn aggregate_merge<T: Tenant>(
    slot: &'static Slot<T>,
    function: String,
    accumulators: wit::PackedAccumulators,
) -> WitResult<Vec<Vec<u8>>> {
    with_module(slot, |m| {
        m.aggregate_merge_packed(&function, &accumulators.into())
    })
}

pub fn aggregate_finish<T: Tenant>(
    slot: &'static Slot<T>,
    function: String,
    windows: wit::PackedAccumulators,
) -> WitResult<wit::PackedFields> {
    with_module(slot, |m| {
        m.aggregate_finish_packed(&function, &windows.into())
    })
    .map(Into::into)
}

pub fn alert<T: Tenant>(
    slot: &'static Slot<T>,
    function: String,
    groups: Vec<wit::KeyGroup>,
    batch: wit::EventBatch,
) -> WitResult<Vec<wit::AlertResult>> {
    with_module(slot, |m| {
        m.alert(&function, convert_vec(groups), batch.into())
    })
    .map(convert_vec)
}

pub fn process_window<T: Tenant>(
    slot: &'static Slot<T>,
    function: String,
    windows: Vec<wit::WindowGroup>,
    batch: wit::EventBatch,
) -> WitResult<Vec<Vec<wit::DataField>>> {
    with_module(slot, |m| {
        m.process_window(&function, convert_vec(windows), batch.into())
    })
    .map(|windows| windows.into_iter().map(convert_vec).collect())
}

fn convert_vec<A, B: From<A>>(items: Vec<A>) -> Vec<B> {
    items.into_iter().map(B::from).collect()
}

// --- WIT → SDK (arguments). Vectors move; nothing is copied per element
// except the small key-group and field-def records themselves.

impl From<wit::FieldType> for FieldType {
    fn from(ty: wit::FieldType) -> Self {
        match ty {
            wit::FieldType::Text => FieldType::Text,
            wit::FieldType::Int => FieldType::Int,
            wit::FieldType::Float => FieldType::Float,
            wit::FieldType::Boolean => FieldType::Boolean,
            wit::FieldType::Timestamp => FieldType::Timestamp,
        }
    }
}

impl From<wit::FieldDef> for FieldDef {
    fn from(f: wit::FieldDef) -> Self {
        FieldDef {
            name: f.name,
            ty: f.ty.into(),
            optional: f.optional,
        }
    }
}

impl From<wit::Column> for Column {
    fn from(c: wit::Column) -> Self {
        match c {
            wit::Column::Text(t) => Column::Text(TextColumn {
                data: t.data,
                offsets: t.offsets,
            }),
            wit::Column::Int(v) => Column::Int(v),
            wit::Column::Float(v) => Column::Float(v),
            wit::Column::Boolean(v) => Column::Boolean(v),
            wit::Column::Timestamp(v) => Column::Timestamp(v),
        }
    }
}

impl From<wit::EventBatch> for Batch {
    fn from(b: wit::EventBatch) -> Self {
        Batch {
            times: b.times,
            columns: convert_vec(b.columns),
            absent: b.absent,
        }
    }
}

impl From<wit::KeyGroup> for KeyGroup {
    fn from(g: wit::KeyGroup) -> Self {
        KeyGroup {
            key: g.key,
            state: g.state,
            start: g.start,
            len: g.len,
        }
    }
}

impl From<wit::WindowGroup> for WindowGroup {
    fn from(w: wit::WindowGroup) -> Self {
        WindowGroup {
            key: w.key,
            start: w.start,
            end: w.end,
            first: w.first,
            len: w.len,
        }
    }
}

// --- SDK → WIT (results).

impl From<Value> for wit::Value {
    fn from(v: Value) -> Self {
        match v {
            Value::Int(i) => wit::Value::Int(i),
            Value::Float(f) => wit::Value::Float(f),
            Value::Text(s) => wit::Value::Text(s),
            Value::Boolean(b) => wit::Value::Boolean(b),
        }
    }
}

impl From<wit::PackedAccumulators> for PackedAccumulators {
    fn from(p: wit::PackedAccumulators) -> Self {
        PackedAccumulators {
            data: p.data,
            ends: p.ends,
            items: p.items,
        }
    }
}

impl From<PackedFields> for wit::PackedFields {
    fn from(p: PackedFields) -> Self {
        wit::PackedFields {
            names: text_column(&p.names),
            name_ids: p.name_ids,
            kinds: p.kinds,
            ints: p.ints,
            floats: p.floats,
            texts: text_column(&p.texts),
            windows: p.windows,
        }
    }
}

/// Strings as the contract's text column: one string and byte offsets
/// (none at all for no strings).
fn text_column(strings: &[String]) -> wit::TextColumn {
    if strings.is_empty() {
        return wit::TextColumn {
            data: String::new(),
            offsets: Vec::new(),
        };
    }
    let mut data = String::with_capacity(strings.iter().map(String::len).sum());
    let mut offsets = Vec::with_capacity(strings.len() + 1);
    offsets.push(0);
    for s in strings {
        data.push_str(s);
        offsets.push(u32::try_from(data.len()).unwrap_or(u32::MAX));
    }
    wit::TextColumn { data, offsets }
}

impl From<DataField> for wit::DataField {
    fn from(f: DataField) -> Self {
        wit::DataField {
            name: f.name.into_owned(),
            value: f.value.into(),
        }
    }
}

impl From<Alert> for wit::Alert {
    fn from(a: Alert) -> Self {
        wit::Alert {
            kind: a.kind,
            event_time: a.event_time,
            data: convert_vec(a.data),
        }
    }
}

impl From<AlertResult> for wit::AlertResult {
    fn from(r: AlertResult) -> Self {
        wit::AlertResult {
            state: r.state,
            alerts: convert_vec(r.alerts),
        }
    }
}

impl From<FunctionKind> for wit::FunctionKind {
    fn from(k: FunctionKind) -> Self {
        match k {
            FunctionKind::Aggregate => wit::FunctionKind::Aggregate,
            FunctionKind::ProcessWindow => wit::FunctionKind::ProcessWindow,
            FunctionKind::Alert => wit::FunctionKind::Alert,
        }
    }
}

impl From<FunctionInfo> for wit::FunctionInfo {
    fn from(f: FunctionInfo) -> Self {
        wit::FunctionInfo {
            name: f.name,
            kind: f.kind.into(),
            outputs: f.outputs,
            alert_kinds: f.alert_kinds,
        }
    }
}

impl From<ModuleInfo> for wit::ModuleInfo {
    fn from(m: ModuleInfo) -> Self {
        wit::ModuleInfo {
            name: m.name,
            version: m.version,
            functions: convert_vec(m.functions),
        }
    }
}

impl From<GuestError> for wit::GuestError {
    fn from(e: GuestError) -> Self {
        wit::GuestError { message: e.message }
    }
}
