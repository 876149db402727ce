//! Global (running) windows: one per key, emitted every `emit_every`.

use std::sync::Arc;

use std::collections::BTreeMap;

use super::geometry::{clamp, next_multiple_after};
use super::{
    finish_all, isolate, min_opt, recount_panes, take_due, Env, Error, HasPanes, KeyId, OutputType,
    Pane, PendingAdds, Result,
};
use crate::parse::ParsedRow;

/// One global `[[windows]]` entry over all keys of a shard.
pub(super) struct GlobalWindows {
    pub(super) name: Arc<str>,
    function: String,
    every: i64,
    pub(super) keys: Vec<Option<GlobalKey>>,
    /// When each key next has something to emit; see `TimeWindows`.
    pub(super) timers: BTreeMap<i64, Vec<KeyId>>,
    pending: PendingAdds,
}

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub(super) struct GlobalKey {
    /// Accumulator over the rows already emitted.
    running: Option<Vec<u8>>,
    /// Earliest row time / bad-row time emitted so far.
    first_time: Option<i64>,
    first_error: Option<i64>,
    /// Bad rows emitted so far.
    errors: u64,
    /// Latest time of any accepted row, good or bad (end of the last
    /// output at the end of input).
    latest: Option<i64>,
    /// Rows not yet emitted, by period (`time div emit_every`): kept apart
    /// so an emission at `B` covers exactly the rows with time `< B`.
    panes: BTreeMap<i64, Pane>,
    timer: Option<i64>,
}

impl HasPanes for GlobalKey {
    fn panes(&mut self) -> &mut BTreeMap<i64, Pane> {
        &mut self.panes
    }

    fn panes_ref(&self) -> &BTreeMap<i64, Pane> {
        &self.panes
    }
}

/// One emission of one key.
struct Emission {
    key: KeyId,
    start: Option<i64>,
    end: i64,
    /// `[running] + panes` up to `end`, when new rows are covered.
    accs: Option<Vec<Vec<u8>>>,
    /// (first error time, cumulative count), when new errors are covered.
    errors: Option<(i64, u64)>,
}

/// End of period `p`: when its rows are emitted (unless late).
fn period_end(p: i64, every: i64) -> i64 {
    clamp((i128::from(p) + 1) * i128::from(every))
}

impl GlobalWindows {
    pub fn new(name: &str, function: &str, every: i64) -> Self {
        GlobalWindows {
            name: name.into(),
            function: function.to_owned(),
            every,
            keys: Vec::new(),
            timers: BTreeMap::new(),
            pending: PendingAdds::default(),
        }
    }

    fn period_end(&self, p: i64) -> i64 {
        period_end(p, self.every)
    }

    fn pane(&mut self, key: KeyId, t: i64, wm: i64) -> &mut Pane {
        let p = t.div_euclid(self.every);
        // Emitted at the end of its period, or — for a late row whose period
        // the watermark has passed — at the next multiple.
        let at = self.period_end(p).max(next_multiple_after(wm, self.every));
        let i = key as usize;
        if self.keys.len() <= i {
            self.keys.resize_with(i + 1, || None);
        }
        let state = self.keys[i].get_or_insert_with(GlobalKey::default);
        state.latest = Some(state.latest.map_or(t, |l| l.max(t)));
        if !state.panes.contains_key(&p) && state.timer.is_none_or(|t| at < t) {
            state.timer = Some(at);
            self.timers.entry(at).or_default().push(key);
        }
        state.panes.entry(p).or_default()
    }

    pub fn add_row(&mut self, key: KeyId, i: usize, row: &ParsedRow, wm: i64) {
        self.pane(key, row.time, wm);
        self.pending.push(key, row.time.div_euclid(self.every), i);
    }

    pub fn add_bad(&mut self, key: KeyId, time: i64, wm: i64) {
        let pane = self.pane(key, time, wm);
        pane.errors += 1;
        pane.min_error = min_opt(pane.min_error, Some(time));
    }

    pub fn discard_pending(&mut self) {
        self.pending.clear();
    }

    pub fn due(&self, w1: i64) -> bool {
        self.timers.first_key_value().is_some_and(|(&t, _)| t <= w1)
    }

    pub fn flush_adds(&mut self, env: &mut Env<'_, '_>) -> Result<()> {
        self.pending
            .flush(&self.name, &self.function, &mut self.keys, env)
    }

    /// The watermark moves from `w0` to `w1`: every multiple `B` of
    /// `emit_every` in `(w0, w1]` emits the keys with rows before `B` not
    /// yet emitted.
    pub fn advance(&mut self, w0: i64, w1: i64, env: &mut Env<'_, '_>) -> Result<()> {
        let every = self.every;
        let next = next_multiple_after(w0, every);
        let cut = w1.div_euclid(self.every); // periods < cut have ended by w1
        let due = take_due(&mut self.timers, w1, &mut self.keys, |state| {
            &mut state.timer
        });

        let mut emissions = Vec::new();
        // Per due key: everything its running accumulator becomes.
        let mut merges: Vec<(KeyId, Vec<Vec<u8>>, i64)> = Vec::new();
        for &key in &due {
            let Some(state) = self.keys.get_mut(key as usize).and_then(Option::as_mut) else {
                continue;
            };
            let later = state.panes.split_off(&cut);
            let ended = std::mem::replace(&mut state.panes, later);
            // Their accumulators move into the running one (below).
            env.budget.release(ended.values().map(Pane::held).sum());
            let mut accs: Vec<Vec<u8>> = state.running.iter().cloned().collect();
            let had_running = !accs.is_empty();
            let mut last_end = next;
            let mut group: Vec<&Pane> = Vec::new();
            let mut panes = ended.iter().peekable();
            while let Some((&p, pane)) = panes.next() {
                let end = period_end(p, every).max(next);
                group.push(pane);
                if panes
                    .peek()
                    .is_some_and(|(&q, _)| period_end(q, every).max(next) == end)
                {
                    continue;
                }
                // All panes emitted at `end` are in `group`.
                let new_rows = group.iter().any(|p| p.acc.is_some());
                let new_errors: u64 = group.iter().map(|p| p.errors).sum();
                accs.extend(group.iter().filter_map(|p| p.acc.clone()));
                for p in &group {
                    state.first_time = min_opt(state.first_time, p.min_time);
                    state.first_error = min_opt(state.first_error, p.min_error);
                }
                state.errors += new_errors;
                emissions.push(Emission {
                    key,
                    start: state.first_time,
                    end,
                    accs: new_rows.then(|| accs.clone()),
                    errors: (new_errors > 0)
                        .then(|| (state.first_error.unwrap_or(end), state.errors)),
                });
                last_end = end;
                group.clear();
            }
            if accs.len() == 1 && !had_running {
                state.running = accs.pop();
                env.budget
                    .charge(state.running.as_ref().map_or(0, |a| a.len() as u64));
            } else if accs.len() > 1 {
                merges.push((key, accs, last_end));
            }
            if let Some((&p, _)) = state.panes.first_key_value() {
                let at = period_end(p, every);
                state.timer = Some(at);
                self.timers.entry(at).or_default().push(key);
            }
        }
        self.emit(emissions, env)?;
        self.merge(merges, env)
    }

    /// One `aggregate-merge` for every key whose running accumulator grows.
    /// A failed merge dead-letters the key's emitted periods (their rows are
    /// lost to the running window) and keeps its old accumulator.
    fn merge(
        &mut self,
        merges: Vec<(KeyId, Vec<Vec<u8>>, i64)>,
        env: &mut Env<'_, '_>,
    ) -> Result<()> {
        if merges.is_empty() {
            return Ok(());
        }
        let at = merges.iter().map(|m| m.2).max().unwrap_or(0);
        let borrowed: Vec<Vec<&[u8]>> = merges
            .iter()
            .map(|m| m.1.iter().map(Vec::as_slice).collect())
            .collect();
        let lists: Vec<&[&[u8]]> = borrowed.iter().map(Vec::as_slice).collect();
        let calls = &mut *env.calls;
        let function = &self.function;
        let results = isolate(lists.len(), &mut |range| {
            calls.aggregate_merge(function, &lists[range], at)
        })
        .map_err(|source| Error::Call {
            window: self.name.to_string(),
            source,
        })?;
        for ((key, _, end), result) in merges.into_iter().zip(results) {
            let Some(state) = self.keys.get_mut(key as usize).and_then(Option::as_mut) else {
                continue;
            };
            let old = state.running.as_ref().map_or(0, Vec::len);
            match result.and_then(|acc| env.admit_accumulator(old, acc)) {
                Ok(acc) => {
                    env.budget.replace(old as u64, acc.len() as u64);
                    state.running = Some(acc);
                }
                Err(error) => {
                    let start = state.first_time.unwrap_or(end);
                    env.poison_window(&self.name, key, (start, end), None, error);
                }
            }
        }
        Ok(())
    }

    fn emit(&self, emissions: Vec<Emission>, env: &mut Env<'_, '_>) -> Result<()> {
        let at = emissions.iter().map(|e| e.end).max().unwrap_or(0);
        let mut with_rows = Vec::new();
        let mut windows = Vec::new();
        for (i, e) in emissions.iter().enumerate() {
            if let Some((first, errors)) = e.errors {
                env.metric(
                    OutputType::GlobalMetric,
                    &self.name,
                    e.key,
                    (first, e.end),
                    errors,
                    0,
                );
            }
            if let Some(accs) = &e.accs {
                with_rows.push(i);
                windows.push(accs.iter().map(Vec::as_slice).collect::<Vec<&[u8]>>());
            }
        }
        let windows: Vec<&[&[u8]]> = windows.iter().map(Vec::as_slice).collect();
        let results = finish_all(env, &self.name, &self.function, &windows, at)?;
        for (&i, result) in with_rows.iter().zip(results) {
            let e = &emissions[i];
            let start = e.start.unwrap_or(e.end);
            match result {
                Ok(data) => env.output(
                    OutputType::GlobalAnalytic,
                    &self.name,
                    e.key,
                    start,
                    e.end,
                    data,
                    0,
                ),
                Err(error) => env.poison_window(&self.name, e.key, (start, e.end), None, error),
            }
        }
        Ok(())
    }

    /// End of input: one last output per key with rows not yet emitted,
    /// covering all its rows, ending at the next multiple above its latest.
    pub fn finish_input(&mut self, env: &mut Env<'_, '_>) -> Result<()> {
        let mut emissions = Vec::new();
        for (key, state) in self.keys.iter_mut().enumerate() {
            let Some(mut state) = state.take() else {
                continue;
            };
            env.budget.release(
                state.running.as_ref().map_or(0, |a| a.len() as u64)
                    + state.panes.values().map(Pane::held).sum::<u64>(),
            );
            if state.panes.is_empty() {
                continue;
            }
            let end = next_multiple_after(state.latest.unwrap_or(0), self.every);
            let mut accs: Vec<Vec<u8>> = state.running.take().into_iter().collect();
            let panes = std::mem::take(&mut state.panes);
            let new_rows = panes.values().any(|p| p.acc.is_some());
            let new_errors: u64 = panes.values().map(|p| p.errors).sum();
            for p in panes.into_values() {
                state.first_time = min_opt(state.first_time, p.min_time);
                state.first_error = min_opt(state.first_error, p.min_error);
                accs.extend(p.acc);
            }
            let errors = state.errors + new_errors;
            emissions.push(Emission {
                key: KeyId::try_from(key).unwrap_or(KeyId::MAX),
                start: state.first_time,
                end,
                accs: new_rows.then_some(accs),
                errors: (new_errors > 0).then(|| (state.first_error.unwrap_or(end), errors)),
            });
        }
        self.timers.clear();
        self.emit(emissions, env)
    }

    /// Bytes held by running accumulators and panes.
    pub fn recount(&mut self) -> u64 {
        let running: u64 = (self.keys.iter().flatten())
            .filter_map(|s| s.running.as_ref())
            .map(|a| a.len() as u64)
            .sum();
        running
            + recount_panes(
                self.keys
                    .iter_mut()
                    .flatten()
                    .flat_map(|s| s.panes.values_mut()),
            )
    }

    pub fn open_panes(&self) -> usize {
        self.keys
            .iter()
            .flatten()
            .map(|s| s.panes.len() + usize::from(s.running.is_some()))
            .sum()
    }
}
