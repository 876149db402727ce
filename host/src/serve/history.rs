//! The short history behind the console's sparklines: per tenant, one
//! sample every [`RESOLUTION`] over the last [`SPAN`], in memory only.
//!
//! Bounded by construction: [`SAMPLES`] samples of [`Sample`] (48 bytes)
//! per tenant — 90 × 48 B ≈ 4.3 KiB — held in the tenant's slot, so it
//! goes with the tenant at undeploy and the host's tenant count bounds the
//! whole. It starts empty after a restart: a dashboard wanting more keeps
//! `/metrics` in Prometheus (`deploy/grafana/`).

use std::collections::VecDeque;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

/// Between two samples.
pub const RESOLUTION: Duration = Duration::from_secs(10);
/// How far back the history reaches.
pub const SPAN: Duration = Duration::from_secs(15 * 60);
/// Samples kept per tenant: [`SPAN`] / [`RESOLUTION`].
pub const SAMPLES: usize = (SPAN.as_secs() / RESOLUTION.as_secs()) as usize;

/// One point of a tenant's history.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Sample {
    /// Seconds since the Unix epoch.
    pub at: u64,
    /// Records read per second over the last 10 s.
    pub events_per_sec: f64,
    /// Input not yet done with: ready in the queue, or delivered and not acked.
    pub consumer_lag: u64,
    pub records_in: u64,
    pub guest_traps: u64,
    /// Bad, late, future and limited rows so far (dead-lettered rows).
    pub dead_lettered: u64,
}

/// A tenant's samples, oldest first.
#[derive(Debug, Default)]
pub struct History {
    samples: VecDeque<Sample>,
    last: Option<Instant>,
}

/// What `GET /v1/tenants/{t}/history` answers.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryView {
    pub resolution_secs: u64,
    pub span_secs: u64,
    pub samples: Vec<Sample>,
}

impl History {
    /// True when a sample is due at `now` (the first at once).
    pub fn due(&self, now: Instant) -> bool {
        self.last
            .is_none_or(|last| now.duration_since(last) >= RESOLUTION)
    }

    /// Adds `sample` taken at `now`, dropping the oldest past [`SAMPLES`].
    pub fn push(&mut self, now: Instant, sample: Sample) {
        self.last = Some(now);
        if self.samples.len() == SAMPLES {
            self.samples.pop_front();
        }
        self.samples.push_back(sample);
    }

    pub fn view(&self) -> HistoryView {
        HistoryView {
            resolution_secs: RESOLUTION.as_secs(),
            span_secs: SPAN.as_secs(),
            samples: self.samples.iter().copied().collect(),
        }
    }
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at: u64) -> Sample {
        Sample {
            at,
            events_per_sec: 1.0,
            consumer_lag: 0,
            records_in: at,
            guest_traps: 0,
            dead_lettered: 0,
        }
    }

    #[test]
    fn keeps_the_last_fifteen_minutes_at_ten_second_resolution() {
        let mut h = History::default();
        let start = Instant::now();
        assert!(h.due(start));
        for i in 0..200u64 {
            let now = start + RESOLUTION * u32::try_from(i).expect("small");
            assert!(h.due(now));
            h.push(now, sample(i));
            assert!(!h.due(now + Duration::from_secs(9)));
        }
        let view = h.view();
        assert_eq!(view.samples.len(), 90);
        assert_eq!(view.samples.first().map(|s| s.at), Some(110));
        assert_eq!(view.samples.last().map(|s| s.at), Some(199));
    }
}
