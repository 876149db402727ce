//! Argument groups several subcommands flatten, and the parsers of their
//! values.

use std::time::Duration;

use sluice_host::cassandra::CassandraConfig;
use sluice_host::data::OutputType;
use sluice_host::pipeline::Ceilings as PipelineCeilings;
use sluice_host::sandbox::Ceilings;

/// The host's ceilings for `sluice run` (defaults: `Ceilings::default()`,
/// listed in the README): what the manifest may declare at most, and what
/// loading its module may cost.
#[derive(clap::Args, Clone, Debug)]
pub struct CeilingArgs {
    /// Ceiling of `[limits] call_budget` (default 10s).
    #[arg(long, value_parser = parse_duration)]
    pub max_call_budget: Option<Duration>,
    /// Ceiling of `[limits] memory`, and the sandbox's memory slot size
    /// (default 1GiB).
    #[arg(long, value_parser = parse_size)]
    pub max_memory: Option<u64>,
    /// Ceiling of `[limits] max_output` (default 64MiB).
    #[arg(long, value_parser = parse_size)]
    pub max_output: Option<u64>,
    /// Most bytes of results one guest call may return (default 256MiB).
    #[arg(long, value_parser = parse_size)]
    pub max_call_output: Option<u64>,
    /// Largest module file read (default 32MiB).
    #[arg(long, value_parser = parse_size)]
    pub max_module_size: Option<u64>,
    /// Longest a module's compile may take (default 60s).
    #[arg(long, value_parser = parse_duration)]
    pub max_compile_time: Option<Duration>,
    /// Compiles at once (default: half the cores, at least 1).
    #[arg(long)]
    pub max_concurrent_compiles: Option<usize>,
    /// Most core instances one instance of a module may take (default 64;
    /// a componentize-py module takes 38). Sizes the instance pool.
    #[arg(long)]
    pub max_core_instances: Option<u32>,
    /// Most linear memories one instance may define (default 2).
    #[arg(long)]
    pub max_memories: Option<u32>,
    /// Most tables one instance may define (default 8).
    #[arg(long)]
    pub max_tables: Option<u32>,
}

impl CeilingArgs {
    pub fn ceilings(&self) -> anyhow::Result<Ceilings> {
        let d = Ceilings::default();
        if self.max_concurrent_compiles == Some(0) {
            anyhow::bail!("--max-concurrent-compiles must be at least 1");
        }
        for (flag, value) in [
            ("--max-core-instances", self.max_core_instances),
            ("--max-memories", self.max_memories),
            ("--max-tables", self.max_tables),
        ] {
            if value == Some(0) {
                anyhow::bail!("{flag} must be at least 1");
            }
        }
        Ok(Ceilings {
            call_budget: self.max_call_budget.unwrap_or(d.call_budget),
            memory: self.max_memory.unwrap_or(d.memory),
            max_output: self.max_output.unwrap_or(d.max_output),
            call_output: self.max_call_output.unwrap_or(d.call_output),
            module_size: self.max_module_size.unwrap_or(d.module_size),
            compile_time: self.max_compile_time.unwrap_or(d.compile_time),
            concurrent_compiles: self
                .max_concurrent_compiles
                .unwrap_or(d.concurrent_compiles),
            core_instances: self.max_core_instances.unwrap_or(d.core_instances),
            memories: self.max_memories.unwrap_or(d.memories),
            tables: self.max_tables.unwrap_or(d.tables),
        })
    }
}

/// Where in Cassandra a run writes.
#[derive(clap::Args, Clone)]
pub struct StoreArgs {
    /// With `--cassandra`: the keyspace.
    #[arg(long, default_value = CassandraConfig::DEFAULT_KEYSPACE)]
    pub keyspace: String,
    /// With `--cassandra`: the keyspace's replication when it is created,
    /// as a CQL map.
    #[arg(long, default_value = CassandraConfig::DEFAULT_REPLICATION)]
    pub replication: String,
    /// With `--cassandra`: requests in flight at once (all workers).
    #[arg(long, default_value_t = CassandraConfig::DEFAULT_MAX_CONCURRENCY)]
    pub cassandra_concurrency: usize,
    /// With `--cassandra`: MiB of rows in flight at once (all workers).
    #[arg(long, default_value_t = CassandraConfig::DEFAULT_MAX_IN_FLIGHT_BYTES >> 20)]
    pub cassandra_in_flight_mib: usize,
}

/// The host's ceilings on one tenant's input and state (`[ceilings]` in
/// `host.toml` sets them for `serve`).
#[derive(clap::Args, Clone)]
pub struct PipelineCeilingArgs {
    /// Longest input line in bytes (file, stdin, a message's line); a
    /// longer one is read through and dead-lettered with its first 4 KiB.
    #[arg(long, default_value_t = PipelineCeilings::DEFAULT.max_line_bytes)]
    pub max_line_bytes: usize,
    /// Most panes per sliding window, and windows per row; a manifest
    /// asking for more is refused.
    #[arg(long, default_value_t = PipelineCeilings::DEFAULT.max_panes_per_window)]
    pub max_panes_per_window: u64,
    /// Largest state of one key (alert state, a window accumulator, the
    /// rows it buffers for one process window): `256KiB`, `1MiB`, …
    #[arg(long, default_value = "256KiB", value_parser = parse_size)]
    pub max_key_state: u64,
    /// All state of the tenant together (window accumulators, buffered
    /// rows, alert states), split evenly over the workers.
    #[arg(long, default_value = "512MiB", value_parser = parse_size)]
    pub max_tenant_state: u64,
    /// Distinct keys the tenant may hold state for; rows of further keys
    /// are dead-lettered (`limit`).
    #[arg(long, default_value_t = PipelineCeilings::DEFAULT.max_keys)]
    pub max_keys: u64,
}

impl PipelineCeilingArgs {
    pub fn ceilings(&self) -> PipelineCeilings {
        PipelineCeilings {
            max_line_bytes: self.max_line_bytes.max(1),
            max_panes_per_window: self.max_panes_per_window.max(1),
            max_key_state: usize::try_from(self.max_key_state).unwrap_or(usize::MAX),
            max_tenant_state: self.max_tenant_state,
            max_keys: self.max_keys,
        }
    }
}

/// Where checkpoints go besides a directory (`--checkpoint-dir`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckpointStoreKind {
    /// The Cassandra of `--cassandra` (tables `checkpoints` and
    /// `checkpoint_chunks` of `--keyspace`).
    Cassandra,
}

/// Where the admin commands find the host.
#[derive(clap::Args, Clone)]
pub struct AdminArgs {
    /// The host's admin API.
    #[arg(long, env = "SLUICE_ADMIN", default_value = "http://127.0.0.1:7171")]
    pub admin: String,
    /// Bearer token (the operator's, or a tenant's for its own tenant).
    #[arg(long, env = "SLUICE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// `HOST:PORT[,HOST:PORT…]` → contact points.
pub fn nodes(list: &str) -> anyhow::Result<Vec<String>> {
    let nodes: Vec<String> = list
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
        .collect();
    if nodes.is_empty() {
        anyhow::bail!("--cassandra needs HOST:PORT");
    }
    Ok(nodes)
}

/// `column=value,column=value` pairs (`--scope`, `--key`).
pub fn column_pairs(text: Option<&str>, flag: &str) -> anyhow::Result<Vec<(String, String)>> {
    let mut pairs = Vec::new();
    for pair in text.unwrap_or("").split(',').filter(|p| !p.is_empty()) {
        let Some((k, v)) = pair.split_once('=') else {
            anyhow::bail!("{flag} takes column=value pairs separated by commas, not `{pair}`");
        };
        pairs.push((k.trim().to_owned(), v.to_owned()));
    }
    Ok(pairs)
}

pub fn parse_duration(text: &str) -> Result<Duration, String> {
    sluice_host::manifest::units::parse_duration(text)
}

pub fn parse_size(text: &str) -> Result<u64, String> {
    sluice_host::manifest::units::parse_size(text)
}

/// `--type`: a result type by its slug (`windowed-analytic`, …), the
/// possible values listed from [`OutputType::ALL`].
pub fn output_type() -> impl clap::builder::TypedValueParser<Value = OutputType> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(OutputType::ALL.map(OutputType::slug)).map(|slug| {
        // Only the listed slugs get here.
        OutputType::from_slug(&slug).unwrap_or(OutputType::Alert)
    })
}
