//! The host's own data model: the schema a tenant declares, the values its
//! functions return, the columnar batches they are given, and what a module
//! says of itself.
//!
//! These mirror the records of `wit/sluice.wit` field for field, but they
//! are plain Rust types: parsing, windows, sinks, the CQL encoder and the
//! report use them without depending on wasmtime's generated bindings. The
//! sandbox converts between them and the WIT types at the call boundary
//! (`sandbox/convert.rs`), and only there. The WIT file documents each
//! field; the comments here say only what differs.

mod batch;
pub mod error;

use std::time::Duration;

pub use batch::{
    AddGroup, BatchBuilder, BatchError, Column, EventBatch, FieldValue, KeyGroup, TextColumn,
    WindowGroup,
};
pub use error::{Limit, RejectReason, SandboxError, CONTRACT, MAX_GUEST_MESSAGE};

/// The five result types of the product: the `"type"` of a result line,
/// the word its routing key starts with, the Cassandra table it goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OutputType {
    WindowedAnalytic,
    GlobalAnalytic,
    WindowedMetric,
    GlobalMetric,
    Alert,
}

impl OutputType {
    /// Every type, in the product's order.
    pub const ALL: [OutputType; 5] = [
        OutputType::WindowedAnalytic,
        OutputType::GlobalAnalytic,
        OutputType::WindowedMetric,
        OutputType::GlobalMetric,
        OutputType::Alert,
    ];

    /// The `"type"` value of the JSON line.
    pub fn as_str(self) -> &'static str {
        match self {
            OutputType::WindowedAnalytic => "Windowed Analytic",
            OutputType::GlobalAnalytic => "Global Analytic",
            OutputType::WindowedMetric => "Windowed Metric",
            OutputType::GlobalMetric => "Global Metric",
            OutputType::Alert => "Alert",
        }
    }

    /// The slug: the routing-key word, and how the CLI names the type.
    pub fn slug(self) -> &'static str {
        match self {
            OutputType::WindowedAnalytic => "windowed-analytic",
            OutputType::GlobalAnalytic => "global-analytic",
            OutputType::WindowedMetric => "windowed-metric",
            OutputType::GlobalMetric => "global-metric",
            OutputType::Alert => "alert",
        }
    }

    /// The type a slug names.
    pub fn from_slug(slug: &str) -> Option<OutputType> {
        OutputType::ALL.into_iter().find(|t| t.slug() == slug)
    }
}

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

/// One declared column of the tenant's input schema.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldDef {
    pub name: String,
    pub ty: FieldType,
    pub optional: bool,
}

/// A scalar result value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Int(i64),
    Float(f64),
    Text(String),
    Boolean(bool),
}

/// A named result field, e.g. `("mean", float(240.5))`.
#[derive(Debug, Clone, PartialEq)]
pub struct DataField {
    pub name: String,
    pub value: Value,
}

/// An alert raised by an alert function.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// One of the kinds the function listed in `describe`.
    pub kind: String,
    /// Event time of the event that raised it, ms since the Unix epoch.
    pub event_time: i64,
    pub data: Vec<DataField>,
}

/// Result of an alert function for one key group.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertResult {
    /// The key's new state; applied only if the whole call succeeds.
    pub state: Vec<u8>,
    pub alerts: Vec<Alert>,
}

/// What kind of named function a module implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FunctionKind {
    /// Incremental: add events to accumulators, merge, finish.
    Aggregate,
    /// Gets every event of a fired window.
    ProcessWindow,
    /// Sees every event of each key, in order.
    Alert,
}

/// One named function, as listed by `describe`.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionInfo {
    pub name: String,
    pub kind: FunctionKind,
    /// Result or alert data field names; `bin:*` declares a prefix.
    pub outputs: Vec<String>,
    /// Alert kinds it may raise (alert functions only).
    pub alert_kinds: Vec<String>,
}

/// What a module says of itself in `describe`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ModuleInfo {
    pub name: String,
    pub version: String,
    pub functions: Vec<FunctionInfo>,
}

/// The bounds applied to every instance and call of one tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Linear memory (all memories of the instance together), in bytes.
    pub memory: u64,
    /// CPU budget of one call: the calling thread's CPU time, checked at
    /// every epoch deadline (so a busy machine that deschedules the thread
    /// does not count against the tenant).
    pub call_budget: Duration,
    /// What one key group or window may make the host emit, in bytes: its
    /// result lines (fields with their names, a fixed overhead per line
    /// and per field) and a key group's new state. See the sandbox's `output.rs`.
    pub max_output: u64,
}

impl Default for Limits {
    /// The manifest's documented defaults: 64 MiB, 50 ms, 1 MiB.
    fn default() -> Self {
        Limits {
            memory: 64 << 20,
            call_budget: Duration::from_millis(50),
            max_output: 1 << 20,
        }
    }
}
