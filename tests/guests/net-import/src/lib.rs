//! A tenant that opens a TCP connection in `init`, so its component imports
//! `wasi:sockets`; the host must reject it at deployment. Otherwise a
//! plain `count` aggregate (output `counter`).

use serde::{Deserialize, Serialize};
use sluice_guest::{Aggregate, Event, Function, GuestError, Output, Params, Schema, Tenant};

pub struct NetImport;

impl Tenant for NetImport {
    const NAME: &'static str = "net-import";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    fn init(_: &Params, _: &Schema) -> Result<Self, GuestError> {
        match std::net::TcpStream::connect("127.0.0.1:9") {
            Ok(_) => sluice_guest::log::warn("connected to 127.0.0.1:9"),
            Err(e) => sluice_guest::log::info(&format!("no connection to 127.0.0.1:9: {e}")),
        }
        Ok(NetImport)
    }

    fn functions() -> Vec<Function<Self>> {
        vec![Function::aggregate::<Count>("count")]
    }
}

#[derive(Default, Serialize, Deserialize)]
struct Count(u64);

impl Aggregate<NetImport> for Count {
    const OUTPUTS: &'static [&'static str] = &["counter"];

    fn add(&mut self, _: &NetImport, _: Event<'_>) {
        self.0 += 1;
    }

    fn merge(&mut self, other: Self) {
        self.0 += other.0;
    }

    fn finish(&self, _: &NetImport) -> Output {
        Output::new().int("counter", self.0 as i64)
    }
}

sluice_guest::export_tenant!(NetImport);
