//! Tests of the window engine: against a brute-force oracle on random
//! streams (`oracle`) and on chosen cases (`cases`), with native tenant
//! functions; the sandbox's tests run it with the real BTS component
//! (`host/sandbox/tests/sandbox/windows_bts.rs`).

mod cases;
mod ceilings;
mod fake;
mod oracle;
mod sessions;
