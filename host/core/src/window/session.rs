//! Session windows over event time: per key, bursts of rows separated by
//! quiet periods of at least `gap` (Flink's event-time session windows).
//!
//! # Rules
//! - A good row at `t` opens `[t, t + gap)`; it merges with every session
//!   of its key whose `[start, end)` overlaps or touches that (`start <=
//!   t + gap && end >= t`). A session's `start` is its first row's time,
//!   its `end` its last row's time + `gap`. Bad rows never open, extend or
//!   merge sessions.
//! - `max_duration`: a session's rows stay within `max_duration` of its
//!   first row, and its end is at most `start + max_duration`, so a key
//!   that never goes quiet still gets results. A row that would make a
//!   merge span `max_duration` or more joins the first (by start) of the
//!   sessions it reaches that it fits in alone, or opens its own session;
//!   such sessions are not merged with each other.
//! - A session fires when the watermark reaches its end. A fired session
//!   is kept while a row within the allowed lateness can still reach it
//!   (`end + allowed_lateness >= watermark`). A late row that changes
//!   fired sessions (a row inside one, a longer end, a merge) makes the
//!   session they become fire again, at the next watermark step, with
//!   `update` = 1 + the largest update among the fired sessions it
//!   absorbed and `replaces` = the bounds of those emissions that differ
//!   from its own: a consumer keeping, per bounds, the highest update and
//!   deleting what a line replaces ends with exactly the final sessions.
//! - A bad row counts in the session of its key covering its time
//!   (`start <= t < end`) when the watermark next moves, if there is one:
//!   decided at the step, not on arrival, since good and bad rows of one
//!   watermark interval reach the engine in separate lists.
//!
//! # State
//! Per key, its sessions ordered by start; each has a pane (accumulator,
//! buffered rows for process-window functions, error count) keyed by the
//! session's id, so the pending adds of a step are grouped as for time
//! windows. Merging moves the absorbed sessions' accumulators beside the
//! survivor's (finished together, like a sliding window's panes: no
//! guest call at row time), and redirects their pending adds. Every
//! session costs [`SESSION_BYTES`] under the state ceilings besides its
//! accumulators and rows, so how many sessions a key's data opens is
//! bounded by `max_key_state` per key and the shard's share.

use std::collections::BTreeMap;
use std::sync::Arc;

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use super::budget::{Admit, Buffer};
use super::{
    finish_all, min_opt, process_all, recount_panes, take_due, Buffered, Env, HasPanes, KeyId,
    OutputType, Pane, PendingAdds, ProcessItem, Result, StateBudget,
};
use crate::manifest::WindowFunction;
use crate::parse::ParsedRow;

/// What one session costs under the state ceilings besides its
/// accumulators and rows: its bounds, bookkeeping and pane.
pub(super) const SESSION_BYTES: u64 = 160;

/// What a bad row waiting for the next watermark step costs.
pub(super) const BAD_BYTES: u64 = 16;

/// One session `[[windows]]` entry over all keys of a shard.
pub(super) struct SessionWindows {
    pub(super) name: Arc<str>,
    function: WindowFunction,
    gap: i64,
    max: Option<i64>,
    /// By key id.
    pub(super) keys: Vec<Option<SessionKey>>,
    /// When each key next needs a visit (a session end, an expiry); see
    /// `TimeWindows`.
    pub(super) timers: BTreeMap<i64, Vec<KeyId>>,
    /// Bad rows (key, time) waiting for the next watermark step.
    pub(super) bad: Vec<(KeyId, i64)>,
    /// Id of the next session opened (ids are unique within the spec).
    pub(super) next_id: i64,
    pending: PendingAdds,
    /// Sessions merged since the last flush of pending adds: (key, absorbed
    /// id) → the id it merged into.
    redirect: FxHashMap<(KeyId, i64), i64>,
    /// Scratch: indices of the sessions a row reaches.
    reach: Vec<usize>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct SessionKey {
    /// By session id.
    panes: BTreeMap<i64, Pane>,
    /// Ordered by start.
    sessions: Vec<Session>,
    timer: Option<i64>,
}

impl HasPanes for SessionKey {
    fn panes(&mut self) -> &mut BTreeMap<i64, Pane> {
        &mut self.panes
    }

    fn panes_ref(&self) -> &BTreeMap<i64, Pane> {
        &self.panes
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Session {
    id: i64,
    /// Times of its first and last good row.
    start: i64,
    last: i64,
    /// Accumulators of sessions it absorbed, finished with its own.
    more: Vec<Vec<u8>>,
    /// Bounds of its last emission, while nothing changed since; `None`:
    /// it fires once the watermark reaches its end.
    shown: Option<(i64, i64)>,
    /// Bounds of earlier emissions it supersedes (its own, absorbed ones').
    supersedes: Vec<(i64, i64)>,
    /// The largest update number among those emissions.
    prior: Option<u32>,
}

impl Session {
    /// Its content changes: its last emission (if any) is superseded.
    fn change(&mut self) {
        if let Some(bounds) = self.shown.take() {
            self.supersedes.push(bounds);
        }
    }

    fn absorb(&mut self, mut other: Session) {
        self.change();
        other.change();
        self.start = self.start.min(other.start);
        self.last = self.last.max(other.last);
        self.supersedes.append(&mut other.supersedes);
        self.prior = self.prior.max(other.prior);
        self.more.append(&mut other.more);
    }

    fn end(&self, gap: i64, max: Option<i64>) -> i64 {
        let end = self.last.saturating_add(gap);
        match max {
            Some(max) => end.min(self.start.saturating_add(max)),
            None => end,
        }
    }

    /// Accumulator bytes it holds beside its pane's.
    fn more_bytes(&self) -> u64 {
        self.more.iter().map(|a| a.len() as u64).sum()
    }
}

/// A session to emit at this step.
struct Fire {
    key: KeyId,
    id: i64,
    start: i64,
    end: i64,
    update: u32,
    replaces: Vec<(i64, i64)>,
}

fn slot<T: Default>(states: &mut Vec<Option<T>>, key: KeyId) -> &mut T {
    let i = key as usize;
    if states.len() <= i {
        states.resize_with(i + 1, || None);
    }
    states[i].get_or_insert_with(T::default)
}

/// Arms `key`'s timer at `at` if that is earlier than the one it has.
fn arm(timers: &mut BTreeMap<i64, Vec<KeyId>>, timer: &mut Option<i64>, key: KeyId, at: i64) {
    if timer.is_none_or(|t| at < t) {
        *timer = Some(at);
        timers.entry(at).or_default().push(key);
    }
}

impl SessionWindows {
    /// `gap` and `max` in ms, positive.
    pub fn new(name: &str, function: &WindowFunction, gap: i64, max: Option<i64>) -> Self {
        SessionWindows {
            name: name.into(),
            function: function.clone(),
            gap,
            max,
            keys: Vec::new(),
            timers: BTreeMap::new(),
            bad: Vec::new(),
            next_id: 0,
            pending: PendingAdds::default(),
            redirect: FxHashMap::default(),
            reach: Vec::new(),
        }
    }

    /// Indices (ascending) into `sessions` of those whose bounds overlap or
    /// touch `[lo, hi)`, into `reach`.
    fn reaching(&self, sessions: &[Session], lo: i64, hi: i64, reach: &mut Vec<usize>) {
        reach.clear();
        let upto = sessions.partition_point(|s| s.start <= hi);
        for j in (0..upto).rev() {
            let s = &sessions[j];
            let end = s.end(self.gap, self.max);
            if end >= lo {
                reach.push(j);
            }
            match self.max {
                // Sessions never touch each other: earlier ones end
                // before this one starts.
                None if end < lo => break,
                // Ends are at most `start + max`.
                Some(max) if s.start < lo.saturating_sub(max) => break,
                _ => {}
            }
        }
        reach.reverse();
    }

    /// Applies a good row: joins, extends or merges its key's sessions, or
    /// opens one (under the state ceilings: refused, the row is a dead
    /// letter). `seq`: the row's arrival number.
    pub fn add_row(
        &mut self,
        key: KeyId,
        i: usize,
        row: &ParsedRow,
        seq: u64,
        admit: &mut Admit<'_>,
    ) {
        let t = row.time;
        let (gap, max) = (self.gap, self.max);
        let mut reach = std::mem::take(&mut self.reach);
        let state = slot(&mut self.keys, key);
        // `self.reaching` borrows self immutably: state is moved out meanwhile.
        let mut taken = std::mem::take(state);
        self.reaching(&taken.sessions, t, t.saturating_add(gap), &mut reach);
        let target = self.place(key, row, &mut taken, &reach, admit);
        self.reach = reach;
        let Some(j) = target else {
            // Refused: nothing changed but maybe an empty state.
            if !taken.sessions.is_empty() {
                self.keys[key as usize] = Some(taken);
            } else {
                self.keys[key as usize] = None;
            }
            return;
        };
        let session = &mut taken.sessions[j];
        session.change();
        session.last = session.last.max(t);
        let (id, mut k) = (session.id, j);
        if t < session.start {
            // Kept ordered by (start, id): joining one of several sessions
            // a row reaches can move its start before the others'.
            session.start = t;
            let moved = taken.sessions.remove(j);
            k = taken
                .sessions
                .partition_point(|s| (s.start, s.id) < (moved.start, moved.id));
            taken.sessions.insert(k, moved);
        }
        let end = taken.sessions[k].end(gap, max);
        arm(&mut self.timers, &mut taken.timer, key, end);
        match &self.function {
            WindowFunction::Aggregate(_) => self.pending.push(key, id, i),
            WindowFunction::Process(_) => {
                if let Some(pane) = taken.panes.get_mut(&id) {
                    let buf = Buffer {
                        events: &mut pane.events,
                        bytes: &mut pane.bytes,
                        refused: &mut pane.refused,
                    };
                    admit.buffer(&self.name, "session", key, buf, seq, row);
                }
            }
        }
        self.keys[key as usize] = Some(taken);
    }

    /// Which session of `state` the row at `t` goes to (merging those it
    /// reaches when it may), by index; `None` if a new one was refused.
    fn place(
        &mut self,
        key: KeyId,
        row: &ParsedRow,
        state: &mut SessionKey,
        reach: &[usize],
        admit: &mut Admit<'_>,
    ) -> Option<usize> {
        let t = row.time;
        let max = self.max;
        let fits = move |start: i64, last: i64| {
            max.is_none_or(|max| last.max(t).saturating_sub(start.min(t)) < max)
        };
        if let Some(&first) = reach.first() {
            let sessions = &state.sessions;
            let start = sessions[first].start;
            let last = reach.iter().map(|&j| sessions[j].last).max().unwrap_or(t);
            if fits(start, last) {
                self.merge(key, state, reach, &mut *admit.budget);
                return Some(first);
            }
            if let Some(&j) = reach
                .iter()
                .find(|&&j| fits(sessions[j].start, sessions[j].last))
            {
                return Some(j);
            }
        }
        // A new session, under the ceilings.
        let open = state.sessions.len() as u64 + 1;
        if let Some(why) = admit.budget.refuse_session(&self.name, open, SESSION_BYTES) {
            admit.refuse(&self.name, key, row, why);
            return None;
        }
        admit.budget.charge(SESSION_BYTES);
        let id = self.next_id;
        self.next_id += 1;
        let at = state.sessions.partition_point(|s| s.start <= t);
        state.sessions.insert(
            at,
            Session {
                id,
                start: t,
                last: t,
                more: Vec::new(),
                shown: None,
                supersedes: Vec::new(),
                prior: None,
            },
        );
        state.panes.insert(id, Pane::default());
        Some(at)
    }

    /// Merges the sessions at `reach` (ascending) into the first.
    fn merge(
        &mut self,
        key: KeyId,
        state: &mut SessionKey,
        reach: &[usize],
        budget: &mut StateBudget,
    ) {
        let Some((&first, rest)) = reach.split_first() else {
            return;
        };
        let into = state.sessions[first].id;
        for &j in rest.iter().rev() {
            let absorbed = state.sessions.remove(j);
            budget.release(SESSION_BYTES);
            if let Some(pane) = state.panes.remove(&absorbed.id) {
                let survivor = state.panes.entry(into).or_default();
                match (survivor.acc.is_some(), pane.acc) {
                    (false, acc) => survivor.acc = acc,
                    (true, Some(acc)) => state.sessions[first].more.push(acc),
                    (true, None) => {}
                }
                survivor.events.extend(pane.events);
                survivor.bytes += pane.bytes;
                survivor.errors += pane.errors;
                survivor.min_time = min_opt(survivor.min_time, pane.min_time);
                survivor.min_error = min_opt(survivor.min_error, pane.min_error);
                if survivor.refused.is_none() {
                    survivor.refused = pane.refused;
                }
            }
            self.redirect.insert((key, absorbed.id), into);
            state.sessions[first].absorb(absorbed);
        }
    }

    /// A bad row with its key and time: counted at the next step.
    pub fn add_bad(&mut self, key: KeyId, time: i64, budget: &mut StateBudget) -> bool {
        if !budget.fits_shard(BAD_BYTES) {
            return false;
        }
        budget.charge(BAD_BYTES);
        self.bad.push((key, time));
        true
    }

    pub fn discard_pending(&mut self) {
        self.pending.clear();
        self.redirect.clear();
    }

    pub fn due(&self, w1: i64) -> bool {
        !self.bad.is_empty() || self.timers.first_key_value().is_some_and(|(&t, _)| t <= w1)
    }

    /// One `aggregate-add` for the rows pending, each group going to the
    /// session its session merged into.
    pub fn flush_adds(&mut self, env: &mut Env<'_, '_>) -> Result<()> {
        let WindowFunction::Aggregate(function) = &self.function else {
            return Ok(());
        };
        if !self.redirect.is_empty() {
            let old = std::mem::take(&mut self.pending);
            for &(g, row) in &old.rows {
                let group = &old.groups[g as usize];
                let mut id = group.pane;
                while let Some(&next) = self.redirect.get(&(group.key, id)) {
                    id = next;
                }
                self.pending.push(group.key, id, row);
            }
            self.redirect.clear();
        }
        self.pending
            .flush(&self.name, function, &mut self.keys, env)
    }

    /// Counts the waiting bad rows in the sessions covering them.
    fn count_bad(&mut self, budget: &mut StateBudget) {
        let (gap, max) = (self.gap, self.max);
        let bad = std::mem::take(&mut self.bad);
        budget.release(BAD_BYTES * bad.len() as u64);
        let mut reach = std::mem::take(&mut self.reach);
        for &(key, t) in &bad {
            let Some(mut state) = self.keys.get_mut(key as usize).and_then(Option::take) else {
                continue;
            };
            // Those reaching `[t, t]` that hold `t` (not ending at it).
            self.reaching(&state.sessions, t, t, &mut reach);
            let covering = reach.iter().copied().find(|&j| {
                let s = &state.sessions[j];
                s.start <= t && t < s.end(gap, max)
            });
            if let Some(j) = covering {
                let session = &mut state.sessions[j];
                session.change();
                let (id, end) = (session.id, session.end(gap, max));
                if let Some(pane) = state.panes.get_mut(&id) {
                    pane.errors += 1;
                    pane.min_error = min_opt(pane.min_error, Some(t));
                }
                arm(&mut self.timers, &mut state.timer, key, end);
            }
            self.keys[key as usize] = Some(state);
        }
        self.reach = reach;
    }

    /// The watermark moves from `w0` to `w1`: counts the waiting bad rows,
    /// fires the sessions whose end it reached that changed since their
    /// last emission (or never had one), then frees what no row within the
    /// lateness can reach any more.
    pub fn advance(&mut self, _w0: i64, w1: i64, env: &mut Env<'_, '_>) -> Result<()> {
        let (gap, max, lateness) = (self.gap, self.max, env.lateness);
        self.count_bad(env.budget);
        let due = take_due(&mut self.timers, w1, &mut self.keys, |state| {
            &mut state.timer
        });
        let mut fires = Vec::new();
        for &key in &due {
            let Some(state) = self.keys.get_mut(key as usize).and_then(Option::as_mut) else {
                continue;
            };
            for s in &mut state.sessions {
                let end = s.end(gap, max);
                if s.shown.is_some() || end > w1 {
                    continue;
                }
                let update = s.prior.map_or(0, |p| p.saturating_add(1));
                let mut replaces = std::mem::take(&mut s.supersedes);
                replaces.sort_unstable();
                replaces.dedup();
                replaces.retain(|&b| b != (s.start, end));
                s.shown = Some((s.start, end));
                s.prior = Some(update);
                fires.push(Fire {
                    key,
                    id: s.id,
                    start: s.start,
                    end,
                    update,
                    replaces,
                });
            }
        }
        self.emit(fires, env)?;
        for key in due {
            self.expire(key, w1, lateness, env.budget);
        }
        Ok(())
    }

    fn emit(&self, fires: Vec<Fire>, env: &mut Env<'_, '_>) -> Result<()> {
        if fires.is_empty() {
            return Ok(());
        }
        let at = fires.iter().map(|f| f.end).max().unwrap_or(0);
        let state = |f: &Fire| self.keys.get(f.key as usize).and_then(Option::as_ref);
        let pane = |f: &Fire| state(f).and_then(|s| s.panes.get(&f.id));
        let more = |f: &Fire| {
            state(f)
                .and_then(|s| s.sessions.iter().find(|s| s.id == f.id))
                .map_or(&[][..], |s| &s.more[..])
        };
        let mut with_rows = Vec::with_capacity(fires.len());
        let mut refused = Vec::new();
        // A process-window function's inputs, kept for the dead letter of a
        // session whose call fails.
        let mut items = Vec::new();
        let results = match &self.function {
            WindowFunction::Aggregate(function) => {
                let mut accs: Vec<&[u8]> = Vec::with_capacity(fires.len());
                let mut spans = Vec::with_capacity(fires.len());
                for (i, f) in fires.iter().enumerate() {
                    let from = accs.len();
                    accs.extend(pane(f).and_then(|p| p.acc.as_deref()));
                    accs.extend(more(f).iter().map(Vec::as_slice));
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
                    let Some(p) = pane(f) else { continue };
                    if let Some(why) = p.refused.as_deref() {
                        refused.push((i, why));
                        continue;
                    }
                    if !p.events.is_empty() {
                        with_rows.push(i);
                        items.push(ProcessItem {
                            key: f.key,
                            start: f.start,
                            end: f.end,
                            rows: p.events.iter().collect::<Vec<&Buffered>>(),
                        });
                    }
                }
                process_all(env, &self.name, function, &mut items)?
            }
        };
        for (j, (&i, result)) in with_rows.iter().zip(results).enumerate() {
            let f = &fires[i];
            match result {
                Ok(data) => {
                    env.output(
                        OutputType::WindowedAnalytic,
                        &self.name,
                        f.key,
                        f.start,
                        f.end,
                        data,
                        f.update,
                    );
                    env.replacing(&f.replaces);
                }
                Err(error) => {
                    env.poison_window(&self.name, f.key, (f.start, f.end), items.get(j), error)
                }
            }
        }
        for (i, why) in refused {
            let f = &fires[i];
            // Its rows were dead-lettered when they were refused.
            env.poison_refused(&self.name, f.key, (f.start, f.end), "session", why);
        }
        for f in &fires {
            let errors = pane(f).map_or(0, |p| p.errors);
            if errors > 0 {
                env.metric(
                    OutputType::WindowedMetric,
                    &self.name,
                    f.key,
                    (f.start, f.end),
                    errors,
                    f.update,
                );
                env.replacing(&f.replaces);
            }
        }
        Ok(())
    }

    /// Frees the sessions of `key` no row within the lateness can reach
    /// (emitted, `end + lateness < wm`), and sets its next timer.
    fn expire(&mut self, key: KeyId, wm: i64, lateness: i64, budget: &mut StateBudget) {
        let (gap, max) = (self.gap, self.max);
        let Some(state) = self.keys.get_mut(key as usize).and_then(Option::as_mut) else {
            return;
        };
        let panes = &mut state.panes;
        state.sessions.retain(|s| {
            let end = s.end(gap, max);
            let keep = s.shown.is_none() || end.saturating_add(lateness) >= wm;
            if !keep {
                let held = panes.remove(&s.id).map_or(0, |p| p.held());
                budget.release(held + s.more_bytes() + SESSION_BYTES);
            }
            keep
        });
        let next = state
            .sessions
            .iter()
            .map(|s| {
                let end = s.end(gap, max);
                match s.shown {
                    None => end,
                    Some(_) => end.saturating_add(lateness).saturating_add(1),
                }
            })
            .min();
        match next {
            Some(at) => {
                state.timer = Some(at);
                self.timers.entry(at).or_default().push(key);
            }
            None => self.keys[key as usize] = None,
        }
    }

    /// End of input: every session not emitted since it changed fires;
    /// nothing is held afterwards.
    pub fn finish_input(&mut self, w0: i64, env: &mut Env<'_, '_>) -> Result<()> {
        self.advance(w0, i64::MAX, env)?;
        env.budget.release(self.recount());
        self.keys.clear();
        self.timers.clear();
        Ok(())
    }

    /// Sessions held (open or kept for late rows).
    pub fn open_panes(&self) -> usize {
        self.keys.iter().flatten().map(|s| s.sessions.len()).sum()
    }

    /// Bytes held: panes, absorbed accumulators, sessions, waiting bad rows.
    pub fn recount(&mut self) -> u64 {
        let sessions: u64 = (self.keys.iter().flatten())
            .flat_map(|k| &k.sessions)
            .map(|s| s.more_bytes() + SESSION_BYTES)
            .sum();
        let panes = recount_panes(
            self.keys
                .iter_mut()
                .flatten()
                .flat_map(|s| s.panes.values_mut()),
        );
        sessions + panes + BAD_BYTES * self.bad.len() as u64
    }

    /// (key, session id, reason) of every session whose rows were refused.
    pub fn refused(&self) -> Vec<(KeyId, i64, String)> {
        let mut out = Vec::new();
        for (key, state) in self.keys.iter().enumerate() {
            for (&id, pane) in state.iter().flat_map(|s| &s.panes) {
                if let Some(why) = &pane.refused {
                    out.push((KeyId::try_from(key).unwrap_or(KeyId::MAX), id, why.clone()));
                }
            }
        }
        out
    }

    /// Marks a restored session refused; false if there is no such session.
    pub fn set_refused(&mut self, key: KeyId, id: i64, why: String) -> bool {
        let pane = self
            .keys
            .get_mut(key as usize)
            .and_then(Option::as_mut)
            .and_then(|s| s.panes.get_mut(&id));
        match pane {
            Some(pane) => {
                pane.refused = Some(why);
                true
            }
            None => false,
        }
    }
}
