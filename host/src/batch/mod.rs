//! Batch analytics: a `[[batch]]` job of the manifest run once over a
//! bounded input (a CSV file, or the tenant's stored events in Cassandra)
//! through the same pipeline and tenant contract as the stream — "batch as
//! a special case of streaming": the watermark stays put until the input
//! ends, then every window flushes.

pub mod output;
pub mod range;
pub mod run;
pub mod stored;

pub use range::{alert_range, parse_instant, schedule_range};
pub use run::{Error, JobOutcome, JobRun};

use crate::data::DataField;
use crate::sink::OwnedWindow;

/// The event-time range a job run covers, ms since the Unix epoch,
/// `[from, to)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobRange {
    pub from: i64,
    pub to: i64,
}

/// One result of a job run: a window of one key, with the tenant
/// function's output fields.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchResult {
    pub tenant: String,
    pub job: String,
    pub range: JobRange,
    /// A `range` window covers exactly `range`.
    pub window: OwnedWindow,
    /// The job's key column names, in key order.
    pub key_names: Vec<String>,
    /// Key values, in the order of `key_names`.
    pub key: Vec<String>,
    /// Output fields in the order the function returned them.
    pub fields: Vec<DataField>,
}

pub use crate::manifest::chart::{ChartKind, ChartSpec};

/// A job's results as the report draws them.
#[derive(Debug, Clone)]
pub struct ReportJob {
    pub name: String,
    pub range: JobRange,
    pub charts: Vec<ChartSpec>,
    pub results: Vec<BatchResult>,
}
