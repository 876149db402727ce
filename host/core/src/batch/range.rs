//! The ranges job runs cover: given on the command line, or derived from a
//! trigger — aligned, so every firing that means "the same period" covers
//! exactly the same range and rewrites exactly the same rows.

use chrono::{DateTime, NaiveDate, NaiveDateTime};

use crate::manifest::{OnAlertSpec, ScheduleSpec};

use super::JobRange;

/// Parses an instant of `--from`/`--to`: RFC 3339
/// (`2017-02-18T18:28:05Z`), `YYYY-MM-DD HH:MM:SS` or `YYYY-MM-DD`
/// (UTC; a date is its midnight), or ms since the Unix epoch.
pub fn parse_instant(text: &str) -> Result<i64, String> {
    let t = text.trim();
    if let Ok(ms) = t.parse::<i64>() {
        return Ok(ms);
    }
    if let Ok(dt) = DateTime::parse_from_rfc3339(t) {
        return Ok(dt.timestamp_millis());
    }
    if let Ok(dt) = NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S") {
        return Ok(dt.and_utc().timestamp_millis());
    }
    if let Ok(d) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        if let Some(dt) = d.and_hms_opt(0, 0, 0) {
            return Ok(dt.and_utc().timestamp_millis());
        }
    }
    Err(format!(
        "`{text}` is not a time: give RFC 3339 (2017-02-18T18:28:05Z), `YYYY-MM-DD HH:MM:SS` \
         or `YYYY-MM-DD` (UTC), or ms since the Unix epoch"
    ))
}

/// The range a schedule firing at `now_ms` covers: `range` long, ending at
/// `now_ms` rounded down to `align`.
pub fn schedule_range(spec: &ScheduleSpec, now_ms: i64) -> JobRange {
    let align = millis(spec.align);
    let to = now_ms.div_euclid(align).saturating_mul(align);
    JobRange {
        from: to.saturating_sub(millis(spec.range)),
        to,
    }
}

/// The range an alert at `event_time` triggers: `range` long, ending at the
/// first multiple of `align` after the alert (so the alert's own event is
/// in it).
pub fn alert_range(spec: &OnAlertSpec, event_time: i64) -> JobRange {
    let align = millis(spec.align);
    let to = (event_time.div_euclid(align).saturating_add(1)).saturating_mul(align);
    JobRange {
        from: to.saturating_sub(millis(spec.range)),
        to,
    }
}

/// A positive duration in ms (at least 1: it divides).
pub fn millis(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX).max(1)
}

/// Wall-clock time, ms since the Unix epoch (run records, schedules).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const H: i64 = 3_600_000;

    #[test]
    fn instants_read_in_every_accepted_spelling() {
        assert_eq!(parse_instant("1487442485000"), Ok(1_487_442_485_000));
        assert_eq!(parse_instant("2017-02-18T18:28:05Z"), Ok(1_487_442_485_000));
        assert_eq!(
            parse_instant("2017-02-18T19:28:05+01:00"),
            Ok(1_487_442_485_000)
        );
        assert_eq!(parse_instant("2017-02-18 18:28:05"), Ok(1_487_442_485_000));
        assert_eq!(parse_instant("2017-02-18"), Ok(1_487_376_000_000));
        let e = parse_instant("yesterday").expect_err("not a time");
        assert!(e.contains("RFC 3339"), "{e}");
    }

    #[test]
    fn every_firing_in_one_alignment_period_covers_the_same_range() {
        let spec = ScheduleSpec {
            every: Duration::from_secs(5),
            range: Duration::from_secs(24 * 3600),
            align: Duration::from_secs(3600),
        };
        let a = schedule_range(&spec, 10 * H + 1);
        let b = schedule_range(&spec, 11 * H - 1);
        assert_eq!(a, b);
        assert_eq!(
            a,
            JobRange {
                from: -14 * H,
                to: 10 * H
            }
        );
        assert_ne!(schedule_range(&spec, 11 * H), a);
    }

    #[test]
    fn an_alert_range_ends_after_the_alert_on_the_alignment() {
        let spec = OnAlertSpec {
            kinds: vec!["predicted-breach".into()],
            range: Duration::from_secs(24 * 3600),
            align: Duration::from_secs(3600),
            scope: vec![],
        };
        let r = alert_range(&spec, 10 * H);
        assert_eq!(
            r,
            JobRange {
                from: -13 * H,
                to: 11 * H
            }
        );
        assert!((r.from..r.to).contains(&(10 * H)));
        assert_eq!(alert_range(&spec, 11 * H - 1), r);
        assert_eq!(alert_range(&spec, -1).to, 0);
    }
}
