//! Repeated warnings of one kind, summarised. The first few of each period
//! are logged in full; the rest are only counted, and one line with their
//! count follows — when the next one comes after the period ended, or when
//! the summariser is flushed or dropped (the end of a run, an undeploy).
//! So a tenant that fails on every call cannot flood the host's log, and
//! nothing it causes goes unreported: the log shows the first examples and
//! how many more there were.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Warnings of one kind about one tenant.
#[derive(Debug)]
pub struct Repeats {
    tenant: String,
    /// What the warnings say, for the summary line.
    what: &'static str,
    /// Shown in full per period.
    shown: u32,
    period: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// When the current period began (its first warning).
    since: Option<Instant>,
    /// Shown in the current period.
    shown: u32,
    /// Counted, not shown, in the current period.
    held: u64,
}

/// What to do with one warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admit {
    /// Log it in full.
    pub show: bool,
    /// Warnings held back in the period that just ended, to summarise
    /// first (with how long that period ran).
    pub summary: Option<(u64, Duration)>,
}

impl Repeats {
    /// Three in full per minute.
    pub fn new(tenant: &str, what: &'static str) -> Repeats {
        Repeats::with(tenant, what, 3, Duration::from_secs(60))
    }

    /// `shown` in full per `period`.
    pub fn with(tenant: &str, what: &'static str, shown: u32, period: Duration) -> Repeats {
        Repeats {
            tenant: tenant.to_owned(),
            what,
            shown,
            period,
            state: Mutex::new(State::default()),
        }
    }

    /// One more warning: whether to log it in full. A summary of the
    /// previous period's held-back warnings is logged first when due.
    pub fn admit(&self) -> bool {
        let admit = self.admit_at(Instant::now());
        if let Some((held, took)) = admit.summary {
            self.log_summary(held, took);
        }
        admit.show
    }

    /// [`Repeats::admit`] at `now`, logging nothing.
    pub fn admit_at(&self, now: Instant) -> Admit {
        let Ok(mut state) = self.state.lock() else {
            return Admit {
                show: false,
                summary: None,
            };
        };
        let mut summary = None;
        let ended = state
            .since
            .is_some_and(|since| now.saturating_duration_since(since) >= self.period);
        if ended || state.since.is_none() {
            if let Some(since) = state.since.filter(|_| state.held > 0) {
                summary = Some((state.held, now.saturating_duration_since(since)));
            }
            *state = State {
                since: Some(now),
                shown: 0,
                held: 0,
            };
        }
        let show = state.shown < self.shown;
        if show {
            state.shown += 1;
        } else {
            state.held += 1;
        }
        Admit { show, summary }
    }

    /// Logs the count of held-back warnings now, if any.
    pub fn flush(&self) {
        if let Some((held, took)) = self.take_held(Instant::now()) {
            self.log_summary(held, took);
        }
    }

    /// The held-back count and how long it gathered; the period restarts.
    pub fn take_held(&self, now: Instant) -> Option<(u64, Duration)> {
        let mut state = self.state.lock().ok()?;
        let since = state.since?;
        let held = std::mem::take(&mut state.held);
        *state = State::default();
        (held > 0).then(|| (held, now.saturating_duration_since(since)))
    }

    fn log_summary(&self, held: u64, took: Duration) {
        tracing::warn!(
            tenant = %self.tenant,
            "{held} more `{}` warnings in {:.0} s not shown (the first {} of each {:.0} s are)",
            self.what,
            took.as_secs_f64().max(1.0),
            self.shown,
            self.period.as_secs_f64(),
        );
    }
}

impl Drop for Repeats {
    fn drop(&mut self) {
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_of_each_period_show_and_the_rest_are_counted_once() {
        let r = Repeats::with("t", "x", 2, Duration::from_secs(10));
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let shows: Vec<bool> = (0..5).map(|i| r.admit_at(at(i)).show).collect();
        assert_eq!(shows, vec![true, true, false, false, false]);
        // The next period opens with the summary of the three held back.
        let next = r.admit_at(at(12));
        assert!(next.show);
        assert_eq!(next.summary, Some((3, Duration::from_secs(12))));
        // Nothing held since: a flush has nothing to say, nor a quiet period.
        assert_eq!(r.take_held(at(13)), None);
        assert_eq!(r.admit_at(at(40)).summary, None);
    }

    #[test]
    fn a_flush_reports_what_is_held_and_starts_over() {
        let r = Repeats::with("t", "x", 1, Duration::from_secs(60));
        let t0 = Instant::now();
        for _ in 0..1000 {
            r.admit_at(t0);
        }
        assert_eq!(
            r.take_held(t0 + Duration::from_secs(1)),
            Some((999, Duration::from_secs(1)))
        );
        assert!(r.admit_at(t0 + Duration::from_secs(2)).show);
    }
}
