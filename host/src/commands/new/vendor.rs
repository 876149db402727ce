//! The SDK as `sluice new` vendors it: its sources and WIT compiled into
//! this binary, its dependencies and the guest profile read from the
//! workspace's manifests (so the copy cannot drift from what the host was
//! built with), and the contract version it exports.

use anyhow::{bail, Context};

use super::WIT;

/// The SDK's files, as they are vendored (paths relative to the crate).
/// `sdk_sources_are_all_vendored` checks the list against `guest-sdk/src`.
pub(super) const SDK_SOURCES: &[(&str, &str)] = &[
    (
        "src/lib.rs",
        include_str!("../../../../guest-sdk/src/lib.rs"),
    ),
    (
        "src/events.rs",
        include_str!("../../../../guest-sdk/src/events.rs"),
    ),
    (
        "src/export.rs",
        include_str!("../../../../guest-sdk/src/export.rs"),
    ),
    (
        "src/function.rs",
        include_str!("../../../../guest-sdk/src/function.rs"),
    ),
    (
        "src/log.rs",
        include_str!("../../../../guest-sdk/src/log.rs"),
    ),
    (
        "src/module.rs",
        include_str!("../../../../guest-sdk/src/module.rs"),
    ),
    (
        "src/output.rs",
        include_str!("../../../../guest-sdk/src/output.rs"),
    ),
    (
        "src/params.rs",
        include_str!("../../../../guest-sdk/src/params.rs"),
    ),
    (
        "src/schema.rs",
        include_str!("../../../../guest-sdk/src/schema.rs"),
    ),
    (
        "src/testing.rs",
        include_str!("../../../../guest-sdk/src/testing.rs"),
    ),
    (
        "src/types.rs",
        include_str!("../../../../guest-sdk/src/types.rs"),
    ),
];

/// The SDK's manifest and the workspace's, read for the SDK's
/// dependencies and the guest profile (so the copy cannot drift from them).
pub(super) const SDK_CARGO_TOML: &str = include_str!("../../../../guest-sdk/Cargo.toml");

pub(super) const WORKSPACE_CARGO_TOML: &str = include_str!("../../../../Cargo.toml");

/// Where the SDK finds the WIT in this repository, and in its copy.
pub(super) const SDK_WIT_PATH: &str = "path: \"../wit\",";

pub(super) const VENDORED_WIT_PATH: &str = "path: \"wit\",";

/// The contract version, `sluice:analytics@X.Y.Z`, from the WIT's package
/// line.
pub(crate) fn contract() -> &'static str {
    WIT.lines()
        .find_map(|l| l.trim().strip_prefix("package "))
        .map_or("sluice:analytics", |l| l.trim_end_matches(';'))
}

/// From the workspace and SDK manifests: the guest profile's settings (as
/// `key = value` lines), the SDK's dependencies resolved from the
/// workspace's (as TOML lines), and the SDK's version.
pub(super) fn sdk_settings() -> anyhow::Result<(String, String, String)> {
    let workspace: toml::Table =
        toml::from_str(WORKSPACE_CARGO_TOML).context("reading the workspace Cargo.toml")?;
    let sdk: toml::Table = toml::from_str(SDK_CARGO_TOML).context("reading the SDK Cargo.toml")?;
    let guest = workspace
        .get("profile")
        .and_then(|p| p.get("guest"))
        .and_then(toml::Value::as_table)
        .context("the workspace has no [profile.guest]")?;
    let mut profile = toml::Table::new();
    for (k, v) in guest {
        if k != "inherits" {
            profile.insert(k.clone(), v.clone());
        }
    }
    let shared = workspace
        .get("workspace")
        .and_then(|w| w.get("dependencies"))
        .and_then(toml::Value::as_table)
        .context("the workspace has no [workspace.dependencies]")?;
    let mut deps = toml::Table::new();
    let listed = sdk
        .get("dependencies")
        .and_then(toml::Value::as_table)
        .context("the SDK has no [dependencies]")?;
    for (name, spec) in listed {
        let from_workspace = spec.get("workspace").and_then(toml::Value::as_bool) == Some(true);
        let resolved = if from_workspace {
            shared
                .get(name)
                .cloned()
                .with_context(|| format!("the workspace does not declare `{name}`"))?
        } else {
            spec.clone()
        };
        if resolved.get("path").is_some() {
            bail!("the SDK depends on `{name}` by path: a vendored copy could not build");
        }
        deps.insert(name.clone(), resolved);
    }
    let version = workspace
        .get("workspace")
        .and_then(|w| w.get("package"))
        .and_then(|p| p.get("version"))
        .and_then(toml::Value::as_str)
        .unwrap_or(env!("CARGO_PKG_VERSION"))
        .to_owned();
    let lines = |table: &toml::Table| {
        table
            .iter()
            .map(|(k, v)| format!("{k} = {}", inline(v)))
            .collect::<Vec<_>>()
            .join("\n")
    };
    Ok((lines(&profile), lines(&deps), version))
}

/// A TOML value on one line (tables inline), for `key = value` lines.
pub(super) fn inline(value: &toml::Value) -> String {
    match value {
        toml::Value::Table(table) => {
            let fields: Vec<String> = table
                .iter()
                .map(|(k, v)| format!("{k} = {}", inline(v)))
                .collect();
            format!("{{ {} }}", fields.join(", "))
        }
        toml::Value::Array(items) => {
            let items: Vec<String> = items.iter().map(inline).collect();
            format!("[{}]", items.join(", "))
        }
        scalar => scalar.to_string(),
    }
}
