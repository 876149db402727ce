//! The manifest as written: serde structs that mirror the TOML one to one,
//! with spans on every value a semantic check may need to point at.
//! `deny_unknown_fields` everywhere, so a typo (`sise = "60s"`) is an error
//! with a position instead of a silently ignored key.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

pub(super) type S<T> = Spanned<T>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawManifest {
    pub tenant: S<String>,
    pub module: S<String>,
    pub input: RawInput,
    #[serde(default)]
    pub windows: Vec<S<RawWindow>>,
    pub alerts: Option<RawAlerts>,
    #[serde(default)]
    pub params: BTreeMap<String, S<toml::Value>>,
    #[serde(default)]
    pub limits: RawLimits,
    pub output: RawOutput,
    #[serde(default)]
    pub batch: Vec<S<RawBatch>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawInput {
    pub queue: S<String>,
    pub format: Option<S<String>>,
    #[serde(default)]
    pub header: bool,
    pub delimiter: Option<S<String>>,
    pub columns: S<Vec<S<RawColumn>>>,
    pub key: S<Vec<S<String>>>,
    pub event_time: S<String>,
    pub max_out_of_orderness: Option<S<String>>,
    pub allowed_lateness: Option<S<String>>,
    pub idle_timeout: Option<S<String>>,
    pub max_future: Option<S<String>>,
    pub partitions: Option<S<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawColumn {
    pub name: S<String>,
    #[serde(rename = "type")]
    pub ty: S<String>,
    pub format: Option<S<String>>,
    #[serde(default)]
    pub optional: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWindow {
    pub name: S<String>,
    pub kind: S<String>,
    pub size: Option<S<String>>,
    pub slide: Option<S<String>>,
    pub n: Option<S<i64>>,
    pub emit_every: Option<S<String>>,
    pub gap: Option<S<String>>,
    pub max_duration: Option<S<String>>,
    pub aggregate: Option<S<String>>,
    pub process: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAlerts {
    pub function: S<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    pub memory: Option<S<String>>,
    pub call_budget: Option<S<String>>,
    pub max_output: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOutput {
    pub exchange: S<String>,
    pub messages: Option<S<String>>,
}

/// One `[[batch]]` job.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBatch {
    pub name: S<String>,
    pub key: S<Vec<S<String>>>,
    #[serde(default)]
    pub filter: BTreeMap<String, S<toml::Value>>,
    pub windows: S<Vec<S<RawWindow>>>,
    #[serde(default)]
    pub charts: Vec<S<RawChart>>,
    pub schedule: Option<S<RawSchedule>>,
    pub on_alert: Option<S<RawOnAlert>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawChart {
    pub window: S<String>,
    pub kind: S<String>,
    pub field: Option<S<String>>,
    pub title: S<String>,
    pub unit: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSchedule {
    pub every: S<String>,
    pub range: S<String>,
    pub align: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOnAlert {
    pub kinds: S<Vec<S<String>>>,
    pub range: S<String>,
    pub align: Option<S<String>>,
    #[serde(default)]
    pub scope: Vec<S<String>>,
}
