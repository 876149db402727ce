//! Durations (`"250ms"`, `"5s"`, `"10m"`, `"1h"`, `"1d"`) and sizes (`"512B"`,
//! `"64KiB"`, `"64MiB"`, `"4GiB"`) as the manifest spells them.
//!
//! Whole numbers with an explicit unit only: a bare `60` could mean seconds
//! or milliseconds, and decimal sizes (`MB`) are a classic off-by-5% trap,
//! so both are refused with a message that shows the accepted spelling.

use std::time::Duration;

const DURATION_UNITS: &str = "ms, s, m, h or d";
const SIZE_UNITS: &str = "B, KiB, MiB or GiB";

/// Splits `"64 MiB"` into `(64, "MiB")`; `units` and `example` show the
/// accepted spelling in the error.
fn split(text: &str, units: &str, example: &str) -> Result<(u64, String), String> {
    let trimmed = text.trim();
    let digits = trimmed.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = trimmed.split_at(digits);
    let unit = unit.trim_start();
    if number.is_empty() {
        return Err(format!(
            "`{text}` is not a whole number with a unit ({units}), e.g. `{example}`"
        ));
    }
    let value = number
        .parse::<u64>()
        .map_err(|_| format!("`{text}` is too large"))?;
    if unit.is_empty() {
        return Err(format!(
            "`{text}` has no unit (expected {units}, e.g. `{example}`)"
        ));
    }
    Ok((value, unit.to_owned()))
}

/// Parses a manifest duration: a whole number followed by `ms`, `s`, `m`,
/// `h` or `d` (24 h: batch jobs window and schedule by days). Zero is allowed here; callers that need a positive duration check.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let (value, unit) = split(text, DURATION_UNITS, "5s")?;
    let ms_per_unit: u64 = match unit.as_str() {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        other => {
            return Err(format!(
                "`{text}`: unknown duration unit `{other}` (expected {DURATION_UNITS})"
            ))
        }
    };
    value
        .checked_mul(ms_per_unit)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("`{text}` is too large"))
}

/// Parses a manifest size: a whole number followed by `B`, `KiB`, `MiB` or
/// `GiB` (binary units only).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let (value, unit) = split(text, SIZE_UNITS, "64MiB")?;
    let shift = match unit.as_str() {
        "B" => 0,
        "KiB" => 10,
        "MiB" => 20,
        "GiB" => 30,
        other => {
            return Err(format!(
                "`{text}`: unknown size unit `{other}` (expected {SIZE_UNITS}; \
                 decimal units like MB are not accepted)"
            ))
        }
    };
    value
        .checked_mul(1u64 << shift)
        .ok_or_else(|| format!("`{text}` is too large"))
}

/// Formats a duration the way the manifest spells it, for messages.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    match ms {
        0 => "0s".to_owned(),
        _ if ms.is_multiple_of(86_400_000) => format!("{}d", ms / 86_400_000),
        _ if ms.is_multiple_of(3_600_000) => format!("{}h", ms / 3_600_000),
        _ if ms.is_multiple_of(60_000) => format!("{}m", ms / 60_000),
        _ if ms.is_multiple_of(1_000) => format!("{}s", ms / 1_000),
        _ => format!("{ms}ms"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_accept_each_unit_and_optional_space() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("2 h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn durations_without_a_known_unit_are_refused_with_the_accepted_units() {
        let bare = parse_duration("60").expect_err("no unit");
        assert!(
            bare.contains("has no unit") && bare.contains("ms, s, m, h or d"),
            "{bare}"
        );
        let unknown = parse_duration("5sec").expect_err("unknown unit");
        assert!(unknown.contains("unknown duration unit `sec`"), "{unknown}");
        let negative = parse_duration("-5s").expect_err("negative");
        assert!(negative.contains("not a whole number"), "{negative}");
        let fraction = parse_duration("1.5s").expect_err("fraction");
        assert!(
            fraction.contains("unknown duration unit `.5s`"),
            "{fraction}"
        );
        let huge = parse_duration("99999999999999999999h").expect_err("overflow");
        assert!(huge.contains("too large"), "{huge}");
    }

    #[test]
    fn sizes_are_binary_units_only() {
        assert_eq!(parse_size("512B"), Ok(512));
        assert_eq!(parse_size("64KiB"), Ok(64 << 10));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("4GiB"), Ok(4 << 30));
        let decimal = parse_size("64MB").expect_err("decimal unit");
        assert!(decimal.contains("unknown size unit `MB`"), "{decimal}");
        let bare = parse_size("1024").expect_err("no unit");
        assert!(bare.contains("has no unit"), "{bare}");
    }

    #[test]
    fn formatted_durations_parse_back_to_the_same_value() {
        for ms in [
            0u64, 1, 999, 1_000, 5_000, 60_000, 90_000, 3_600_000, 7_201_000,
        ] {
            let d = Duration::from_millis(ms);
            assert_eq!(parse_duration(&format_duration(d)), Ok(d), "{ms} ms");
        }
    }
}
