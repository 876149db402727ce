//! Count windows: every `n` rows of a key, in arrival order.

use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::budget::Buffer;
use super::{
    finish_all, isolate, min_opt, process_all, row_bytes, Batch, Buffered, Env, Error, KeyId,
    OutputType, PoisonedInput, ProcessItem, Result,
};
use crate::data::{AddGroup, SandboxError};
use crate::manifest::WindowFunction;

/// One count `[[windows]]` entry over all keys of a shard.
pub(super) struct CountWindows {
    pub(super) name: Arc<str>,
    function: WindowFunction,
    n: u64,
    pub(super) keys: FxHashMap<KeyId, CountKey>,
    /// Rows of the current push: (key, row index, arrival number).
    pending: Vec<(KeyId, usize, u64)>,
}

/// The open window of one key.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub(super) struct CountKey {
    acc: Option<Vec<u8>>,
    events: Vec<Buffered>,
    /// Rows counted, including dead-lettered ones: windows are cut by
    /// arrival count, so a poisoned row does not shift later windows.
    count: u64,
    min_time: Option<i64>,
    max_time: Option<i64>,
    /// Why the open window was dead-lettered, if it was.
    poisoned: Option<String>,
    /// Estimated bytes of `events` (recomputed on restore).
    #[serde(skip)]
    bytes: u64,
}

impl CountKey {
    /// Bytes it holds against the state ceilings.
    fn held(&self) -> u64 {
        self.acc.as_ref().map_or(0, |a| a.len() as u64) + self.bytes
    }
}

/// A window that filled up, to finish.
struct Full {
    key: KeyId,
    start: i64,
    end: i64,
    acc: Option<Vec<u8>>,
    events: Vec<Buffered>,
}

/// Rows of one key going into one window within one `aggregate-add`.
struct Chunk {
    key: KeyId,
    /// Range in the sorted pending rows.
    from: usize,
    to: usize,
    /// Adds to the key's open window (else starts a new one).
    continues: bool,
}

impl CountWindows {
    pub fn new(name: &str, function: &WindowFunction, n: u64) -> Self {
        CountWindows {
            name: name.into(),
            function: function.clone(),
            n,
            keys: FxHashMap::default(),
            pending: Vec::new(),
        }
    }

    pub fn discard_pending(&mut self) {
        self.pending.clear();
    }

    pub fn add_row(&mut self, key: KeyId, i: usize, seq: u64) {
        self.pending.push((key, i, seq));
    }

    /// Applies the push's rows: one `aggregate-add` for all keys (a key's
    /// rows split where its windows fill), then one call finishing every
    /// window that filled.
    pub fn apply(&mut self, env: &mut Env<'_, '_>) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let mut pending = std::mem::take(&mut self.pending);
        pending.sort_by_key(|&(key, _, _)| key); // stable: arrival order per key
        let mut chunks = Vec::new();
        let mut from = 0;
        while from < pending.len() {
            let key = pending[from].0;
            let count = self.keys.get(&key).map_or(0, |k| k.count);
            let mut room = self.n - count;
            let mut continues = count > 0;
            let mut i = from;
            while i < pending.len() && pending[i].0 == key {
                let take = usize::try_from(room).unwrap_or(usize::MAX);
                let to = pending[i..]
                    .iter()
                    .take(take)
                    .take_while(|r| r.0 == key)
                    .count()
                    + i;
                chunks.push(Chunk {
                    key,
                    from: i,
                    to,
                    continues,
                });
                i = to;
                room = self.n;
                continues = false;
            }
            from = i;
        }

        let results = match &self.function {
            WindowFunction::Aggregate(function) => {
                Some(self.add(function, &pending, &chunks, env)?)
            }
            WindowFunction::Process(_) => None,
        };
        let mut full = Vec::new();
        let mut results = results.map(Vec::into_iter);
        let all_rows = env.rows;
        for chunk in &chunks {
            let rows = &pending[chunk.from..chunk.to];
            let state = self.keys.entry(chunk.key).or_default();
            let old = state.acc.as_ref().map_or(0, Vec::len);
            let result = match (&mut results, &state.poisoned) {
                (None, _) => None,
                (Some(_), Some(why)) if chunk.continues => Some(Err(format!(
                    "its count window was dead-lettered earlier: {why}"
                ))),
                // The same ceiling as time and global windows' accumulators.
                (Some(results), _) => results
                    .next()
                    .map(|r| r.and_then(|acc| env.admit_accumulator(old, acc))),
            };
            match result {
                None => {
                    // Rows buffered under the state ceilings: a window
                    // over one is dead-lettered, and marked.
                    let mut admit = env.admit();
                    for &(_, i, seq) in rows {
                        let row = &all_rows[i].0;
                        state.min_time = min_opt(state.min_time, Some(row.time));
                        state.max_time = Some(state.max_time.map_or(row.time, |m| m.max(row.time)));
                        let buf = Buffer {
                            events: &mut state.events,
                            bytes: &mut state.bytes,
                            refused: &mut state.poisoned,
                        };
                        admit.buffer(&self.name, "count window", chunk.key, buf, seq, row);
                    }
                }
                Some(Ok(acc)) => {
                    for &(_, i, _) in rows {
                        let time = all_rows[i].0.time;
                        state.min_time = min_opt(state.min_time, Some(time));
                        state.max_time = Some(state.max_time.map_or(time, |m| m.max(time)));
                    }
                    env.budget.replace(old as u64, acc.len() as u64);
                    state.acc = Some(acc);
                }
                Some(Err(error)) => {
                    let failed = rows
                        .iter()
                        .map(|&(_, i, _)| all_rows[i].0.clone())
                        .collect();
                    env.poison(
                        &self.name,
                        chunk.key,
                        PoisonedInput::Rows(failed),
                        error.clone(),
                    );
                    state.poisoned.get_or_insert(error);
                }
            }
            state.count += rows.len() as u64;
            if state.count >= self.n {
                let done = std::mem::take(state);
                // Fired below (or dead-lettered): no longer held.
                env.budget.release(done.held());
                if done.poisoned.is_none() {
                    if let (Some(start), Some(max)) = (done.min_time, done.max_time) {
                        full.push(Full {
                            key: chunk.key,
                            start,
                            end: max.saturating_add(1),
                            acc: done.acc,
                            events: done.events,
                        });
                    }
                }
                self.keys.remove(&chunk.key);
            }
        }
        pending.clear();
        self.pending = pending;
        self.fire(full, env)
    }

    /// One `aggregate-add` over the chunks, isolating failing ones.
    fn add(
        &self,
        function: &str,
        pending: &[(KeyId, usize, u64)],
        chunks: &[Chunk],
        env: &mut Env<'_, '_>,
    ) -> Result<Vec<Result<Vec<u8>, String>>> {
        // Rows of an already dead-lettered window are not sent.
        let sent: Vec<&Chunk> = chunks
            .iter()
            .filter(|c| {
                !(c.continues && self.keys.get(&c.key).is_some_and(|k| k.poisoned.is_some()))
            })
            .collect();
        let (schema, reads, rows) = (env.schema, env.reads, env.rows);
        let calls = &mut *env.calls;
        let mut batch_error = None;
        let results = isolate(sent.len(), &mut |range| {
            let mut batch = Batch::new(schema, reads);
            let mut adds = Vec::with_capacity(range.len());
            for c in &sent[range] {
                let state = if c.continues {
                    self.keys.get(&c.key).and_then(|k| k.acc.as_deref())
                } else {
                    None
                };
                let built = batch.group(Vec::new(), None).and_then(|()| {
                    pending[c.from..c.to]
                        .iter()
                        .try_for_each(|&(_, i, _)| batch.row(&rows[i].0))
                });
                if let Err(e) = built {
                    batch_error = Some(e);
                    return Err(SandboxError::Engine("batch".into()));
                }
                adds.push(AddGroup {
                    rows: u32::try_from(c.to - c.from).unwrap_or(u32::MAX),
                    state,
                });
            }
            let (_, events) = batch.finish();
            calls.aggregate_add(function, &adds, &events)
        });
        if let Some(source) = batch_error {
            return Err(Error::Batch {
                window: self.name.to_string(),
                source,
            });
        }
        results.map_err(|source| Error::Call {
            window: self.name.to_string(),
            source,
        })
    }

    fn fire(&self, full: Vec<Full>, env: &mut Env<'_, '_>) -> Result<()> {
        if full.is_empty() {
            return Ok(());
        }
        let at = full.iter().map(|f| f.end).max().unwrap_or(0);
        let mut with_rows = Vec::with_capacity(full.len());
        // A process-window function's inputs, kept for the dead letter of a
        // window whose call fails.
        let mut items = Vec::new();
        let results = match &self.function {
            WindowFunction::Aggregate(function) => {
                // One accumulator per window.
                let mut accs: Vec<&[u8]> = Vec::with_capacity(full.len());
                for (i, f) in full.iter().enumerate() {
                    if let Some(acc) = &f.acc {
                        with_rows.push(i);
                        accs.push(acc);
                    }
                }
                let windows: Vec<&[&[u8]]> = accs.chunks(1).collect();
                finish_all(env, &self.name, function, &windows, at)?
            }
            WindowFunction::Process(function) => {
                items.reserve(full.len());
                for (i, f) in full.iter().enumerate() {
                    with_rows.push(i);
                    items.push(ProcessItem {
                        key: f.key,
                        start: f.start,
                        end: f.end,
                        rows: f.events.iter().collect(),
                    });
                }
                process_all(env, &self.name, function, &mut items)?
            }
        };
        for (j, (&i, result)) in with_rows.iter().zip(results).enumerate() {
            let f = &full[i];
            match result {
                Ok(data) => env.output(
                    OutputType::WindowedAnalytic,
                    &self.name,
                    f.key,
                    f.start,
                    f.end,
                    data,
                    0,
                ),
                Err(error) => {
                    env.poison_window(&self.name, f.key, (f.start, f.end), items.get(j), error)
                }
            }
        }
        Ok(())
    }

    /// End of input: every partial window fires.
    pub fn finish_input(&mut self, env: &mut Env<'_, '_>) -> Result<()> {
        let mut keys: Vec<(KeyId, CountKey)> = self.keys.drain().collect();
        keys.sort_unstable_by_key(|(key, _)| *key);
        env.budget.release(keys.iter().map(|(_, k)| k.held()).sum());
        let full = keys
            .into_iter()
            .filter(|(_, k)| k.poisoned.is_none())
            .filter_map(|(key, k)| {
                Some(Full {
                    key,
                    start: k.min_time?,
                    end: k.max_time?.saturating_add(1),
                    acc: k.acc,
                    events: k.events,
                })
            })
            .collect();
        self.fire(full, env)
    }

    pub fn open_panes(&self) -> usize {
        self.keys.len()
    }

    /// Bytes held by open windows (their row counts recomputed).
    pub fn recount(&mut self) -> u64 {
        self.keys
            .values_mut()
            .map(|k| {
                k.bytes = k.events.iter().map(|b| row_bytes(&b.row)).sum();
                k.held()
            })
            .sum()
    }
}
