//! Setup several subcommands share: the async runtime of the broker and
//! database clients, the tenant's module loaded and checked, output files
//! that resume from a checkpoint.

use std::path::PathBuf;

use anyhow::Context;
use sluice_host::manifest::Manifest;
use sluice_host::sandbox::{Ceilings, SandboxConfig, SandboxEngine, TenantModule};
use sluice_host::sink::LineSink;

/// Opens a line sink on `path`: created afresh, or — resuming from a
/// checkpoint that covers `resume` bytes of it — cut back to those bytes
/// and appended to.
pub fn file_sink(
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
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
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
pub fn load_tenant(
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
