//! The sandbox's errors are the data model's ([`sluice_core::data::error`]);
//! this adds how a wasmtime error reads.

pub use sluice_core::data::error::{cut_message, Limit, RejectReason, Result, SandboxError};

/// Renders a wasmtime error with its whole cause chain on one line,
/// without wasmtime's multi-line wasm backtrace.
pub(crate) fn chain(err: &wasmtime::Error) -> String {
    let mut out = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        let line = text.lines().next().unwrap_or("").trim();
        // wasmtime attaches the backtrace as a context of many lines.
        if line.is_empty() || line.starts_with("error while executing at wasm backtrace") {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(line);
    }
    out
}
