//! `host.toml`: what `sluice serve` listens on, who may call it, where the
//! broker, the database and the state are, and which tenants to start.
//! Strict like a manifest (unknown keys are errors) so a typo in a token
//! key never silently leaves the API open.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::manifest::units;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// The host's configuration, resolved (paths relative to the file,
/// durations and sizes parsed, tokens read).
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// Admin API and `/metrics`.
    pub listen: SocketAddr,
    /// Bearer token allowed everything.
    pub operator_token: String,
    /// Tenant → bearer token allowed to see, pause and resume that tenant.
    pub tenant_tokens: BTreeMap<String, String>,
    pub amqp: String,
    /// Cassandra contact points, when results are also stored there.
    pub cassandra: Option<Vec<String>>,
    /// Checkpoints and deployed modules, one directory per tenant.
    pub state_dir: PathBuf,
    /// Shard workers per tenant.
    pub workers: usize,
    pub checkpoint_interval: Duration,
    pub prefetch: u16,
    /// Largest deploy request (manifest + module).
    pub max_upload: usize,
    /// A tenant whose guest traps more often than this within a minute is
    /// paused; 0 turns auto-pause off.
    pub max_traps_per_minute: u64,
    /// Manifests of the tenants started with the host.
    pub tenants: Vec<PathBuf>,
    pub cache_dir: Option<PathBuf>,
    /// What one tenant's input and state may cost (line length, panes,
    /// state bytes, keys); every pipeline of the host gets them.
    pub ceilings: crate::pipeline::Ceilings,
}

impl HostConfig {
    pub const DEFAULT_LISTEN: &'static str = "127.0.0.1:7171";

    /// Reads `path`; `SLUICE_OPERATOR_TOKEN` overrides the operator token.
    pub fn from_path(path: &Path) -> Result<HostConfig> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_owned(),
            source,
        })?;
        let env_token = std::env::var("SLUICE_OPERATOR_TOKEN")
            .ok()
            .filter(|t| !t.is_empty());
        HostConfig::parse(&text, path, env_token)
    }

    /// Parses the text of `origin` (relative paths are relative to its
    /// directory).
    pub fn parse(text: &str, origin: &Path, env_token: Option<String>) -> Result<HostConfig> {
        let invalid = |message: String| Error::Invalid {
            path: origin.to_owned(),
            message,
        };
        let raw: RawConfig = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        let ceilings = raw.ceilings().map_err(invalid)?;
        let base = origin.parent().unwrap_or(Path::new("."));
        let resolve = |p: &Path| {
            if p.is_absolute() {
                p.to_owned()
            } else {
                base.join(p)
            }
        };

        let listen: SocketAddr = raw
            .listen
            .as_deref()
            .unwrap_or(HostConfig::DEFAULT_LISTEN)
            .parse()
            .map_err(|e| invalid(format!("`listen`: {e} (expected IP:PORT)")))?;

        let mut tenant_tokens = raw.tenant_tokens.unwrap_or_default();
        let mut operator_token = raw.operator_token;
        if let Some(file) = &raw.token_file {
            let file = resolve(file);
            let text = std::fs::read_to_string(&file).map_err(|source| Error::Read {
                path: file.clone(),
                source,
            })?;
            let tokens: TokenFile = toml::from_str(&text).map_err(|e| Error::Invalid {
                path: file.clone(),
                message: e.to_string(),
            })?;
            if tokens.operator.is_some() {
                operator_token = tokens.operator;
            }
            tenant_tokens.extend(tokens.tenants.unwrap_or_default());
        }
        let operator_token = env_token.or(operator_token).ok_or_else(|| {
            invalid(
                "no operator token: set `operator_token`, a `token_file` with `operator`, \
                 or SLUICE_OPERATOR_TOKEN"
                    .into(),
            )
        })?;
        let weak = |who: &str, token: &str| {
            (token.len() < 16)
                .then(|| invalid(format!("the {who} token is shorter than 16 characters")))
        };
        if let Some(e) = weak("operator", &operator_token) {
            return Err(e);
        }
        for (tenant, token) in &tenant_tokens {
            if let Some(e) = weak(&format!("`{tenant}`"), token) {
                return Err(e);
            }
            if *token == operator_token {
                return Err(invalid(format!(
                    "tenant `{tenant}` has the operator's token"
                )));
            }
        }

        let duration = |key: &str, v: Option<&str>, default: Duration| -> Result<Duration> {
            match v {
                None => Ok(default),
                Some(v) => units::parse_duration(v).map_err(|e| invalid(format!("`{key}`: {e}"))),
            }
        };
        let checkpoint_interval = duration(
            "checkpoint_interval",
            raw.checkpoint_interval.as_deref(),
            Duration::from_secs(1),
        )?;
        if checkpoint_interval.is_zero() {
            return Err(invalid("`checkpoint_interval` must be above 0".into()));
        }
        let max_upload = match raw.max_upload.as_deref() {
            None => 64 << 20,
            Some(v) => usize::try_from(
                units::parse_size(v).map_err(|e| invalid(format!("`max_upload`: {e}")))?,
            )
            .map_err(|_| invalid("`max_upload` is too large".into()))?,
        };
        let workers = match raw.workers {
            Some(0) => return Err(invalid("`workers` must be at least 1".into())),
            Some(n) => n,
            None => std::thread::available_parallelism().map_or(1, usize::from),
        };
        let cassandra = raw.cassandra.map(|list| {
            list.split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(str::to_owned)
                .collect::<Vec<_>>()
        });
        if cassandra.as_ref().is_some_and(Vec::is_empty) {
            return Err(invalid("`cassandra` names no node".into()));
        }
        Ok(HostConfig {
            listen,
            operator_token,
            tenant_tokens,
            amqp: raw
                .amqp
                .unwrap_or_else(|| "amqp://127.0.0.1:5672/%2f".to_owned()),
            cassandra,
            state_dir: resolve(&raw.state_dir),
            workers,
            checkpoint_interval,
            prefetch: raw.prefetch.unwrap_or(1000).max(1),
            max_upload,
            max_traps_per_minute: raw.max_traps_per_minute.unwrap_or(10),
            tenants: raw.tenants.iter().map(|t| resolve(&t.manifest)).collect(),
            cache_dir: raw.cache_dir.as_deref().map(resolve),
            ceilings,
        })
    }
}

/// The ceilings' keys of `host.toml`, each defaulting to
/// [`crate::pipeline::Ceilings::DEFAULT`]'s.
impl RawConfig {
    fn ceilings(&self) -> std::result::Result<crate::pipeline::Ceilings, String> {
        let d = crate::pipeline::Ceilings::DEFAULT;
        let size =
            |key: &str, v: &Option<String>, default: u64| -> std::result::Result<u64, String> {
                match v {
                    None => Ok(default),
                    Some(v) => match units::parse_size(v) {
                        Ok(0) => Err(format!("`{key}` must be above 0")),
                        Ok(n) => Ok(n),
                        Err(e) => Err(format!("`{key}`: {e}")),
                    },
                }
            };
        let count = |key: &str, v: Option<u64>, default: u64| match v {
            Some(0) => Err(format!("`{key}` must be at least 1")),
            v => Ok(v.unwrap_or(default)),
        };
        let usize_of = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        Ok(crate::pipeline::Ceilings {
            max_line_bytes: usize_of(size(
                "max_line_bytes",
                &self.max_line_bytes,
                d.max_line_bytes as u64,
            )?),
            max_panes_per_window: count(
                "max_panes_per_window",
                self.max_panes_per_window,
                d.max_panes_per_window,
            )?,
            max_key_state: usize_of(size(
                "max_key_state",
                &self.max_key_state,
                d.max_key_state as u64,
            )?),
            max_tenant_state: size(
                "max_tenant_state",
                &self.max_tenant_state,
                d.max_tenant_state,
            )?,
            max_keys: count("max_keys", self.max_keys, d.max_keys)?,
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Option<String>,
    operator_token: Option<String>,
    token_file: Option<PathBuf>,
    tenant_tokens: Option<BTreeMap<String, String>>,
    amqp: Option<String>,
    cassandra: Option<String>,
    state_dir: PathBuf,
    workers: Option<usize>,
    checkpoint_interval: Option<String>,
    prefetch: Option<u16>,
    max_upload: Option<String>,
    max_traps_per_minute: Option<u64>,
    cache_dir: Option<PathBuf>,
    #[serde(default)]
    tenants: Vec<RawTenant>,
    // The ceilings (`ceilings` below).
    max_line_bytes: Option<String>,
    max_panes_per_window: Option<u64>,
    max_key_state: Option<String>,
    max_tenant_state: Option<String>,
    max_keys: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTenant {
    manifest: PathBuf,
}

/// A `token_file`: kept apart from `host.toml` so the config can be shared
/// without the secrets.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenFile {
    operator: Option<String>,
    tenants: Option<BTreeMap<String, String>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const OP: &str = "operator-token-0123456789";

    #[test]
    fn defaults_fill_what_is_not_given() {
        let c = HostConfig::parse(
            &format!("operator_token = \"{OP}\"\nstate_dir = \"state\"\n"),
            Path::new("/etc/sluice/host.toml"),
            None,
        )
        .expect("valid");
        assert_eq!(c.listen.to_string(), HostConfig::DEFAULT_LISTEN);
        assert!(c.listen.ip().is_loopback());
        assert_eq!(c.state_dir, Path::new("/etc/sluice/state"));
        assert_eq!(c.max_upload, 64 << 20);
        assert_eq!(c.max_traps_per_minute, 10);
    }

    #[test]
    fn unknown_keys_and_missing_or_short_tokens_are_errors() {
        let origin = Path::new("host.toml");
        let typo = format!("operator_token = \"{OP}\"\nstate_dir = \"s\"\ntenant_token = {{}}\n");
        assert!(HostConfig::parse(&typo, origin, None).is_err());
        assert!(HostConfig::parse("state_dir = \"s\"\n", origin, None).is_err());
        assert!(HostConfig::parse(
            "operator_token = \"short\"\nstate_dir = \"s\"\n",
            origin,
            None
        )
        .is_err());
        let shared = format!(
            "operator_token = \"{OP}\"\nstate_dir = \"s\"\n[tenant_tokens]\nbts = \"{OP}\"\n"
        );
        assert!(HostConfig::parse(&shared, origin, None).is_err());
        let env =
            HostConfig::parse("state_dir = \"s\"\n", origin, Some(OP.into())).expect("env token");
        assert_eq!(env.operator_token, OP);
    }

    #[test]
    fn ceilings_default_and_are_set_and_checked() {
        let origin = Path::new("host.toml");
        let base = format!("operator_token = \"{OP}\"\nstate_dir = \"s\"\n");
        let c = HostConfig::parse(&base, origin, None).expect("valid");
        assert_eq!(c.ceilings, crate::pipeline::Ceilings::DEFAULT);
        let set = format!(
            "{base}max_line_bytes = \"64KiB\"\nmax_panes_per_window = 100\n\
             max_key_state = \"1MiB\"\nmax_tenant_state = \"1GiB\"\nmax_keys = 5000\n"
        );
        let c = HostConfig::parse(&set, origin, None)
            .expect("valid")
            .ceilings;
        assert_eq!(
            (c.max_line_bytes, c.max_panes_per_window, c.max_key_state),
            (64 << 10, 100, 1 << 20)
        );
        assert_eq!((c.max_tenant_state, c.max_keys), (1 << 30, 5000));
        let zero = format!("{base}max_keys = 0\n");
        let err = HostConfig::parse(&zero, origin, None).expect_err("zero");
        assert!(
            err.to_string().contains("`max_keys` must be at least 1"),
            "{err}"
        );
        let unit = format!("{base}max_key_state = \"12\"\n");
        let err = HostConfig::parse(&unit, origin, None).expect_err("no unit");
        assert!(err.to_string().contains("`max_key_state`"), "{err}");
    }
}
