//! Pipeline integration tests: `sluice run` (the real binary) over
//! generated and hand-written inputs with real compiled tenant components.
//! One binary, a module per area.

mod batch;
mod ceilings;
mod checkpoint;
mod cli;
mod common;
mod flow;
mod guards;
mod hostile;
mod idle;
mod languages;
mod poison;
mod sessions;
