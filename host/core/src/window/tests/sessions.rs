//! Session windows: a brute-force model of the rules in `window/session.rs`
//! (every accepted row kept per session, everything recomputed, no
//! accumulators, timers, pending adds or batching), compared with the
//! engine on random streams and batch splits, across a checkpoint taken
//! while sessions are open, and with the other kinds beside them; plus a
//! definition-level check: a consumer applying `update` and `replaces`
//! ends with exactly the sessions of all accepted rows.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::fake::{self, aggregate_fields, process_fields, Fake};
use super::oracle::{
    self, canonical, cases, late_of, render, run_engine, stream, watermarks, Ev, Out,
};
use crate::manifest::{WindowFunction, WindowKind, WindowSpec};
use crate::window::{Emitted, OutputType, ShardWindows, WindowOutput};

/// A session of the model: its rows (arrival, time, value) and bad rows.
#[derive(Debug, Clone)]
struct MSession {
    id: u64,
    rows: Vec<(usize, i64, i64)>,
    errors: usize,
    shown: Option<(i64, i64)>,
    supersedes: Vec<(i64, i64)>,
    prior: Option<u32>,
}

impl MSession {
    fn start(&self) -> i64 {
        self.rows.iter().map(|r| r.1).min().unwrap_or(i64::MAX)
    }

    fn last(&self) -> i64 {
        self.rows.iter().map(|r| r.1).max().unwrap_or(i64::MIN)
    }

    fn change(&mut self) {
        if let Some(b) = self.shown.take() {
            self.supersedes.push(b);
        }
    }
}

struct SessionModel<'a> {
    spec: &'a WindowSpec,
    gap: i64,
    max: Option<i64>,
    lateness: i64,
    wm: i64,
    next_id: u64,
    sessions: BTreeMap<String, Vec<MSession>>,
    bad: Vec<(String, i64)>,
    outs: Vec<Out>,
    late: Vec<(String, i64, i64)>,
}

impl SessionModel<'_> {
    fn end(&self, s: &MSession) -> i64 {
        let end = s.last() + self.gap;
        self.max.map_or(end, |m| end.min(s.start() + m))
    }

    /// A key's sessions by (start, id), as indices.
    fn ordered(&self, key: &str) -> Vec<usize> {
        let list = self.sessions.get(key).map_or(&[][..], Vec::as_slice);
        let mut order: Vec<usize> = (0..list.len()).collect();
        order.sort_by_key(|&i| (list[i].start(), list[i].id));
        order
    }

    fn good(&mut self, arrival: usize, t: i64, v: i64, key: &str) {
        let order = self.ordered(key);
        let list = self.sessions.entry(key.to_owned()).or_default().clone();
        let reach: Vec<usize> = order
            .into_iter()
            .filter(|&i| list[i].start() <= t + self.gap && self.end(&list[i]) >= t)
            .collect();
        let max = self.max;
        let fits = |start: i64, last: i64| max.is_none_or(|m| last.max(t) - start.min(t) < m);
        let mut target = None;
        if let Some(&first) = reach.first() {
            let last = reach.iter().map(|&i| list[i].last()).max().unwrap_or(t);
            if fits(list[first].start(), last) {
                // Merge everything reached into the first.
                let mut merged = list[first].clone();
                merged.change();
                for &i in &reach[1..] {
                    let mut other = list[i].clone();
                    other.change();
                    merged.rows.extend(other.rows);
                    merged.errors += other.errors;
                    merged.supersedes.extend(other.supersedes);
                    merged.prior = merged.prior.max(other.prior);
                }
                let mut rest: Vec<MSession> = list
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| !reach.contains(i))
                    .map(|(_, s)| s.clone())
                    .collect();
                rest.push(merged);
                let id = list[first].id;
                self.sessions.insert(key.to_owned(), rest);
                target = Some(id);
            } else if let Some(&i) = reach
                .iter()
                .find(|&&i| fits(list[i].start(), list[i].last()))
            {
                target = Some(list[i].id);
            }
        }
        let id = target.unwrap_or_else(|| {
            let id = self.next_id;
            self.next_id += 1;
            self.sessions
                .entry(key.to_owned())
                .or_default()
                .push(MSession {
                    id,
                    rows: Vec::new(),
                    errors: 0,
                    shown: None,
                    supersedes: Vec::new(),
                    prior: None,
                });
            id
        });
        let s = self
            .sessions
            .get_mut(key)
            .and_then(|l| l.iter_mut().find(|s| s.id == id))
            .expect("the target session");
        s.change();
        s.rows.push((arrival, t, v));
    }

    fn advance(&mut self, w1: i64) {
        if w1 <= self.wm {
            return;
        }
        for (key, t) in std::mem::take(&mut self.bad) {
            let order = self.ordered(&key);
            let Some(list) = self.sessions.get(&key) else {
                continue;
            };
            let covering = order
                .into_iter()
                .find(|&i| list[i].start() <= t && t < self.end(&list[i]));
            if let Some(i) = covering {
                let s = &mut self.sessions.get_mut(&key).expect("key")[i];
                s.change();
                s.errors += 1;
            }
        }
        let keys: Vec<String> = self.sessions.keys().cloned().collect();
        for key in keys {
            let mut list = self.sessions.remove(&key).unwrap_or_default();
            for s in &mut list {
                let (start, end) = (s.start(), self.end(s));
                if s.shown.is_some() || end > w1 {
                    continue;
                }
                let update = s.prior.map_or(0, |p| p + 1);
                let mut replaces = std::mem::take(&mut s.supersedes);
                replaces.sort_unstable();
                replaces.dedup();
                replaces.retain(|&b| b != (start, end));
                s.shown = Some((start, end));
                s.prior = Some(update);
                let out = |kind: &'static str, data: String| Out {
                    kind,
                    window: self.spec.name.clone(),
                    key: key.clone(),
                    start,
                    end,
                    update,
                    data,
                    replaces: replaces.clone(),
                };
                if !s.rows.is_empty() {
                    let data = match self.spec.function {
                        WindowFunction::Aggregate(_) => {
                            let pairs: Vec<(i64, i64)> =
                                s.rows.iter().map(|r| (r.1, r.2)).collect();
                            render(&aggregate_fields(&pairs))
                        }
                        WindowFunction::Process(_) => {
                            let mut rows = s.rows.clone();
                            rows.sort_by_key(|r| (r.1, r.0));
                            let values: Vec<i64> = rows.iter().map(|r| r.2).collect();
                            render(&process_fields(&values))
                        }
                    };
                    self.outs.push(out("Windowed Analytic", data));
                }
                if s.errors > 0 {
                    let data = format!("data_conversion_errors={}", s.errors);
                    self.outs.push(out("Windowed Metric", data));
                }
            }
            let lateness = self.lateness;
            let gap = self.gap;
            let max = self.max;
            list.retain(|s| {
                let end = s.last() + gap;
                let end = max.map_or(end, |m| end.min(s.start() + m));
                s.shown.is_none() || end.saturating_add(lateness) >= w1
            });
            if !list.is_empty() {
                self.sessions.insert(key, list);
            }
        }
        self.wm = w1;
    }

    fn row(&mut self, arrival: usize, ev: &Ev, wm_before: i64) {
        self.advance(wm_before);
        if ev.time < self.wm.saturating_sub(self.lateness) {
            if !ev.bad {
                self.late.push((ev.key.clone(), ev.time, ev.v));
            }
            return;
        }
        if ev.bad {
            self.bad.push((ev.key.clone(), ev.time));
        } else {
            self.good(arrival, ev.time, ev.v, &ev.key);
        }
    }
}

fn shape(spec: &WindowSpec) -> (i64, Option<i64>) {
    match spec.kind {
        WindowKind::Session { gap, max_duration } => (
            gap.as_millis() as i64,
            max_duration.map(|m| m.as_millis() as i64),
        ),
        _ => panic!("not a session window"),
    }
}

/// What the engine must emit for `stream` with one session window.
fn expected(
    spec: &WindowSpec,
    lateness: i64,
    ooo: i64,
    stream: &[Ev],
) -> (Vec<Out>, Vec<(String, i64, i64)>) {
    let (gap, max) = shape(spec);
    let (wms, last) = watermarks(stream, ooo);
    let mut model = SessionModel {
        spec,
        gap,
        max,
        lateness,
        wm: i64::MIN,
        next_id: 0,
        sessions: BTreeMap::new(),
        bad: Vec::new(),
        outs: Vec::new(),
        late: Vec::new(),
    };
    for (arrival, ev) in stream.iter().enumerate() {
        model.row(arrival, ev, wms[arrival]);
    }
    model.advance(last);
    model.advance(i64::MAX);
    model.outs.sort();
    (model.outs, model.late)
}

/// The engine over `stream`, checkpointed after record `at` and restored
/// into a fresh shard (as a restart would), then flushed.
fn run_restoring(
    specs: &[WindowSpec],
    lateness: i64,
    ooo: i64,
    stream: &[Ev],
    at: usize,
) -> Emitted {
    let new = || ShardWindows::new(specs, fake::ms(lateness), fake::schema()).expect("specs");
    let mut shard = new();
    let mut fake = Fake::default();
    let (wms, last) = watermarks(stream, ooo);
    let mut out = Emitted::default();
    for (i, ev) in stream.iter().enumerate() {
        let after = wms.get(i + 1).copied().unwrap_or(last);
        let (rows, bad) = if ev.bad {
            (vec![], vec![(fake::bad_row(&ev.key, ev.time), wms[i])])
        } else {
            (vec![(fake::row(&ev.key, ev.time, ev.v), wms[i])], vec![])
        };
        shard
            .push(&rows, &bad, after, &mut fake, &mut out)
            .expect("push");
        if i == at {
            let saved = shard.snapshot().expect("snapshot");
            shard = new();
            shard.restore(&saved).expect("restore");
            let (running, counted) = shard.running_and_recounted_bytes();
            assert_eq!(running, counted);
        }
    }
    shard.flush(&mut fake, &mut out).expect("flush");
    out
}

/// A session by definition: start, end, its rows (time, value).
type Defined = (i64, i64, Vec<(i64, i64)>);

/// An output as (start, end, update, replaces, data).
type Shown = (i64, i64, u32, Vec<(i64, i64)>, String);

/// The sessions of `rows` (time, value) by definition: `[t, t + gap)`
/// merged where they overlap or touch.
fn definition(mut rows: Vec<(i64, i64)>, gap: i64) -> Vec<Defined> {
    rows.sort_unstable();
    let mut out: Vec<Defined> = Vec::new();
    for (t, v) in rows {
        match out.last_mut() {
            Some(last) if t <= last.1 => {
                last.1 = last.1.max(t + gap);
                last.2.push((t, v));
            }
            _ => out.push((t, t + gap, vec![(t, v)])),
        }
    }
    out
}

/// What a consumer ends with: per (key, start, end) the latest analytic
/// line, with the bounds each line replaces deleted.
fn table(outputs: &[WindowOutput]) -> BTreeMap<(String, i64, i64), String> {
    let mut table = BTreeMap::new();
    for o in outputs {
        if o.kind != OutputType::WindowedAnalytic {
            continue;
        }
        let key = o.key.to_string();
        for &(s, e) in &o.replaces {
            table.remove(&(key.clone(), s, e));
        }
        table.insert((key, o.start, o.end), render(&o.data));
    }
    table
}

fn check(
    specs: &[WindowSpec],
    evs: &[Ev],
    ooo: i64,
    lateness: i64,
    cuts: [&[bool]; 2],
    restore_at: usize,
) {
    // The session spec first; the others' outputs come from the oracle of
    // the other kinds (specs are independent of each other).
    let (mut want, late) = expected(&specs[0], lateness, ooo, evs);
    if specs.len() > 1 {
        want.extend(oracle::expected(&specs[1..], lateness, ooo, evs).outputs);
        want.sort();
    }
    let every_row = vec![true; evs.len()];
    for cuts in [cuts[0], cuts[1], &every_row[..]] {
        let mut fake = Fake::default();
        let (out, shard) = run_engine(specs, lateness, ooo, evs, cuts, &mut fake);
        assert_eq!(canonical(&out.outputs), want, "outputs (cuts {cuts:?})");
        assert_eq!(late_of(evs, &out.late), late, "late rows");
        assert!(out.poisoned.is_empty());
        assert_eq!(shard.open_panes(), 0, "flush leaves nothing open");
    }
    if !evs.is_empty() {
        let out = run_restoring(specs, lateness, ooo, evs, restore_at % evs.len());
        assert_eq!(canonical(&out.outputs), want, "restored at {restore_at}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn session_windows_match_the_oracle(
        (evs, ooo, lateness, a, b) in stream(50), gap in 1..12i64, at in 0..50usize,
    ) {
        check(&[fake::session("burst", gap, None, false)], &evs, ooo, lateness, [&a, &b], at);
    }

    #[test]
    fn session_windows_with_max_duration_match_the_oracle(
        (evs, ooo, lateness, a, b) in stream(50), gap in 1..8i64, extra in 1..20i64,
        at in 0..50usize,
    ) {
        let spec = fake::session("burst", gap, Some(gap + extra), false);
        check(&[spec], &evs, ooo, lateness, [&a, &b], at);
    }

    #[test]
    fn process_session_windows_match_the_oracle(
        (evs, ooo, lateness, a, b) in stream(50), gap in 1..12i64, max in prop::option::of(2..30i64),
        at in 0..50usize,
    ) {
        let max = max.map(|m| m.max(gap + 1));
        check(&[fake::session("burst-p", gap, max, true)], &evs, ooo, lateness, [&a, &b], at);
    }

    #[test]
    fn session_windows_beside_the_other_kinds_match_the_oracles(
        (evs, ooo, lateness, a, b) in stream(60), gap in 1..12i64, size in 2..16i64,
        every in 1..15i64, n in 1..5u64, at in 0..60usize,
    ) {
        let specs = [
            fake::session("burst", gap, None, false),
            fake::sliding("minute", size, (size / 3).max(1), false),
            fake::count("count", n, true),
            fake::global("global", every),
        ];
        check(&specs, &evs, ooo, lateness, [&a, &b], at);
    }

    /// Independent of the model: a consumer keeping the latest line per
    /// bounds and deleting what lines replace ends with exactly the
    /// sessions of every accepted good row, each with all its rows.
    #[test]
    fn a_consumer_applying_replaces_ends_with_exactly_the_final_sessions(
        (evs, ooo, lateness, a, _b) in stream(60), gap in 1..12i64,
    ) {
        let spec = [fake::session("burst", gap, None, false)];
        let mut fake = Fake::default();
        let (out, _) = run_engine(&spec, lateness, ooo, &evs, &a, &mut fake);
        let late: Vec<(String, i64, i64)> = late_of(&evs, &out.late);
        let mut want = BTreeMap::new();
        for key in ["a", "b", "c"] {
            let mut rows: Vec<(i64, i64)> = evs
                .iter()
                .filter(|e| e.key == key && !e.bad)
                .map(|e| (e.time, e.v))
                .collect();
            for l in late.iter().filter(|l| l.0 == key) {
                let i = rows.iter().position(|r| *r == (l.1, l.2)).expect("a late row");
                rows.remove(i);
            }
            for (start, end, pairs) in definition(rows, gap) {
                want.insert((key.to_owned(), start, end), render(&aggregate_fields(&pairs)));
            }
        }
        prop_assert_eq!(table(&out.outputs), want);
    }
}

fn ev(key: &str, time: i64, v: i64) -> Ev {
    Ev {
        key: key.into(),
        time,
        v,
        bad: false,
    }
}

fn shown(out: &Emitted) -> Vec<Shown> {
    canonical(&out.outputs)
        .into_iter()
        .map(|o| (o.start, o.end, o.update, o.replaces, o.data))
        .collect()
}

#[test]
fn a_late_row_bridging_two_fired_sessions_re_emits_the_merge_replacing_both() {
    // Gap 10, lateness 50: sessions [0, 15) and [22, 37) fire, then a late
    // row at 14 touches both: one session [0, 37), update 1.
    let evs = [
        ev("a", 0, 1),
        ev("a", 5, 2),
        ev("a", 22, 3),
        ev("a", 27, 4),
        ev("a", 100, 5),
    ];
    let spec = [fake::session("burst", 10, None, false)];
    let mut fake = Fake::default();
    let (mut out, _) = run_engine(&spec, 50, 0, &evs, &[true; 5], &mut fake);
    let fired = shown(&out);
    assert_eq!(
        fired.iter().map(|f| (f.0, f.1, f.2)).collect::<Vec<_>>(),
        vec![(0, 15, 0), (22, 37, 0), (100, 110, 0)]
    );
    let mut shard = ShardWindows::new(&spec, fake::ms(50), fake::schema()).expect("spec");
    out = Emitted::default();
    let rows: Vec<_> = evs[..4]
        .iter()
        .map(|e| (fake::row(&e.key, e.time, e.v), e.time))
        .collect();
    shard
        .push(&rows, &[], 60, &mut fake, &mut out)
        .expect("push");
    let late = [(fake::row("a", 14, 9), 60)];
    shard
        .push(&late, &[], 61, &mut fake, &mut out)
        .expect("push");
    let last = canonical(&out.outputs[out.outputs.len() - 1..])
        .pop()
        .map(|o| (o.start, o.end, o.update, o.replaces, o.data))
        .expect("the merged session");
    assert_eq!((last.0, last.1, last.2), (0, 37, 1));
    assert_eq!(last.3, vec![(0, 15), (22, 37)]);
    assert!(last.4.starts_with("count=5;sum=19"), "{}", last.4);
}

#[test]
fn max_duration_closes_a_session_that_never_goes_quiet() {
    // A row every 5 ms, gap 30, max 100: sessions cut at start + 100.
    let evs: Vec<Ev> = (0..50).map(|i| ev("a", i * 5, 1)).collect();
    let spec = [fake::session("burst", 30, Some(100), false)];
    let mut fake = Fake::default();
    let mut shard = ShardWindows::new(&spec, fake::ms(0), fake::schema()).expect("spec");
    let mut out = Emitted::default();
    let rows: Vec<_> = evs
        .iter()
        .map(|e| (fake::row(&e.key, e.time, e.v), e.time))
        .collect();
    shard
        .push(&rows, &[], 245, &mut fake, &mut out)
        .expect("push");
    let fired: Vec<(i64, i64)> = shown(&out).iter().map(|f| (f.0, f.1)).collect();
    assert_eq!(
        fired,
        vec![(0, 100), (100, 200)],
        "fired while the key stays busy"
    );
    shard.flush(&mut fake, &mut out).expect("flush");
    let all: Vec<(i64, i64)> = shown(&out).iter().map(|f| (f.0, f.1)).collect();
    assert_eq!(all, vec![(0, 100), (100, 200), (200, 275)]);
}

#[test]
fn a_bad_row_counts_in_the_session_covering_it_and_opens_none() {
    let spec = [fake::session("burst", 10, None, false)];
    let mut fake = Fake::default();
    let mut shard = ShardWindows::new(&spec, fake::ms(0), fake::schema()).expect("spec");
    let mut out = Emitted::default();
    let rows = [(fake::row("a", 0, 1), i64::MIN), (fake::row("a", 4, 1), 0)];
    let bad = [
        (fake::bad_row("a", 3), 0),
        (fake::bad_row("a", 50), 0),
        (fake::bad_row("b", 2), 0),
    ];
    shard
        .push(&rows, &bad, 4, &mut fake, &mut out)
        .expect("push");
    shard.flush(&mut fake, &mut out).expect("flush");
    let got: Vec<(&'static str, String, i64, i64, String)> = canonical(&out.outputs)
        .into_iter()
        .map(|o| (o.kind, o.key, o.start, o.end, o.data))
        .collect();
    assert_eq!(got.len(), 2, "{got:#?}");
    assert_eq!(
        (got[1].0, got[1].2, got[1].3, got[1].4.as_str()),
        ("Windowed Metric", 0, 14, "data_conversion_errors=1")
    );
}

#[test]
fn sessions_a_key_opens_are_bounded_by_the_state_ceilings() {
    // Each row far from the others opens a session; the per-key ceiling
    // allows 10 of them, the rest are dead letters and count as traps.
    let spec = [fake::session("burst", 1, None, false)];
    let mut fake = Fake::default();
    let mut shard = ShardWindows::new(&spec, fake::ms(1_000_000), fake::schema()).expect("spec");
    shard.set_state_ceilings(10 * 160 + 100, u64::MAX);
    let mut out = Emitted::default();
    let rows: Vec<_> = (0..50)
        .map(|i| (fake::row("a", i * 10, i), i64::MIN))
        .collect();
    shard
        .push(&rows, &[], i64::MIN, &mut fake, &mut out)
        .expect("push");
    assert_eq!(shard.open_panes(), 10);
    assert_eq!(out.poisoned.len(), 40);
    assert!(
        out.poisoned[0].error.contains("max_key_state"),
        "{}",
        out.poisoned[0].error
    );
    assert_eq!(fake.breaches, 40);
}
