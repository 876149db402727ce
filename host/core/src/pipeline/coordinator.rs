//! The coordinator: the thread that called [`run_with`](super::run_with),
//! between the reader and the shard workers. Only it sees the rows in
//! arrival order, so what must not depend on the number of workers is
//! decided here, once.
//!
//! It receives the reader's [`Chunk`]s (parsed rows and bad rows, a
//! `sync_channel(4)`), and owns:
//! - the input's watermark (and its idle advance), stamped on every row
//!   and batch;
//! - the key ceiling: the keys admitted so far; rows of further keys are
//!   dead-lettered here;
//! - the keyless error count and its tenant-level `Global Metric` lines
//!   ([`KeylessMetric`]), and the bad-row dead letters;
//! - with checkpoints, the schedule of `checkpoint.rs`;
//! - the reports to `Options::progress`, at most about four a second.
//!
//! Each chunk becomes one `Work::Batch` per worker (sent to *every*
//! worker, on each worker's `sync_channel(4)`, so windows fire at the same
//! points whatever the number of workers), routed by `Key::shard`; the
//! end of a bounded input becomes `Work::Flush`. Without checkpoints the
//! coordinator reports each chunk's last message settled as the last stage
//! (`workers`) of the input's `Acknowledger`, after the workers' stages
//! `0..workers`; with them it is the only stage, and acks only after a
//! checkpoint.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::checkpoint::Checkpoints;
use super::read::Chunk;
use super::shard::Work;
use super::{Ctx, Error, Live, Result};
use crate::data::{DataField, Value};
use crate::ingress::Acknowledger;
use crate::metrics::{Counters, Progress, ProgressObserver};
use crate::parse::{BadKind, BadRow, Key, ParsedRow};
use crate::sink::{Data, DeadLetter, OutputType, Record, Rendered, RowPos, Sinks, WindowRef};
use crate::window;

/// The tenant-level (keyless) error count of one global window.
pub(super) struct KeylessMetric {
    name: String,
    every: i64,
    /// Next multiple of `every` the watermark has to pass.
    pub(super) next: Option<i64>,
    /// Count at the last emission.
    pub(super) emitted: u64,
}

pub(super) struct Coordinator<'a> {
    pub(super) ctx: &'a Ctx,
    pub(super) workers: usize,
    pub(super) senders: Vec<SyncSender<Work>>,
    pub(super) sinks: &'a Sinks,
    pub(super) counters: &'a Counters,
    /// The input's watermark (`i64::MIN` before any row).
    pub(super) wm: i64,
    pub(super) max_time: Option<i64>,
    /// When the last record arrived, and the watermark then (idle advance).
    pub(super) last_record: Instant,
    pub(super) wm_at_last_record: i64,
    pub(super) keyless: u64,
    pub(super) keyless_metrics: Vec<KeylessMetric>,
    dead: Rendered,
    out: Rendered,
    pub(super) acks: Option<&'a dyn Acknowledger>,
    pub(super) checkpoints: Option<Checkpoints>,
    /// The last message settled by a chunk (message input).
    pub(super) last_seq: Option<u64>,
    /// See [`Options::suspend`](super::Options::suspend).
    pub(super) suspend: Option<Arc<AtomicBool>>,
    /// See [`Options::live`](super::Options::live).
    pub(super) live: Option<Arc<Live>>,
    /// The key ceiling: hashes of the keys admitted so far, at most
    /// `max_keys` of them. A key's state (windows, alert state) is held
    /// for the run's life, so admitted keys are never forgotten.
    pub(super) keys: rustc_hash::FxHashSet<u64>,
    max_keys: u64,
    key_limit_reason: String,
}

impl<'a> Coordinator<'a> {
    pub(super) fn new(
        ctx: &'a Ctx,
        workers: usize,
        senders: Vec<SyncSender<Work>>,
        sinks: &'a Sinks,
        counters: &'a Counters,
        acks: Option<&'a dyn Acknowledger>,
        max_keys: u64,
    ) -> Coordinator<'a> {
        Coordinator {
            keys: rustc_hash::FxHashSet::default(),
            max_keys,
            key_limit_reason: format!(
                "the tenant already holds state for {max_keys} keys, this host's ceiling \
                 (max_keys): rows of further keys are dead-lettered"
            ),
            ctx,
            workers,
            senders,
            sinks,
            counters,
            wm: i64::MIN,
            max_time: None,
            last_record: Instant::now(),
            wm_at_last_record: i64::MIN,
            keyless: 0,
            keyless_metrics: ctx
                .globals
                .iter()
                .map(|(name, every)| KeylessMetric {
                    name: name.clone(),
                    every: *every,
                    next: None,
                    emitted: 0,
                })
                .collect(),
            dead: sinks.buffer(),
            out: sinks.buffer(),
            acks,
            checkpoints: None,
            last_seq: None,
            suspend: None,
            live: None,
        }
    }

    pub(super) fn run(
        &mut self,
        rx: &Receiver<Chunk>,
        progress: Option<&dyn ProgressObserver>,
        counters: &Counters,
        started: Instant,
        panes: &[std::sync::atomic::AtomicUsize],
    ) -> Result<()> {
        // How often a quiet input is looked at: often enough that windows
        // fire within about a tenth of the timeout of becoming due.
        let idle_tick = self
            .ctx
            .idle_timeout
            .map(|t| (t / 10).clamp(Duration::from_millis(5), Duration::from_secs(1)));
        // A quiet input still gets its checkpoint (and its acks) on time.
        let checkpoint_tick = self
            .checkpoints
            .as_ref()
            .map(|c| (c.interval / 4).clamp(Duration::from_millis(5), Duration::from_secs(1)));
        let tick = match (idle_tick, checkpoint_tick) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let mut last_progress = Instant::now();
        loop {
            let chunk = match tick {
                None => rx.recv().ok(),
                Some(tick) => match rx.recv_timeout(tick) {
                    Ok(chunk) => Some(chunk),
                    Err(RecvTimeoutError::Timeout) => {
                        self.idle()?;
                        self.mark_acked()?;
                        if self.checkpoint_due() {
                            self.checkpoint()?;
                        }
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => None,
                },
            };
            let Some(chunk) = chunk else { break };
            self.chunk(chunk)?;
            // The clock is read only when someone observes the run.
            let due =
                |_: &&dyn ProgressObserver| last_progress.elapsed() >= Duration::from_millis(250);
            if let Some(progress) = progress.filter(due) {
                last_progress = Instant::now();
                let open: usize = panes
                    .iter()
                    .map(|p| p.load(std::sync::atomic::Ordering::Relaxed))
                    .sum();
                progress.progress(&Progress {
                    summary: counters.snapshot(started.elapsed()),
                    open_panes: open,
                });
            }
        }
        let suspended = self.acks.is_some()
            && self.checkpoints.is_some()
            && self
                .suspend
                .as_ref()
                .is_some_and(|s| s.load(Ordering::Acquire));
        if suspended {
            // Open windows stay open: they are in the checkpoint below, and
            // the run that restores it fires them.
            tracing::info!(tenant = %self.ctx.tenant, "input suspended: checkpointing without firing windows");
        } else {
            for tx in &self.senders {
                // A worker that hung up has failed; its join reports why.
                let _ = tx.send(Work::Flush);
            }
            self.keyless_at_end();
            self.write()?;
        }
        // Broker input: the flushed state is checkpointed before the last
        // messages are acked, so a restart does not lose them.
        if self.acks.is_some() {
            if let Some(c) = self.checkpoints.as_mut() {
                c.dirty = true;
                self.checkpoint()?;
            }
        }
        Ok(())
    }

    /// Routes one chunk of parsed records, in batches of rows.
    fn chunk(&mut self, chunk: Chunk) -> Result<()> {
        self.last_record = Instant::now();
        self.counters
            .add_input(chunk.rows.len() as u64, chunk.bytes);
        let mut rows: Vec<Vec<(ParsedRow, i64)>> = (0..self.workers).map(|_| Vec::new()).collect();
        let mut positions: Vec<Vec<RowPos>> = (0..self.workers).map(|_| Vec::new()).collect();
        let mut bad: Vec<Vec<(BadRow, i64)>> = (0..self.workers).map(|_| Vec::new()).collect();
        let (mut n_bad, mut n_keyless, mut n_future, mut n_limited) = (0u64, 0u64, 0u64, 0u64);
        let shards = u32::try_from(self.workers).unwrap_or(u32::MAX);
        let n_rows = chunk.rows.len() as u64;
        let mut chunk_positions = chunk.positions.into_iter();
        for item in chunk.rows {
            let position = chunk_positions.next();
            match item {
                Ok(row) if !self.admit(&row.key) => {
                    n_limited += 1;
                    self.ctx.dead_letter(
                        DeadLetter::Limit {
                            row: &row,
                            reason: &self.key_limit_reason,
                            position: position.as_ref(),
                        },
                        &mut self.dead,
                    );
                }
                Ok(row) => {
                    let before = self.wm;
                    self.max_time = Some(self.max_time.map_or(row.time, |m| m.max(row.time)));
                    self.wm = self
                        .wm
                        .max(row.time.saturating_sub(self.ctx.max_out_of_orderness));
                    let shard = row.key.shard(shards) as usize;
                    rows[shard].push((row, before));
                    if let Some(position) = position {
                        positions[shard].push(position);
                    }
                }
                Err(mut b) => {
                    let future = b.kind == BadKind::Future;
                    if future {
                        n_future += 1;
                    } else {
                        n_bad += 1;
                    }
                    self.ctx.dead_letter(DeadLetter::BadRow(&b), &mut self.dead);
                    if future {
                        // Its time is not believed: it counts against its
                        // key at the latest time seen, like a bad row whose
                        // time does not read.
                        b.time = None;
                    }
                    if b.time.is_none() {
                        b.time = self.max_time;
                    }
                    let keyed = b.time.is_some() && b.key.as_ref().is_some_and(|k| self.admit(k));
                    match (&b.key, keyed) {
                        (Some(key), true) => {
                            let shard = key.shard(shards) as usize;
                            bad[shard].push((b, self.wm));
                        }
                        _ => {
                            if !future {
                                n_keyless += 1;
                            }
                            self.keyless += 1;
                        }
                    }
                }
            }
            // The keyless metric is emitted as the watermark passes each
            // period boundary, counting what arrived before.
            self.keyless_passed();
        }
        self.wm_at_last_record = self.wm;
        if let Some(live) = &self.live {
            live.watermark.store(self.wm, Ordering::Relaxed);
            if let Some(mut keys) = live.count_keys.then(|| live.keys.lock().ok()).flatten() {
                let good = rows.iter().flatten().map(|(r, _)| &r.key);
                let bad = bad.iter().flatten().filter_map(|(b, _)| b.key.as_ref());
                keys.extend(good.chain(bad).map(Key::hash64));
            }
        }
        self.counters.add_bad_rows(n_bad, n_keyless);
        if n_future > 0 {
            self.counters.add_future_dropped(n_future);
        }
        if n_limited > 0 {
            self.counters.add_limited(n_limited);
        }
        self.send(rows, positions, bad, chunk.seq, chunk.published_ms)?;
        self.write()?;
        if chunk.seq.is_some() {
            self.last_seq = chunk.seq;
        }
        match self.checkpoints.as_mut() {
            None => {
                if let (Some(acks), Some(seq)) = (self.acks, chunk.seq) {
                    acks.settled(self.workers, seq);
                }
            }
            Some(_) => {
                self.mark_acked()?;
                let Some(c) = self.checkpoints.as_mut() else {
                    return Ok(());
                };
                c.dirty = true;
                c.rows_since += n_rows;
                if let Some(end) = chunk.end {
                    c.file_end = end;
                }
                c.covered.extend(chunk.fingerprints);
                if self.checkpoint_due() {
                    self.checkpoint()?;
                }
            }
        }
        Ok(())
    }

    /// Whether `key` may hold state: already admitted, or room for one
    /// more under the key ceiling.
    #[inline]
    fn admit(&mut self, key: &Key) -> bool {
        let hash = key.hash64();
        if self.keys.contains(&hash) {
            return true;
        }
        if self.keys.len() as u64 >= self.max_keys {
            return false;
        }
        self.keys.insert(hash);
        true
    }

    fn send(
        &mut self,
        rows: Vec<Vec<(ParsedRow, i64)>>,
        positions: Vec<Vec<RowPos>>,
        bad: Vec<Vec<(BadRow, i64)>>,
        seq: Option<u64>,
        published_ms: Option<i64>,
    ) -> Result<()> {
        let sent_at = Instant::now();
        for (((tx, rows), positions), bad) in self.senders.iter().zip(rows).zip(positions).zip(bad)
        {
            let work = Work::Batch {
                rows,
                positions,
                bad,
                wm_after: self.wm,
                seq,
                sent_at,
                published_ms,
            };
            if tx.send(work).is_err() {
                // The worker failed; stop reading. Its join says why.
                return Err(Error::Panicked(
                    "a worker stopped early; see its error".into(),
                ));
            }
        }
        Ok(())
    }

    /// The input is quiet: when it has been so for `idle_timeout`, advance
    /// the watermark by the wall time since the last record.
    fn idle(&mut self) -> Result<()> {
        let Some(timeout) = self.ctx.idle_timeout else {
            return Ok(());
        };
        let quiet = self.last_record.elapsed();
        if quiet < timeout || self.wm_at_last_record == i64::MIN {
            return Ok(());
        }
        let advanced = self
            .wm_at_last_record
            .saturating_add(i64::try_from(quiet.as_millis()).unwrap_or(i64::MAX));
        if advanced <= self.wm {
            return Ok(());
        }
        tracing::debug!(
            watermark = advanced,
            quiet_ms = quiet.as_millis() as u64,
            "idle input: watermark advanced"
        );
        self.wm = advanced;
        self.keyless_passed();
        let rows = (0..self.workers).map(|_| Vec::new()).collect();
        let positions = (0..self.workers).map(|_| Vec::new()).collect();
        let bad = (0..self.workers).map(|_| Vec::new()).collect();
        self.send(rows, positions, bad, None, None)?;
        self.write()
    }

    /// Emits the keyless metric of each global window whose next boundary
    /// the watermark has passed.
    fn keyless_passed(&mut self) {
        if self.wm == i64::MIN {
            return;
        }
        for i in 0..self.keyless_metrics.len() {
            let m = &mut self.keyless_metrics[i];
            let next = *m
                .next
                .get_or_insert_with(|| next_multiple_above(self.wm, m.every));
            if self.wm < next {
                continue;
            }
            // Every boundary passed at once counts the same rows: one line.
            let boundary = self.wm.div_euclid(m.every) * m.every;
            m.next = Some(boundary.saturating_add(m.every));
            if self.keyless > m.emitted {
                m.emitted = self.keyless;
                let (name, start) = (m.name.clone(), boundary - m.every);
                self.keyless_line(&name, start, boundary);
            }
        }
    }

    fn keyless_at_end(&mut self) {
        let end_time = self.max_time.unwrap_or(0);
        for i in 0..self.keyless_metrics.len() {
            let m = &mut self.keyless_metrics[i];
            if self.keyless > m.emitted {
                m.emitted = self.keyless;
                let end = next_multiple_above(end_time, m.every);
                let (name, start) = (m.name.clone(), end - m.every);
                self.keyless_line(&name, start, end);
            }
        }
    }

    fn keyless_line(&mut self, window: &str, start: i64, end: i64) {
        let data = [DataField {
            name: window::DATA_CONVERSION_ERRORS.to_owned(),
            value: Value::Int(i64::try_from(self.keyless).unwrap_or(i64::MAX)),
        }];
        self.out.push_record(&Record {
            tenant: &self.ctx.tenant,
            ty: OutputType::GlobalMetric,
            window: Some(WindowRef {
                name: window,
                start,
                end,
            }),
            key_names: &self.ctx.key_names,
            key: None,
            data: Data::Fields(&data),
            update: 0,
            replaces: &[],
        });
        self.counters.add_outputs(1, 0);
    }

    fn write(&mut self) -> Result<()> {
        let no_events = self.ctx.events(&[]);
        self.sinks.batch(&self.out, &self.dead, &no_events)?;
        self.out.clear();
        self.dead.clear();
        Ok(())
    }
}

/// The smallest multiple of `every` strictly above `t`.
pub(super) fn next_multiple_above(t: i64, every: i64) -> i64 {
    (t.div_euclid(every) + 1).saturating_mul(every)
}
