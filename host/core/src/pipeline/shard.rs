//! The shard worker: one thread per shard (`sluice-shard-{i}`), so each
//! key's rows are handled in arrival order by one tenant instance while
//! guest calls are batched across the keys of a shard.
//!
//! A worker owns its shard's `ShardWindows`, alert states and tenant calls
//! (a `TenantInstance`, or a native stand-in). The coordinator sends it
//! [`Work`] down its own `sync_channel(4)`:
//! - `Work::Batch`: the rows and bad rows of its keys, each with the
//!   watermark before it, and the watermark after the batch. The worker
//!   runs the alert function and the windows, writes outputs, dead letters
//!   and raw events to the sinks, then (without checkpoints) reports the
//!   batch's last message settled to the input's `Acknowledger`.
//! - `Work::Flush`: the end of a bounded input; every window fires.
//! - `Work::Checkpoint(reply)`: the barrier of `checkpoint.rs`; the worker
//!   sends `(worker, ShardState)` back to the coordinator on `reply`.
//!
//! When the coordinator drops its sender the worker returns its peak of
//! open panes; it publishes the current figure in `panes` for the
//! progress line.

use std::sync::mpsc::{Receiver, SyncSender};
use std::time::Instant;

use super::{alerts, Ctx, Error, Result, ShardCalls};
use crate::ingress::Acknowledger;
use crate::metrics::{Counters, LatencyObserver};
use crate::parse::{self, BadRow, ParsedRow};
use crate::sink::{Data, DeadLetter, Event, Record, Rendered, RowPos, Sinks, WindowRef};
use crate::state;
use crate::window::{Emitted, PoisonedInput, ShardWindows};

/// A batch for one worker: its shard's rows and bad rows (each with the
/// watermark before it) and the watermark after the batch; or the end.
pub(super) enum Work {
    Batch {
        rows: Vec<(ParsedRow, i64)>,
        /// Where each row was read, parallel to `rows`.
        positions: Vec<RowPos>,
        bad: Vec<(BadRow, i64)>,
        wm_after: i64,
        /// The last message this batch completes (message input only).
        seq: Option<u64>,
        /// When the coordinator sent it: the watermark `wm_after` passed
        /// then (window-fire latency starts here).
        sent_at: Instant,
        /// The earliest publish time (ms) of its messages, if known.
        published_ms: Option<i64>,
    },
    /// End of a bounded input: flush every window.
    Flush,
    /// A checkpoint barrier: reply with this shard's state as it is after
    /// every batch before the barrier (their outputs already in the sinks).
    Checkpoint(SyncSender<(usize, Result<state::ShardState>)>),
}

/// One worker: one shard's windows, alert states and tenant calls.
pub(super) struct Shard<'a, C> {
    pub(super) worker: usize,
    pub(super) ctx: &'a Ctx,
    pub(super) calls: C,
    pub(super) windows: ShardWindows,
    pub(super) alert_states: alerts::States,
    pub(super) counters: &'a Counters,
    pub(super) sinks: &'a Sinks,
    pub(super) acks: Option<&'a dyn Acknowledger>,
    pub(super) peak_panes: usize,
    pub(super) latency: Option<&'a dyn LatencyObserver>,
}

impl<C: ShardCalls> Shard<'_, C> {
    /// Processes batches until the end of input; returns the peak of open
    /// panes.
    pub(super) fn run(
        &mut self,
        rx: &Receiver<Work>,
        panes: &std::sync::atomic::AtomicUsize,
    ) -> Result<usize> {
        let mut out = self.sinks.buffer();
        let mut dead = self.sinks.buffer();
        while let Ok(work) = rx.recv() {
            let mut emitted = Emitted::default();
            let mut alert_lines = 0;
            let mut settles = None;
            let mut batch_rows = Vec::new();
            let mut batch_positions = Vec::new();
            let mut timing = None;
            match work {
                Work::Batch {
                    rows,
                    positions,
                    bad,
                    wm_after,
                    seq,
                    sent_at,
                    published_ms,
                } => {
                    settles = seq;
                    timing = Some((sent_at, published_ms));
                    if let Some(function) = &self.ctx.alert_function {
                        alert_lines = alerts::run(
                            self.worker,
                            self.ctx,
                            function,
                            &mut self.calls,
                            &mut self.alert_states,
                            self.windows.budget_mut(),
                            &rows,
                            &mut out,
                            &mut dead,
                            self.counters,
                        )?;
                    }
                    self.windows
                        .push(&rows, &bad, wm_after, &mut self.calls, &mut emitted)
                        .map_err(|source| Error::Window {
                            worker: self.worker,
                            source,
                        })?;
                    batch_rows = rows;
                    batch_positions = positions;
                }
                Work::Flush => {
                    self.windows
                        .flush(&mut self.calls, &mut emitted)
                        .map_err(|source| Error::Window {
                            worker: self.worker,
                            source,
                        })?;
                }
                Work::Checkpoint(reply) => {
                    let state = self.snapshot();
                    // The coordinator waits for this; if it is gone, so is the run.
                    let _ = reply.send((self.worker, state));
                    continue;
                }
            }
            self.render(&emitted, &batch_rows, &batch_positions, &mut out, &mut dead)?;
            self.counters
                .add_outputs(emitted.outputs.len() as u64 + alert_lines, alert_lines);
            self.counters.add_late_dropped(emitted.late.len() as u64);
            self.counters.add_poisoned(emitted.poisoned.len() as u64);
            let open = self.windows.open_panes();
            self.peak_panes = self.peak_panes.max(open);
            panes.store(open, std::sync::atomic::Ordering::Relaxed);
            // Every row that parsed is a raw event, late ones too (built
            // only for a sink that stores them).
            let stored = if self.sinks.stores_events() {
                batch_rows.as_slice()
            } else {
                &[]
            };
            let events: Vec<Event<'_>> = stored
                .iter()
                .zip(&batch_positions)
                .map(|((row, _), position)| Event {
                    key: &row.key,
                    time: row.time,
                    values: &row.values,
                    position,
                })
                .collect();
            self.sinks.batch(&out, &dead, &self.ctx.events(&events))?;
            if let (Some(latency), Some((sent_at, published_ms))) = (self.latency, timing) {
                // Measured once the sinks have confirmed the outputs.
                if !emitted.outputs.is_empty() {
                    latency.window_fire(sent_at.elapsed());
                }
                let outputs = emitted.outputs.len() as u64 + alert_lines;
                if let Some(at) = published_ms.filter(|_| outputs > 0) {
                    latency.end_to_end(crate::metrics::since_epoch_ms(at));
                }
            }
            out.clear();
            dead.clear();
            if let (Some(acks), Some(seq)) = (self.acks, settles) {
                acks.settled(self.worker, seq);
            }
        }
        Ok(self.peak_panes)
    }

    /// This shard's state for a checkpoint.
    fn snapshot(&self) -> Result<state::ShardState> {
        let windows = self.windows.snapshot().map_err(|source| Error::Window {
            worker: self.worker,
            source,
        })?;
        let mut alert_states: Vec<(parse::Key, Vec<u8>)> = self
            .alert_states
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        alert_states.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Ok(state::ShardState {
            windows,
            alert_states,
        })
    }

    /// Renders what a step emitted; `rows` and `positions` are the batch's
    /// (a late row is an index into them). Result lines are written out
    /// every `SPILL_BYTES` as they are rendered ([`Sinks::spill`]).
    fn render(
        &self,
        emitted: &Emitted,
        rows: &[(ParsedRow, i64)],
        positions: &[RowPos],
        out: &mut Rendered,
        dead: &mut Rendered,
    ) -> Result<()> {
        for o in &emitted.outputs {
            out.push_record(&Record {
                tenant: &self.ctx.tenant,
                ty: o.kind,
                window: Some(WindowRef {
                    name: &o.window,
                    start: o.start,
                    end: o.end,
                }),
                key_names: &self.ctx.key_names,
                key: Some(&o.key),
                data: Data::Fields(&o.data),
                update: o.update,
                replaces: &o.replaces,
            });
            self.sinks.spill(out)?;
        }
        for &i in &emitted.late {
            if let Some((row, _)) = rows.get(i) {
                let position = positions.get(i);
                self.ctx
                    .dead_letter(DeadLetter::Late { row, position }, dead);
            }
        }
        for p in &emitted.poisoned {
            let (rows, bounds): (Vec<&ParsedRow>, _) = match &p.input {
                PoisonedInput::Rows(rows) => (rows.iter().collect(), None),
                PoisonedInput::Window { start, end, rows } => {
                    (rows.iter().collect(), Some((*start, *end)))
                }
            };
            self.ctx.dead_letter(
                DeadLetter::Poison {
                    function: None,
                    window: Some(&p.window),
                    bounds,
                    key: &p.key,
                    rows: &rows,
                    error: &p.error,
                },
                dead,
            );
        }
        Ok(())
    }
}
