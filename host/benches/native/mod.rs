//! A tenant run natively, for the benchmarks' baselines: the same Rust
//! analytics through `sluice_guest::Module` (the dispatcher the component
//! exports), behind the host's call traits. Each call converts (copies) its
//! inputs to the SDK's types, as the Wasm path copies them into guest
//! memory.

use sluice_core::data::{
    self, AddGroup, AlertResult, Column, DataField, EventBatch, FieldDef, FieldType, KeyGroup,
    SandboxError, Value, WindowGroup,
};
use sluice_core::pipeline::AlertCalls;
use sluice_core::window::WindowCalls;
use sluice_guest as sdk;

pub struct Native<T: sdk::Tenant> {
    pub module: sdk::Module<T>,
    reads: Vec<u32>,
}

impl<T: sdk::Tenant> Native<T> {
    pub fn new(params: Vec<(String, String)>, schema: Vec<FieldDef>) -> Self {
        let module = sdk::Module::<T>::init(params, sdk_schema(schema)).expect("native init");
        let reads = module.reads();
        Native { module, reads }
    }
}

pub fn sdk_schema(schema: Vec<FieldDef>) -> Vec<sdk::FieldDef> {
    schema
        .into_iter()
        .map(|f| sdk::FieldDef {
            name: f.name,
            ty: match f.ty {
                FieldType::Text => sdk::FieldType::Text,
                FieldType::Int => sdk::FieldType::Int,
                FieldType::Float => sdk::FieldType::Float,
                FieldType::Boolean => sdk::FieldType::Boolean,
                FieldType::Timestamp => sdk::FieldType::Timestamp,
            },
            optional: f.optional,
        })
        .collect()
}

pub fn sdk_batch(b: &EventBatch) -> sdk::Batch {
    sdk::Batch {
        times: b.times.clone(),
        columns: b
            .columns
            .iter()
            .map(|c| match c {
                Column::Text(t) => sdk::Column::Text(sdk::TextColumn {
                    data: t.data.clone(),
                    offsets: t.offsets.clone(),
                }),
                Column::Int(v) => sdk::Column::Int(v.clone()),
                Column::Float(v) => sdk::Column::Float(v.clone()),
                Column::Boolean(v) => sdk::Column::Boolean(v.clone()),
                Column::Timestamp(v) => sdk::Column::Timestamp(v.clone()),
            })
            .collect(),
        absent: b.absent.clone(),
    }
}

pub fn sdk_groups(groups: &[KeyGroup]) -> Vec<sdk::KeyGroup> {
    groups
        .iter()
        .map(|g| sdk::KeyGroup {
            key: g.key.clone(),
            state: g.state.clone(),
            start: g.start,
            len: g.len,
        })
        .collect()
}

pub fn sdk_adds<'a>(groups: &[AddGroup<'a>]) -> Vec<sdk::AddGroup<'a>> {
    groups
        .iter()
        .map(|g| sdk::AddGroup {
            rows: g.rows,
            state: g.state,
        })
        .collect()
}

pub fn sdk_windows(windows: &[WindowGroup]) -> Vec<sdk::WindowGroup> {
    windows
        .iter()
        .map(|w| sdk::WindowGroup {
            key: w.key.clone(),
            start: w.start,
            end: w.end,
            first: w.first,
            len: w.len,
        })
        .collect()
}

pub fn host_fields(fields: Vec<sdk::DataField>) -> Vec<DataField> {
    fields
        .into_iter()
        .map(|f| DataField {
            name: f.name.into_owned(),
            value: match f.value {
                sdk::Value::Int(i) => Value::Int(i),
                sdk::Value::Float(x) => Value::Float(x),
                sdk::Value::Text(t) => Value::Text(t),
                sdk::Value::Boolean(b) => Value::Boolean(b),
            },
        })
        .collect()
}

fn guest_error(function: &str, e: sdk::GuestError) -> SandboxError {
    SandboxError::Guest {
        tenant: "native".into(),
        function: function.into(),
        message: e.message,
    }
}

impl<T: sdk::Tenant> WindowCalls for Native<T> {
    fn aggregate_add(
        &mut self,
        function: &str,
        groups: &[AddGroup<'_>],
        batch: &EventBatch,
    ) -> data::error::Result<Vec<Vec<u8>>> {
        self.module
            .aggregate_add(function, &sdk_adds(groups), sdk_batch(batch))
            .map_err(|e| guest_error(function, e))
    }

    fn aggregate_merge(
        &mut self,
        function: &str,
        accumulators: &[&[&[u8]]],
        _at_ms: i64,
    ) -> data::error::Result<Vec<Vec<u8>>> {
        self.module
            .aggregate_merge(function, accumulators)
            .map_err(|e| guest_error(function, e))
    }

    fn aggregate_finish(
        &mut self,
        function: &str,
        windows: &[&[&[u8]]],
        _at_ms: i64,
    ) -> data::error::Result<Vec<Vec<DataField>>> {
        self.module
            .aggregate_finish(function, windows)
            .map(|all| all.into_iter().map(host_fields).collect())
            .map_err(|e| guest_error(function, e))
    }

    fn process_window(
        &mut self,
        function: &str,
        windows: &[WindowGroup],
        batch: &EventBatch,
    ) -> data::error::Result<Vec<Vec<DataField>>> {
        self.module
            .process_window(function, sdk_windows(windows), sdk_batch(batch))
            .map(|all| all.into_iter().map(host_fields).collect())
            .map_err(|e| guest_error(function, e))
    }

    fn reads(&self) -> &[u32] {
        &self.reads
    }
}

impl<T: sdk::Tenant> AlertCalls for Native<T> {
    fn alert(
        &mut self,
        function: &str,
        groups: &[KeyGroup],
        batch: &EventBatch,
    ) -> data::error::Result<Vec<AlertResult>> {
        self.module
            .alert(function, sdk_groups(groups), sdk_batch(batch))
            .map(|all| {
                all.into_iter()
                    .map(|r| AlertResult {
                        state: r.state,
                        alerts: r
                            .alerts
                            .into_iter()
                            .map(|a| data::Alert {
                                kind: a.kind,
                                event_time: a.event_time,
                                data: host_fields(a.data),
                            })
                            .collect(),
                    })
                    .collect()
            })
            .map_err(|e| guest_error(function, e))
    }
}
