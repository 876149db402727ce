//! Client-side tools around a running sluice: `sluice publish` (the sensor
//! simulator) and `sluice tail` (the tenant's result receiver).

pub mod publish;
pub mod tail;
