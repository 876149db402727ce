//! The BTS tenant's stream component: `stats` and `alerts` over
//! base-station sensor records, keyed by (station_id, datapoint_id,
//! alarm_id). The analytics live in `bts-stream` (documented there), which
//! has no exports so other tenants can embed them; this crate only
//! exports them as the `bts-analytics` module.

pub use bts_stream::*;

sluice_guest::export_tenant!(Bts);
