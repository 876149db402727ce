//! Client-side tools around a running sluice: `sluice publish` (the sensor
//! simulator), `sluice tail` (the tenant's result receiver) and the admin
//! commands (`sluice deploy`, `list`, …) of a `sluice serve` host.

pub mod admin;
pub mod publish;
pub mod tail;
