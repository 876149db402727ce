//! The `sluice` command line: thin — parse arguments, set up logging, call
//! the subcommand (one file each under `commands/`), which calls the
//! library.

/// mimalloc, not glibc malloc: the pipeline allocates per batch, key group
/// and output line, and glibc malloc/free were ~17 % of a `perf` profile of
/// `sluice run`.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod commands;

use clap::{Parser, Subcommand};

use commands::{
    batch, build, deploy, gen_bts, inspect, list, logs, new, pause, publish, query, resume, run,
    serve, tail, test, undeploy,
};

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

#[derive(Subcommand)]
enum Command {
    /// Run the host for many tenants with the admin API and `/metrics`
    /// (see the README's `host.toml` reference).
    Serve(serve::Args),
    /// Deploy (or redeploy, swapping the module at a checkpoint) a tenant
    /// on a running host: uploads the manifest and the module it names.
    Deploy(deploy::Args),
    /// Stop a tenant for good: its open windows fire, its state is deleted.
    Undeploy(undeploy::Args),
    /// The host's tenants: state, module, counters.
    List(list::Args),
    /// Print a tenant's log from a running host: its guest's log lines and
    /// stdout, its failed calls, the host's notes about it (`--follow`
    /// keeps printing). A tenant token reads its own tenant's.
    Logs(logs::Args),
    /// Stop consuming a tenant's queue (messages wait in it).
    Pause(pause::Args),
    /// Consume a paused tenant's queue again.
    Resume(resume::Args),
    /// Run a tenant over a file or stdin (the embedded mode: no broker, no
    /// database): results as JSON lines on stdout or `--output`, rows that
    /// do not parse, late rows and poison events to `--dead-letter`.
    Run(run::Args),
    /// Run a `[[batch]]` job of the manifest once over a range: over a CSV
    /// file (`--input`) or the tenant's events stored in Cassandra
    /// (`--cassandra`); results as JSON lines (`--output`, stdout by
    /// default without `--cassandra`), in Cassandra's `batch_results`, and
    /// as an HTML report with charts (`--report`).
    Batch(batch::Args),
    /// Print the results stored in Cassandra as JSON lines, in the shape
    /// `sluice run` prints them (a window updated late shows its last
    /// update).
    Query(query::Args),
    /// Publish CSV lines to a tenant's input queue (the sensor simulator):
    /// persistent messages with publisher confirms and deterministic ids.
    Publish(publish::Args),
    /// Print a tenant's results from its output exchange as JSON lines
    /// (through an exclusive queue of its own).
    Tail(tail::Args),
    /// Validate a tenant component as a deploy would, and print what it
    /// implements (its `describe`) as JSON.
    Inspect(inspect::Args),
    /// Create a tenant crate that builds outside this repository: a small
    /// tenant, its manifest, a native test, a sample and its expected
    /// output, and the SDK vendored into it.
    New(new::Args),
    /// Build a tenant crate into its component (adding the wasm32-wasip2
    /// target when missing), check it as a deploy would, and print its
    /// absolute path as the last line of stdout.
    Build(build::Args),
    /// Run a tenant over a CSV file and compare its results with an
    /// expected JSON-lines file (order-insensitive, floats to a
    /// tolerance); exit non-zero on any difference. `--update` writes it.
    Test(test::Args),
    /// Generate realistic BTS sensor CSV, deterministically from a seed
    /// (the original data set cannot be shipped).
    GenBts(gen_bts::Args),
}

/// Colour only for a person at a terminal: not in a pipe or a log file,
/// and not when `NO_COLOR` is set to anything (https://no-color.org).
fn colour_on_stderr() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(colour_on_stderr())
        .init();
    let done = match Cli::parse().command {
        Command::Serve(args) => serve::serve(&args),
        Command::Deploy(args) => deploy::deploy(args),
        Command::Undeploy(args) => undeploy::undeploy(args),
        Command::List(args) => list::list(args),
        Command::Logs(args) => logs::logs(args),
        Command::Pause(args) => pause::pause(args),
        Command::Resume(args) => resume::resume(args),
        Command::Run(args) => run::run(args),
        Command::Batch(args) => batch::batch(&args),
        Command::Query(args) => query::query(args),
        Command::Publish(args) => publish::publish(args),
        Command::Tail(args) => tail::tail(args),
        Command::Inspect(args) => inspect::inspect(args),
        Command::New(args) => new::new(args),
        Command::Build(args) => build::build(args),
        Command::Test(args) => test::test(args),
        Command::GenBts(args) => gen_bts::gen_bts(args),
    };
    match done {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

/// An error and its causes on one line, for a person: each cause once. A
/// cause whose text its outer message already holds (a library error that
/// prints its source and also returns it) is left out, and no backtrace
/// is printed whatever `RUST_BACKTRACE` says.
fn one_line(err: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if text.is_empty() || out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[test]
    fn an_error_reads_on_one_line_with_each_cause_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let err = anyhow::Error::new(io)
            .context("tenant `bts`: reading module m.wasm: no such file")
            .context("loading the tenant module m.wasm");
        assert_eq!(
            one_line(&err),
            "loading the tenant module m.wasm: tenant `bts`: reading module m.wasm: no such file"
        );
        let plain = anyhow::anyhow!("the input ended").context("reading");
        assert_eq!(one_line(&plain), "reading: the input ended");
    }
}
