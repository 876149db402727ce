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
use crate::sandbox::Ceilings;

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
    /// `[ceilings]`: the most any tenant may declare or cause (defaults:
    /// [`Ceilings::default`]).
    pub ceilings: Ceilings,
    /// `[ceilings]` too: what one tenant's input and state may cost (line
    /// length, panes, state bytes, keys); every pipeline of the host gets them.
    pub pipeline_ceilings: crate::pipeline::Ceilings,
    /// A guest call running this much longer than its budget is "stuck"
    /// (no deadline ended it): the watchdog fails its tenant.
    pub stuck_after: Duration,
    /// How long a deploy waits for the old version to drain before it
    /// answers 202 (the swap completes without the caller).
    pub deploy_wait: Duration,
    /// How long SIGTERM waits for the tenants to suspend; those not
    /// suspended by then are reported and left (their unacked messages
    /// are redelivered at the next start).
    pub shutdown_timeout: Duration,
    /// The admin API's limits against clients that never finish.
    pub admin: AdminLimits,
}

/// What the admin API grants a connection before it has authenticated:
/// bounded time to send its head and its body, and a bounded number of
/// connections at once (past it, the oldest connection that has not sent a
/// complete request head is closed to make room).
#[derive(Debug, Clone, Copy)]
pub struct AdminLimits {
    pub max_connections: usize,
    /// From accepting a connection (or the end of its last response) to a
    /// complete request head.
    pub header_timeout: Duration,
    /// To read a deploy's whole body.
    pub body_timeout: Duration,
    /// Largest request head (bytes).
    pub max_header_bytes: usize,
}

impl Default for AdminLimits {
    fn default() -> Self {
        AdminLimits {
            max_connections: 256,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(60),
            max_header_bytes: 16 << 10,
        }
    }
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
        for tenant in tenant_tokens.keys() {
            crate::manifest::name::check("tenant", tenant)
                .map_err(|e| invalid(format!("`tenant_tokens`: {e}")))?;
        }
        let stuck_after = duration(
            "stuck_after",
            raw.stuck_after.as_deref(),
            Duration::from_secs(10),
        )?;
        let deploy_wait = duration(
            "deploy_wait",
            raw.deploy_wait.as_deref(),
            Duration::from_secs(10),
        )?;
        let shutdown_timeout = duration(
            "shutdown_timeout",
            raw.shutdown_timeout.as_deref(),
            Duration::from_secs(20),
        )?;
        let defaults = AdminLimits::default();
        let admin = AdminLimits {
            max_connections: match raw.admin_max_connections {
                Some(0) => {
                    return Err(invalid("`admin_max_connections` must be at least 1".into()))
                }
                Some(n) => n,
                None => defaults.max_connections,
            },
            header_timeout: duration(
                "admin_header_timeout",
                raw.admin_header_timeout.as_deref(),
                defaults.header_timeout,
            )?,
            body_timeout: duration(
                "admin_body_timeout",
                raw.admin_body_timeout.as_deref(),
                defaults.body_timeout,
            )?,
            max_header_bytes: defaults.max_header_bytes,
        };
        if admin.header_timeout.is_zero() || admin.body_timeout.is_zero() {
            return Err(invalid("the admin API's timeouts must be above 0".into()));
        }
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
        let state_dir = resolve(&raw.state_dir);
        // On by default (a componentize-py module compiles in ≈ 20 s);
        // `cache_dir = ""` turns it off.
        let cache_dir = match raw.cache_dir.as_deref() {
            Some(dir) if dir.as_os_str().is_empty() => None,
            Some(dir) => Some(resolve(dir)),
            None => crate::sandbox::default_cache_dir(),
        };
        // Uploads are written under the state directory; the artifact cache
        // (trusted machine code) must not be where they can land.
        if let Some(cache) = &cache_dir {
            if cache.starts_with(&state_dir) || state_dir.starts_with(cache) {
                return Err(invalid(format!(
                    "`cache_dir` {} overlaps `state_dir` {}: compiled artifacts are trusted \
                     when loaded, so the cache must be apart from where uploads are written",
                    cache.display(),
                    state_dir.display()
                )));
            }
        }
        let (ceilings, pipeline_ceilings) = raw
            .ceilings
            .map(RawCeilings::resolve)
            .transpose()
            .map_err(invalid)?
            .unwrap_or((Ceilings::default(), crate::pipeline::Ceilings::DEFAULT));
        Ok(HostConfig {
            listen,
            operator_token,
            tenant_tokens,
            amqp: raw
                .amqp
                .unwrap_or_else(|| "amqp://127.0.0.1:5672/%2f".to_owned()),
            cassandra,
            state_dir,
            workers,
            checkpoint_interval,
            prefetch: raw.prefetch.unwrap_or(1000).max(1),
            max_upload,
            max_traps_per_minute: raw.max_traps_per_minute.unwrap_or(10),
            tenants: raw.tenants.iter().map(|t| resolve(&t.manifest)).collect(),
            cache_dir,
            ceilings,
            pipeline_ceilings,
            stuck_after,
            deploy_wait,
            shutdown_timeout,
            admin,
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
    ceilings: Option<RawCeilings>,
    stuck_after: Option<String>,
    deploy_wait: Option<String>,
    shutdown_timeout: Option<String>,
    admin_max_connections: Option<usize>,
    admin_header_timeout: Option<String>,
    admin_body_timeout: Option<String>,
    #[serde(default)]
    tenants: Vec<RawTenant>,
}

/// `[ceilings]`, each key optional (its default otherwise).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCeilings {
    call_budget: Option<String>,
    memory: Option<String>,
    max_output: Option<String>,
    call_output: Option<String>,
    module_size: Option<String>,
    compile_time: Option<String>,
    concurrent_compiles: Option<usize>,
    core_instances: Option<u32>,
    memories: Option<u32>,
    tables: Option<u32>,
    max_line_bytes: Option<String>,
    max_panes_per_window: Option<u64>,
    max_key_state: Option<String>,
    max_tenant_state: Option<String>,
    max_keys: Option<u64>,
}

impl RawCeilings {
    fn resolve(self) -> std::result::Result<(Ceilings, crate::pipeline::Ceilings), String> {
        let d = Ceilings::default();
        let size = |key: &str, v: Option<String>, default: u64| match v {
            None => Ok(default),
            Some(v) => match units::parse_size(&v) {
                Ok(0) => Err(format!("`[ceilings] {key}` must be above 0")),
                Ok(n) => Ok(n),
                Err(e) => Err(format!("`[ceilings] {key}`: {e}")),
            },
        };
        let duration = |key: &str, v: Option<String>, default: Duration| match v {
            None => Ok(default),
            Some(v) => match units::parse_duration(&v) {
                Ok(d) if d.is_zero() => Err(format!("`[ceilings] {key}` must be above 0")),
                Ok(d) => Ok(d),
                Err(e) => Err(format!("`[ceilings] {key}`: {e}")),
            },
        };
        if self.concurrent_compiles == Some(0) {
            return Err("`[ceilings] concurrent_compiles` must be at least 1".into());
        }
        let count = |key: &str, v: Option<u64>, default: u64| match v {
            Some(0) => Err(format!("`[ceilings] {key}` must be at least 1")),
            v => Ok(v.unwrap_or(default)),
        };
        let usize_of = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        let pool = |key: &str, v: Option<u32>, default: u32| match v {
            Some(0) => Err(format!("`[ceilings] {key}` must be at least 1")),
            v => Ok(v.unwrap_or(default)),
        };
        let p = crate::pipeline::Ceilings::DEFAULT;
        let pipeline = crate::pipeline::Ceilings {
            max_line_bytes: usize_of(size(
                "max_line_bytes",
                self.max_line_bytes,
                p.max_line_bytes as u64,
            )?),
            max_panes_per_window: count(
                "max_panes_per_window",
                self.max_panes_per_window,
                p.max_panes_per_window,
            )?,
            max_key_state: usize_of(size(
                "max_key_state",
                self.max_key_state,
                p.max_key_state as u64,
            )?),
            max_tenant_state: size(
                "max_tenant_state",
                self.max_tenant_state,
                p.max_tenant_state,
            )?,
            max_keys: count("max_keys", self.max_keys, p.max_keys)?,
        };
        let sandbox = Ceilings {
            call_budget: duration("call_budget", self.call_budget, d.call_budget)?,
            memory: size("memory", self.memory, d.memory)?,
            max_output: size("max_output", self.max_output, d.max_output)?,
            call_output: size("call_output", self.call_output, d.call_output)?,
            module_size: size("module_size", self.module_size, d.module_size)?,
            compile_time: duration("compile_time", self.compile_time, d.compile_time)?,
            concurrent_compiles: self.concurrent_compiles.unwrap_or(d.concurrent_compiles),
            core_instances: pool("core_instances", self.core_instances, d.core_instances)?,
            memories: pool("memories", self.memories, d.memories)?,
            tables: pool("tables", self.tables, d.tables)?,
        };
        Ok((sandbox, pipeline))
    }
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
        assert_eq!(c.ceilings, Ceilings::default());
    }

    #[test]
    fn ceilings_are_read_and_the_cache_is_kept_apart_from_the_state() {
        let origin = Path::new("/etc/sluice/host.toml");
        let c = HostConfig::parse(
            &format!(
                "operator_token = \"{OP}\"\nstate_dir = \"state\"\n[ceilings]\n\
                 call_budget = \"2s\"\nmax_output = \"8MiB\"\nconcurrent_compiles = 2\n"
            ),
            origin,
            None,
        )
        .expect("valid");
        assert_eq!(c.ceilings.call_budget, Duration::from_secs(2));
        assert_eq!(c.ceilings.max_output, 8 << 20);
        assert_eq!(c.ceilings.concurrent_compiles, 2);
        assert_eq!(c.ceilings.memory, Ceilings::default().memory);
        let zero = format!(
            "operator_token = \"{OP}\"\nstate_dir = \"s\"\n[ceilings]\ncall_budget = \"0s\"\n"
        );
        assert!(HostConfig::parse(&zero, origin, None).is_err());
        let inside =
            format!("operator_token = \"{OP}\"\nstate_dir = \"s\"\ncache_dir = \"s/cache\"\n");
        let err = HostConfig::parse(&inside, origin, None).expect_err("cache inside state");
        assert!(err.to_string().contains("overlaps"), "{err}");
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
        assert_eq!(c.pipeline_ceilings, crate::pipeline::Ceilings::DEFAULT);
        let base = format!("{base}[ceilings]\n");
        let set = format!(
            "{base}max_line_bytes = \"64KiB\"\nmax_panes_per_window = 100\n\
             max_key_state = \"1MiB\"\nmax_tenant_state = \"1GiB\"\nmax_keys = 5000\n"
        );
        let c = HostConfig::parse(&set, origin, None)
            .expect("valid")
            .pipeline_ceilings;
        assert_eq!(
            (c.max_line_bytes, c.max_panes_per_window, c.max_key_state),
            (64 << 10, 100, 1 << 20)
        );
        assert_eq!((c.max_tenant_state, c.max_keys), (1 << 30, 5000));
        let zero = format!("{base}max_keys = 0\n");
        let err = HostConfig::parse(&zero, origin, None).expect_err("zero");
        assert!(
            err.to_string()
                .contains("`[ceilings] max_keys` must be at least 1"),
            "{err}"
        );
        let unit = format!("{base}max_key_state = \"12\"\n");
        let err = HostConfig::parse(&unit, origin, None).expect_err("no unit");
        assert!(
            err.to_string().contains("`[ceilings] max_key_state`"),
            "{err}"
        );
    }
}
