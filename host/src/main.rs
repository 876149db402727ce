//! The `sluice` command line: thin — parse arguments, set up logging, call
//! the library.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use serde_json::json;
use sluice_host::sandbox::{FunctionKind, SandboxConfig, SandboxEngine};

#[derive(Parser)]
#[command(name = "sluice", version, about = "Multi-tenant streaming analytics with sandboxed Wasm tenants")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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
        Command::Inspect {
            module,
            tenant,
            cache_dir,
        } => inspect(&module, &tenant, cache_dir),
    }
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
