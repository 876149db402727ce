//! `sluice serve`: the host, its tenants and the admin API.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sluice_host::admin::{self, AdminState};
use sluice_host::batch::stored::EventSource;
use sluice_host::cassandra::batch_results::{BatchResultStore, BatchStoreOptions};
use sluice_host::cassandra::{CassandraConfig, CassandraSink};
use sluice_host::metrics::prometheus::HostMetrics;
use sluice_host::sandbox::{SandboxConfig, SandboxEngine, TrapBackoff};
use sluice_host::serve::{BatchEnv, Host, HostConfig, StateDb, Storage};

#[derive(clap::Args)]
pub struct Args {
    /// The host's configuration (TOML).
    #[arg(long)]
    config: PathBuf,
}

/// `sluice serve`: the host, its tenants and the admin API until SIGTERM
/// or Ctrl-C; then every tenant is suspended at a checkpoint.
pub fn serve(args: &Args) -> anyhow::Result<()> {
    let config_path = args.config.as_path();
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
                owner_read: Arc::default(),
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
