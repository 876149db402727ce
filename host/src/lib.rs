//! # sluice host
//!
//! A multi-tenant streaming-analytics host. Records enter (ingress), are
//! parsed against the tenant's schema (parse), keyed and sharded (key),
//! assigned to event-time windows (window), and handed to the tenant's
//! sandboxed WebAssembly component (sandbox) whose results go to the sinks
//! (JSON lines, RabbitMQ, Cassandra).
//! `ARCHITECTURE.md` at the repository root is the map; this crate's modules
//! follow those stages, one concern each.

// The engine without I/O clients is the `sluice-core` crate; its modules
// are re-exported under their old paths, so `crate::window` and
// `sluice_host::window` keep naming the same thing.
pub use sluice_core::{data, ingress, manifest, parse, pipeline, retry, sink, state, window};

// The tenant runtime and the broker and database clients are crates of
// their own, named here as modules so the host's paths read the same.
pub use sluice_amqp as amqp;
pub use sluice_cassandra as cassandra;
pub use sluice_sandbox as sandbox;

pub mod admin;
pub mod batch;
pub mod client;
pub mod generate;
pub mod metrics;
pub mod report;
pub mod runner;
pub mod serve;
