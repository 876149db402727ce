//! What a partition's run writes through: its sinks and checkpoint store
//! gated on the lost flag (once the broker connection is gone another host
//! may own the partition, so nothing more may be written), and the
//! acknowledger of an input with no messages.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::cassandra::store::CassandraStore;
use crate::metrics::prometheus::CheckpointMetrics;
use crate::sink::{self, EventBatch, MessageSink, Rendered, Stream, TableSink};
use crate::state::{self, Checkpoint, CheckpointStore, Restored};

/// The acknowledger of an input with no messages.
pub(super) struct NothingToAck;

impl crate::ingress::Acknowledger for NothingToAck {
    fn set_stages(&self, _stages: usize) {}
    fn settled(&self, _stage: usize, _seq: u64) {}
    fn acked(&self) -> u64 {
        0
    }
}

/// A partition's checkpoints in Cassandra: refused once the partition is
/// lost (the claim fences a stale write anyway; this one is not even
/// tried), timed for `/metrics`.
pub(super) struct PartitionStore {
    pub(super) inner: CassandraStore,
    pub(super) lost: Arc<AtomicBool>,
    pub(super) tenant: String,
    pub(super) metrics: CheckpointMetrics,
    pub(super) last_written: AtomicU64,
}

impl PartitionStore {
    fn refuse_if_lost(&self) -> state::Result<()> {
        if self.lost.load(Ordering::Acquire) {
            return Err(crate::cassandra::store::StoreError::Failed {
                what: "writing a checkpoint",
                message: "the partition was lost (broker connection closed)".into(),
            }
            .into());
        }
        Ok(())
    }
}

impl CheckpointStore for PartitionStore {
    fn write(&self, checkpoint: &Checkpoint) -> state::Result<()> {
        self.refuse_if_lost()?;
        let started = Instant::now();
        self.inner.write(checkpoint)?;
        self.last_written.store(checkpoint.id, Ordering::Release);
        self.metrics
            .observe(&self.tenant, started.elapsed(), self.inner.last_size());
        Ok(())
    }

    fn mark_acked(&self, id: u64) -> state::Result<()> {
        self.refuse_if_lost()?;
        self.inner.mark_acked(id)
    }

    fn latest(&self) -> state::Result<Option<Restored>> {
        self.inner.latest()
    }
}

/// A sink that emits nothing once the partition is lost: the pipeline
/// gets an error at once and ends.
pub(super) struct Gate<S: ?Sized> {
    pub(super) inner: Arc<S>,
    pub(super) lost: Arc<AtomicBool>,
}

impl<S: ?Sized> Gate<S> {
    fn check(&self, sink: &'static str) -> sink::Result<()> {
        if self.lost.load(Ordering::Acquire) {
            return Err(sink::Error::Publish {
                sink,
                source: "the partition was lost (broker connection closed)".into(),
            });
        }
        Ok(())
    }
}

impl MessageSink for Gate<dyn MessageSink> {
    fn publish(&self, stream: Stream, batch: &Rendered) -> sink::Result<()> {
        self.check("message")?;
        self.inner.publish(stream, batch)
    }
}

impl TableSink for Gate<dyn TableSink> {
    fn write(
        &self,
        results: &Rendered,
        dead_letters: &Rendered,
        events: &EventBatch<'_>,
    ) -> sink::Result<()> {
        self.check("table")?;
        self.inner.write(results, dead_letters, events)
    }
}
