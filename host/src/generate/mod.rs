//! Synthetic input data for demos, tests and benchmarks, generated
//! deterministically from a seed (`sluice gen-bts`).

pub mod bts;
mod rng;
#[cfg(test)]
mod tests;
