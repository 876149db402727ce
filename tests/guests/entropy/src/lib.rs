//! A tenant that reports what a sandbox must make deterministic: the wall
//! clock, std's hash seed and OS randomness. Aggregate `probe` counts rows;
//! its `finish` outputs int fields `wall_ms` (ms since the Unix epoch),
//! `hash` (a fixed value hashed with a fresh `RandomState`) and `random`
//! (a `getrandom` u64, which on wasm32-wasip2 comes from `wasi:random`).
//! Two runs under the sluice host must give equal values.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sluice_guest::{Aggregate, Event, Function, GuestError, Output, Params, Schema, Tenant};

pub struct Entropy;

impl Tenant for Entropy {
    const NAME: &'static str = "entropy";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    fn init(_: &Params, _: &Schema) -> Result<Self, GuestError> {
        Ok(Entropy)
    }

    fn functions() -> Vec<Function<Self>> {
        vec![Function::aggregate::<Probe>("probe")]
    }
}

#[derive(Default, Serialize, Deserialize)]
struct Probe {
    rows: u64,
}

impl Aggregate<Entropy> for Probe {
    const OUTPUTS: &'static [&'static str] = &["wall_ms", "hash", "random"];

    fn add(&mut self, _: &Entropy, _: Event<'_>) {
        self.rows += 1;
    }

    fn merge(&mut self, other: Self) {
        self.rows += other.rows;
    }

    fn finish(&self, _: &Entropy) -> Output {
        // A clock before the epoch reads as a negative number, not a trap.
        let wall_ms = match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(since) => since.as_millis() as i64,
            Err(before) => -(before.duration().as_millis() as i64),
        };
        let hash = RandomState::new().hash_one("sluice") as i64;
        // A failing entropy source is what this guest exists to expose: trap.
        let random = getrandom::u64().expect("getrandom works under the sluice host") as i64;
        Output::new()
            .int("wall_ms", wall_ms)
            .int("hash", hash)
            .int("random", random)
    }
}

sluice_guest::export_tenant!(Entropy);
