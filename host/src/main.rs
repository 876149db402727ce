//! The `sluice` command line: thin — parse arguments, set up logging, call
//! the library.

/// mimalloc, not glibc malloc: the pipeline allocates per batch, key group
/// and output line, and glibc malloc/free were ~17 % of a `perf` profile of
/// `sluice run`.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use serde_json::json;
use sluice_host::generate::bts::{self, BtsConfig};
use sluice_host::manifest::Manifest;
use std::sync::Arc;
use std::time::Duration;

use sluice_host::admin::{self, AdminState};
use sluice_host::batch::stored::{self, EventSource};
use sluice_host::batch::{self, JobRange, JobRun, ReportJob};
use sluice_host::broker::topology;
use sluice_host::client::admin::AdminClient;
use sluice_host::client::publish::{self as publisher, PublishConfig};
use sluice_host::client::tail;
use sluice_host::ingress::amqp::{AmqpIngress, AmqpIngressConfig};
use sluice_host::ingress::Input;
use sluice_host::metrics::prometheus::HostMetrics;
use sluice_host::metrics::{Progress, ProgressObserver};
use sluice_host::pipeline::CheckpointOptions;
use sluice_host::pipeline::{self, Ceilings as PipelineCeilings, Options, Sinks};
use sluice_host::sandbox::{
    Ceilings, FunctionKind, SandboxConfig, SandboxEngine, TenantModule, TrapBackoff,
};
use sluice_host::serve::{BatchEnv, Host, HostConfig, StateDb, Storage};
use sluice_host::sink::amqp::{AmqpSink, AmqpSinkConfig};
use sluice_host::sink::cassandra::batch_results::{BatchResultStore, BatchStoreOptions};
use sluice_host::sink::cassandra::{self, CassandraConfig, CassandraSink, QueryFilter};
use sluice_host::sink::{LineSink, OutputType};
use sluice_host::state::cassandra::{CassandraStore, CassandraStoreOptions};
use sluice_host::state::local::LocalStore;
use sluice_host::state::{self, CheckpointStore, InputPosition};

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "Multi-tenant streaming analytics with sandboxed Wasm tenants"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The host's ceilings for `sluice run` (defaults: `Ceilings::default()`,
/// listed in the README): what the manifest may declare at most, and what
/// loading its module may cost.
#[derive(clap::Args, Clone, Debug)]
struct CeilingArgs {
    /// Ceiling of `[limits] call_budget` (default 10s).
    #[arg(long, value_parser = parse_duration)]
    max_call_budget: Option<Duration>,
    /// Ceiling of `[limits] memory`, and the sandbox's memory slot size
    /// (default 1GiB).
    #[arg(long, value_parser = parse_size)]
    max_memory: Option<u64>,
    /// Ceiling of `[limits] max_output` (default 64MiB).
    #[arg(long, value_parser = parse_size)]
    max_output: Option<u64>,
    /// Most bytes of results one guest call may return (default 256MiB).
    #[arg(long, value_parser = parse_size)]
    max_call_output: Option<u64>,
    /// Largest module file read (default 32MiB).
    #[arg(long, value_parser = parse_size)]
    max_module_size: Option<u64>,
    /// Longest a module's compile may take (default 60s).
    #[arg(long, value_parser = parse_duration)]
    max_compile_time: Option<Duration>,
    /// Compiles at once (default: half the cores, at least 1).
    #[arg(long)]
    max_concurrent_compiles: Option<usize>,
}

impl CeilingArgs {
    fn ceilings(&self) -> anyhow::Result<Ceilings> {
        let d = Ceilings::default();
        if self.max_concurrent_compiles == Some(0) {
            anyhow::bail!("--max-concurrent-compiles must be at least 1");
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
        })
    }
}

/// Where in Cassandra a run writes.
#[derive(clap::Args, Clone)]
struct StoreArgs {
    /// With `--cassandra`: the keyspace.
    #[arg(long, default_value = CassandraConfig::DEFAULT_KEYSPACE)]
    keyspace: String,
    /// With `--cassandra`: the keyspace's replication when it is created,
    /// as a CQL map.
    #[arg(long, default_value = CassandraConfig::DEFAULT_REPLICATION)]
    replication: String,
    /// With `--cassandra`: requests in flight at once (all workers).
    #[arg(long, default_value_t = CassandraConfig::DEFAULT_MAX_CONCURRENCY)]
    cassandra_concurrency: usize,
    /// With `--cassandra`: MiB of rows in flight at once (all workers).
    #[arg(long, default_value_t = CassandraConfig::DEFAULT_MAX_IN_FLIGHT_BYTES >> 20)]
    cassandra_in_flight_mib: usize,
}

/// The host's ceilings on one tenant's input and state (`[ceilings]` in
/// `host.toml` sets them for `serve`).
#[derive(clap::Args, Clone)]
struct PipelineCeilingArgs {
    /// Longest input line in bytes (file, stdin, a message's line); a
    /// longer one is read through and dead-lettered with its first 4 KiB.
    #[arg(long, default_value_t = PipelineCeilings::DEFAULT.max_line_bytes)]
    max_line_bytes: usize,
    /// Most panes per sliding window, and windows per row; a manifest
    /// asking for more is refused.
    #[arg(long, default_value_t = PipelineCeilings::DEFAULT.max_panes_per_window)]
    max_panes_per_window: u64,
    /// Largest state of one key (alert state, a window accumulator, the
    /// rows it buffers for one process window): `256KiB`, `1MiB`, …
    #[arg(long, default_value = "256KiB", value_parser = parse_size)]
    max_key_state: u64,
    /// All state of the tenant together (window accumulators, buffered
    /// rows, alert states), split evenly over the workers.
    #[arg(long, default_value = "512MiB", value_parser = parse_size)]
    max_tenant_state: u64,
    /// Distinct keys the tenant may hold state for; rows of further keys
    /// are dead-lettered (`limit`).
    #[arg(long, default_value_t = PipelineCeilings::DEFAULT.max_keys)]
    max_keys: u64,
}

impl PipelineCeilingArgs {
    fn ceilings(&self) -> PipelineCeilings {
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
enum CheckpointStoreKind {
    /// The Cassandra of `--cassandra` (tables `checkpoints` and
    /// `checkpoint_chunks` of `--keyspace`).
    Cassandra,
}

/// Where the admin commands find the host.
#[derive(clap::Args, Clone)]
struct AdminArgs {
    /// The host's admin API.
    #[arg(long, env = "SLUICE_ADMIN", default_value = "http://127.0.0.1:7171")]
    admin: String,
    /// Bearer token (the operator's, or a tenant's for its own tenant).
    #[arg(long, env = "SLUICE_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the host for many tenants with the admin API and `/metrics`
    /// (see the README's `host.toml` reference).
    Serve {
        /// The host's configuration (TOML).
        #[arg(long)]
        config: PathBuf,
    },
    /// Deploy (or redeploy, swapping the module at a checkpoint) a tenant
    /// on a running host: uploads the manifest and the module it names.
    Deploy {
        manifest: PathBuf,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Stop a tenant for good: its open windows fire, its state is deleted.
    Undeploy {
        tenant: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// The host's tenants: state, module, counters.
    List {
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Stop consuming a tenant's queue (messages wait in it).
    Pause {
        tenant: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Consume a paused tenant's queue again.
    Resume {
        tenant: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Run a tenant over a file or stdin (the embedded mode: no broker, no
    /// database): results as JSON lines on stdout or `--output`, rows that
    /// do not parse, late rows and poison events to `--dead-letter`.
    Run {
        /// The tenant's manifest (TOML); its `module` path is relative to it.
        manifest: PathBuf,
        /// CSV input file, or `-` for stdin (read until it closes).
        #[arg(long, short, default_value = "-")]
        input: String,
        /// Write results here instead of stdout.
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// Write dead letters (JSON lines) here; dropped when not given
        /// (they are still counted).
        #[arg(long)]
        dead_letter: Option<PathBuf>,
        /// Shard workers (default: all cores).
        #[arg(long)]
        workers: Option<usize>,
        /// Cache compiled artifacts here (by content hash).
        #[arg(long, env = "SLUICE_CACHE_DIR")]
        cache_dir: Option<PathBuf>,
        /// No progress line on stderr.
        #[arg(long)]
        quiet: bool,
        /// Consume the manifest's `[input] queue` from this RabbitMQ and
        /// publish results to its `[output] exchange` (instead of reading
        /// `--input`; results still go to `--output` when given).
        #[arg(long, env = "SLUICE_AMQP_URL")]
        amqp: Option<String>,
        /// With `--amqp`: end the input once no message has arrived for this
        /// many seconds (flush every window, wait for confirms, ack, exit 0).
        #[arg(long)]
        until_idle: Option<f64>,
        /// With `--amqp`: unacked messages the broker may hand over at once.
        #[arg(long, default_value_t = AmqpIngressConfig::DEFAULT_PREFETCH)]
        prefetch: u16,
        /// Take checkpoints here (and resume from the newest on start): a
        /// file input resumes at its checkpointed offset, the output files
        /// are cut back to what the checkpoint covers, a broker input is
        /// acked only up to the last checkpoint.
        #[arg(long, conflicts_with = "checkpoint_store")]
        checkpoint_dir: Option<PathBuf>,
        /// Take checkpoints in this store instead of a directory (and
        /// resume from the newest on start): `cassandra` keeps them in the
        /// `--cassandra` keyspace's `checkpoints` tables.
        #[arg(long, value_enum, requires = "cassandra")]
        checkpoint_store: Option<CheckpointStoreKind>,
        /// With `--checkpoint-store cassandra`: the name of this pipeline's
        /// checkpoints among the tenant's (default: the input's file name,
        /// or the queue with `--amqp`). Runs that resume each other must
        /// use the same name; concurrent runs must not.
        #[arg(long, requires = "checkpoint_store")]
        checkpoint_name: Option<String>,
        /// Time between checkpoints while records flow (`500ms`, `1s`, …).
        #[arg(long, default_value = "1s", value_parser = parse_duration)]
        checkpoint_interval: Duration,
        /// Also take a checkpoint once this many rows came in since the
        /// last one (checked after each chunk of input): checkpoints at
        /// the same rows every run, whatever the machine's speed.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        checkpoint_rows: Option<u64>,
        /// With `--amqp`: a larger message is dead-lettered undecoded.
        #[arg(long, default_value_t = AmqpIngressConfig::DEFAULT_MAX_MESSAGE_BYTES)]
        max_message_bytes: usize,
        /// Also write results, dead letters and raw events to this Cassandra
        /// node (`HOST:PORT`, or several separated by commas); creates the
        /// keyspace and tables when missing.
        #[arg(long, env = "SLUICE_CASSANDRA")]
        cassandra: Option<String>,
        #[command(flatten)]
        store: Box<StoreArgs>,
        /// With `--cassandra`: store every row that parsed in `events`
        /// (the default with `--cassandra`).
        #[arg(long, overrides_with = "no_store_events")]
        store_events: bool,
        /// With `--cassandra`: do not store the raw events.
        #[arg(long, overrides_with = "store_events")]
        no_store_events: bool,
        #[command(flatten)]
        ceilings: CeilingArgs,
        #[command(flatten)]
        pipeline_ceilings: PipelineCeilingArgs,
    },
    /// Run a `[[batch]]` job of the manifest once over a range: over a CSV
    /// file (`--input`) or the tenant's events stored in Cassandra
    /// (`--cassandra`); results as JSON lines (`--output`, stdout by
    /// default without `--cassandra`), in Cassandra's `batch_results`, and
    /// as an HTML report with charts (`--report`).
    Batch {
        /// The tenant's manifest (TOML) with the `[[batch]]` job.
        manifest: PathBuf,
        /// The job's name; repeat to run several jobs over the same range
        /// (their results in order, one report with all their charts).
        #[arg(long, required = true)]
        job: Vec<String>,
        /// Start of the range (inclusive): RFC 3339, `YYYY-MM-DD[ HH:MM:SS]`
        /// (UTC) or ms since the epoch.
        #[arg(long)]
        from: String,
        /// End of the range (exclusive), same spellings.
        #[arg(long)]
        to: String,
        /// Read this CSV file (the manifest's format and `header`) instead
        /// of the stored events.
        #[arg(long)]
        input: Option<PathBuf>,
        /// Store the results in `batch_results` on this Cassandra node
        /// (`HOST:PORT[,…]`); without `--input`, scan the tenant's stored
        /// events there.
        #[arg(long, env = "SLUICE_CASSANDRA")]
        cassandra: Option<String>,
        #[command(flatten)]
        store: Box<StoreArgs>,
        /// Only rows with these values: `column=value,column=value` (how an
        /// alert trigger scopes a run).
        #[arg(long)]
        scope: Option<String>,
        /// Write the results (JSON lines) here; `-` for stdout.
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// Write an HTML report with the job's charts here.
        #[arg(long)]
        report: Option<PathBuf>,
        /// Write dead letters (bad rows, poison) here.
        #[arg(long)]
        dead_letter: Option<PathBuf>,
        /// Shard workers (default: all cores).
        #[arg(long)]
        workers: Option<usize>,
        /// Partitions scanned at once (with `--cassandra`).
        #[arg(long, default_value_t = 8)]
        scan_parallelism: usize,
        /// Cache compiled artifacts here (by content hash).
        #[arg(long, env = "SLUICE_CACHE_DIR")]
        cache_dir: Option<PathBuf>,
        /// No progress bar on stderr.
        #[arg(long)]
        quiet: bool,
    },
    /// Print the results stored in Cassandra as JSON lines, in the shape
    /// `sluice run` prints them (a window updated late shows its last
    /// update).
    Query {
        /// Cassandra node(s), `HOST:PORT[,HOST:PORT…]`.
        #[arg(long, env = "SLUICE_CASSANDRA")]
        cassandra: String,
        #[arg(long, default_value = CassandraConfig::DEFAULT_KEYSPACE)]
        keyspace: String,
        /// The tenant.
        #[arg(long)]
        tenant: String,
        /// Only this result type.
        #[arg(long = "type", value_parser = ["windowed-analytic", "global-analytic", "windowed-metric", "global-metric", "alert"])]
        ty: Option<String>,
        /// Only keys with these values: `column=value,column=value`.
        #[arg(long)]
        key: Option<String>,
    },
    /// Publish CSV lines to a tenant's input queue (the sensor simulator):
    /// persistent messages with publisher confirms and deterministic ids.
    Publish {
        /// RabbitMQ URL.
        #[arg(long, env = "SLUICE_AMQP_URL")]
        amqp: String,
        /// The input queue (declared as the host declares it).
        #[arg(long, required_unless_present = "manifest")]
        queue: Option<String>,
        /// Take the queue from this manifest's `[input] queue`; with
        /// `[input] partitions`, publish to its partition exchange with
        /// each record's key as the routing key.
        #[arg(long)]
        manifest: Option<PathBuf>,
        /// CSV file, or `-` for stdin.
        file: String,
        /// Rows per second (default: as fast as the broker confirms).
        #[arg(long)]
        rate: Option<f64>,
        /// CSV lines per message.
        #[arg(long, default_value_t = 1)]
        lines_per_message: usize,
        /// Unconfirmed messages in flight.
        #[arg(long, default_value_t = 2000)]
        max_in_flight: usize,
    },
    /// Print a tenant's results from its output exchange as JSON lines
    /// (through an exclusive queue of its own).
    Tail {
        /// RabbitMQ URL.
        #[arg(long, env = "SLUICE_AMQP_URL")]
        amqp: String,
        /// The output exchange.
        #[arg(long, required_unless_present = "manifest")]
        exchange: Option<String>,
        /// Take the exchange from this manifest's `[output] exchange`.
        #[arg(long)]
        manifest: Option<PathBuf>,
        /// Only this result type.
        #[arg(long = "type", value_parser = ["windowed-analytic", "global-analytic", "windowed-metric", "global-metric", "alert"])]
        ty: Option<String>,
        /// Stop after this many messages.
        #[arg(long)]
        count: Option<u64>,
    },
    /// Validate a tenant component as a deploy would, and print what it
    /// implements (its `describe`) as JSON.
    Inspect {
        /// The tenant's `.wasm` component.
        module: PathBuf,
        /// Tenant name used in messages.
        #[arg(long, default_value = "inspect")]
        tenant: String,
        /// Cache compiled artifacts here (by content hash).
        #[arg(long, env = "SLUICE_CACHE_DIR")]
        cache_dir: Option<PathBuf>,
    },
    /// Generate realistic BTS sensor CSV, deterministically from a seed
    /// (the original data set cannot be shipped).
    GenBts {
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long, default_value_t = 10)]
        stations: u32,
        /// Lines to write (good and dirty; not counting a header).
        #[arg(long, default_value_t = 100_000)]
        events: u64,
        /// First event time, UTC.
        #[arg(long, default_value = "2017-02-18 18:28:05")]
        start: String,
        /// Fraction of rows held back by 1–3 s of event time (never more:
        /// `max_out_of_orderness = "3s"` or more sees no late row).
        #[arg(long, default_value_t = 0.0)]
        out_of_order: f64,
        /// Fraction of lines that are bad rows of every kind.
        #[arg(long, default_value_t = 0.0)]
        dirty: f64,
        /// Keys whose value climbs to their threshold (predicted-breach).
        #[arg(long, default_value_t = 0)]
        ramp: u32,
        /// Write the CSV header line first.
        #[arg(long)]
        header: bool,
        /// Write here (with a progress bar) instead of stdout.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Serve { config } => serve(&config),
        Command::Deploy { manifest, admin } => {
            let client = AdminClient::new(&admin.admin, admin.token)?;
            let view = client.deploy(&manifest)?;
            eprintln!(
                "sluice deploy: tenant `{}` running module {}",
                view["tenant"].as_str().unwrap_or("?"),
                view["module"]["sha256"].as_str().unwrap_or("?")
            );
            Ok(())
        }
        Command::Undeploy { tenant, admin } => {
            let client = AdminClient::new(&admin.admin, admin.token)?;
            let view = client.undeploy(&tenant)?;
            eprintln!(
                "sluice undeploy: tenant `{tenant}` stopped after {} records in, {} outputs",
                view["counters"]["records_in"], view["counters"]["outputs"]
            );
            Ok(())
        }
        Command::List { json, admin } => {
            let client = AdminClient::new(&admin.admin, admin.token)?;
            let tenants = client.list()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&tenants)?);
            } else {
                print_list(&tenants);
            }
            Ok(())
        }
        Command::Pause { tenant, admin } => {
            let client = AdminClient::new(&admin.admin, admin.token)?;
            client.control(&tenant, "pause")?;
            eprintln!("sluice pause: tenant `{tenant}` paused");
            Ok(())
        }
        Command::Resume { tenant, admin } => {
            let client = AdminClient::new(&admin.admin, admin.token)?;
            client.control(&tenant, "resume")?;
            eprintln!("sluice resume: tenant `{tenant}` consuming again");
            Ok(())
        }
        Command::Run {
            manifest,
            input,
            output,
            dead_letter,
            workers,
            cache_dir,
            quiet,
            amqp,
            until_idle,
            prefetch,
            max_message_bytes,
            checkpoint_dir,
            checkpoint_store,
            checkpoint_name,
            checkpoint_interval,
            checkpoint_rows,
            cassandra,
            store,
            store_events,
            no_store_events,
            ceilings,
            pipeline_ceilings,
        } => {
            if cassandra.is_none() && store_events {
                anyhow::bail!(
                    "--store-events needs --cassandra (the raw events go to its `events` table)"
                );
            }
            run(&RunArgs {
                manifest,
                input,
                output,
                dead_letter,
                workers,
                cache_dir,
                quiet,
                amqp,
                until_idle,
                prefetch,
                max_message_bytes,
                checkpoint_dir,
                checkpoint_store,
                checkpoint_name,
                checkpoint_interval,
                checkpoint_rows,
                cassandra,
                store: *store,
                store_events: !no_store_events,
                ceilings: ceilings.ceilings()?,
                pipeline_ceilings: pipeline_ceilings.ceilings(),
            })
        }
        Command::Batch {
            manifest,
            job,
            from,
            to,
            input,
            cassandra,
            store,
            scope,
            output,
            report,
            dead_letter,
            workers,
            scan_parallelism,
            cache_dir,
            quiet,
        } => batch(BatchArgs {
            manifest,
            job,
            from,
            to,
            input,
            cassandra,
            store: *store,
            scope,
            output,
            report,
            dead_letter,
            workers,
            scan_parallelism,
            cache_dir,
            quiet,
        }),
        Command::Query {
            cassandra,
            keyspace,
            tenant,
            ty,
            key,
        } => query(cassandra, keyspace, tenant, ty.as_deref(), key.as_deref()),
        Command::Publish {
            amqp,
            queue,
            manifest,
            file,
            rate,
            lines_per_message,
            max_in_flight,
        } => {
            let (queue, partitioned) = match (queue, manifest) {
                (Some(q), _) => (q, None),
                (None, Some(m)) => {
                    let input = Manifest::from_path(&m)
                        .context("loading the manifest")?
                        .input;
                    let partitioned = input.partitions.map(|count| {
                        (
                            input.clone(),
                            topology::Partitioned {
                                base: input.queue.clone(),
                                count,
                            },
                        )
                    });
                    (input.queue, partitioned)
                }
                (None, None) => anyhow::bail!("give --queue or --manifest"),
            };
            publish(
                PublishConfig {
                    url: amqp,
                    queue,
                    source_name: if file == "-" {
                        "stdin".to_owned()
                    } else {
                        file.clone()
                    },
                    rate,
                    lines_per_message,
                    max_in_flight,
                    partitioned,
                },
                &file,
            )
        }
        Command::Tail {
            amqp,
            exchange,
            manifest,
            ty,
            count,
        } => {
            let exchange = match (exchange, manifest) {
                (Some(x), _) => x,
                (None, Some(m)) => {
                    Manifest::from_path(&m)
                        .context("loading the manifest")?
                        .output
                        .exchange
                }
                (None, None) => anyhow::bail!("give --exchange or --manifest"),
            };
            let runtime = runtime()?;
            let mut stdout = std::io::stdout().lock();
            let printed = runtime.block_on(tail::tail(
                &amqp,
                &exchange,
                &tail::binding_key(ty.as_deref()),
                count,
                &mut stdout,
                async {
                    let _ = tokio::signal::ctrl_c().await;
                },
                || eprintln!("sluice tail: listening on {exchange}"),
            ));
            match printed {
                Ok(n) => {
                    eprintln!("sluice tail: {n} messages");
                    Ok(())
                }
                Err(tail::Error::Write(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
                Err(e) => Err(e).with_context(|| format!("tailing the exchange {exchange}")),
            }
        }
        Command::Inspect {
            module,
            tenant,
            cache_dir,
        } => inspect(&module, &tenant, cache_dir),
        Command::GenBts {
            seed,
            stations,
            events,
            start,
            out_of_order,
            dirty,
            ramp,
            header,
            output,
        } => {
            let config = BtsConfig {
                seed,
                stations,
                events,
                start_ms: bts::parse_start(&start).map_err(anyhow::Error::msg)?,
                out_of_order,
                dirty,
                ramp,
                header,
            };
            gen_bts(&config, output.as_deref())
        }
    }
}

struct RunArgs {
    manifest: PathBuf,
    input: String,
    output: Option<PathBuf>,
    dead_letter: Option<PathBuf>,
    workers: Option<usize>,
    cache_dir: Option<PathBuf>,
    quiet: bool,
    amqp: Option<String>,
    until_idle: Option<f64>,
    prefetch: u16,
    max_message_bytes: usize,
    checkpoint_dir: Option<PathBuf>,
    checkpoint_store: Option<CheckpointStoreKind>,
    checkpoint_name: Option<String>,
    checkpoint_interval: Duration,
    checkpoint_rows: Option<u64>,
    cassandra: Option<String>,
    store: StoreArgs,
    store_events: bool,
    ceilings: Ceilings,
    pipeline_ceilings: PipelineCeilings,
}

/// `HOST:PORT[,HOST:PORT…]` → contact points.
fn nodes(list: &str) -> anyhow::Result<Vec<String>> {
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

/// `sluice batch`'s arguments.
struct BatchArgs {
    manifest: PathBuf,
    job: Vec<String>,
    from: String,
    to: String,
    input: Option<PathBuf>,
    cassandra: Option<String>,
    store: StoreArgs,
    scope: Option<String>,
    output: Option<PathBuf>,
    report: Option<PathBuf>,
    dead_letter: Option<PathBuf>,
    workers: Option<usize>,
    scan_parallelism: usize,
    cache_dir: Option<PathBuf>,
    quiet: bool,
}

fn batch(args: BatchArgs) -> anyhow::Result<()> {
    let manifest = Manifest::from_path(&args.manifest).context("loading the manifest")?;
    let range = JobRange {
        from: batch::parse_instant(&args.from).map_err(|e| anyhow::anyhow!("--from: {e}"))?,
        to: batch::parse_instant(&args.to).map_err(|e| anyhow::anyhow!("--to: {e}"))?,
    };
    let scope = column_pairs(args.scope.as_deref(), "--scope")?;
    // Every job is checked before the first one runs.
    let runs = args
        .job
        .iter()
        .map(|name| JobRun::new(&manifest, name, range, scope.clone()))
        .collect::<Result<Vec<_>, _>>()?;
    if args.input.is_none() && args.cassandra.is_none() {
        anyhow::bail!("give --input FILE or --cassandra HOST:PORT (the stored events)");
    }
    let (workers, _engine, module) = load_tenant(
        &manifest,
        &args.manifest,
        args.workers,
        args.cache_dir.clone(),
        Ceilings::default(),
    )?;
    let dead_letter = match &args.dead_letter {
        Some(path) => file_sink("dead-letter", path, None)?,
        None => LineSink::discard("dead-letter"),
    };
    let options = Options {
        workers,
        progress: progress_line(!args.quiet),
        ..Options::default()
    };
    let rt = args.cassandra.as_ref().map(|_| runtime()).transpose()?;
    let stored = match (&args.cassandra, &rt) {
        (Some(list), Some(rt)) => {
            let config = CassandraConfig {
                keyspace: args.store.keyspace.clone(),
                replication: args.store.replication.clone(),
                max_concurrency: args.store.cassandra_concurrency.max(1),
                ..CassandraConfig::new(nodes(list)?)
            };
            let store = rt
                .block_on(BatchResultStore::connect(&config, rt.handle().clone()))
                .with_context(|| format!("connecting to Cassandra at {list}"))?;
            let events = EventSource {
                session: Arc::clone(store.session()),
                runtime: rt.handle().clone(),
                keyspace: config.keyspace.clone(),
                parallelism: args.scan_parallelism.max(1),
            };
            Some((store, events))
        }
        _ => None,
    };
    let source = match &args.input {
        Some(path) => path.display().to_string(),
        None => format!("the stored events of tenant `{}`", manifest.tenant),
    };

    let mut lines = Vec::new();
    let mut report = Vec::new();
    for run in &runs {
        let job = &run.job.name;
        let started = std::time::Instant::now();
        let file = match &args.input {
            Some(path) => {
                let file = std::fs::File::open(path)
                    .with_context(|| format!("opening the input {}", path.display()))?;
                Some((
                    Input::bytes(Box::new(file), path.display().to_string()),
                    manifest.input.header,
                ))
            }
            None => None,
        };
        let outcome = match (&stored, file) {
            (Some((store, events)), file) => {
                // The scan's bar counts partitions; the pipeline's line
                // would fight it.
                let progress = (!args.quiet && args.input.is_none()).then(scan_progress);
                let (outcome, record) = stored::run_and_store(
                    run,
                    &module,
                    events,
                    file,
                    store,
                    "cli",
                    dead_letter.clone(),
                    &Options {
                        progress: options.progress.clone().filter(|_| args.input.is_some()),
                        ..options.clone()
                    },
                    progress.clone(),
                )
                .with_context(|| format!("running batch job `{job}` over {source}"))?;
                if let Some(bar) = progress {
                    bar.finish_and_clear();
                }
                eprintln!(
                    "sluice batch: job `{job}`: {} results stored in {ks}.batch_results, the run \
                     in {ks}.batch_runs",
                    record.results,
                    ks = args.store.keyspace
                );
                outcome
            }
            (None, Some((input, header))) => run
                .run(&module, input, header, dead_letter.clone(), &options)
                .with_context(|| format!("running batch job `{job}` over {source}"))?,
            (None, None) => anyhow::bail!("give --input FILE or --cassandra HOST:PORT"),
        };
        for r in &outcome.results {
            r.write_line(&mut lines);
        }
        let s = &outcome.summary;
        eprintln!(
            "sluice batch: job `{job}` over [{}, {}): {} rows read, {} in range and scope, {} left \
             out, {} bad, {} results, {:.1} s",
            range.from,
            range.to,
            s.rows_in + outcome.rows_skipped,
            outcome.rows_used(),
            outcome.rows_skipped,
            s.bad_rows,
            outcome.results.len(),
            started.elapsed().as_secs_f64()
        );
        report.push(ReportJob {
            name: job.clone(),
            range,
            charts: run.job.charts.clone(),
            results: outcome.results,
        });
    }
    dead_letter.flush().context("writing the dead letters")?;
    match &args.output {
        Some(path) if path.as_os_str() != "-" => {
            std::fs::write(path, &lines).with_context(|| format!("writing {}", path.display()))?
        }
        Some(_) => std::io::Write::write_all(&mut std::io::stdout().lock(), &lines)?,
        None if args.cassandra.is_none() => {
            std::io::Write::write_all(&mut std::io::stdout().lock(), &lines)?
        }
        None => {}
    }
    if let Some(path) = &args.report {
        let html =
            sluice_host::report::render(&manifest.tenant, &report).context("drawing the report")?;
        std::fs::write(path, html).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("sluice batch: report written to {}", path.display());
    }
    Ok(())
}

/// The spinner of a scan of stored events.
fn scan_progress() -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} scanning stored events: {pos} partitions, {elapsed}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// The progress line of a pipeline run on stderr, when `show`.
fn progress_line(show: bool) -> Option<Arc<dyn ProgressObserver>> {
    show.then(|| Arc::new(ProgressLine::default()) as Arc<dyn ProgressObserver>)
}

/// A pipeline run's figures as a spinner line on stderr, redrawn at most
/// four times a second; a new bar for each run (a `sluice batch` of
/// several jobs runs one pipeline per job), cleared when it ends.
#[derive(Default)]
struct ProgressLine {
    bar: std::sync::Mutex<Option<indicatif::ProgressBar>>,
}

impl ProgressObserver for ProgressLine {
    fn started(&self) {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_draw_target(indicatif::ProgressDrawTarget::stderr_with_hz(4));
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        if let Ok(mut slot) = self.bar.lock() {
            *slot = Some(bar);
        }
    }

    fn progress(&self, progress: &Progress) {
        let Ok(slot) = self.bar.lock() else { return };
        let Some(bar) = slot.as_ref() else { return };
        let s = &progress.summary;
        bar.set_message(format!(
            "{} rows, {} MB, {} bad, {} late, {} outputs, {:.0} events/s, {} panes",
            s.rows_in,
            s.bytes_in / 1_000_000,
            s.bad_rows,
            s.late_dropped,
            s.outputs,
            s.events_per_sec(),
            progress.open_panes
        ));
    }

    fn finished(&self) {
        let bar = self.bar.lock().ok().and_then(|mut slot| slot.take());
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
    }
}

/// `column=value,column=value` pairs (`--scope`, `--key`).
fn column_pairs(text: Option<&str>, flag: &str) -> anyhow::Result<Vec<(String, String)>> {
    let mut pairs = Vec::new();
    for pair in text.unwrap_or("").split(',').filter(|p| !p.is_empty()) {
        let Some((k, v)) = pair.split_once('=') else {
            anyhow::bail!("{flag} takes column=value pairs separated by commas, not `{pair}`");
        };
        pairs.push((k.trim().to_owned(), v.to_owned()));
    }
    Ok(pairs)
}

fn query(
    list: String,
    keyspace: String,
    tenant: String,
    ty: Option<&str>,
    key: Option<&str>,
) -> anyhow::Result<()> {
    let nodes = nodes(&list)?;
    let ty = ty.map(|t| match t {
        "windowed-analytic" => OutputType::WindowedAnalytic,
        "global-analytic" => OutputType::GlobalAnalytic,
        "windowed-metric" => OutputType::WindowedMetric,
        "global-metric" => OutputType::GlobalMetric,
        _ => OutputType::Alert,
    });
    let pairs = column_pairs(key, "--key")?;
    let filter = QueryFilter {
        tenant,
        ty,
        key: pairs,
    };
    let rt = runtime()?;
    let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
    let printed = rt.block_on(async {
        let session = cassandra::connect(&nodes).await?;
        cassandra::query(&session, &keyspace, &filter, &mut stdout).await
    });
    match printed {
        Ok(n) => {
            eprintln!("sluice query: {n} results");
            Ok(())
        }
        Err(e) => Err(e).with_context(|| format!("querying keyspace {keyspace} at {list}")),
    }
}

/// The name a run's checkpoints get in Cassandra when `--checkpoint-name`
/// is not given: the queue it consumes, or its input file's name (not the
/// path, so a run resumed from another directory finds them).
fn default_checkpoint_name(args: &RunArgs, manifest: &Manifest) -> anyhow::Result<String> {
    if args.amqp.is_some() {
        return Ok(manifest.input.queue.clone());
    }
    std::path::Path::new(&args.input)
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|_| args.input != "-")
        .map(str::to_owned)
        .context("give --checkpoint-name: the input has no file name to name the checkpoints by")
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    sluice_host::manifest::units::parse_duration(text)
}

fn parse_size(text: &str) -> Result<u64, String> {
    sluice_host::manifest::units::parse_size(text)
}

/// Opens a line sink on `path`: created afresh, or — resuming from a
/// checkpoint that covers `resume` bytes of it — cut back to those bytes
/// and appended to.
fn file_sink(
    name: &'static str,
    path: &std::path::Path,
    resume: Option<u64>,
) -> anyhow::Result<LineSink> {
    let file = match resume {
        Some(len) => {
            let file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)
                .with_context(|| format!("opening {}", path.display()))?;
            file.set_len(len).with_context(|| {
                format!(
                    "cutting {} back to the checkpoint ({len} bytes)",
                    path.display()
                )
            })?;
            let mut file = file;
            std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(len))
                .with_context(|| format!("seeking in {}", path.display()))?;
            file
        }
        None => {
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?
        }
    };
    Ok(LineSink::file(name, file, resume.unwrap_or(0)))
}

/// A small runtime for the broker clients; the pipeline keeps its own
/// threads and calls into it.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("sluice-io")
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// The worker count (`--workers`, default all cores), and the tenant's
/// module loaded and checked against its manifest, with the engine that
/// runs it (kept by the caller: its epoch ticker enforces the call budget).
fn load_tenant(
    manifest: &Manifest,
    manifest_path: &std::path::Path,
    workers: Option<usize>,
    cache_dir: Option<PathBuf>,
    ceilings: Ceilings,
) -> anyhow::Result<(usize, SandboxEngine, TenantModule)> {
    let workers = match workers {
        Some(0) => anyhow::bail!("--workers must be at least 1"),
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(1, usize::from),
    };
    let engine = SandboxEngine::new(SandboxConfig {
        cache_dir,
        pool_instances: u32::try_from(workers * 2 + 2).unwrap_or(u32::MAX),
        ceilings,
        ..SandboxConfig::default()
    })
    .context("starting the sandbox engine")?;
    // Declared limits over the host's ceilings are refused before the
    // module is even read.
    engine
        .check_limits(&manifest.tenant, &manifest.limits)
        .with_context(|| format!("checking {}", manifest_path.display()))?;
    let module = engine
        .load_file(&manifest.tenant, &manifest.module)
        .with_context(|| {
            format!(
                "loading the tenant module {} (named by {})",
                manifest.module.display(),
                manifest_path.display()
            )
        })?;
    manifest
        .check_module(module.info())
        .with_context(|| format!("checking {} against its module", manifest_path.display()))?;
    Ok((workers, engine, module))
}

fn run(args: &RunArgs) -> anyhow::Result<()> {
    let manifest = Manifest::from_path(&args.manifest).context("loading the manifest")?;
    let (workers, _engine, module) = load_tenant(
        &manifest,
        &args.manifest,
        args.workers,
        args.cache_dir.clone(),
        args.ceilings.clone(),
    )?;

    // One runtime for the broker and database clients.
    let rt = if args.amqp.is_some() || args.cassandra.is_some() {
        Some(runtime()?)
    } else {
        None
    };
    // The Cassandra sink connects (and migrates the schema) first: a
    // Cassandra checkpoint store shares its session.
    let mut table_sink = None;
    if let (Some(list), Some(rt)) = (&args.cassandra, &rt) {
        let config = CassandraConfig {
            keyspace: args.store.keyspace.clone(),
            replication: args.store.replication.clone(),
            max_concurrency: args.store.cassandra_concurrency.max(1),
            max_in_flight_bytes: args.store.cassandra_in_flight_mib.max(1) << 20,
            ..CassandraConfig::new(nodes(list)?)
        };
        let sink = Arc::new(
            rt.block_on(CassandraSink::connect(config, rt.handle().clone()))
                .with_context(|| format!("connecting the Cassandra sink at {list}"))?,
        );
        table_sink = Some(sink);
    }

    let store: Option<Arc<dyn CheckpointStore>> =
        match (&args.checkpoint_dir, args.checkpoint_store) {
            (Some(dir), _) => Some(Arc::new(
                LocalStore::open(dir, 3).context("opening the checkpoint directory")?,
            )),
            (None, Some(CheckpointStoreKind::Cassandra)) => {
                let (Some(sink), Some(rt)) = (&table_sink, &rt) else {
                    anyhow::bail!("--checkpoint-store cassandra needs --cassandra");
                };
                let name = match &args.checkpoint_name {
                    Some(name) => name.clone(),
                    None => default_checkpoint_name(args, &manifest)?,
                };
                let opened = rt
                    .block_on(CassandraStore::open(
                        Arc::clone(sink.session()),
                        rt.handle().clone(),
                        sink.keyspace(),
                        &manifest.tenant,
                        &name,
                        &CassandraStoreOptions::default(),
                    ))
                    .with_context(|| format!("opening the checkpoints `{name}` in Cassandra"))?;
                Some(Arc::new(opened))
            }
            (None, None) => None,
        };
    let restore = match &store {
        Some(store) => store
            .latest()
            .context("reading the latest checkpoint")?
            .map(state::Restored::into_resume),
        None => None,
    };
    if let Some(c) = &restore {
        eprintln!(
            "sluice run: resuming from checkpoint {} ({} rows in so far)",
            c.id, c.counters.rows_in
        );
    }
    if store.is_some() && args.amqp.is_none() && args.input == "-" {
        anyhow::bail!(
            "checkpoints (--checkpoint-dir, --checkpoint-store) need a file --input or --amqp: \
             stdin cannot be resumed"
        );
    }
    let stdout_results = match &args.output {
        Some(path) => path.as_os_str() == "-",
        None => args.amqp.is_none() && args.cassandra.is_none(),
    };
    if store.is_some() && stdout_results {
        anyhow::bail!(
            "checkpoints (--checkpoint-dir, --checkpoint-store) need the results in --output FILE \
             (or only in --amqp / --cassandra, where replayed results keep their ids): a restart \
             cuts a file back to its checkpoint, but lines already printed to stdout would be \
             printed again, and a kill can leave a torn last line"
        );
    }
    let output = match &args.output {
        Some(path) if path.as_os_str() == "-" => LineSink::new(
            "output",
            Box::new(std::io::BufWriter::with_capacity(
                1 << 16,
                std::io::stdout(),
            )),
        ),
        Some(path) => file_sink(
            "output",
            path,
            restore.as_ref().and_then(|c| c.output_bytes),
        )?,
        // With a broker or a database the results go there; without, stdout.
        None if args.amqp.is_some() || args.cassandra.is_some() => LineSink::discard("output"),
        None => LineSink::new(
            "output",
            Box::new(std::io::BufWriter::with_capacity(
                1 << 16,
                std::io::stdout(),
            )),
        ),
    };
    let dead_letter = match &args.dead_letter {
        Some(path) => file_sink(
            "dead-letter",
            path,
            restore.as_ref().and_then(|c| c.dead_letter_bytes),
        )?,
        None => LineSink::discard("dead-letter"),
    };
    let mut sinks = Sinks::lines(output, dead_letter);
    let skip = match restore.as_ref().map(|c| &c.input) {
        Some(InputPosition::Messages { unacked }) => unacked.clone(),
        _ => Vec::new(),
    };
    let file_start = match restore.as_ref().map(|c| &c.input) {
        Some(InputPosition::File { offset, line }) => (*offset, *line),
        _ => (0, 0),
    };
    let checkpointing = store.is_some();
    let options = Options {
        workers,
        progress: progress_line(!args.quiet),
        checkpoint: store.map(|store| CheckpointOptions {
            store,
            interval: args.checkpoint_interval,
            every_rows: args.checkpoint_rows,
            // Acks come only with checkpoints: take one before the
            // prefetch window runs out, so the consumer never stalls.
            every_messages: args
                .amqp
                .as_ref()
                .map(|_| usize::from(args.prefetch.max(2)) / 2),
            module_hash: module.hash().to_owned(),
            restore,
        }),
        ceilings: args.pipeline_ceilings,
        ..Options::default()
    };

    if let Some(sink) = &table_sink {
        sinks.tables = Some(sink.clone());
        sinks.store_events = args.store_events;
    }

    let mut broker = None;
    let (input, source) = match (&args.amqp, &rt) {
        (Some(url), Some(rt)) => {
            if let Some(p) = manifest.input.partitions {
                anyhow::bail!(
                    "the manifest's input has {p} partitions: `sluice serve` hosts consume \
                     them (each partition on one host at a time); `sluice run --amqp` reads \
                     one plain queue"
                );
            }
            let handle = rt.handle().clone();
            let sink = rt
                .block_on(AmqpSink::connect(
                    AmqpSinkConfig {
                        url: url.clone(),
                        exchange: manifest.output.exchange.clone(),
                        dead_letter_exchange: Some(topology::dead_letter_name(
                            &manifest.input.queue,
                        )),
                        give_up: BROKER_GIVE_UP,
                    },
                    handle.clone(),
                ))
                .context("connecting the result sink")?;
            sinks.messages = Some(Arc::new(sink));
            let until_idle = match args.until_idle {
                Some(s) if !(s.is_finite() && s >= 0.0) => {
                    anyhow::bail!("--until-idle must be a number of seconds ≥ 0")
                }
                s => s.map(Duration::from_secs_f64),
            };
            let (input, ingress) = rt
                .block_on(AmqpIngress::start(
                    AmqpIngressConfig {
                        url: url.clone(),
                        queue: manifest.input.queue.clone(),
                        prefetch: args.prefetch.max(1),
                        until_idle,
                        max_message_bytes: args.max_message_bytes,
                        give_up: BROKER_GIVE_UP,
                        skip,
                        commit_acks: checkpointing,
                        partitioned: None,
                        await_activation: false,
                        reconnect: true,
                    },
                    handle,
                ))
                .context("starting to consume")?;
            broker = Some(ingress);
            (input, format!("queue {}", manifest.input.queue))
        }
        _ if args.input == "-" => (
            Input::bytes(Box::new(std::io::stdin()), "stdin"),
            "stdin".to_owned(),
        ),
        _ => {
            let mut file = std::fs::File::open(&args.input)
                .with_context(|| format!("opening the input {}", args.input))?;
            std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(file_start.0))
                .with_context(|| format!("seeking to the checkpoint in {}", args.input))?;
            (
                Input::bytes_from(
                    Box::new(file),
                    args.input.clone(),
                    file_start.0,
                    file_start.1,
                ),
                args.input.clone(),
            )
        }
    };
    let report = match pipeline::run(&manifest, &module, input, &sinks, &options) {
        Ok(report) => report,
        // `sluice run ... | head` is not an error.
        Err(e) if broken_pipe(&e) => return Ok(()),
        Err(e) => {
            return Err(e)
                .with_context(|| format!("running tenant `{}` over {source}", manifest.tenant))
        }
    };
    if let Some(ingress) = broker {
        let r = ingress.finish().context("acknowledging the input")?;
        eprintln!(
            "sluice run: {} messages consumed, {} dead-lettered undecoded, {} redeliveries recognised, {} reconnects",
            r.messages, r.dead_messages, r.duplicates_skipped, r.reconnects
        );
    }
    if let Some(sink) = &table_sink {
        let c = sink.stats();
        eprintln!(
            "sluice run: Cassandra ({}): {} rows in {} requests, {} retries in {} outages",
            sink.keyspace(),
            c.rows,
            c.requests,
            c.retries,
            c.outages
        );
    }
    drop(table_sink);
    drop(sinks);
    if let Some(rt) = rt {
        rt.shutdown_timeout(Duration::from_secs(2));
    }
    let s = report.summary;
    eprintln!(
        "sluice run: {} rows in ({:.1} MB), {} deserialization errors ({} without a key), \
         {} late dropped, {} future dropped, {} limited, {} outputs ({} alerts), {} poisoned, \
         {} guest traps, {workers} workers, {:.2} s, {:.0} events/s",
        s.rows_in,
        s.bytes_in as f64 / 1e6,
        s.bad_rows,
        s.bad_rows_keyless,
        s.late_dropped,
        s.future_dropped,
        s.limited,
        s.outputs,
        s.alerts,
        s.poisoned,
        module.traps(),
        s.elapsed.as_secs_f64(),
        s.events_per_sec(),
    );
    let letters = s.bad_rows + s.late_dropped + s.future_dropped + s.limited + s.poisoned;
    if args.dead_letter.is_none() && letters > 0 {
        eprintln!("sluice run: {letters} dead letters were counted but not kept (pass --dead-letter FILE)");
    }
    Ok(())
}

/// `sluice list` as a table.
fn print_list(tenants: &serde_json::Value) {
    let rows = tenants.as_array().map(Vec::as_slice).unwrap_or(&[]);
    println!(
        "{:<20} {:<8} {:<14} {:>12} {:>8} {:>10} {:>7}  reason",
        "TENANT", "STATE", "MODULE", "RECORDS IN", "ERRORS", "OUTPUTS", "TRAPS"
    );
    for t in rows {
        let c = &t["counters"];
        let hash = t["module"]["sha256"].as_str().unwrap_or("");
        println!(
            "{:<20} {:<8} {:<14} {:>12} {:>8} {:>10} {:>7}  {}",
            t["tenant"].as_str().unwrap_or(""),
            t["state"].as_str().unwrap_or(""),
            hash.get(..12).unwrap_or(hash),
            c["records_in"].as_u64().unwrap_or(0),
            c["deserialization_errors"].as_u64().unwrap_or(0),
            c["outputs"].as_u64().unwrap_or(0),
            c["guest_traps"].as_u64().unwrap_or(0),
            t["reason"].as_str().unwrap_or(""),
        );
    }
    for t in rows {
        let Some(parts) = t["partitions"].as_array() else {
            continue;
        };
        let owned = parts.iter().filter(|p| p["state"] == "active").count();
        println!(
            "\n{}: this host runs {owned} of {} partitions",
            t["tenant"].as_str().unwrap_or(""),
            parts.len()
        );
        println!(
            "{:>4} {:<8} {:>5} {:>6} {:>5} {:<24} {:>6} {:>12}",
            "P", "STATE", "GEN", "LAG", "HOSTS", "WATERMARK", "KEYS", "RECORDS IN"
        );
        for p in parts {
            let watermark = p["watermark"]
                .as_i64()
                .and_then(chrono::DateTime::from_timestamp_millis)
                .map_or_else(
                    || "-".to_owned(),
                    |t| t.format("%Y-%m-%d %H:%M:%S").to_string(),
                );
            println!(
                "{:>4} {:<8} {:>5} {:>6} {:>5} {:<24} {:>6} {:>12}",
                p["partition"].as_u64().unwrap_or(0),
                p["state"].as_str().unwrap_or(""),
                p["generation"].as_i64().unwrap_or(0),
                p["lag"].as_u64().unwrap_or(0),
                p["hosts"].as_u64().unwrap_or(0),
                watermark,
                p["keys"].as_u64().unwrap_or(0),
                p["records_in"].as_u64().unwrap_or(0),
            );
        }
    }
}

/// `sluice serve`: the host, its tenants and the admin API until SIGTERM
/// or Ctrl-C; then every tenant is suspended at a checkpoint.
fn serve(config_path: &std::path::Path) -> anyhow::Result<()> {
    let config = HostConfig::from_path(config_path).context("loading the host config")?;
    // Every pipeline the host starts takes these (`Options::default`).
    config.pipeline_ceilings.install();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("sluice-io")
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let engine = SandboxEngine::new(SandboxConfig {
        cache_dir: config.cache_dir.clone(),
        trap_backoff: Some(TrapBackoff::SERVE),
        ceilings: config.ceilings.clone(),
        ..SandboxConfig::default()
    })
    .context("starting the sandbox engine")?;
    let storage = match &config.cassandra {
        Some(nodes) => {
            let sink = rt
                .block_on(CassandraSink::connect(
                    CassandraConfig::new(nodes.clone()),
                    rt.handle().clone(),
                ))
                .with_context(|| format!("connecting the Cassandra sink at {}", nodes.join(",")))?;
            // Triggered batch jobs read the stored events and write
            // their results through the same session.
            let store = rt
                .block_on(BatchResultStore::open(
                    Arc::clone(sink.session()),
                    rt.handle().clone(),
                    sink.keyspace(),
                    &BatchStoreOptions::default(),
                ))
                .context("opening the batch result store")?;
            let batch = BatchEnv {
                source: EventSource {
                    session: Arc::clone(sink.session()),
                    runtime: rt.handle().clone(),
                    keyspace: sink.keyspace().to_owned(),
                    parallelism: 4,
                },
                store: Arc::new(store),
                workers: 1,
            };
            // Partitioned tenants keep checkpoints and ownership there.
            let state_db = StateDb {
                session: Arc::clone(sink.session()),
                keyspace: sink.keyspace().to_owned(),
            };
            Storage {
                tables: Some(Arc::new(sink)),
                batch: Some(batch),
                state_db: Some(state_db),
            }
        }
        None => Storage::default(),
    };
    let listener = rt
        .block_on(tokio::net::TcpListener::bind(config.listen))
        .with_context(|| format!("listening on {}", config.listen))?;
    let listen = listener.local_addr().unwrap_or(config.listen);
    // The metrics read the host's tenants; the host records checkpoints
    // into the metrics: the source is filled in once the host exists.
    let source = Arc::new(LateSource::default());
    let metrics = Arc::new(HostMetrics::new(source.clone()));
    let host = Arc::new(Host::new(
        config,
        engine,
        storage,
        rt.handle().clone(),
        metrics.checkpoints.clone(),
        metrics.latency.clone(),
    ));
    source.set(Arc::clone(&host));
    host.start_tenants()
        .context("starting the configured tenants")?;
    eprintln!(
        "sluice serve: admin API on http://{listen}, {} tenants",
        host.list().len()
    );
    let state = Arc::new(AdminState {
        host: Arc::clone(&host),
        metrics,
    });
    let watcher = {
        let host = Arc::clone(&host);
        rt.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                host.watch();
            }
        })
    };
    rt.block_on(admin::serve(listener, state, shutdown_signal()))
        .context("serving the admin API")?;
    watcher.abort();
    eprintln!("sluice serve: shutting down: suspending every tenant at a checkpoint");
    for (tenant, why) in host.shutdown() {
        eprintln!("sluice serve: tenant `{tenant}` could not be suspended: {why}");
    }
    rt.shutdown_timeout(Duration::from_secs(5));
    eprintln!("sluice serve: stopped");
    Ok(())
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

/// The metrics' view of the host, set once the host is built.
#[derive(Default)]
struct LateSource(std::sync::OnceLock<Arc<Host>>);

impl LateSource {
    fn set(&self, host: Arc<Host>) {
        let _ = self.0.set(host);
    }
}

impl sluice_host::metrics::prometheus::TenantSource for LateSource {
    fn figures(&self) -> Vec<sluice_host::metrics::prometheus::TenantFigures> {
        self.0
            .get()
            .map(|h| sluice_host::metrics::prometheus::TenantSource::figures(h.as_ref()))
            .unwrap_or_default()
    }
}

/// How long a run keeps reconnecting to a broker that went away.
const BROKER_GIVE_UP: Duration = Duration::from_secs(300);

fn publish(config: PublishConfig, file: &str) -> anyhow::Result<()> {
    let (input, total): (Box<dyn std::io::BufRead>, Option<u64>) = if file == "-" {
        (Box::new(std::io::stdin().lock()), None)
    } else {
        let f = std::fs::File::open(file).with_context(|| format!("opening {file}"))?;
        let len = f.metadata().ok().map(|m| m.len());
        (Box::new(std::io::BufReader::with_capacity(1 << 16, f)), len)
    };
    let bar = match total {
        Some(len) => indicatif::ProgressBar::new(len).with_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {bytes}/{total_bytes} {bytes_per_sec}, eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        ),
        None => indicatif::ProgressBar::new_spinner(),
    };
    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr_with_hz(4));
    let rt = runtime()?;
    let summary = rt
        .block_on(publisher::publish(
            &config,
            input,
            async {
                let _ = tokio::signal::ctrl_c().await;
            },
            |bytes| bar.set_position(bytes),
        ))
        .with_context(|| format!("publishing {file} to the queue {}", config.queue))?;
    bar.finish_and_clear();
    eprintln!(
        "sluice publish: {}{} messages, {} rows, {:.1} MB confirmed{} in {:.2} s: {:.0} msgs/s, {:.0} rows/s",
        if summary.interrupted { "interrupted; " } else { "" },
        summary.messages,
        summary.rows,
        summary.bytes as f64 / 1e6,
        if summary.nacked > 0 { format!(" ({} refused by the broker)", summary.nacked) } else { String::new() },
        summary.elapsed.as_secs_f64(),
        summary.messages_per_sec(),
        summary.rows_per_sec(),
    );
    if summary.nacked > 0 {
        anyhow::bail!("{} messages were refused by the broker", summary.nacked);
    }
    Ok(())
}

/// Whether the run stopped because whoever reads its output went away.
fn broken_pipe(e: &pipeline::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::BrokenPipe {
                return true;
            }
        }
        cause = c.source();
    }
    false
}

fn gen_bts(config: &BtsConfig, output: Option<&std::path::Path>) -> anyhow::Result<()> {
    let summary = match output {
        Some(path) => {
            let file = std::fs::File::create(path)
                .with_context(|| format!("creating {}", path.display()))?;
            let bar = indicatif::ProgressBar::new(config.events).with_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:40} {pos}/{len} rows, {per_sec}, eta {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            let summary = bts::write_bts_with(config, file, &mut |line| {
                if line.line % 8192 == 0 {
                    bar.set_position(line.line);
                }
            })
            .with_context(|| format!("writing {}", path.display()))?;
            bar.finish_and_clear();
            summary
        }
        None => match bts::write_bts(config, std::io::stdout().lock()) {
            Ok(summary) => summary,
            // `sluice gen-bts | head` is not an error.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
            Err(e) => return Err(e).context("writing to stdout"),
        },
    };
    eprintln!(
        "{} lines ({} good, {} dirty), {} keys, {} out of order (max {} ms late), \
         {} ramp keys, event time {} .. {}, {} bytes",
        summary.lines,
        summary.good,
        summary.dirty,
        summary.keys,
        summary.out_of_order,
        summary.max_lateness_ms,
        summary.ramp_keys.len(),
        String::from_utf8_lossy(&bts::format_time(summary.first_time_ms)),
        String::from_utf8_lossy(&bts::format_time(summary.last_time_ms)),
        summary.bytes,
    );
    Ok(())
}

fn inspect(path: &std::path::Path, tenant: &str, cache_dir: Option<PathBuf>) -> anyhow::Result<()> {
    let engine = SandboxEngine::new(SandboxConfig {
        cache_dir,
        pool_instances: 4,
        ..SandboxConfig::default()
    })
    .context("starting the sandbox engine")?;
    let module = engine
        .load_file(tenant, path)
        .with_context(|| format!("validating {}", path.display()))?;
    let info = module.info();
    let functions: Vec<_> = info
        .functions
        .iter()
        .map(|f| {
            json!({
                "name": f.name,
                "kind": match f.kind {
                    FunctionKind::Aggregate => "aggregate",
                    FunctionKind::ProcessWindow => "process-window",
                    FunctionKind::Alert => "alert",
                },
                "outputs": f.outputs,
                "alert_kinds": f.alert_kinds,
            })
        })
        .collect();
    let out = json!({
        "module": info.name,
        "version": info.version,
        "sha256": module.hash(),
        "functions": functions,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
