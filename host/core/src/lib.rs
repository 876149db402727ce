//! # sluice core
//!
//! The engine of the sluice host without its I/O: the data model a tenant
//! and the host share (`data`), the tenant manifest (`manifest`), row
//! parsing and keys (`parse`), event-time windows (`window`) and the
//! counters (`metrics`). No async runtime, Wasm engine, broker, database
//! or web framework: tenant functions are called through the traits in
//! `window` and `data`, which the sandbox implements and tests fake
//! natively. `ARCHITECTURE.md` at the repository root is the map.

pub mod data;
pub mod manifest;
pub mod metrics;
pub mod parse;
pub mod window;
