//! Sandbox integration tests: real compiled guest components under the real
//! wasmtime sandbox. One binary, a module per area.

mod attacks;
mod bts;
mod common;
mod determinism;
mod hostile;
mod pool;
mod rejection;
mod spike;
mod windows_bts;
