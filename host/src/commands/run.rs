//! `sluice run`: one tenant over a file, stdin or a queue (the embedded
//! mode), with optional Cassandra tables and checkpoints.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sluice_host::amqp::ingress::{AmqpIngress, AmqpIngressConfig};
use sluice_host::amqp::sink::AmqpSink;
use sluice_host::cassandra::store::{CassandraStore, CassandraStoreOptions};
use sluice_host::cassandra::{CassandraConfig, CassandraSink};
use sluice_host::ingress::Input;
use sluice_host::manifest::Manifest;
use sluice_host::pipeline::{self, Ceilings as PipelineCeilings, Options, Sinks};
use sluice_host::runner::{self, Checkpoints, RunSpec, Runner};
use sluice_host::sandbox::{default_cache_dir, Ceilings};
use sluice_host::sink::LineSink;
use sluice_host::state::local::LocalStore;
use sluice_host::state::CheckpointStore;

use super::args::{
    nodes, parse_duration, CeilingArgs, CheckpointStoreKind, PipelineCeilingArgs, StoreArgs,
};
use super::common::{file_sink, load_tenant, runtime};

#[derive(clap::Args)]
pub struct Args {
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
    /// Cache compiled artifacts here, by content hash and engine version
    /// (default: ~/.cache/sluice/artifacts).
    #[arg(long, env = "SLUICE_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Compile the module on every load: no artifact cache.
    #[arg(long, conflicts_with = "cache_dir")]
    no_cache: bool,
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
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if args.cassandra.is_none() && args.store_events {
        anyhow::bail!("--store-events needs --cassandra (the raw events go to its `events` table)");
    }
    let ceilings = args.ceilings.ceilings()?;
    let pipeline_ceilings = args.pipeline_ceilings.ceilings();
    run_tenant(&args, ceilings, pipeline_ceilings)
}

/// The name a run's checkpoints get in Cassandra when `--checkpoint-name`
/// is not given: the queue it consumes, or its input file's name (not the
/// path, so a run resumed from another directory finds them).
fn default_checkpoint_name(args: &Args, manifest: &Manifest) -> anyhow::Result<String> {
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

fn run_tenant(
    args: &Args,
    ceilings: Ceilings,
    pipeline_ceilings: PipelineCeilings,
) -> anyhow::Result<()> {
    let manifest = Manifest::from_path(&args.manifest).context("loading the manifest")?;
    let (workers, _engine, module) = load_tenant(
        &manifest,
        &args.manifest,
        args.workers,
        if args.no_cache {
            None
        } else {
            args.cache_dir.clone().or_else(default_cache_dir)
        },
        ceilings,
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
        Some(store) => runner::newest(store.as_ref()).context("reading the latest checkpoint")?,
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
    let skip = runner::unacked(restore.as_ref());
    let file_start = runner::file_position(restore.as_ref());
    let checkpointing = store.is_some();
    let checkpoints = store.map(|store| Checkpoints {
        store,
        interval: args.checkpoint_interval,
        every_rows: args.checkpoint_rows,
        prefetch: args.amqp.as_ref().map(|_| args.prefetch),
        restore,
    });
    let options = Options {
        workers,
        progress: super::progress::progress_line(!args.quiet),
        ceilings: pipeline_ceilings,
        ..Options::default()
    };

    if let Some(sink) = &table_sink {
        sinks.tables = Some(sink.clone());
        sinks.store_events = !args.no_store_events;
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
                    runner::result_sink(url.clone(), &manifest),
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
                        until_idle,
                        max_message_bytes: args.max_message_bytes,
                        skip,
                        commit_acks: checkpointing,
                        ..runner::consumer(
                            url.clone(),
                            manifest.input.queue.clone(),
                            args.prefetch.max(1),
                        )
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
    let runner = Runner::new(RunSpec {
        manifest: &manifest,
        module: &module,
        sinks: &sinks,
        checkpoints,
        options,
    });
    let report = match runner.run(input) {
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
