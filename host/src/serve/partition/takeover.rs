//! One partition's life on this host: the thread that loops standby →
//! takeover (claim in Cassandra, restore, apply the held deliveries) →
//! the pipeline → end, and the flush of a partition no host consumes.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::amqp::ingress::{AmqpIngress, AmqpIngressConfig};
use crate::amqp::topology;
use crate::cassandra::store::{
    prepare_owner_read, read_owner, CassandraStore, CassandraStoreOptions,
};
use crate::ingress::Input;
use crate::pipeline::{Live, Options, Sinks};
use crate::runner::{self, RunSpec, Runner};
use crate::sink::LineSink;
use crate::state::{self, Checkpoint, CheckpointStore};

use super::{
    checkpoint_name, Ctx, Gate, NothingToAck, PartitionError, PartitionState, PartitionStore,
};

/// How one activation ended.
pub(super) enum Ended {
    /// The host is stopping the tenant.
    Stopped,
    /// The broker connection went; another host may own it now.
    Lost,
    /// Suspended and handed to the next host in the broker's line.
    HandedOver,
}

/// A partition's thread: activations until the host stops the tenant.
pub(super) fn serve_partition(ctx: &Ctx, index: u16, state: &PartitionState) {
    let tenant = &ctx.manifest.tenant;
    let mut failures = 0u32;
    while !ctx.stop.load(Ordering::Acquire) {
        match activation(ctx, index, state) {
            Ok(Ended::Stopped) => break,
            Ok(Ended::Lost) => {
                state.losses.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%tenant, partition = index, "lost the partition's broker connection: stopped emitting, waiting to be active again");
                failures = 0;
            }
            Ok(Ended::HandedOver) => {
                state.handovers.fetch_add(1, Ordering::Relaxed);
                tracing::info!(%tenant, partition = index, "partition handed over");
                failures = 0;
            }
            Err(e) => {
                failures += 1;
                tracing::warn!(%tenant, partition = index, error = %e, "partition activation failed; retrying");
                // Up to 5 s between attempts, waking for a stop.
                let wait = Duration::from_millis(200 * u64::from(failures.min(25)));
                let until = Instant::now() + wait;
                while Instant::now() < until && !ctx.stop.load(Ordering::Acquire) {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
        state.owned.store(false, Ordering::Release);
        if let Ok(mut s) = state.owned_since.lock() {
            *s = None;
        }
    }
    if let Ok(mut c) = state.control.lock() {
        *c = None;
    }
}

/// One standby → active → end cycle.
pub(super) fn activation(
    ctx: &Ctx,
    index: u16,
    state: &PartitionState,
) -> Result<Ended, PartitionError> {
    let env = &ctx.env;
    let rt = &env.runtime;
    let queue = ctx.input.queue(index);
    if ctx.stop.load(Ordering::Acquire) {
        return Ok(Ended::Stopped);
    }
    state.suspend.store(false, Ordering::Release);
    state.handover.store(false, Ordering::Release);
    let (input, mut ingress) = rt
        .block_on(AmqpIngress::start(
            AmqpIngressConfig {
                skip: Vec::new(),
                commit_acks: true,
                partitioned: Some(ctx.input.clone()),
                await_activation: true,
                reconnect: false,
                ..runner::consumer(env.amqp.clone(), queue.clone(), env.prefetch)
            },
            rt.clone(),
        ))
        .map_err(|e| PartitionError::Consume {
            queue: queue.clone(),
            error: Box::new(e),
        })?;
    let control = ingress.control();
    if let Ok(mut c) = state.control.lock() {
        *c = Some(control.clone());
    }
    if ctx.paused.load(Ordering::Acquire) {
        drop(control.pause());
    }
    let Some(mut activated) = ingress.activation() else {
        return Err(PartitionError::NoActivationSignal);
    };
    // Standby until the broker delivers (or the host stops the tenant),
    // reading now and then who owns the partition meanwhile.
    let mut owner_read: Option<Instant> = None;
    let active = loop {
        if owner_read.is_none_or(|at| at.elapsed() >= OWNER_READ_EVERY) {
            owner_read = Some(Instant::now());
            read_standby_owner(ctx, index, state);
        }
        if ctx.stop.load(Ordering::Acquire) {
            control.end();
            let _ = ingress.finish();
            if !ctx.suspend_on_stop.load(Ordering::Acquire) {
                flush_unowned(ctx, index, state)?;
            }
            return Ok(Ended::Stopped);
        }
        // The timer is made inside the runtime (it needs its reactor).
        let waited = rt.block_on(async {
            tokio::time::timeout(Duration::from_millis(200), &mut activated).await
        });
        match waited {
            Ok(Ok(())) => break true,
            Ok(Err(_)) => break false,
            Err(_) => continue,
        }
    };
    if !active {
        let lost = control.lost().load(Ordering::Acquire);
        let _ = ingress.finish();
        return if lost {
            Ok(Ended::Lost)
        } else {
            Err(PartitionError::StandbyEnded)
        };
    }

    // Takeover: claim (fencing the previous owner), restore, apply.
    let started = Instant::now();
    let (store, restore) = claim(ctx, index, state)?;
    let skip = runner::unacked(restore.as_ref());
    tracing::info!(
        tenant = %ctx.manifest.tenant,
        partition = index,
        generation = store.generation().unwrap_or(0),
        checkpoint = restore.as_ref().map(|c| c.id),
        took_ms = started.elapsed().as_millis() as u64,
        "took the partition over"
    );
    control.activate(skip);
    let lost = Arc::clone(control.lost());
    let result = run_partition(ctx, index, state, store, restore, input, &lost);
    state.owned.store(false, Ordering::Release);
    if lost.load(Ordering::Acquire) {
        return Ok(Ended::Lost);
    }
    let store = match result {
        Ok(store) => store,
        Err(e) => {
            // Dropping the consumer closes its connection: what it holds
            // unacked goes back to the queue for the next owner.
            drop(ingress);
            return Err(e);
        }
    };
    let report = ingress.finish().map_err(|e| PartitionError::Acknowledge {
        index,
        error: Box::new(e),
    })?;
    if state.suspend.load(Ordering::Acquire) && !report.acks_committed {
        // The last acks did not arrive (the connection went while handing
        // over): the checkpoint stays unmarked, so the next owner skips the
        // redeliveries its list of unacked messages names.
        tracing::warn!(tenant = %ctx.manifest.tenant, partition = index, "the last acks were not committed: the next owner will recognise their redeliveries");
    } else if state.suspend.load(Ordering::Acquire) {
        // Its acks are committed: the next owner expects no redelivery of
        // what the last checkpoint covers.
        let last = store.last_written.load(Ordering::Acquire);
        if last > 0 {
            if let Err(e) = store.inner.mark_acked(last) {
                tracing::warn!(tenant = %ctx.manifest.tenant, partition = index, error = %e, "marking the last checkpoint acknowledged");
            }
        }
    }
    if ctx.stop.load(Ordering::Acquire) {
        Ok(Ended::Stopped)
    } else if state.handover.load(Ordering::Acquire) {
        Ok(Ended::HandedOver)
    } else {
        Err(PartitionError::InputEnded)
    }
}

/// How often a standby partition reads who owns it, for the views.
const OWNER_READ_EVERY: Duration = Duration::from_secs(2);

/// Reads partition `index`'s owner from its ownership record into
/// `state` (the views show it while this host stands by). Bounded: a
/// database that does not answer delays the standby loop by at most
/// 500 ms, and the view keeps the last owner read.
fn read_standby_owner(ctx: &Ctx, index: u16, state: &PartitionState) {
    let pipeline = checkpoint_name(&ctx.input.base, index);
    let read = ctx.env.runtime.block_on(async {
        tokio::time::timeout(Duration::from_millis(500), async {
            let db = &ctx.db;
            let statement = db
                .owner_read
                .get_or_try_init(|| prepare_owner_read(&db.session, &db.keyspace))
                .await?;
            read_owner(&db.session, statement, &ctx.manifest.tenant, &pipeline).await
        })
        .await
    });
    match read {
        Ok(Ok(owner)) => {
            if let Ok(mut known) = state.standby_owner.lock() {
                *known = owner;
            }
        }
        Ok(Err(e)) => {
            tracing::debug!(tenant = %ctx.manifest.tenant, partition = index, error = %e, "reading the partition's owner failed");
        }
        Err(_) => {
            tracing::debug!(tenant = %ctx.manifest.tenant, partition = index, "reading the partition's owner timed out");
        }
    }
}

/// Claims partition `index` for this host and reads its newest checkpoint.
pub(super) fn claim(
    ctx: &Ctx,
    index: u16,
    state: &PartitionState,
) -> Result<(CassandraStore, Option<Checkpoint>), PartitionError> {
    let rt = &ctx.env.runtime;
    let mut store = rt
        .block_on(CassandraStore::open(
            Arc::clone(&ctx.db.session),
            rt.clone(),
            &ctx.db.keyspace,
            &ctx.manifest.tenant,
            &checkpoint_name(&ctx.input.base, index),
            &CassandraStoreOptions::default(),
        ))
        .map_err(|e| PartitionError::OpenCheckpoints {
            index,
            error: Box::new(e),
        })?;
    let generation = store.claim(&ctx.owner).map_err(|e| PartitionError::Claim {
        index,
        error: Box::new(e),
    })?;
    let restore = runner::newest(&store).map_err(|e| PartitionError::Restore {
        index,
        error: Box::new(e),
    })?;
    if restore.is_none() {
        // The partition's first run anywhere: its figures start at zero,
        // whatever an earlier failed activation here had counted.
        state.counters.reset(&state::CounterState::default());
    }
    state.generation.store(generation, Ordering::Relaxed);
    Ok((store, restore))
}

/// Runs the partition's pipeline over `input` until it ends, emitting
/// nothing once `lost` is set. Returns the store (its last checkpoint).
pub(super) fn run_partition(
    ctx: &Ctx,
    index: u16,
    state: &PartitionState,
    store: CassandraStore,
    restore: Option<Checkpoint>,
    input: Input,
    lost: &Arc<AtomicBool>,
) -> Result<Arc<PartitionStore>, PartitionError> {
    let env = &ctx.env;
    let tenant = &ctx.manifest.tenant;
    let sink = env
        .result_sink(&ctx.manifest)
        .map_err(|e| PartitionError::ResultSink {
            index,
            error: Box::new(e),
        })?;
    let live = Arc::new(Live::default());
    if let Ok(mut l) = state.live.lock() {
        *l = Some(Arc::clone(&live));
    }
    state.takeovers.fetch_add(1, Ordering::Relaxed);
    if let Ok(mut s) = state.owned_since.lock() {
        *s = Some(Instant::now());
    }
    state.owned.store(true, Ordering::Release);

    let store = Arc::new(PartitionStore {
        inner: store,
        lost: Arc::clone(lost),
        tenant: tenant.clone(),
        metrics: env.checkpoint_metrics.clone(),
        last_written: AtomicU64::new(0),
    });
    let mut sinks = Sinks::lines(
        LineSink::discard("output"),
        LineSink::discard("dead-letter"),
    );
    sinks.messages = Some(Arc::new(Gate {
        inner: env.tapped(tenant, sink),
        lost: Arc::clone(lost),
    }));
    if let Some(tables) = &ctx.tables {
        sinks.tables = Some(Arc::new(Gate {
            inner: Arc::clone(tables),
            lost: Arc::clone(lost),
        }));
        sinks.store_events = true;
    }
    let runner = Runner::new(RunSpec {
        manifest: &ctx.manifest,
        module: &ctx.module,
        sinks: &sinks,
        checkpoints: Some(env.checkpoints(store.clone(), restore)),
        options: Options {
            workers: 1,
            progress: None,
            counters: Some(Arc::clone(&state.counters)),
            suspend: Some(Arc::clone(&state.suspend)),
            latency: Some(env.latency_metrics.observer(tenant)),
            live: Some(live),
            ..Options::default()
        },
    });
    let report = runner.run(input).map_err(|e| PartitionError::Pipeline {
        index,
        error: Box::new(e),
    })?;
    tracing::info!(%tenant, partition = index, summary = %report.summary, "partition run ended");
    Ok(store)
}

/// At undeploy, a partition this host does not own and no other host
/// consumes any more (it undeployed before, or left): nobody else will
/// end its stream, so this host claims it and fires its open windows from
/// its last checkpoint. Undeploy the hosts one after another: the last
/// one flushes what the others left.
pub(super) fn flush_unowned(
    ctx: &Ctx,
    index: u16,
    state: &PartitionState,
) -> Result<(), PartitionError> {
    let rt = &ctx.env.runtime;
    let queue = ctx.input.queue(index);
    let consumers = rt
        .block_on(async {
            let connection = crate::amqp::connect(&ctx.env.amqp, "sluice-partition-end").await?;
            let channel = connection
                .create_channel()
                .await
                .map_err(crate::amqp::Error::amqp("opening a channel"))?;
            let depth = topology::partition_depth(&channel, &ctx.input, &queue).await;
            let _ = connection.close(200, "done".into()).await;
            depth
        })
        .map_err(|e| PartitionError::CountConsumers {
            queue: queue.clone(),
            error: Box::new(e),
        })?
        .1;
    if consumers > 0 {
        return Ok(());
    }
    let (store, restore) = claim(ctx, index, state)?;
    if restore.is_none() {
        return Ok(());
    }
    tracing::info!(tenant = %ctx.manifest.tenant, partition = index, "no host consumes the partition any more: firing its open windows");
    // An input that has ended: the pipeline flushes and checkpoints.
    let input = Input::Messages {
        rx: Box::new(crate::ingress::NoMessages),
        acks: Arc::new(NothingToAck),
    };
    let never = Arc::new(AtomicBool::new(false));
    let result = run_partition(ctx, index, state, store, restore, input, &never);
    state.owned.store(false, Ordering::Release);
    result.map(|_| ())
}
