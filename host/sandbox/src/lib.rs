//! The tenant sandbox: runs tenant WebAssembly components under wasmtime
//! with no ambient authority and bounded calls.
//!
//! - [`SandboxEngine`] (one per process) compiles and validates components —
//!   a component, importing only `sluice:analytics/host` and the
//!   deterministic WASI subset, exporting the sluice world — and caches
//!   compiled artifacts by content hash.
//! - [`TenantModule`] is a validated, pre-instantiated component.
//! - [`TenantInstance`] (one per shard worker) makes the batched calls of
//!   the WIT contract. Each call has a CPU budget (epoch deadline), a memory
//!   cap and an output cap; a trap or limit becomes a typed
//!   [`SandboxError`] naming tenant and function, and the instance is
//!   rebuilt before the next call. State is passed by value, so a failed
//!   call leaves everything the host holds unchanged.
//! - What a call returns is counted before the host builds its copy
//!   (`output.rs`): per key group or window, against the output cap; per
//!   call, against the host's ceiling; names and kinds against `describe`.
//! - No guest call can block: sleeps and timed waits are refused at once
//!   (`wasi.rs`).
//! - [`TenantLog`] writes a tenant's log lines, stdout and failed calls to
//!   the host's log (rate-limited, summarised) and to the tenant's bounded
//!   [`LogBook`], which `sluice logs` reads.
//! - [`Ceilings`] bound what any tenant may declare (budget, memory,
//!   output) or cause (module size, compile time, compiles at once).

mod bindings;
mod calls;
mod ceilings;
mod convert;
mod engine;
mod error;
mod instance;
mod limits;
mod log;
pub mod log_book;
mod module;
mod needs;
mod output;
mod packed;
mod pieces;
mod priority;
mod validate;
mod wasi;

pub use bindings::{GuestError, LogLevel};
pub use ceilings::Ceilings;
pub use engine::{default_cache_dir, LoadSource, SandboxConfig, SandboxEngine, TrapBackoff};
pub use instance::{InstanceStats, TenantInstance};
pub use log::TenantLog;
pub use log_book::{LogBook, LogEntry, LogPage};
pub use module::TenantModule;
pub use needs::{count as count_needs, Needs};
pub use priority::{current_nice, TRAP_NICE};
/// The result of a tenant call; its error is the core's [`SandboxError`](sluice_core::data::SandboxError).
pub use sluice_core::data::error::Result;
pub use wasi::{PinnedClock, SeededRandom};
