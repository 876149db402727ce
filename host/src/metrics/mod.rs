//! Counters and observers are the core's (`sluice_core::metrics`); the
//! Prometheus exposition of them, which needs an HTTP server's registry,
//! is the host's.

pub use sluice_core::metrics::*;

pub mod prometheus;
