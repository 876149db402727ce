//! # sluice host
//!
//! A multi-tenant streaming-analytics host. Records enter (ingress), are
//! parsed against the tenant's schema (parse), keyed and sharded (key),
//! assigned to event-time windows (window), and handed to the tenant's
//! sandboxed WebAssembly component (sandbox) whose results go to the sinks
//! (JSON lines, RabbitMQ, Cassandra).
//! `ARCHITECTURE.md` at the repository root is the map; this crate's modules
//! follow those stages, one concern each.

pub mod admin;
pub mod batch;
pub mod broker;
pub mod client;
pub mod generate;
pub mod ingress;
pub mod manifest;
pub mod metrics;
pub mod parse;
pub mod pipeline;
pub mod report;
pub mod runner;
pub mod sandbox;
pub mod serve;
pub mod sink;
pub mod state;
pub mod window;
