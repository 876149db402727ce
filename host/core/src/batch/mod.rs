//! Batch analytics' data: a `[[batch]]` job of the manifest runs once over
//! a bounded input through the same pipeline and tenant contract as the
//! stream (the host's `batch` module runs it). Here: the range a run
//! covers (`range.rs`: `--from/--to` instants, the aligned ranges of
//! schedule and alert triggers), its results, and their JSON line
//! (`output.rs`).

pub mod output;
pub mod range;

pub use range::{alert_range, parse_instant, schedule_range};

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
