//! The host's ceilings on what one tenant's input and state may cost, and
//! the event-time guard that keeps one row from blinding a stream.
//!
//! Ceilings are the host's, not the tenant's: `sluice run` takes them as
//! flags, `sluice serve` from `host.toml` (installed once as the process's
//! default, so every pipeline it starts gets them). A manifest asking for
//! more than a ceiling is refused before any input is read.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::ingress::lines::DEFAULT_MAX_LINE_BYTES;
use crate::manifest::{Manifest, WindowKind};
use crate::parse::{BadKind, BadRow, ParsedRow, Position};

/// What one tenant may cost the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ceilings {
    /// Longest input line (file, stdin, a broker message's line),
    /// terminator excluded; longer ones become `bad-row` dead letters.
    pub max_line_bytes: usize,
    /// Most panes per time window (`size / gcd(size, slide)`) and most
    /// windows one row belongs to (`size / slide`, rounded up): both are
    /// what a row costs in state and outputs.
    pub max_panes_per_window: u64,
    /// Largest state of one key the host keeps: an alert function's state,
    /// one window accumulator, the rows buffered for one process window.
    pub max_key_state: usize,
    /// All state of a tenant together: window accumulators, buffered rows
    /// and alert states (split evenly over its shard workers, so which key
    /// hits it does not depend on thread timing; see
    /// [`crate::window::StateBudget`]).
    pub max_tenant_state: u64,
    /// Distinct keys a tenant's run may hold state for.
    pub max_keys: u64,
}

impl Ceilings {
    /// Defaults: far above what the BTS tenant needs (60 keys, a 12-pane
    /// window, alert states of a few hundred bytes), far below what hurts
    /// a host (10⁶ BTS keys held 2.17 GB).
    pub const DEFAULT: Ceilings = Ceilings {
        max_line_bytes: DEFAULT_MAX_LINE_BYTES,
        max_panes_per_window: 2_000,
        max_key_state: 256 << 10,
        max_tenant_state: 512 << 20,
        max_keys: 100_000,
    };

    /// Sets the ceilings every later [`Ceilings::host`] returns (`sluice
    /// serve` at start, from `host.toml`). Only the first call counts.
    pub fn install(self) -> bool {
        HOST.set(self).is_ok()
    }

    /// The installed ceilings, else [`Ceilings::DEFAULT`].
    pub fn host() -> Ceilings {
        HOST.get().copied().unwrap_or(Ceilings::DEFAULT)
    }

    /// Refuses a manifest that declares more than a ceiling allows.
    pub fn check(&self, manifest: &Manifest) -> Result<(), CeilingError> {
        for w in &manifest.windows {
            let WindowKind::Sliding { size, slide } = w.kind else {
                continue;
            };
            let (size, slide) = (ms(size).max(1), ms(slide).max(1));
            let pane = gcd(size, slide).max(1);
            let panes = size / pane;
            let per_row = size.div_ceil(slide);
            let most = panes.max(per_row);
            if most > self.max_panes_per_window {
                return Err(CeilingError::Panes {
                    window: w.name.clone(),
                    panes,
                    per_row,
                    ceiling: self.max_panes_per_window,
                });
            }
        }
        Ok(())
    }
}

static HOST: OnceLock<Ceilings> = OnceLock::new();

/// A manifest over a host ceiling.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CeilingError {
    #[error(
        "window `{window}` has {panes} panes per window and puts each row in {per_row} windows; \
         this host allows at most {ceiling} (its max_panes_per_window ceiling): \
         choose a slide closer to the size"
    )]
    Panes {
        window: String,
        panes: u64,
        per_row: u64,
        ceiling: u64,
    },
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// The `max_future` guard: a row whose event time is more than the bound
/// ahead of the host's clock is not believed. Checked where rows are read,
/// against a clock read once per chunk, so a row costs one comparison.
///
/// Against the host's clock rather than the stream's own times: a replay
/// of old data is in the past, so nothing in it is refused and its results
/// do not depend on when it runs; and no first row, however wrong, can
/// set what the others are judged against. The guard keeps no state, so a
/// run restored from a checkpoint guards exactly as before.
#[derive(Debug, Clone)]
pub struct FutureGuard {
    bound: Option<i64>,
    /// Latest believable event time, ms (`i64::MAX` when off).
    limit: i64,
}

impl FutureGuard {
    /// `max_future` from the manifest (`None`: off).
    pub fn new(max_future: Option<Duration>) -> FutureGuard {
        let mut guard = FutureGuard {
            bound: max_future.map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
            limit: i64::MAX,
        };
        guard.refresh();
        guard
    }

    /// Reads the clock again.
    pub fn refresh(&mut self) {
        self.refresh_at(now_ms());
    }

    /// Judges against `now_ms` (tests).
    pub fn refresh_at(&mut self, now_ms: i64) {
        self.limit = match self.bound {
            Some(bound) => now_ms.saturating_add(bound),
            None => i64::MAX,
        };
    }

    /// Whether `row` may be applied; `Err` is its `future` dead letter.
    #[inline]
    pub fn check(
        &self,
        row: ParsedRow,
        line: &[u8],
        source: &str,
        line_no: u64,
        offset: u64,
    ) -> Result<ParsedRow, BadRow> {
        if row.time <= self.limit {
            return Ok(row);
        }
        Err(self.reject(row, line, source, line_no, offset))
    }

    #[cold]
    fn reject(
        &self,
        row: ParsedRow,
        line: &[u8],
        source: &str,
        line_no: u64,
        offset: u64,
    ) -> BadRow {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let bound = self.bound.unwrap_or(0);
        BadRow {
            raw: String::from_utf8_lossy(line).into(),
            reason: format!(
                "event time {} is more than max_future ({}) ahead of the host's clock ({}): \
                 not trusted to move the watermark",
                show_time(row.time),
                crate::manifest::units::format_duration(Duration::from_millis(
                    u64::try_from(bound).unwrap_or(0)
                )),
                show_time(self.limit.saturating_sub(bound)),
            )
            .into(),
            position: Position {
                source: source.to_owned(),
                line: line_no,
                offset,
            },
            key: Some(row.key),
            time: Some(row.time),
            kind: BadKind::Future,
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// `2017-02-18T19:08:00Z`, or the number of ms when out of chrono's range.
fn show_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(
        || format!("{ms} ms"),
        |t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{Key, OwnedValue};

    fn row(time: i64) -> ParsedRow {
        ParsedRow {
            key: Key::from_parts(["k"]).expect("key"),
            time,
            values: vec![OwnedValue::Timestamp(time)],
        }
    }

    const NOW: i64 = 1_765_000_000_000; // December 2025
    const DAY: i64 = 86_400_000;

    #[test]
    fn rows_up_to_the_bound_pass_and_later_ones_are_future_dead_letters() {
        let mut g = FutureGuard::new(Some(Duration::from_secs(86_400)));
        g.refresh_at(NOW);
        assert!(g.check(row(NOW + DAY), b"", "f", 1, 0).is_ok());
        assert!(
            g.check(row(1_487_442_480_000), b"", "f", 1, 0).is_ok(),
            "2017 passes"
        );
        let far = 253_402_214_400_000; // 9999-12-31
        let bad = g
            .check(row(far), b"k,9999-12-31\r\n", "f.csv", 7, 120)
            .expect_err("future");
        assert_eq!(bad.kind, BadKind::Future);
        assert_eq!(bad.kind.dead_letter_kind(), "future");
        assert_eq!(&*bad.raw, "k,9999-12-31");
        assert_eq!(bad.time, Some(far));
        assert_eq!(bad.key, Some(Key::from_parts(["k"]).expect("key")));
        assert_eq!((bad.position.line, bad.position.offset), (7, 120));
        assert!(
            bad.reason.contains("9999-12-31T00:00:00Z"),
            "{}",
            bad.reason
        );
        assert!(bad.reason.contains("max_future (1d)"), "{}", bad.reason);
        assert!(g.check(row(NOW + DAY + 1), b"", "f", 1, 0).is_err());
    }

    #[test]
    fn off_trusts_every_time_and_the_clock_moves_the_limit() {
        let mut off = FutureGuard::new(None);
        off.refresh_at(NOW);
        assert!(off.check(row(i64::MAX), b"", "f", 1, 0).is_ok());
        let mut g = FutureGuard::new(Some(Duration::from_secs(60)));
        g.refresh_at(NOW);
        assert!(g.check(row(NOW + 61_000), b"", "f", 1, 0).is_err());
        g.refresh_at(NOW + 1_000);
        assert!(g.check(row(NOW + 61_000), b"", "f", 1, 0).is_ok());
    }

    #[test]
    fn the_real_clock_protects_a_replay_of_old_data() {
        let g = FutureGuard::new(Some(crate::manifest::InputSpec::DEFAULT_MAX_FUTURE));
        assert!(g.check(row(1_487_442_480_000), b"", "f", 1, 0).is_ok());
        assert!(g.check(row(253_402_214_400_000), b"", "f", 1, 0).is_err());
    }

    fn example_with(input_line: &str) -> Result<Manifest, crate::manifest::Error> {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/bts-analytics/sluice.toml"
        ))
        .expect("example manifest");
        let text = text.replace(
            "allowed_lateness = \"0s\"",
            &format!("allowed_lateness = \"0s\"\n{input_line}"),
        );
        Manifest::parse(&text, std::path::Path::new("sluice.toml"))
    }

    #[test]
    fn max_future_defaults_to_a_day_and_can_be_tuned_or_turned_off() {
        let day = Some(Duration::from_secs(86_400));
        assert_eq!(example_with("").expect("valid").input.max_future, day);
        let two = example_with("max_future = \"2h\"").expect("valid");
        assert_eq!(two.input.max_future, Some(Duration::from_secs(7_200)));
        let off = example_with("max_future = \"off\"").expect("valid");
        assert_eq!(off.input.max_future, None);
        for (bad, says) in [
            (
                "max_future = \"0s\"",
                "max_future must be greater than zero (or \"off\"",
            ),
            ("max_future = \"soon\"", "max_future: "),
            (
                "max_future = \"1y\"",
                "(or \"off\" to trust every event time)",
            ),
        ] {
            let err = example_with(bad).expect_err(bad).to_string();
            assert!(err.contains(says), "{bad}: {err}");
            assert!(err.contains("sluice.toml:"), "{err}");
        }
    }

    #[test]
    fn panes_and_windows_per_row_over_the_ceiling_are_refused_naming_it() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/bts-analytics/sluice.toml"
        ))
        .expect("example manifest");
        let ok = Manifest::parse(&text, std::path::Path::new("sluice.toml")).expect("parses");
        assert_eq!(Ceilings::DEFAULT.check(&ok), Ok(()));
        let wide = text
            .replace("slide = \"5s\"", "slide = \"1s\"")
            .replace("size = \"60s\"", "size = \"10000s\"");
        let wide = Manifest::parse(&wide, std::path::Path::new("sluice.toml")).expect("legal");
        let err = Ceilings::DEFAULT
            .check(&wide)
            .expect_err("over the ceiling");
        let text = err.to_string();
        assert!(text.contains("10000 panes"), "{text}");
        assert!(text.contains("at most 2000"), "{text}");
        assert!(text.contains("max_panes_per_window"), "{text}");
        let roomy = Ceilings {
            max_panes_per_window: 10_000,
            ..Ceilings::DEFAULT
        };
        assert_eq!(roomy.check(&wide), Ok(()));
    }
}
