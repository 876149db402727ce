//! `sluice batch`: `[[batch]]` jobs of a manifest once over a range, over
//! a file or the tenant's stored events; results as JSON lines, in
//! Cassandra, and as an HTML report.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sluice_host::batch::stored::{self, EventSource};
use sluice_host::batch::{self as jobs, JobRange, JobRun, ReportJob};
use sluice_host::cassandra::batch_results::BatchResultStore;
use sluice_host::cassandra::CassandraConfig;
use sluice_host::ingress::Input;
use sluice_host::manifest::Manifest;
use sluice_host::pipeline::Options;
use sluice_host::sandbox::Ceilings;
use sluice_host::sink::LineSink;

use super::args::{column_pairs, nodes, StoreArgs};
use super::common::{file_sink, load_tenant, runtime};

#[derive(clap::Args)]
pub struct Args {
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
}

pub fn batch(args: &Args) -> anyhow::Result<()> {
    let manifest = Manifest::from_path(&args.manifest).context("loading the manifest")?;
    let range = JobRange {
        from: jobs::parse_instant(&args.from).map_err(|e| anyhow::anyhow!("--from: {e}"))?,
        to: jobs::parse_instant(&args.to).map_err(|e| anyhow::anyhow!("--to: {e}"))?,
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
        progress: super::progress::progress_line(!args.quiet),
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
