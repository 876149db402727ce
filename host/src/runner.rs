//! One run of a tenant's pipeline, however it is fed. `sluice run`, each
//! `sluice batch` job, a `sluice serve` tenant and each partition a host
//! owns describe their run as a [`RunSpec`] and run it through a
//! [`Runner`], so the rules they share are written once, here: how long a
//! broker is retried ([`BROKER_GIVE_UP`]), how a run resumes from its
//! checkpoint store ([`newest`], [`unacked`], [`file_position`]) and how
//! often a broker-fed run checkpoints ([`Checkpoints::prefetch`]).
//!
//! A thin layer over the core's [`pipeline::run_with`], with the tenant's
//! sandboxed module instantiated once per worker ([`run`]): the callers
//! still open their own inputs, sinks and stores (they differ in what they
//! gate, meter and report), and keep the pipeline's other [`Options`] as
//! they are.

use std::sync::Arc;
use std::time::Duration;

use crate::amqp::ingress::AmqpIngressConfig;
use crate::amqp::sink::AmqpSinkConfig;
use crate::ingress::Input;
use crate::manifest::Manifest;
use crate::pipeline::{self, CheckpointOptions, Options, Report, Sinks};
use crate::sandbox::TenantModule;
use crate::state::{self, Checkpoint, CheckpointStore, InputPosition, Restored};

/// How long a run keeps reconnecting to a broker that went away.
pub const BROKER_GIVE_UP: Duration = Duration::from_secs(300);

/// A consumer of `queue` as every run starts one; the caller sets what
/// its input needs beyond that (redeliveries to skip, acks with
/// checkpoints, a partition).
pub fn consumer(url: String, queue: String, prefetch: u16) -> AmqpIngressConfig {
    AmqpIngressConfig::plain(url, queue, prefetch, BROKER_GIVE_UP)
}

/// The tenant's results and dead letters to its exchange and
/// `<queue>.dead` (a partitioned input's too: `queue` is its base).
pub fn result_sink(url: String, manifest: &Manifest) -> AmqpSinkConfig {
    AmqpSinkConfig {
        url,
        exchange: manifest.output.exchange.clone(),
        dead_letter_exchange: Some(crate::amqp::topology::dead_letter_name(
            &manifest.input.queue,
        )),
        give_up: BROKER_GIVE_UP,
        messages: manifest.output.messages,
    }
}

/// The newest checkpoint in `store`, as a run resumes it.
pub fn newest(store: &dyn CheckpointStore) -> state::Result<Option<Checkpoint>> {
    Ok(store.latest()?.map(Restored::into_resume))
}

/// The messages a broker input resuming `restore` recognises as
/// redeliveries: those it had applied and not yet acked.
pub fn unacked(restore: Option<&Checkpoint>) -> Vec<Vec<u8>> {
    match restore.map(|c| &c.input) {
        Some(InputPosition::Messages { unacked }) => unacked.clone(),
        _ => Vec::new(),
    }
}

/// Where a file input resuming `restore` starts: byte offset and line.
pub fn file_position(restore: Option<&Checkpoint>) -> (u64, u64) {
    match restore.map(|c| &c.input) {
        Some(InputPosition::File { offset, line }) => (*offset, *line),
        _ => (0, 0),
    }
}

/// Where a run checkpoints, how often, and what it resumes.
pub struct Checkpoints {
    pub store: Arc<dyn CheckpointStore>,
    /// At most this long between checkpoints while records flow.
    pub interval: Duration,
    /// Also after this many rows (if set).
    pub every_rows: Option<u64>,
    /// A broker input's prefetch. With checkpoints its messages are acked
    /// only with one, so one is taken every half prefetch: the next
    /// checkpoint's acks free the window before the consumer runs dry.
    pub prefetch: Option<u16>,
    /// The checkpoint to resume (see [`newest`]); the caller has
    /// positioned the input and cut its output files back to it.
    pub restore: Option<Checkpoint>,
}

/// One pipeline run: the tenant, where its results go, its checkpoints,
/// and the pipeline's other options.
pub struct RunSpec<'a> {
    pub manifest: &'a Manifest,
    pub module: &'a TenantModule,
    pub sinks: &'a Sinks,
    pub checkpoints: Option<Checkpoints>,
    /// Workers, progress, shared counters, suspend flag, observers, row
    /// selection, ceilings; its `checkpoint` is made from `checkpoints`.
    pub options: Options,
}

/// A [`RunSpec`] ready to run over an input.
pub struct Runner<'a> {
    manifest: &'a Manifest,
    module: &'a TenantModule,
    sinks: &'a Sinks,
    options: Options,
}

impl<'a> Runner<'a> {
    pub fn new(spec: RunSpec<'a>) -> Runner<'a> {
        let RunSpec {
            manifest,
            module,
            sinks,
            checkpoints,
            options,
        } = spec;
        let checkpoint = checkpoints.map(|c| CheckpointOptions {
            store: c.store,
            interval: c.interval,
            every_rows: c.every_rows,
            every_messages: c.prefetch.map(|p| usize::from(p.max(2)) / 2),
            module_hash: module.hash().to_owned(),
            restore: c.restore,
        });
        Runner {
            manifest,
            module,
            sinks,
            options: Options {
                checkpoint,
                ..options
            },
        }
    }

    /// Runs the tenant over `input` until it ends (or is suspended).
    pub fn run(&self, input: Input) -> pipeline::Result<Report> {
        run(self.manifest, self.module, input, self.sinks, &self.options)
    }
}

/// Runs `manifest`'s tenant over `input` with the sandboxed `module` (one
/// instance per worker).
pub fn run(
    manifest: &Manifest,
    module: &TenantModule,
    input: Input,
    sinks: &Sinks,
    options: &Options,
) -> pipeline::Result<Report> {
    let params = manifest.params_list();
    let schema = manifest.schema();
    let limits = manifest.limits.clone();
    pipeline::run_with(manifest, input, sinks, options, |worker| {
        module
            .instantiate(params.clone(), schema.clone(), limits.clone())
            .map_err(|source| pipeline::Error::Instantiate { worker, source })
    })
}
