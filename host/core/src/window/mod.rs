//! The event-time window engine of one shard: assigns a tenant's rows to
//! its windows (tumbling, sliding, count, global, session), keeps their state as
//! bytes the host owns, and calls the tenant's aggregate or process-window
//! functions when windows fire. Pure and deterministic: the same rows with
//! the same watermarks give the same outputs, however they are batched.
//!
//! # Watermarks
//! The watermark belongs to the input (`max event time seen − max
//! out-of-orderness`, computed where records enter), not to the shard.
//! Every row arrives with the watermark in effect *before* it; the shard
//! first advances to that watermark (firing what it passes), then applies
//! the row; a batch ends with the watermark after its last row. Since the
//! watermark sequence is a property of the stream, which windows fire with
//! which rows does not depend on batch boundaries or on the number of
//! shards. A time window `[start, end)` fires when `end <= watermark`.
//!
//! # Panes
//! Sliding windows are built from panes of `gcd(size, slide)` (tumbling:
//! one pane per window): a row is added to exactly one pane accumulator,
//! and a firing window hands its panes to `aggregate-finish`, which merges
//! them. Process-window functions need the rows themselves; those are kept
//! once, in their pane, too. State is therefore keys × panes for
//! aggregates, never keys × windows × rows.
//!
//! # Lateness
//! A row with `time < wm_before − allowed_lateness` is dropped: counted in
//! [`WindowStats::late_events_dropped`], returned in [`Emitted::late`] for
//! the dead-letter sink, and left out of every output. A row older than
//! the watermark but within the lateness that falls into an already fired
//! window updates it: the window (and no other) is emitted again with
//! `update` = the number of its earlier emissions (1, 2, …). The updates
//! caused by the rows of one watermark interval are emitted together when
//! the watermark next advances (or at [`ShardWindows::flush`]): only then
//! is the interval's content independent of batching, since good and bad
//! rows reach the engine in separate lists. Panes are kept until every
//! window holding them has `end + allowed_lateness <= watermark`.
//!
//! # Global windows
//! Each time the watermark passes a multiple `B` of `emit_every`, every key
//! that received events with time `< B` since its last emission gets one
//! output covering all of its events with time `< B` (`start` = its
//! earliest event time, `end` = `B`). Events are kept in per-period panes
//! and merged into the key's running accumulator as `B` passes, so events
//! of later periods stay apart. A late event (within lateness) joins the
//! next emission. At the end of a bounded input each key with events not
//! yet covered gets one last output covering all its events, `end` = the
//! next multiple of `emit_every` above its latest row.
//!
//! # Count windows
//! Every `n` rows of a key (arrival order, late rows dropped first) fire
//! with `start` = the earliest and `end` = the latest event time + 1
//! (`end` is exclusive like every window's); a partial last window fires
//! at the end of input. Count windows do not wait for the watermark.
//!
//! # Session windows
//! Per key, bursts of rows separated by quiet periods of at least `gap`
//! (Flink's event-time session windows): each good row opens `[t, t +
//! gap)`, sessions that overlap or touch merge, a session fires when the
//! watermark reaches its end (`start` = its first row's time, `end` = its
//! last row's + `gap`, at most `start + max_duration`). A late row within
//! the lateness that changes fired sessions re-emits the session they
//! merged into with `update` = 1 + their largest and
//! [`WindowOutput::replaces`] = their bounds. The rules, and how bad rows
//! count, are in `session.rs`.
//!
//! # Deserialization errors
//! Bad rows whose key and time parsed are counted in their pane like rows
//! (with the same lateness rule). A time window fires if it holds rows or
//! errors; its output set is a `Windowed Analytic` when it holds rows and a
//! `Windowed Metric` (`data_conversion_errors`) when it holds errors, both
//! with the same `update`. At a global emission, a key whose error count
//! grew in the emitted periods gets a `Global Metric` with its cumulative
//! count (whether or not it has good rows). Count windows carry no metric.
//!
//! # Guest calls
//! Calls are batched across keys: per window spec, one `aggregate-add` for
//! all the rows buffered up to a firing (grouped by key and pane), one
//! `aggregate-finish` or `process-window` for all windows firing at one
//! watermark step, one `aggregate-merge` for all global keys emitted at
//! one step. A call that fails because of its input is retried in halves
//! until the failing key group or window is alone; that one is returned as
//! [`Poisoned`] and its state change is dropped (state is only ever
//! replaced by a successful call's result); everything else proceeds.
//!
//! # State ceilings
//! Accumulators and the rows kept for process-window functions are held
//! under the host's per-key and per-shard state ceilings, counted in one
//! running figure ([`StateBudget`], `budget.rs`); what would go over one
//! is dead-lettered like a failed call and counts as a trap.

mod budget;
mod calls;
mod count;
mod env;
use env::{finish_all, process_all, Env, HasPanes, PendingAdds, ProcessItem};
mod geometry;
mod global;
mod session;
mod snapshot;
#[cfg(test)]
mod tests;
mod time;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rustc_hash::FxHashMap;

use crate::data::{AddGroup, BatchError, DataField, FieldDef, SandboxError, Value};
use crate::manifest::{WindowFunction, WindowKind, WindowSpec};
use crate::parse::{BadRow, Key, ParsedRow};

pub use budget::{row_bytes, StateBudget};
pub use calls::WindowCalls;

use budget::{recount_panes, Admit};
use calls::{isolate, Batch};
use count::CountWindows;
use global::GlobalWindows;
use session::SessionWindows;
use time::TimeWindows;

/// Result of window operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors of the window engine. A failing guest call caused by its input
/// is not an error (it becomes a [`Poisoned`] entry); these are failures
/// that no retry of smaller pieces can fix. After one, the shard's state
/// is unspecified: restore it from the last checkpoint.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A checkpoint's window state does not fit these windows (another
    /// manifest) or does not decode.
    #[error("window state of a checkpoint: {0}")]
    Snapshot(String),
    /// A window spec the engine cannot run (checked in [`ShardWindows::new`]).
    #[error("window `{window}`: {message}")]
    Spec { window: String, message: String },
    /// The sandbox failed for a reason other than the call's input
    /// (engine or I/O failure).
    #[error("window `{window}`: {source}")]
    Call {
        window: String,
        #[source]
        source: SandboxError,
    },
    /// A row does not fit the schema the engine was built with.
    #[error("window `{window}`: a row does not fit the schema: {source}")]
    Batch {
        window: String,
        #[source]
        source: BatchError,
    },
}

pub use crate::data::OutputType;

/// Name of the metric field of windowed and global metrics.
pub const DATA_CONVERSION_ERRORS: &str = "data_conversion_errors";

/// One result of a fired window.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowOutput {
    pub kind: OutputType,
    /// The window's name in the manifest (shared: one per output line).
    pub window: Arc<str>,
    /// `[start, end)`, ms since the Unix epoch.
    pub start: i64,
    pub end: i64,
    pub key: Key,
    pub data: Vec<DataField>,
    /// 0 for a window's first emission, then 1, 2, … for re-emissions
    /// caused by late rows within the allowed lateness.
    pub update: u32,
    /// `[start, end)` of earlier emissions this one supersedes: a session
    /// that absorbed fired sessions (a late row merged or extended them).
    /// Empty for every other window.
    pub replaces: Vec<(i64, i64)>,
}

/// What a poisoned call was given.
#[derive(Debug, Clone, PartialEq)]
pub enum PoisonedInput {
    /// The rows of a key group whose `aggregate-add` failed; they are in no
    /// output of that window.
    Rows(Vec<ParsedRow>),
    /// A window whose `aggregate-finish`, `aggregate-merge` or
    /// `process-window` failed; it has no output. `rows` are the rows a
    /// process-window function was given, sorted as it got them; empty
    /// for an aggregate (its rows live on only in the accumulators) and
    /// for a window whose rows were dead-lettered already.
    Window {
        start: i64,
        end: i64,
        rows: Vec<ParsedRow>,
    },
}

/// A key group or window whose guest call failed on its own; for the
/// dead-letter sink.
#[derive(Debug, Clone, PartialEq)]
pub struct Poisoned {
    pub window: String,
    pub key: Key,
    pub input: PoisonedInput,
    /// The sandbox's error message.
    pub error: String,
}

/// What one `push` or `flush` produced. Outputs of one firing step are
/// sorted by (window, key, start, kind, update), so their order is
/// deterministic.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Emitted {
    pub outputs: Vec<WindowOutput>,
    /// Rows dropped as later than the allowed lateness: their indices in
    /// the rows of the `push` (the caller holds the rows and knows where
    /// each was read).
    pub late: Vec<usize>,
    pub poisoned: Vec<Poisoned>,
}

/// Counters of one shard's windows, for metrics.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WindowStats {
    /// Rows dropped as later than the allowed lateness.
    pub late_events_dropped: u64,
    /// Bad rows ignored by the windows: later than the allowed lateness,
    /// or without a key or time (those are the pipeline's to count).
    pub bad_rows_ignored: u64,
    /// Key groups and windows dead-lettered because their call failed.
    pub poisoned: u64,
}

/// Dense id of a key within one shard: per-spec state is indexed by it, so
/// a row costs one hash lookup whatever the number of windows.
pub(crate) type KeyId = u32;

/// The keys a shard has seen, each once. Kept for the shard's life: the
/// table is bounded by the shard's key cardinality, not by events.
#[derive(Debug, Default)]
pub(crate) struct KeyTable {
    ids: FxHashMap<Key, KeyId>,
    keys: Vec<Key>,
}

impl KeyTable {
    /// The key's id; a new key is stored as the shard's own copy
    /// ([`Key::local_copy`]): every output line clones and drops it, and
    /// the row's allocation sits among the reader's (issue 22).
    fn intern(&mut self, key: &Key) -> KeyId {
        if let Some(&id) = self.ids.get(key) {
            return id;
        }
        let id = KeyId::try_from(self.keys.len()).unwrap_or(KeyId::MAX);
        let key = key.local_copy();
        self.keys.push(key.clone());
        self.ids.insert(key, id);
        id
    }

    fn key(&self, id: KeyId) -> &Key {
        &self.keys[id as usize]
    }
}

/// A row kept for a process-window function, with its arrival number so
/// that ties in event time keep arrival order.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct Buffered {
    seq: u64,
    row: ParsedRow,
}

/// One pane (or global period) of one key.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct Pane {
    /// Accumulator over the rows added so far (aggregates).
    acc: Option<Vec<u8>>,
    /// The rows (process-window functions), in arrival order.
    events: Vec<Buffered>,
    /// Bad rows counted here.
    errors: u64,
    /// Earliest time of a row added / of a bad row counted.
    min_time: Option<i64>,
    min_error: Option<i64>,
    /// Estimated bytes of `events` (recomputed on restore).
    #[serde(skip)]
    bytes: u64,
    /// Why its buffered rows were refused (a state ceiling): the windows
    /// holding it are dead letters. Checkpointed after the shard's state
    /// (see `snapshot`), so the format of a shard without one is unchanged.
    #[serde(skip)]
    refused: Option<String>,
}

impl Pane {
    fn has_rows(&self) -> bool {
        self.acc.is_some() || !self.events.is_empty()
    }
}

/// Removes the timers due by `wm` and returns, ascending, the keys whose
/// current timer was one of them (a key re-armed later left a stale entry,
/// which is skipped). Shared by the time and global windows.
fn take_due<S>(
    timers: &mut BTreeMap<i64, Vec<KeyId>>,
    wm: i64,
    keys: &mut [Option<S>],
    timer: impl Fn(&mut S) -> &mut Option<i64>,
) -> Vec<KeyId> {
    let mut due = Vec::new();
    while let Some(entry) = timers.first_entry() {
        if *entry.key() > wm {
            break;
        }
        let (t, armed) = entry.remove_entry();
        for key in armed {
            if let Some(state) = keys.get_mut(key as usize).and_then(Option::as_mut) {
                let slot = timer(state);
                if *slot == Some(t) {
                    *slot = None;
                    due.push(key);
                }
            }
        }
    }
    due.sort_unstable();
    due
}

fn min_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// One `[[windows]]` entry's state across the shard's keys.
enum Spec {
    Time(TimeWindows),
    Global(GlobalWindows),
    Count(CountWindows),
    Session(SessionWindows),
}

/// All windows of one tenant on one shard.
pub struct ShardWindows {
    specs: Vec<Spec>,
    shared: Shared,
    wm: i64,
    /// Arrival number of the next accepted row.
    seq: u64,
    stats: WindowStats,
}

/// What every spec reads while the specs are borrowed mutably.
struct Shared {
    schema: Vec<FieldDef>,
    keys: KeyTable,
    lateness: i64,
    budget: StateBudget,
}

impl Shared {
    fn env<'a, 'r>(
        &'a mut self,
        calls: &'a mut dyn WindowCalls,
        reads: &'a [u32],
        rows: &'r [(ParsedRow, i64)],
        poisoned: &'a mut Vec<Poisoned>,
    ) -> Env<'a, 'r> {
        Env {
            calls,
            schema: &self.schema,
            reads,
            keys: &self.keys,
            rows,
            lateness: self.lateness,
            budget: &mut self.budget,
            step: Vec::new(),
            poisoned,
        }
    }
}

fn millis(window: &str, what: &str, d: Duration) -> Result<i64> {
    match i64::try_from(d.as_millis()) {
        Ok(ms) if ms > 0 => Ok(ms),
        _ => Err(Error::Spec {
            window: window.to_owned(),
            message: format!("`{what}` must be at least 1ms (got {d:?})"),
        }),
    }
}

impl ShardWindows {
    /// The windows of one tenant (its manifest's `[[windows]]`), its allowed
    /// lateness and its input schema (the columns of every batch).
    pub fn new(
        windows: &[WindowSpec],
        allowed_lateness: Duration,
        schema: Vec<FieldDef>,
    ) -> Result<Self> {
        let mut specs = Vec::with_capacity(windows.len());
        for w in windows {
            let spec = match w.kind {
                WindowKind::Tumbling { size } => {
                    let size = millis(&w.name, "size", size)?;
                    Spec::Time(TimeWindows::new(&w.name, &w.function, size, size))
                }
                WindowKind::Sliding { size, slide } => {
                    let size = millis(&w.name, "size", size)?;
                    let slide = millis(&w.name, "slide", slide)?;
                    if slide > size {
                        return Err(Error::Spec {
                            window: w.name.clone(),
                            message: format!(
                                "`slide` ({slide}ms) is longer than `size` ({size}ms)"
                            ),
                        });
                    }
                    Spec::Time(TimeWindows::new(&w.name, &w.function, size, slide))
                }
                WindowKind::Count { n } => {
                    if n == 0 {
                        return Err(Error::Spec {
                            window: w.name.clone(),
                            message: "`n` must be at least 1".to_owned(),
                        });
                    }
                    Spec::Count(CountWindows::new(&w.name, &w.function, n))
                }
                WindowKind::Global { emit_every } => {
                    let every = millis(&w.name, "emit_every", emit_every)?;
                    let WindowFunction::Aggregate(function) = &w.function else {
                        return Err(Error::Spec {
                            window: w.name.clone(),
                            message: "a global window needs an aggregate: a process-window \
                                      function would have to keep every row of every key \
                                      for ever"
                                .to_owned(),
                        });
                    };
                    Spec::Global(GlobalWindows::new(&w.name, function, every))
                }
                WindowKind::Session { gap, max_duration } => {
                    let gap = millis(&w.name, "gap", gap)?;
                    let max = match max_duration {
                        Some(max) => Some(millis(&w.name, "max_duration", max)?),
                        None => None,
                    };
                    Spec::Session(SessionWindows::new(&w.name, &w.function, gap, max))
                }
            };
            specs.push(spec);
        }
        Ok(ShardWindows {
            specs,
            shared: Shared {
                schema,
                keys: KeyTable::default(),
                lateness: i64::try_from(allowed_lateness.as_millis()).unwrap_or(i64::MAX),
                budget: StateBudget::default(),
            },
            wm: i64::MIN,
            seq: 0,
            stats: WindowStats::default(),
        })
    }

    /// Applies rows in arrival order, each with the watermark in effect
    /// before it (`bad`: rows that did not parse but whose key and time
    /// did, also with their watermark), then advances to `wm_after`, the
    /// watermark after the batch's last row. Results go to `out`.
    ///
    /// A watermark lower than the shard's is taken as the shard's: the
    /// watermark never goes back.
    pub fn push(
        &mut self,
        rows: &[(ParsedRow, i64)],
        bad: &[(BadRow, i64)],
        wm_after: i64,
        calls: &mut dyn WindowCalls,
        out: &mut Emitted,
    ) -> Result<()> {
        let result = self.push_rows(rows, bad, wm_after, calls, out);
        if result.is_err() {
            // Pending rows point into `rows`, which the caller takes back.
            for spec in &mut self.specs {
                spec.discard_pending();
            }
        }
        result
    }

    fn push_rows(
        &mut self,
        rows: &[(ParsedRow, i64)],
        bad: &[(BadRow, i64)],
        wm_after: i64,
        calls: &mut dyn WindowCalls,
        out: &mut Emitted,
    ) -> Result<()> {
        let poisoned_before = out.poisoned.len();
        let reads = calls.reads().to_vec();
        let (mut i, mut j) = (0, 0);
        while i < rows.len() || j < bad.len() {
            // Merged by watermark: only the watermark a row saw matters,
            // not how good and bad rows interleave within one interval.
            let good = j >= bad.len() || (i < rows.len() && rows[i].1 <= bad[j].1);
            let wm_before = if good { rows[i].1 } else { bad[j].1 };
            self.advance(wm_before, rows, &reads, calls, out)?;
            if good {
                self.add_row(rows, i, calls, out);
                i += 1;
            } else {
                self.add_bad(&bad[j].0);
                j += 1;
            }
        }
        self.advance(wm_after, rows, &reads, calls, out)?;
        // Leave no row pending: between pushes the state is accumulators
        // (and the rows of process-window panes), which a checkpoint holds.
        let mut env = self.shared.env(calls, &reads, rows, &mut out.poisoned);
        for spec in &mut self.specs {
            match spec {
                Spec::Time(s) => s.flush_adds(&mut env)?,
                Spec::Global(s) => s.flush_adds(&mut env)?,
                Spec::Count(s) => s.apply(&mut env)?,
                Spec::Session(s) => s.flush_adds(&mut env)?,
            }
        }
        env.end_step(&mut out.outputs);
        self.count_poisoned(out, poisoned_before);
        Ok(())
    }

    /// End of a bounded input: advances the watermark past every event and
    /// fires everything — every time window, one last global output per key
    /// with rows not yet covered, and every partial count window. The shard
    /// holds no window state afterwards.
    pub fn flush(&mut self, calls: &mut dyn WindowCalls, out: &mut Emitted) -> Result<()> {
        let poisoned_before = out.poisoned.len();
        let reads = calls.reads().to_vec();
        let w0 = self.wm;
        self.wm = i64::MAX;
        let mut env = self.shared.env(calls, &reads, &[], &mut out.poisoned);
        for spec in &mut self.specs {
            match spec {
                Spec::Time(s) => s.advance(w0, i64::MAX, &mut env)?,
                Spec::Global(s) => s.finish_input(&mut env)?,
                Spec::Count(s) => s.finish_input(&mut env)?,
                Spec::Session(s) => s.finish_input(w0, &mut env)?,
            }
        }
        env.end_step(&mut out.outputs);
        self.count_poisoned(out, poisoned_before);
        // Nothing is held now; recounting here keeps any drift of the
        // running figure from outliving the input.
        self.recount();
        Ok(())
    }

    /// The shard's watermark (`i64::MIN` before any).
    pub fn watermark(&self) -> i64 {
        self.wm
    }

    /// Accumulators over `bytes` are not kept (the host's per-key state
    /// ceiling): the call that returned one counts as failed on that key.
    /// Nor is a key's window buffer of process-window rows over it.
    pub fn set_max_state(&mut self, bytes: usize) {
        self.shared.budget.set_max_key(bytes);
    }

    /// Panes held (time-window panes, global periods and running
    /// accumulators, open count windows, sessions), summed over specs and keys: the
    /// engine's memory is this many accumulators (plus, for process-window
    /// functions, their rows), whatever the number of events.
    pub fn open_panes(&self) -> usize {
        self.specs
            .iter()
            .map(|s| match s {
                Spec::Time(s) => s.open_panes(),
                Spec::Global(s) => s.open_panes(),
                Spec::Count(s) => s.open_panes(),
                Spec::Session(s) => s.open_panes(),
            })
            .sum()
    }

    /// The shard's window state (panes, accumulators, timers, late-update
    /// counts, watermark, keys) in the checkpoint format; taken between
    /// batches, when no push is half done.
    pub fn snapshot(&self) -> Result<Vec<u8>> {
        snapshot::save(self)
    }

    /// Replaces this shard's state with a [`snapshot`](Self::snapshot) of
    /// the same windows.
    pub fn restore(&mut self, bytes: &[u8]) -> Result<()> {
        snapshot::load(self, bytes)
    }

    pub fn stats(&self) -> &WindowStats {
        &self.stats
    }

    fn count_poisoned(&mut self, out: &Emitted, before: usize) {
        let new = out.poisoned.len().saturating_sub(before);
        self.stats.poisoned += u64::try_from(new).unwrap_or(u64::MAX);
    }

    fn add_row(
        &mut self,
        rows: &[(ParsedRow, i64)],
        i: usize,
        calls: &mut dyn WindowCalls,
        out: &mut Emitted,
    ) {
        let row = &rows[i].0;
        let (wm, lateness) = (self.wm, self.shared.lateness);
        if row.time < wm.saturating_sub(lateness) {
            self.stats.late_events_dropped += 1;
            out.late.push(i);
            return;
        }
        let key = self.shared.keys.intern(&row.key);
        let seq = self.seq;
        self.seq += 1;
        let mut admit = Admit {
            budget: &mut self.shared.budget,
            calls,
            keys: &self.shared.keys,
            poisoned: &mut out.poisoned,
        };
        for spec in &mut self.specs {
            match spec {
                Spec::Time(s) => s.add_row(key, i, row, (seq, wm, lateness), &mut admit),
                Spec::Global(s) => s.add_row(key, i, row, wm),
                Spec::Count(s) => s.add_row(key, i, seq),
                Spec::Session(s) => s.add_row(key, i, row, seq, &mut admit),
            }
        }
    }

    fn add_bad(&mut self, bad: &BadRow) {
        let (wm, lateness) = (self.wm, self.shared.lateness);
        let (Some(key), Some(time)) = (&bad.key, bad.time) else {
            self.stats.bad_rows_ignored += 1;
            return;
        };
        if time < wm.saturating_sub(lateness) {
            self.stats.bad_rows_ignored += 1;
            return;
        }
        let key = self.shared.keys.intern(key);
        let mut ignored = false;
        for spec in &mut self.specs {
            match spec {
                Spec::Time(s) => s.add_bad(key, time, wm, lateness),
                Spec::Global(s) => s.add_bad(key, time, wm),
                Spec::Count(_) => {}
                Spec::Session(s) => ignored |= !s.add_bad(key, time, &mut self.shared.budget),
            }
        }
        // Over the shard's state ceiling (a flood of bad rows while the
        // watermark stands still): counted once, however many sessions.
        if ignored {
            self.stats.bad_rows_ignored += 1;
        }
    }

    /// Moves the watermark to `w1` (if later), firing what it passes: the
    /// pending adds of a spec are flushed first, so its windows see every
    /// row that arrived before the step.
    fn advance(
        &mut self,
        w1: i64,
        rows: &[(ParsedRow, i64)],
        reads: &[u32],
        calls: &mut dyn WindowCalls,
        out: &mut Emitted,
    ) -> Result<()> {
        if w1 <= self.wm {
            return Ok(());
        }
        let w0 = self.wm;
        self.wm = w1;
        if !self.specs.iter().any(|s| s.due(w1)) {
            return Ok(());
        }
        let mut env = self.shared.env(calls, reads, rows, &mut out.poisoned);
        for spec in &mut self.specs {
            if !spec.due(w1) {
                continue;
            }
            match spec {
                Spec::Time(s) => {
                    s.flush_adds(&mut env)?;
                    s.advance(w0, w1, &mut env)?;
                }
                Spec::Global(s) => {
                    s.flush_adds(&mut env)?;
                    s.advance(w0, w1, &mut env)?;
                }
                Spec::Session(s) => {
                    s.flush_adds(&mut env)?;
                    s.advance(w0, w1, &mut env)?;
                }
                Spec::Count(_) => {}
            }
        }
        env.end_step(&mut out.outputs);
        Ok(())
    }
}

impl Spec {
    fn discard_pending(&mut self) {
        match self {
            Spec::Time(s) => s.discard_pending(),
            Spec::Global(s) => s.discard_pending(),
            Spec::Count(s) => s.discard_pending(),
            Spec::Session(s) => s.discard_pending(),
        }
    }

    /// Whether moving the watermark to `w1` fires or updates anything.
    fn due(&self, w1: i64) -> bool {
        match self {
            Spec::Time(s) => s.due(w1),
            Spec::Global(s) => s.due(w1),
            Spec::Count(_) => false,
            Spec::Session(s) => s.due(w1),
        }
    }
}
