//! `sluice inspect`: a tenant component validated as a deploy would, and
//! what it implements printed as JSON.

use std::path::PathBuf;

use anyhow::Context;
use serde_json::json;
use sluice_host::data::FunctionKind;
use sluice_host::sandbox::{SandboxConfig, SandboxEngine};

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
    let (path, tenant) = (path.as_path(), tenant.as_str());
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
