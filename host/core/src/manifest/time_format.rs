//! Event-time formats: a strftime format (UTC unless it carries an offset)
//! to milliseconds since the Unix epoch. Here, below the parser, because
//! the manifest checks a declared format at load and the parser uses it
//! for every row.
//!
//! Why a fast path: chrono's generic strftime parser, even with the format
//! pre-parsed into items, costs ≈ 140–155 ns per BTS timestamp (measured on
//! the 2-core dev machine), about a quarter of the whole per-row cost; the
//! fixed-layout digit parser below costs ≈ 17 ns for the same strings
//! (≈ 9×), which lifts whole-row parsing from ≈ 1.95 to ≈ 2.5 M rows/s
//! (`cargo bench -p sluice-host --bench parse` prints all four). It only
//! *accepts* the canonical layout `YYYY-MM-DD HH:MM:SS UTC` and returns
//! the same instant chrono would; any other spelling chrono tolerates
//! (single-digit fields, extra spaces, a leap second) goes to chrono, so
//! the result is always exactly chrono's.

use chrono::format::{parse, Item, Parsed, StrftimeItems};
use chrono::{DateTime, Utc};

/// The BTS data set's event-time format (`2017-02-18 18:28:05 UTC`).
pub const BTS_TIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S UTC";

/// A checked, pre-parsed timestamp format.
#[derive(Debug, Clone)]
pub struct TimestampFormat {
    text: String,
    items: Vec<Item<'static>>,
    /// The format is exactly [`BTS_TIME_FORMAT`]: try the fast path first.
    bts: bool,
}

impl TimestampFormat {
    /// Checks `format` (see [`check_time_format`]) and pre-parses it.
    pub fn new(format: &str) -> Result<TimestampFormat, String> {
        let items = items(format)?;
        sample_round_trip(format, &items)?;
        Ok(TimestampFormat {
            text: format.to_owned(),
            items,
            bts: format == BTS_TIME_FORMAT,
        })
    }

    /// The format as written in the manifest.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether timestamps in this format take the fast path.
    pub fn has_fast_path(&self) -> bool {
        self.bts
    }

    /// Milliseconds since the epoch, or `None` when `text` does not match.
    #[inline]
    pub fn parse(&self, text: &[u8]) -> Option<i64> {
        if self.bts {
            match parse_bts_fast(text) {
                Fast::Millis(ms) => return Some(ms),
                Fast::Invalid => return None,
                Fast::Unsure => {}
            }
        }
        self.parse_with_chrono(text)
    }

    /// Appends `ms` (UTC) written in this format to `out`: the inverse of
    /// [`TimestampFormat::parse`] for instants the format can hold, so a
    /// stored event time can be rendered back into the CSV it came from
    /// (the batch scan of stored events). `false` when the instant is out
    /// of chrono's range or the format cannot write it.
    pub fn format_into(&self, ms: i64, out: &mut String) -> bool {
        use std::fmt::Write;
        let Some(time) = DateTime::<Utc>::from_timestamp_millis(ms) else {
            return false;
        };
        write!(out, "{}", time.format_with_items(self.items.iter())).is_ok()
    }

    /// Parses with chrono only, bypassing the fast path (the reference the
    /// fast path is tested and benchmarked against).
    pub fn parse_with_chrono(&self, text: &[u8]) -> Option<i64> {
        let text = std::str::from_utf8(text).ok()?;
        parse_items(text, &self.items)
    }
}

/// Checks that `format` is a strftime format that describes a full date and
/// time, so a manifest with `%Y-%m-%d` (no time) or `%Q` fails at load
/// instead of rejecting every row.
pub fn check_time_format(format: &str) -> Result<(), String> {
    let items = items(format)?;
    sample_round_trip(format, &items)
}

fn items(format: &str) -> Result<Vec<Item<'static>>, String> {
    if format.is_empty() {
        return Err("the format is empty".to_owned());
    }
    StrftimeItems::new(format)
        .parse_to_owned()
        .map_err(|_| format!("`{format}` is not a valid strftime format"))
}

/// Formats a known instant with the format and parses it back: if that
/// fails, no row could ever parse.
fn sample_round_trip(format: &str, items: &[Item<'static>]) -> Result<(), String> {
    use std::fmt::Write;
    let sample: DateTime<Utc> = DateTime::from_timestamp(1_487_442_485, 0).unwrap_or_default();
    let mut text = String::new();
    if write!(text, "{}", sample.format_with_items(items.iter())).is_err() {
        return Err(format!("`{format}` cannot format a timestamp"));
    }
    match parse_items(&text, items) {
        Some(_) => Ok(()),
        None => Err(format!(
            "`{format}` does not describe a full date and time (a sample formats as \
             `{text}`, which does not parse back; a date, an hour and a minute are needed)"
        )),
    }
}

fn parse_items(text: &str, items: &[Item<'static>]) -> Option<i64> {
    let mut parsed = Parsed::new();
    parse(&mut parsed, text, items.iter()).ok()?;
    if parsed.offset().is_some() {
        Some(parsed.to_datetime().ok()?.timestamp_millis())
    } else {
        Some(
            parsed
                .to_naive_datetime_with_offset(0)
                .ok()?
                .and_utc()
                .timestamp_millis(),
        )
    }
}

/// Outcome of the fast path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fast {
    /// The canonical layout with a valid date and time.
    Millis(i64),
    /// The canonical layout with an impossible date or time (chrono rejects
    /// it too).
    Invalid,
    /// Not the canonical layout, or a leap second: ask chrono.
    Unsure,
}

/// Parses exactly `YYYY-MM-DD HH:MM:SS UTC` (23 bytes, fixed positions).
#[inline]
pub(crate) fn parse_bts_fast(s: &[u8]) -> Fast {
    let Ok(s) = <&[u8; 23]>::try_from(s) else {
        return Fast::Unsure;
    };
    if s[4] != b'-'
        || s[7] != b'-'
        || s[10] != b' '
        || s[13] != b':'
        || s[16] != b':'
        || &s[19..] != b" UTC"
    {
        return Fast::Unsure;
    }
    let mut ok = true;
    let mut num = |range: std::ops::Range<usize>| -> u32 {
        let mut v = 0u32;
        for &b in &s[range] {
            let d = b.wrapping_sub(b'0');
            ok &= d < 10;
            v = v * 10 + u32::from(d);
        }
        v
    };
    let (year, month, day) = (num(0..4), num(5..7), num(8..10));
    let (hour, minute, second) = (num(11..13), num(14..16), num(17..19));
    if !ok {
        return Fast::Unsure;
    }
    if second == 60 {
        // chrono reads a leap second as the next second; leave it to chrono.
        return Fast::Unsure;
    }
    if !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return Fast::Invalid;
    }
    let days = days_from_civil(i64::from(year), month, day);
    let secs = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second);
    Fast::Millis(secs * 1000)
}

#[inline]
fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => {
            29
        }
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
#[inline]
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((month + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDateTime;
    use proptest::prelude::*;

    fn chrono_reference(s: &str) -> Option<i64> {
        NaiveDateTime::parse_from_str(s, BTS_TIME_FORMAT)
            .ok()
            .map(|d| d.and_utc().timestamp_millis())
    }

    #[test]
    fn the_bts_example_parses_to_its_epoch_milliseconds() {
        let f = TimestampFormat::new(BTS_TIME_FORMAT).expect("format");
        assert!(f.has_fast_path());
        assert_eq!(f.parse(b"2017-02-18 18:28:05 UTC"), Some(1_487_442_485_000));
        assert_eq!(f.parse(b"1970-01-01 00:00:00 UTC"), Some(0));
        assert_eq!(f.parse(b"1969-12-31 23:59:59 UTC"), Some(-1000));
    }

    #[test]
    fn every_day_of_leap_and_century_years_matches_chrono() {
        for year in [1900, 1970, 2000, 2016, 2017, 2100, 2400] {
            for month in 1..=12 {
                for day in 1..=31 {
                    let s = format!("{year:04}-{month:02}-{day:02} 23:59:59 UTC");
                    let expected = chrono_reference(&s);
                    let fast = parse_bts_fast(s.as_bytes());
                    match expected {
                        Some(ms) => assert_eq!(fast, Fast::Millis(ms), "{s}"),
                        None => assert_eq!(fast, Fast::Invalid, "{s}"),
                    }
                }
            }
        }
    }

    #[test]
    fn lenient_spellings_fall_back_to_chrono_and_agree_with_it() {
        let f = TimestampFormat::new(BTS_TIME_FORMAT).expect("format");
        for s in [
            "2017-2-18 18:28:05 UTC",
            "2017-02-18  18:28:05 UTC",
            "2016-12-31 23:59:60 UTC",
            "2017-02-18 18:28:05 utc",
            "2017-02-18 18:28:05 UTC ",
        ] {
            assert_eq!(parse_bts_fast(s.as_bytes()), Fast::Unsure, "{s}");
            assert_eq!(f.parse(s.as_bytes()), chrono_reference(s), "{s}");
        }
    }

    #[test]
    fn other_formats_use_chrono_including_offsets() {
        let f = TimestampFormat::new("%d/%m/%Y %H:%M").expect("format");
        assert!(!f.has_fast_path());
        assert_eq!(f.parse(b"18/02/2017 18:28"), Some(1_487_442_480_000));
        let z = TimestampFormat::new("%Y-%m-%dT%H:%M:%S%.f%z").expect("format");
        assert_eq!(
            z.parse(b"2017-02-18T19:28:05.250+0100"),
            Some(1_487_442_485_250)
        );
    }

    #[test]
    fn formatting_is_the_inverse_of_parsing() {
        for (format, ms) in [
            (BTS_TIME_FORMAT, 1_487_442_485_000),
            (BTS_TIME_FORMAT, -1000),
            ("%d/%m/%Y %H:%M", 1_487_442_480_000),
            ("%Y-%m-%dT%H:%M:%S%.3f%z", 1_487_442_485_250),
            ("%Y-%m-%dT%H:%M:%S%.f", 1_487_442_485_007),
        ] {
            let f = TimestampFormat::new(format).expect("format");
            let mut text = String::new();
            assert!(f.format_into(ms, &mut text), "{format}");
            assert_eq!(f.parse(text.as_bytes()), Some(ms), "{format}: {text}");
        }
        // A coarser format cannot hold the milliseconds: what it writes
        // reads back as another instant (the caller checks).
        let coarse = TimestampFormat::new(BTS_TIME_FORMAT).expect("format");
        let mut text = String::new();
        assert!(coarse.format_into(1_487_442_485_250, &mut text));
        assert_eq!(coarse.parse(text.as_bytes()), Some(1_487_442_485_000));
    }

    #[test]
    fn formats_that_cannot_describe_an_instant_are_refused() {
        let date_only = check_time_format("%Y-%m-%d").expect_err("no time");
        assert!(date_only.contains("full date and time"), "{date_only}");
        let bad = check_time_format("%Y-%Q").expect_err("bad specifier");
        assert!(bad.contains("not a valid strftime format"), "{bad}");
        assert!(check_time_format("").is_err());
        assert!(check_time_format(BTS_TIME_FORMAT).is_ok());
    }

    /// A valid timestamp in the canonical layout.
    fn canonical() -> impl Strategy<Value = String> {
        (
            0u32..=9999,
            1u32..=12,
            1u32..=31,
            0u32..24,
            0u32..60,
            0u32..60,
        )
            .prop_map(|(y, mo, d, h, mi, s)| {
                let d = d.min(days_in_month(y, mo));
                format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02} UTC")
            })
    }

    /// Bytes that keep a mutated timestamp close to valid most of the time.
    fn mutation_byte() -> impl Strategy<Value = u8> {
        prop_oneof![
            b'0'..=b'9',
            Just(b' '),
            Just(b'-'),
            Just(b':'),
            Just(b'+'),
            any::<u8>()
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        #[test]
        fn the_fast_path_equals_chrono_on_valid_timestamps(s in canonical()) {
            let expected = chrono_reference(&s);
            prop_assert!(expected.is_some(), "chrono rejects {}", s);
            prop_assert_eq!(parse_bts_fast(s.as_bytes()), Fast::Millis(expected.unwrap_or_default()));
        }

        #[test]
        fn the_fast_path_never_accepts_what_chrono_rejects(
            s in canonical(),
            edits in proptest::collection::vec((0usize..24, mutation_byte(), 0u8..3), 1..4),
        ) {
            let mut bytes = s.into_bytes();
            for (at, byte, op) in edits {
                let at = at.min(bytes.len());
                match op {
                    0 if at < bytes.len() => bytes[at] = byte,
                    1 => bytes.insert(at, byte),
                    _ if at < bytes.len() => { bytes.remove(at); }
                    _ => bytes.push(byte),
                }
            }
            let reference = std::str::from_utf8(&bytes).ok().and_then(chrono_reference);
            match parse_bts_fast(&bytes) {
                Fast::Millis(ms) => prop_assert_eq!(Some(ms), reference),
                Fast::Invalid => prop_assert_eq!(reference, None),
                Fast::Unsure => {}
            }
            let f = TimestampFormat::new(BTS_TIME_FORMAT).map_err(TestCaseError::fail)?;
            prop_assert_eq!(f.parse(&bytes), reference);
        }

        #[test]
        fn out_of_range_fields_in_the_canonical_layout_are_rejected_like_chrono(
            y in 0u32..=9999, mo in 0u32..=99, d in 0u32..=99, h in 0u32..=99, mi in 0u32..=99, s in 0u32..=99,
        ) {
            let text = format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02} UTC");
            let reference = chrono_reference(&text);
            match parse_bts_fast(text.as_bytes()) {
                Fast::Millis(ms) => prop_assert_eq!(Some(ms), reference),
                Fast::Invalid => prop_assert_eq!(reference, None),
                Fast::Unsure => prop_assert_eq!(s, 60),
            }
        }
    }
}
