//! Batch analytics: a `[[batch]]` job of the manifest run once over a
//! bounded input (a CSV file, or the tenant's stored events in Cassandra)
//! through the same pipeline and tenant contract as the stream — "batch as
//! a special case of streaming": the watermark stays put until the input
//! ends, then every window flushes. The jobs' data (range, results, their
//! JSON line) is the core's `batch` module, re-exported here; this module
//! runs them (`run.rs`: a job over a file; `stored.rs`: over the stored
//! events, results into Cassandra).

pub mod run;
pub mod stored;

pub use run::{Error, JobOutcome, JobRun};
pub use sluice_core::batch::*;
