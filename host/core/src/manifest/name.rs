//! Names a tenant controls — tenant, window, batch job — checked once,
//! strictly: `[a-z0-9][a-z0-9_-]*`, at most [`MAX_LEN`] bytes. They become
//! directory names under `sluice serve`'s state directory, queue and table
//! names and metric labels, so nothing that a path, a URL decoder or a
//! human eye could read two ways gets in: no `.` (so never `.` or `..`), no
//! `/`, no NUL, no upper case, no non-ASCII look-alikes.

use std::fmt;

/// Longest name, in bytes (a DNS label's limit: names end up in queue,
/// table and host names).
pub const MAX_LEN: usize = 63;

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} name {shown} is invalid: {reason}")]
pub struct NameError {
    pub what: &'static str,
    /// The name as given, quoted, escaped and cut short.
    pub shown: String,
    pub reason: String,
}

/// The rule for `what` (`"tenant"`, `"window"`, …); the reason of a refusal.
pub fn check(what: &'static str, name: &str) -> Result<(), NameError> {
    let refuse = |reason: String| NameError {
        what,
        shown: shown(name),
        reason,
    };
    let rule = "use 1 to 63 of `a-z`, `0-9`, `_`, `-`, starting with a letter or digit";
    if name.is_empty() {
        return Err(refuse(format!("it is empty; {rule}")));
    }
    if name.len() > MAX_LEN {
        return Err(refuse(format!("it is {} bytes long; {rule}", name.len())));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '_' | '-'))
    {
        return Err(refuse(format!("it contains {c:?}; {rule}")));
    }
    if name.starts_with(['_', '-']) {
        return Err(refuse(format!("it starts with `{}`; {rule}", &name[..1])));
    }
    Ok(())
}

/// `name` for a message: quoted and escaped (NUL, control characters), at
/// most 40 characters of it.
fn shown(name: &str) -> String {
    let cut: String = name.chars().take(40).collect();
    if cut.len() < name.len() {
        format!("{cut:?}…")
    } else {
        format!("{cut:?}")
    }
}

/// A tenant's name, checked: the only thing `sluice serve` builds a path
/// under its state directory from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TenantName(String);

impl TenantName {
    pub fn parse(name: &str) -> Result<TenantName, NameError> {
        check("tenant", name)?;
        Ok(TenantName(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for TenantName {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<std::path::Path> for TenantName {
    fn as_ref(&self) -> &std::path::Path {
        std::path::Path::new(&self.0)
    }
}

impl fmt::Display for TenantName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for TenantName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TenantName::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_lower_case_ascii_names_pass() {
        for good in ["bts", "a", "0", "bts_v2", "meters-eu-1", &"a".repeat(63)] {
            assert!(check("tenant", good).is_ok(), "{good}");
        }
        let long = "a".repeat(10_000);
        for bad in [
            "",
            ".",
            "..",
            "/",
            "a/b",
            "a\0b",
            "%2e%2e",
            "Bts",
            "BTS",
            "bts.v2",
            "-a",
            "_a",
            "a b",
            "\u{ff42}ts",  // fullwidth b
            "\u{0430}bc",  // Cyrillic a
            "ba\u{0455}h", // Cyrillic dze, looks like s
            &"a".repeat(64),
            &long,
        ] {
            let e = check("tenant", bad).expect_err(bad);
            let text = e.to_string();
            assert!(text.starts_with("tenant name "), "{text}");
            assert!(!text.contains('\0') && text.len() < 200, "{text}");
        }
        assert!("..".parse::<TenantName>().is_err());
        assert_eq!(
            TenantName::parse("bts").map(|t| t.to_string()).ok(),
            Some("bts".into())
        );
    }
}
