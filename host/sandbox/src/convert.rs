//! Converting between the WIT types of the generated bindings and the
//! host's own data model ([`sluice_core::data`]), at the call boundary only:
//! what goes in is converted just before a call, what comes back right
//! after the sandbox has checked it. Moves where the value is owned (each
//! string and list is handed over, not copied); inputs the caller keeps
//! (the batch, its groups) are copied, which costs a bulk copy of what the
//! call lowers into guest memory anyway.

use super::bindings as wit;
use sluice_core::data;

impl From<data::FieldType> for wit::FieldType {
    fn from(ty: data::FieldType) -> Self {
        match ty {
            data::FieldType::Text => wit::FieldType::Text,
            data::FieldType::Int => wit::FieldType::Int,
            data::FieldType::Float => wit::FieldType::Float,
            data::FieldType::Boolean => wit::FieldType::Boolean,
            data::FieldType::Timestamp => wit::FieldType::Timestamp,
        }
    }
}

impl From<&data::FieldDef> for wit::FieldDef {
    fn from(def: &data::FieldDef) -> Self {
        wit::FieldDef {
            name: def.name.clone(),
            ty: def.ty.into(),
            optional: def.optional,
        }
    }
}

impl From<wit::Value> for data::Value {
    fn from(value: wit::Value) -> Self {
        match value {
            wit::Value::Int(v) => data::Value::Int(v),
            wit::Value::Float(v) => data::Value::Float(v),
            wit::Value::Text(v) => data::Value::Text(v),
            wit::Value::Boolean(v) => data::Value::Boolean(v),
        }
    }
}

impl From<wit::DataField> for data::DataField {
    fn from(field: wit::DataField) -> Self {
        data::DataField {
            name: field.name,
            value: field.value.into(),
        }
    }
}

/// Converts a call's per-item field lists.
pub(crate) fn fields(items: Vec<Vec<wit::DataField>>) -> Vec<Vec<data::DataField>> {
    items
        .into_iter()
        .map(|fields| fields.into_iter().map(Into::into).collect())
        .collect()
}

impl From<wit::Alert> for data::Alert {
    fn from(alert: wit::Alert) -> Self {
        data::Alert {
            kind: alert.kind,
            event_time: alert.event_time,
            data: alert.data.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<wit::AlertResult> for data::AlertResult {
    fn from(result: wit::AlertResult) -> Self {
        data::AlertResult {
            state: result.state,
            alerts: result.alerts.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<wit::FunctionKind> for data::FunctionKind {
    fn from(kind: wit::FunctionKind) -> Self {
        match kind {
            wit::FunctionKind::Aggregate => data::FunctionKind::Aggregate,
            wit::FunctionKind::ProcessWindow => data::FunctionKind::ProcessWindow,
            wit::FunctionKind::Alert => data::FunctionKind::Alert,
        }
    }
}

impl From<wit::ModuleInfo> for data::ModuleInfo {
    fn from(info: wit::ModuleInfo) -> Self {
        data::ModuleInfo {
            name: info.name,
            version: info.version,
            functions: info
                .functions
                .into_iter()
                .map(|f| data::FunctionInfo {
                    name: f.name,
                    kind: f.kind.into(),
                    outputs: f.outputs,
                    alert_kinds: f.alert_kinds,
                })
                .collect(),
        }
    }
}

impl From<&data::Column> for wit::Column {
    fn from(column: &data::Column) -> Self {
        match column {
            data::Column::Text(t) => wit::Column::Text(wit::TextColumn {
                data: t.data.clone(),
                offsets: t.offsets.clone(),
            }),
            data::Column::Int(v) => wit::Column::Int(v.clone()),
            data::Column::Float(v) => wit::Column::Float(v.clone()),
            data::Column::Boolean(v) => wit::Column::Boolean(v.clone()),
            data::Column::Timestamp(v) => wit::Column::Timestamp(v.clone()),
        }
    }
}

impl From<&data::EventBatch> for wit::EventBatch {
    fn from(batch: &data::EventBatch) -> Self {
        wit::EventBatch {
            times: batch.times.clone(),
            columns: batch.columns.iter().map(Into::into).collect(),
            absent: batch.absent.clone(),
        }
    }
}

impl From<&data::KeyGroup> for wit::KeyGroup {
    fn from(group: &data::KeyGroup) -> Self {
        wit::KeyGroup {
            key: group.key.clone(),
            state: group.state.clone(),
            start: group.start,
            len: group.len,
        }
    }
}

impl From<&data::WindowGroup> for wit::WindowGroup {
    fn from(group: &data::WindowGroup) -> Self {
        wit::WindowGroup {
            key: group.key.clone(),
            start: group.start,
            end: group.end,
            first: group.first,
            len: group.len,
        }
    }
}
