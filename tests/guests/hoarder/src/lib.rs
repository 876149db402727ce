//! A tenant whose alert function hoards state: for keys whose first value
//! starts with `hoard`, it keeps `hoard_kib` KiB (param, default 900) of
//! state per key; other keys keep a row count and raise a `tenth` alert at
//! every tenth row. Aggregate `count` counts rows and sums `v`. The host's
//! state ceilings must refuse the hoarding keys' state and leave every
//! other key and every window as if the hoarder were not there.

use serde::{Deserialize, Serialize};
use sluice_guest::{
    Aggregate, Alerts, Event, Events, FloatField, Function, GuestError, Key, Output, Params,
    Schema, Tenant,
};

pub struct Hoarder {
    v: FloatField,
    hoard_bytes: usize,
}

impl Tenant for Hoarder {
    const NAME: &'static str = "hoarder";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    fn init(params: &Params, schema: &Schema) -> Result<Self, GuestError> {
        let kib: usize = params.get_or("hoard_kib", 900)?;
        Ok(Hoarder {
            v: schema.float("v")?,
            hoard_bytes: kib << 10,
        })
    }

    fn functions() -> Vec<Function<Self>> {
        vec![
            Function::aggregate::<Count>("count"),
            Function::alert::<Hoard>("hoard", &["tenth"], &["rows"], hoard),
        ]
    }
}

#[derive(Default, Serialize, Deserialize)]
struct Count {
    rows: u64,
    sum: f64,
}

impl Aggregate<Hoarder> for Count {
    const OUTPUTS: &'static [&'static str] = &["count", "sum"];

    fn add(&mut self, t: &Hoarder, event: Event<'_>) {
        self.rows += 1;
        self.sum += event.get(t.v);
    }

    fn merge(&mut self, other: Self) {
        self.rows += other.rows;
        self.sum += other.sum;
    }

    fn finish(&self, _: &Hoarder) -> Output {
        Output::new()
            .int("count", self.rows as i64)
            .float("sum", self.sum)
    }
}

#[derive(Default, Serialize, Deserialize)]
struct Hoard {
    rows: u64,
    pad: Vec<u8>,
}

fn hoard(t: &Hoarder, s: &mut Hoard, key: &Key<'_>, events: Events<'_>, out: &mut Alerts) {
    let hoarding = key.get(0).is_some_and(|k| k.starts_with("hoard"));
    for event in events {
        s.rows += 1;
        if s.rows.is_multiple_of(10) {
            out.raise(
                "tenth",
                event.time(),
                Output::new().int("rows", s.rows as i64),
            );
        }
    }
    if hoarding && s.pad.len() < t.hoard_bytes {
        s.pad.resize(t.hoard_bytes, 0xa5);
    }
}

sluice_guest::export_tenant!(Hoarder);
