//! `sluice tail`: a tenant's results from its output exchange as JSON
//! lines (the tenant's receiver).

use std::path::PathBuf;

use anyhow::Context;
use sluice_host::amqp::tail as tailer;
use sluice_host::data::OutputType;
use sluice_host::manifest::Manifest;

use super::common::runtime;

#[derive(clap::Args)]
pub struct Args {
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
    #[arg(long = "type", value_parser = super::args::output_type())]
    ty: Option<OutputType>,
    /// Stop after this many results (a packed message's lines each count;
    /// the message that reaches the count is printed whole).
    #[arg(long)]
    count: Option<u64>,
}

pub fn tail(
    Args {
        amqp,
        exchange,
        manifest,
        ty,
        count,
    }: Args,
) -> anyhow::Result<()> {
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
    let printed = runtime.block_on(tailer::tail(
        &amqp,
        &exchange,
        &tailer::binding_key(ty),
        count,
        &mut stdout,
        async {
            let _ = tokio::signal::ctrl_c().await;
        },
        || eprintln!("sluice tail: listening on {exchange}"),
    ));
    match printed {
        Ok(n) => {
            eprintln!("sluice tail: {n} results");
            Ok(())
        }
        Err(tailer::Error::Write(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(e).with_context(|| format!("tailing the exchange {exchange}")),
    }
}
