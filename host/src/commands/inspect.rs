//! `sluice inspect`: a tenant component validated as a deploy would, and
//! what it implements printed as JSON.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::json;
use sluice_host::data::FunctionKind;
use sluice_host::sandbox::{SandboxConfig, SandboxEngine, TenantModule};

#[derive(clap::Args)]
pub struct Args {
    /// The tenant's `.wasm` component.
    module: PathBuf,
    /// Tenant name used in messages.
    #[arg(long, default_value = "inspect")]
    tenant: String,
    /// Cache compiled artifacts here (by content hash).
    #[arg(long, env = "SLUICE_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
}

pub fn inspect(
    Args {
        module: path,
        tenant,
        cache_dir,
    }: Args,
) -> anyhow::Result<()> {
    let (_engine, module) = validate(&path, &tenant, cache_dir)?;
    let info = module.info();
    let functions: Vec<_> = info
        .functions
        .iter()
        .map(|f| {
            json!({
                "name": f.name,
                "kind": kind_name(f.kind),
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

/// Loads a component as a deploy would: a component, that compiles,
/// imports only what the sandbox offers and exports the sluice world
/// (`sluice build` checks what it built with this too). The engine is
/// returned with the module: it must outlive it.
pub fn validate(
    path: &Path,
    tenant: &str,
    cache_dir: Option<PathBuf>,
) -> anyhow::Result<(SandboxEngine, TenantModule)> {
    let engine = SandboxEngine::new(SandboxConfig {
        cache_dir,
        pool_instances: 4,
        ..SandboxConfig::default()
    })
    .context("starting the sandbox engine")?;
    let module = engine
        .load_file(tenant, path)
        .with_context(|| format!("validating {}", path.display()))?;
    Ok((engine, module))
}

/// A function kind as the manifest and `describe` spell it.
pub fn kind_name(kind: FunctionKind) -> &'static str {
    match kind {
        FunctionKind::Aggregate => "aggregate",
        FunctionKind::ProcessWindow => "process-window",
        FunctionKind::Alert => "alert",
    }
}
