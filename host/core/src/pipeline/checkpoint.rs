//! The checkpoint protocol, run on the coordinator's thread: when a
//! checkpoint falls due, the barrier through the shards, collecting their
//! snapshots, the durable commit, then the acks of the input it covers.
//! Kept apart from the coordinator's routing because a restart relies on
//! the order of its steps (outputs synced, checkpoint durable, then acks),
//! which reads best in one place.
//!
//! The hops: the coordinator sends `Work::Checkpoint(reply)` down every
//! worker's channel, behind the batches already queued (the barrier); each
//! worker answers `(worker, Result<ShardState>)` on `reply`, a
//! `sync_channel(workers)` back to the coordinator, with its state as it is
//! after every batch before the barrier (their outputs already in the
//! sinks). The coordinator then syncs the sinks, writes the checkpoint
//! (its own state, the shards', the input position, the counters) to the
//! [`CheckpointStore`], and only then settles the input up to the last
//! message the checkpoint covers; once the broker has committed those
//! acks, the checkpoint is marked acked in the store.

use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::coordinator::Coordinator;
use super::shard::Work;
use super::{CheckpointOptions, Error, Result};
use crate::state::{self, Checkpoint, CheckpointStore};

/// An input quiet this long gets its checkpoint (and acks) at once.
const QUIET_CHECKPOINT: Duration = Duration::from_secs(1);

/// The coordinator's checkpoint schedule and what the next checkpoint
/// records about the input.
pub(super) struct Checkpoints {
    store: Arc<dyn CheckpointStore>,
    pub(super) interval: Duration,
    every_rows: Option<u64>,
    every_messages: Option<usize>,
    module_hash: String,
    next_id: u64,
    last_at: Instant,
    pub(super) rows_since: u64,
    /// Something arrived since the last checkpoint.
    pub(super) dirty: bool,
    /// File input: the position after the last chunk.
    pub(super) file_end: (u64, u64),
    /// Fingerprints of the messages since the last checkpoint, and of
    /// those of the one before with the last sequence number it covers:
    /// they are recorded again only while their acks are not yet sent (a
    /// body hash recorded after its ack could match a later identical
    /// message and drop it).
    pub(super) covered: Vec<Vec<u8>>,
    previous: Vec<Vec<u8>>,
    previous_seq: u64,
    /// The last checkpoint (id, last sequence number) whose acks are not
    /// yet known committed; marked in the store once they are.
    awaiting_ack: Option<(u64, u64)>,
}

impl Coordinator<'_> {
    /// Takes checkpoints from now on, resuming from `options.restore`.
    pub(super) fn checkpoints(&mut self, options: &CheckpointOptions) {
        let mut c = Checkpoints {
            store: Arc::clone(&options.store),
            interval: options.interval,
            every_rows: options.every_rows,
            every_messages: options.every_messages,
            module_hash: options.module_hash.clone(),
            next_id: 1,
            last_at: Instant::now(),
            rows_since: 0,
            dirty: false,
            file_end: (0, 0),
            covered: Vec::new(),
            previous: Vec::new(),
            previous_seq: 0,
            awaiting_ack: None,
        };
        if let Some(saved) = &options.restore {
            c.next_id = saved.id + 1;
            match &saved.input {
                state::InputPosition::File { offset, line } => c.file_end = (*offset, *line),
                state::InputPosition::Messages { unacked } => {
                    // Their redeliveries come first after the restart; the
                    // next checkpoint records them again in case it is the
                    // one the next restart uses.
                    c.previous = unacked.clone();
                    c.previous_seq = u64::MAX;
                }
            }
            let s = &saved.coordinator;
            self.wm = s.wm;
            self.max_time = s.max_time;
            self.wm_at_last_record = s.wm_at_last_record;
            self.keyless = s.keyless;
            self.keys = saved.guards.keys.iter().copied().collect();
            for (m, (next, emitted)) in self.keyless_metrics.iter_mut().zip(&s.keyless_metrics) {
                m.next = *next;
                m.emitted = *emitted;
            }
        }
        self.checkpoints = Some(c);
    }

    /// Marks the last checkpoint acknowledged once the input's acks for it
    /// are committed.
    pub(super) fn mark_acked(&mut self) -> Result<()> {
        let (Some(acks), Some(c)) = (self.acks, self.checkpoints.as_mut()) else {
            return Ok(());
        };
        if let Some((id, seq)) = c.awaiting_ack {
            if acks.acked() >= seq {
                c.store.mark_acked(id)?;
                c.awaiting_ack = None;
            }
        }
        Ok(())
    }

    /// Whether a checkpoint is due: the interval passed, enough rows or
    /// unacked messages piled up, or the input went quiet — a broker's
    /// input is acked only with checkpoints, so a quiet input must not
    /// wait a long interval for the acks of its last messages (nor an
    /// `--until-idle` run for its end).
    pub(super) fn checkpoint_due(&self) -> bool {
        self.checkpoints.as_ref().is_some_and(|c| {
            c.dirty
                && (c.last_at.elapsed() >= c.interval
                    || self.last_record.elapsed() >= c.interval.min(QUIET_CHECKPOINT)
                    || c.every_rows.is_some_and(|n| c.rows_since >= n)
                    || c.every_messages.is_some_and(|n| c.covered.len() >= n))
        })
    }

    /// A barrier through every shard, then the checkpoint, written
    /// durably, then the acknowledgement of the input it covers.
    pub(super) fn checkpoint(&mut self) -> Result<()> {
        let Some(c) = self.checkpoints.as_mut() else {
            return Ok(());
        };
        let (tx, rx) = mpsc::sync_channel(self.workers);
        for s in &self.senders {
            s.send(Work::Checkpoint(tx.clone()))
                .map_err(|_| Error::WorkerGone)?;
        }
        drop(tx);
        let mut shards: Vec<Option<state::ShardState>> = vec![None; self.workers];
        for _ in 0..self.workers {
            let (worker, shard) = rx.recv().map_err(|_| Error::WorkerGone)?;
            shards[worker] = Some(shard?);
        }
        self.sinks.sync()?;
        state::failpoint::hit("after-output-before-checkpoint");
        let input = if let Some(acks) = self.acks {
            let mut unacked = if acks.acked() < c.previous_seq {
                c.previous.clone()
            } else {
                Vec::new()
            };
            unacked.extend(c.covered.iter().cloned());
            state::InputPosition::Messages { unacked }
        } else {
            state::InputPosition::File {
                offset: c.file_end.0,
                line: c.file_end.1,
            }
        };
        let summary = self.counters.snapshot(Duration::ZERO);
        let checkpoint = Checkpoint {
            id: c.next_id,
            tenant: self.ctx.tenant.clone(),
            module_hash: c.module_hash.clone(),
            input,
            output_bytes: Some(self.sinks.output.written()),
            dead_letter_bytes: Some(self.sinks.dead_letter.written()),
            coordinator: state::CoordinatorState {
                wm: self.wm,
                max_time: self.max_time,
                wm_at_last_record: self.wm_at_last_record,
                keyless: self.keyless,
                keyless_metrics: self
                    .keyless_metrics
                    .iter()
                    .map(|m| (m.next, m.emitted))
                    .collect(),
            },
            counters: (&summary).into(),
            shards: shards.into_iter().flatten().collect(),
            guards: state::GuardState {
                future_dropped: summary.future_dropped,
                limited: summary.limited,
                keys: {
                    let mut keys: Vec<u64> = self.keys.iter().copied().collect();
                    keys.sort_unstable();
                    keys
                },
            },
        };
        let started = Instant::now();
        c.store.write(&checkpoint)?;
        tracing::debug!(
            id = checkpoint.id,
            took_ms = started.elapsed().as_millis() as u64,
            "checkpoint written"
        );
        state::failpoint::hit("after-checkpoint-before-ack");
        if let (Some(acks), Some(seq)) = (self.acks, self.last_seq) {
            acks.settled(0, seq);
            c.awaiting_ack = Some((checkpoint.id, seq));
        }
        c.previous = std::mem::take(&mut c.covered);
        c.previous_seq = self.last_seq.unwrap_or(0);
        c.next_id += 1;
        c.last_at = Instant::now();
        c.rows_since = 0;
        c.dirty = false;
        Ok(())
    }
}
