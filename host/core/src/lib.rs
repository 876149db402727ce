//! # sluice core
//!
//! The engine of the sluice host without its I/O clients: the data model a
//! tenant and the host share (`data`), the tenant manifest (`manifest`),
//! row parsing and keys (`parse`), event-time windows (`window`), the
//! counters (`metrics`), and the embedded pipeline that runs them
//! (`pipeline`) with what it reads from (`ingress`), writes to (`sink`)
//! and checkpoints into (`state`), plus the batch jobs' data (`batch`) and
//! the summary of repeated warnings (`repeats`).
//! No async runtime, Wasm engine, broker, database or web framework: tenant
//! functions are called through the traits in `window` and `pipeline`,
//! which the sandbox implements and tests fake natively; brokers and
//! databases plug in behind `ingress::MessageSource`, `sink::MessageSink`,
//! `sink::TableSink` and `state::CheckpointStore`. `ARCHITECTURE.md` at the
//! repository root is the map.

pub mod batch;
pub mod data;
pub mod ingress;
pub mod manifest;
pub mod metrics;
pub mod parse;
pub mod pipeline;
pub mod repeats;
pub mod retry;
pub mod sink;
pub mod state;
pub mod window;
