//! The manifest's `[params]`, with typed getters.

use std::any::type_name;
use std::str::FromStr;

use crate::types::{GuestError, Result};

/// The `[params]` of the tenant's manifest, as given to `init`.
///
/// Every getter that parses returns a [`GuestError`] naming the param, the
/// text it was given and the type it should have had, so a typo in a
/// manifest fails the deployment with a message the operator can act on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params {
    entries: Vec<(String, String)>,
}

impl Params {
    /// Builds the params; a name given twice is an error (which value would
    /// win is not something a manifest author should have to guess).
    pub fn new(entries: Vec<(String, String)>) -> Result<Self> {
        for (i, (name, _)) in entries.iter().enumerate() {
            if entries[..i].iter().any(|(earlier, _)| earlier == name) {
                return Err(GuestError::new(format!("param `{name}` is given twice")));
            }
        }
        Ok(Params { entries })
    }

    /// The raw text of a param, if given.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every param, in the order given.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// Parses a param if present.
    pub fn get<V>(&self, name: &str) -> Result<Option<V>>
    where
        V: FromStr,
        V::Err: std::fmt::Display,
    {
        self.get_str(name)
            .map(|raw| {
                raw.trim().parse::<V>().map_err(|e| {
                    GuestError::new(format!(
                        "param `{name}` = {raw:?} is not a valid {}: {e}",
                        type_name::<V>()
                    ))
                })
            })
            .transpose()
    }

    /// Parses a param, or returns `default` when it is not given.
    pub fn get_or<V>(&self, name: &str, default: V) -> Result<V>
    where
        V: FromStr,
        V::Err: std::fmt::Display,
    {
        Ok(self.get(name)?.unwrap_or(default))
    }

    /// Parses a param that must be given.
    pub fn require<V>(&self, name: &str) -> Result<V>
    where
        V: FromStr,
        V::Err: std::fmt::Display,
    {
        self.get(name)?
            .ok_or_else(|| GuestError::new(format!("param `{name}` is required but not given")))
    }

    /// A duration such as `"500ms"`, `"60s"`, `"10m"` or `"2h"`, in
    /// milliseconds, or `default_ms` when not given.
    pub fn duration_ms_or(&self, name: &str, default_ms: i64) -> Result<i64> {
        match self.get_str(name) {
            None => Ok(default_ms),
            Some(raw) => parse_duration_ms(raw)
                .map_err(|why| GuestError::new(format!("param `{name}` = {raw:?}: {why}"))),
        }
    }
}

/// Parses `<non-negative integer><unit>`, unit one of `ms`, `s`, `m`, `h`.
///
/// Why a unit is mandatory: a bare `600` in a manifest is ambiguous between
/// seconds and milliseconds, and guessing wrong is off by 1000×.
pub fn parse_duration_ms(raw: &str) -> std::result::Result<i64, String> {
    let text = raw.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| "a duration needs a unit: ms, s, m or h (e.g. \"10m\")".to_string())?;
    let (digits, unit) = text.split_at(split);
    if digits.is_empty() {
        return Err("a duration starts with a non-negative integer (e.g. \"10m\")".to_string());
    }
    let amount: i64 = digits
        .parse()
        .map_err(|e| format!("`{digits}` is not a valid amount: {e}"))?;
    let scale: i64 = match unit.trim() {
        "ms" => 1,
        "s" => 1_000,
        "m" | "min" => 60_000,
        "h" => 3_600_000,
        other => {
            return Err(format!(
                "unknown duration unit `{other}`; use ms, s, m or h"
            ))
        }
    };
    amount
        .checked_mul(scale)
        .ok_or_else(|| "the duration is too large".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Params {
        Params::new(
            pairs
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        )
        .expect("test params have unique names")
    }

    #[test]
    fn typed_get_parses_and_defaults() {
        let p = params(&[("n", " 12 "), ("x", "2.5")]);
        assert_eq!(p.get_or::<usize>("n", 3).expect("n parses"), 12);
        assert_eq!(p.get_or::<usize>("missing", 3).expect("default"), 3);
        assert_eq!(p.get::<f64>("x").expect("x parses"), Some(2.5));
        assert_eq!(p.get::<f64>("missing").expect("absent is ok"), None);
    }

    #[test]
    fn bad_number_names_param_value_and_type() {
        let p = params(&[("trend_points", "ten")]);
        let err = p
            .get_or::<usize>("trend_points", 10)
            .expect_err("`ten` is not a number");
        assert!(err.message.contains("trend_points"), "{err}");
        assert!(err.message.contains("\"ten\""), "{err}");
        assert!(err.message.contains("usize"), "{err}");
    }

    #[test]
    fn required_param_missing_is_an_error() {
        let err = params(&[]).require::<u32>("k").expect_err("k is missing");
        assert!(err.message.contains("`k` is required"), "{err}");
    }

    #[test]
    fn duplicate_param_is_an_error() {
        let err = Params::new(vec![("a".into(), "1".into()), ("a".into(), "2".into())])
            .expect_err("duplicate");
        assert!(err.message.contains("`a` is given twice"), "{err}");
    }

    #[test]
    fn durations_parse_with_units() {
        let p = params(&[("a", "10m"), ("b", "60s"), ("c", "250ms"), ("d", "2h")]);
        assert_eq!(p.duration_ms_or("a", 0).expect("10m"), 600_000);
        assert_eq!(p.duration_ms_or("b", 0).expect("60s"), 60_000);
        assert_eq!(p.duration_ms_or("c", 0).expect("250ms"), 250);
        assert_eq!(p.duration_ms_or("d", 0).expect("2h"), 7_200_000);
        assert_eq!(p.duration_ms_or("none", 42).expect("default"), 42);
    }

    #[test]
    fn durations_without_unit_or_with_bad_unit_are_errors() {
        let p = params(&[
            ("bare", "600"),
            ("unit", "10y"),
            ("neg", "-5s"),
            ("big", "99999999999999999h"),
        ]);
        for name in ["bare", "unit", "neg", "big"] {
            let err = p.duration_ms_or(name, 0).expect_err(name);
            assert!(err.message.contains(&format!("`{name}`")), "{err}");
        }
        let err = p.duration_ms_or("unit", 0).expect_err("bad unit");
        assert!(err.message.contains("unknown duration unit `y`"), "{err}");
    }
}
