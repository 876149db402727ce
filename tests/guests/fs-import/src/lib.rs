//! A tenant that reads a file in `init`, so its component imports
//! `wasi:filesystem`; the host must reject it at deployment. Otherwise a
//! plain `count` aggregate (output `counter`).

use serde::{Deserialize, Serialize};
use sluice_guest::{Aggregate, Event, Function, GuestError, Output, Params, Schema, Tenant};

pub struct FsImport;

impl Tenant for FsImport {
    const NAME: &'static str = "fs-import";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    fn init(_: &Params, _: &Schema) -> Result<Self, GuestError> {
        match std::fs::read("/etc/hostname") {
            Ok(bytes) => {
                sluice_guest::log::warn(&format!("read {} bytes of /etc/hostname", bytes.len()))
            }
            Err(e) => sluice_guest::log::info(&format!("no /etc/hostname: {e}")),
        }
        Ok(FsImport)
    }

    fn functions() -> Vec<Function<Self>> {
        vec![Function::aggregate::<Count>("count")]
    }
}

#[derive(Default, Serialize, Deserialize)]
struct Count(u64);

impl Aggregate<FsImport> for Count {
    const OUTPUTS: &'static [&'static str] = &["counter"];

    fn add(&mut self, _: &FsImport, _: Event<'_>) {
        self.0 += 1;
    }

    fn merge(&mut self, other: Self) {
        self.0 += other.0;
    }

    fn finish(&self, _: &FsImport) -> Output {
        Output::new().int("counter", self.0 as i64)
    }
}

sluice_guest::export_tenant!(FsImport);
