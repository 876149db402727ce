//! Tumbling and sliding windows over event time, built from panes.

use std::sync::Arc;

use std::collections::BTreeMap;

use super::budget::{Admit, Buffer};
use super::geometry::Geometry;
use super::{
    finish_all, process_all, recount_panes, take_due, Buffered, Env, HasPanes, KeyId, OutputType,
    Pane, PendingAdds, ProcessItem, Result, StateBudget,
};
use crate::manifest::WindowFunction;
use crate::parse::ParsedRow;

/// One tumbling or sliding `[[windows]]` entry over all keys of a shard.
pub(super) struct TimeWindows {
    pub(super) name: Arc<str>,
    function: WindowFunction,
    geo: Geometry,
    /// By key id.
    pub(super) keys: Vec<Option<TimeKey>>,
    /// When each key next needs a visit (a window end or a pane expiry),
    /// so a watermark step touches only the keys it fires. A key is listed
    /// under the time in its `timer`; other entries for it are stale.
    pub(super) timers: BTreeMap<i64, Vec<KeyId>>,
    pending: PendingAdds,
    /// Fired windows (key, start) that late rows changed since the last
    /// watermark step: emitted again at the next one.
    pub(super) dirty: Vec<(KeyId, i64)>,
}

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub(super) struct TimeKey {
    /// By pane index.
    panes: BTreeMap<i64, Pane>,
    /// Emissions so far of fired windows that late rows may still update,
    /// by window start.
    emitted: BTreeMap<i64, u32>,
    timer: Option<i64>,
}

impl HasPanes for TimeKey {
    fn panes(&mut self) -> &mut BTreeMap<i64, Pane> {
        &mut self.panes
    }

    fn panes_ref(&self) -> &BTreeMap<i64, Pane> {
        &self.panes
    }
}

/// A window to emit at this step.
struct Fire {
    key: KeyId,
    start: i64,
    end: i64,
    update: u32,
}

fn slot<T: Default>(states: &mut Vec<Option<T>>, key: KeyId) -> &mut T {
    let i = key as usize;
    if states.len() <= i {
        states.resize_with(i + 1, || None);
    }
    states[i].get_or_insert_with(T::default)
}

impl TimeWindows {
    pub fn new(name: &str, function: &WindowFunction, size: i64, slide: i64) -> Self {
        TimeWindows {
            name: name.into(),
            function: function.clone(),
            geo: Geometry::new(size, slide),
            keys: Vec::new(),
            timers: BTreeMap::new(),
            pending: PendingAdds::default(),
            dirty: Vec::new(),
        }
    }

    /// The pane of `key` holding time `t`, created (and the key's timer set)
    /// if new; marks the fired windows holding it dirty if `t` is late.
    fn pane(&mut self, key: KeyId, t: i64, wm: i64, lateness: i64) -> &mut Pane {
        let geo = self.geo;
        let q = geo.pane_of(t);
        if t < wm {
            self.dirty
                .extend(geo.starts_ending_in(q, i64::MIN, wm).map(|s| (key, s)));
        }
        let state = slot(&mut self.keys, key);
        if !state.panes.contains_key(&q) {
            let at = geo
                .first_end_after(q, wm)
                .unwrap_or_else(|| geo.expiry(q, lateness));
            if state.timer.is_none_or(|t| at < t) {
                state.timer = Some(at);
                self.timers.entry(at).or_default().push(key);
            }
        }
        state.panes.entry(q).or_default()
    }

    /// `at`: the row's arrival number, the watermark and the lateness. A
    /// process-window function's rows are buffered in their pane, under
    /// the state ceilings (`admit`).
    pub fn add_row(
        &mut self,
        key: KeyId,
        i: usize,
        row: &ParsedRow,
        (seq, wm, lateness): (u64, i64, i64),
        admit: &mut Admit<'_>,
    ) {
        if matches!(self.function, WindowFunction::Aggregate(_)) {
            self.pane(key, row.time, wm, lateness);
            self.pending.push(key, self.geo.pane_of(row.time), i);
        } else {
            let name = Arc::clone(&self.name);
            let pane = self.pane(key, row.time, wm, lateness);
            let buf = Buffer {
                events: &mut pane.events,
                bytes: &mut pane.bytes,
                refused: &mut pane.refused,
            };
            admit.buffer(&name, "window", key, buf, seq, row);
        }
    }

    pub fn add_bad(&mut self, key: KeyId, time: i64, wm: i64, lateness: i64) {
        let pane = self.pane(key, time, wm, lateness);
        pane.errors += 1;
        pane.min_error = Some(pane.min_error.map_or(time, |m| m.min(time)));
    }

    pub fn discard_pending(&mut self) {
        self.pending.clear();
    }

    pub fn due(&self, w1: i64) -> bool {
        !self.dirty.is_empty() || self.timers.first_key_value().is_some_and(|(&t, _)| t <= w1)
    }

    pub fn flush_adds(&mut self, env: &mut Env<'_, '_>) -> Result<()> {
        match &self.function {
            WindowFunction::Aggregate(f) => self.pending.flush(&self.name, f, &mut self.keys, env),
            WindowFunction::Process(_) => Ok(()),
        }
    }

    /// The watermark moves from `w0` to `w1`: emits the windows late rows
    /// changed and those ending in `(w0, w1]`, then frees what can no
    /// longer be updated.
    pub fn advance(&mut self, w0: i64, w1: i64, env: &mut Env<'_, '_>) -> Result<()> {
        let geo = self.geo;
        let lateness = env.lateness;
        let due = take_due(&mut self.timers, w1, &mut self.keys, |state| {
            &mut state.timer
        });

        let mut windows: Vec<(KeyId, i64)> = std::mem::take(&mut self.dirty);
        windows.sort_unstable();
        windows.dedup();
        // Few windows end in (w0, w1] (one per slide passed): look each up
        // per key; after a long jump, walk the key's panes instead.
        let ending = geo.starts_ending_between(w0, w1, 4);
        for &key in &due {
            let Some(state) = self.keys.get(key as usize).and_then(Option::as_ref) else {
                continue;
            };
            match &ending {
                Some(starts) => {
                    for &s in starts {
                        let (first, last) = geo.panes_of_window(s);
                        if state.panes.range(first..last).next().is_some() {
                            windows.push((key, s));
                        }
                    }
                }
                None => geo.starts_of_panes(state.panes.keys().copied(), w0, w1, |s| {
                    windows.push((key, s));
                }),
            }
        }

        let mut fires = Vec::with_capacity(windows.len());
        for (key, start) in windows {
            let Some(state) = self.keys.get_mut(key as usize).and_then(Option::as_mut) else {
                continue;
            };
            let (first, last) = geo.panes_of_window(start);
            if !state
                .panes
                .range(first..last)
                .any(|(_, p)| p.has_rows() || p.errors > 0 || p.refused.is_some())
            {
                continue; // only rows whose add was dead-lettered
            }
            let end = geo.end_of(start);
            // Only a window a late row can still reach needs its count of
            // emissions kept (with no lateness: none).
            let update = if end.saturating_add(lateness) > w1 {
                let emitted = state.emitted.entry(start).or_insert(0);
                *emitted += 1;
                *emitted - 1
            } else {
                state.emitted.remove(&start).unwrap_or(0)
            };
            fires.push(Fire {
                key,
                start,
                end,
                update,
            });
        }
        self.emit(&fires, env)?;

        for key in due {
            self.expire(key, w1, lateness, env.budget);
        }
        Ok(())
    }

    fn emit(&self, fires: &[Fire], env: &mut Env<'_, '_>) -> Result<()> {
        let at = fires.iter().map(|f| f.end).max().unwrap_or(0);
        let panes = |f: &Fire| {
            let (first, last) = self.geo.panes_of_window(f.start);
            self.keys
                .get(f.key as usize)
                .and_then(Option::as_ref)
                .into_iter()
                .flat_map(move |s| s.panes.range(first..last).map(|(_, p)| p))
        };
        // Fires with rows, and their results.
        let mut with_rows = Vec::with_capacity(fires.len());
        // Fires holding a pane whose rows were refused: dead letters.
        let mut refused = Vec::new();
        // A process-window function's inputs, kept for the dead letter of a
        // window whose call fails.
        let mut items = Vec::new();
        let results = match &self.function {
            WindowFunction::Aggregate(function) => {
                // Every window's pane accumulators, borrowed, one list after
                // the other: `accs[spans[i]]` are window i's.
                let mut accs: Vec<&[u8]> = Vec::with_capacity(fires.len() * 4);
                let mut spans = Vec::with_capacity(fires.len());
                for (i, f) in fires.iter().enumerate() {
                    let from = accs.len();
                    accs.extend(panes(f).filter_map(|p| p.acc.as_deref()));
                    if accs.len() > from {
                        with_rows.push(i);
                        spans.push(from..accs.len());
                    }
                }
                let windows: Vec<&[&[u8]]> = spans.into_iter().map(|r| &accs[r]).collect();
                finish_all(env, &self.name, function, &windows, at)?
            }
            WindowFunction::Process(function) => {
                items.reserve(fires.len());
                for (i, f) in fires.iter().enumerate() {
                    if let Some(why) = panes(f).find_map(|p| p.refused.as_deref()) {
                        refused.push((i, why));
                        continue;
                    }
                    let rows: Vec<&Buffered> = panes(f).flat_map(|p| &p.events).collect();
                    if !rows.is_empty() {
                        with_rows.push(i);
                        items.push(ProcessItem {
                            key: f.key,
                            start: f.start,
                            end: f.end,
                            rows,
                        });
                    }
                }
                process_all(env, &self.name, function, &mut items)?
            }
        };
        for (j, (&i, result)) in with_rows.iter().zip(results).enumerate() {
            let f = &fires[i];
            match result {
                Ok(data) => env.output(
                    OutputType::WindowedAnalytic,
                    &self.name,
                    f.key,
                    f.start,
                    f.end,
                    data,
                    f.update,
                ),
                Err(error) => {
                    env.poison_window(&self.name, f.key, (f.start, f.end), items.get(j), error)
                }
            }
        }
        for (i, why) in refused {
            let f = &fires[i];
            // Its rows were dead-lettered when they were refused.
            env.poison_refused(&self.name, f.key, (f.start, f.end), "window", why);
        }
        for f in fires {
            let errors: u64 = panes(f).map(|p| p.errors).sum();
            if errors > 0 {
                env.metric(
                    OutputType::WindowedMetric,
                    &self.name,
                    f.key,
                    (f.start, f.end),
                    errors,
                    f.update,
                );
            }
        }
        Ok(())
    }

    /// Frees the panes and emission counts of `key` that no late row can
    /// reach any more, and sets its next timer.
    fn expire(&mut self, key: KeyId, wm: i64, lateness: i64, budget: &mut StateBudget) {
        let geo = self.geo;
        let Some(state) = self.keys.get_mut(key as usize).and_then(Option::as_mut) else {
            return;
        };
        // Both expire oldest first (a later pane's last window ends later).
        while let Some(pane) = state.panes.first_entry() {
            if geo.expiry(*pane.key(), lateness) > wm {
                break;
            }
            budget.release(pane.remove().held());
        }
        while let Some(window) = state.emitted.first_entry() {
            if geo.end_of(*window.key()).saturating_add(lateness) > wm {
                break;
            }
            window.remove();
        }
        // The earliest of: the first window end after `wm` of the first
        // pane that has one (later panes' are later), and the expiry of
        // the first pane whose windows all fired.
        let mut next: Option<i64> = None;
        for &q in state.panes.keys() {
            match geo.first_end_after(q, wm) {
                Some(end) => {
                    next = Some(next.map_or(end, |n| n.min(end)));
                    break;
                }
                None if next.is_none() => next = Some(geo.expiry(q, lateness)),
                None => {}
            }
        }
        match next {
            Some(at) => {
                state.timer = Some(at);
                self.timers.entry(at).or_default().push(key);
            }
            // No pane left means no window a late row could still reach.
            None => self.keys[key as usize] = None,
        }
    }

    pub fn open_panes(&self) -> usize {
        self.keys.iter().flatten().map(|s| s.panes.len()).sum()
    }

    /// Bytes held by every pane (their row counts recomputed).
    pub fn recount(&mut self) -> u64 {
        recount_panes(
            self.keys
                .iter_mut()
                .flatten()
                .flat_map(|s| s.panes.values_mut()),
        )
    }

    /// (key, pane, reason) of every pane whose rows were refused.
    pub fn refused(&self) -> Vec<(KeyId, i64, String)> {
        let mut out = Vec::new();
        for (key, state) in self.keys.iter().enumerate() {
            for (&q, pane) in state.iter().flat_map(|s| &s.panes) {
                if let Some(why) = &pane.refused {
                    out.push((KeyId::try_from(key).unwrap_or(KeyId::MAX), q, why.clone()));
                }
            }
        }
        out
    }

    /// Marks a restored pane refused; false if there is no such pane.
    pub fn set_refused(&mut self, key: KeyId, q: i64, why: String) -> bool {
        let pane = self
            .keys
            .get_mut(key as usize)
            .and_then(Option::as_mut)
            .and_then(|s| s.panes.get_mut(&q));
        match pane {
            Some(pane) => {
                pane.refused = Some(why);
                true
            }
            None => false,
        }
    }
}
