//! Host-side bindings generated from `wit/sluice.wit`, kept in one place so
//! the rest of the host names WIT types through this module only.

wasmtime::component::bindgen!({
    world: "tenant",
    path: "../../wit",
    additional_derives: [PartialEq],
});

pub use exports::sluice::analytics::analytics::Guest as Analytics;
pub use sluice::analytics::host::LogLevel;
pub use sluice::analytics::types::{
    AddGroups, Alert, AlertResult, Column, DataField, EventBatch, FieldDef, FieldType,
    FunctionKind, GuestError, KeyGroup, ModuleInfo, PackedAccumulators, PackedBytes, PackedFields,
    TextColumn, Value, WindowGroup,
};
