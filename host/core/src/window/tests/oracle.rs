//! A brute-force model of the window semantics, written from the rules in
//! `window/mod.rs` without the engine's panes, timers or batching: it keeps
//! every accepted row and recomputes each window from them. The property
//! tests compare the engine with it on random streams and batch splits.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::fake::{self, aggregate_fields, process_fields, Fake};
use crate::data::{DataField, Value};
use crate::manifest::{WindowFunction, WindowKind, WindowSpec};
use crate::window::{Emitted, ShardWindows, WindowOutput};

/// One record of a test stream, in arrival order.
#[derive(Debug, Clone, PartialEq)]
pub struct Ev {
    pub key: String,
    pub time: i64,
    pub v: i64,
    /// A row that failed to parse (its key and time did).
    pub bad: bool,
}

/// An output in a comparable form.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Out {
    pub kind: &'static str,
    pub window: String,
    pub key: String,
    pub start: i64,
    pub end: i64,
    pub update: u32,
    pub data: String,
    /// Bounds this output supersedes (sessions).
    pub replaces: Vec<(i64, i64)>,
}

pub fn render(data: &[DataField]) -> String {
    data.iter()
        .map(|f| match &f.value {
            Value::Int(v) => format!("{}={v}", f.name),
            Value::Text(t) => format!("{}={t}", f.name),
            other => format!("{}={other:?}", f.name),
        })
        .collect::<Vec<_>>()
        .join(";")
}

pub fn canonical(outputs: &[WindowOutput]) -> Vec<Out> {
    let mut outs: Vec<Out> = outputs
        .iter()
        .map(|o| Out {
            kind: o.kind.as_str(),
            window: o.window.to_string(),
            key: o.key.to_string(),
            start: o.start,
            end: o.end,
            update: o.update,
            data: render(&o.data),
            replaces: o.replaces.clone(),
        })
        .collect();
    outs.sort();
    outs
}

/// The watermark before each record (`max time seen − ooo`, `i64::MIN`
/// before any) and the one after the last.
pub fn watermarks(stream: &[Ev], ooo: i64) -> (Vec<i64>, i64) {
    let mut max: Option<i64> = None;
    let mut before = Vec::with_capacity(stream.len());
    for ev in stream {
        before.push(max.map_or(i64::MIN, |m| m - ooo));
        max = Some(max.map_or(ev.time, |m| m.max(ev.time)));
    }
    (before, max.map_or(i64::MIN, |m| m - ooo))
}

/// Runs the engine over `stream` cut into batches after the records whose
/// `cuts` flag is set, then flushes. Returns everything emitted.
pub fn run_engine(
    specs: &[WindowSpec],
    lateness: i64,
    ooo: i64,
    stream: &[Ev],
    cuts: &[bool],
    fake: &mut Fake,
) -> (Emitted, ShardWindows) {
    let mut shard =
        ShardWindows::new(specs, fake::ms(lateness), fake::schema()).expect("valid specs");
    let (wms, last) = watermarks(stream, ooo);
    let mut out = Emitted::default();
    let mut rows = Vec::new();
    let mut bad = Vec::new();
    let mut pushed = 0;
    for (i, ev) in stream.iter().enumerate() {
        if ev.bad {
            bad.push((fake::bad_row(&ev.key, ev.time), wms[i]));
        } else {
            rows.push((fake::row(&ev.key, ev.time, ev.v), wms[i]));
        }
        let end = i + 1 == stream.len();
        if end || cuts.get(i).copied().unwrap_or(false) {
            let after = if end { last } else { wms[i + 1] };
            let before = out.late.len();
            shard
                .push(&rows, &bad, after, fake, &mut out)
                .expect("push");
            // Late rows index their push's rows; made stream-wide here.
            for late in &mut out.late[before..] {
                *late += pushed;
            }
            pushed += rows.len();
            let (running, counted) = shard.running_and_recounted_bytes();
            assert_eq!(running, counted, "the running state figure drifted");
            rows.clear();
            bad.clear();
        }
    }
    shard.flush(fake, &mut out).expect("flush");
    (out, shard)
}

/// What the oracle expects: the outputs, and the rows dropped as late.
pub struct Expected {
    pub outputs: Vec<Out>,
    pub late: Vec<(String, i64, i64)>,
}

struct Accepted {
    arrival: usize,
    ev: Ev,
}

struct Model<'a> {
    specs: &'a [WindowSpec],
    lateness: i64,
    wm: i64,
    rows: Vec<Accepted>,
    /// Emissions so far per (spec, key, window start).
    emitted: BTreeMap<(usize, String, i64), u32>,
    dirty: BTreeSet<(usize, String, i64)>,
    /// Arrivals emitted by each global spec.
    covered: BTreeMap<usize, BTreeSet<usize>>,
    outs: Vec<Out>,
    late: Vec<(String, i64, i64)>,
}

/// Starts of the `size`/`slide` windows holding `t`, found by walking back
/// from the last aligned start.
fn starts_holding(t: i64, size: i64, slide: i64) -> Vec<i64> {
    let mut s = t - t.rem_euclid(slide);
    let mut out = Vec::new();
    while s + size > t {
        out.push(s);
        s -= slide;
    }
    out
}

fn shape(kind: &WindowKind) -> Option<(i64, i64)> {
    let ms = |d: std::time::Duration| d.as_millis() as i64;
    match *kind {
        WindowKind::Tumbling { size } => Some((ms(size), ms(size))),
        WindowKind::Sliding { size, slide } => Some((ms(size), ms(slide))),
        _ => None,
    }
}

fn next_multiple_above(t: i64, every: i64) -> i64 {
    t - t.rem_euclid(every) + every
}

impl Model<'_> {
    fn data(&self, spec: &WindowSpec, rows: &[&Accepted]) -> String {
        match spec.function {
            WindowFunction::Aggregate(_) => {
                let pairs: Vec<(i64, i64)> = rows.iter().map(|r| (r.ev.time, r.ev.v)).collect();
                render(&aggregate_fields(&pairs))
            }
            WindowFunction::Process(_) => {
                let mut sorted = rows.to_vec();
                sorted.sort_by_key(|r| (r.ev.time, r.arrival));
                let values: Vec<i64> = sorted.iter().map(|r| r.ev.v).collect();
                render(&process_fields(&values))
            }
        }
    }

    fn out(
        &mut self,
        kind: &'static str,
        i: usize,
        key: &str,
        span: (i64, i64),
        update: u32,
        data: String,
    ) {
        let out = self.make(kind, i, key, span, update, data);
        self.outs.push(out);
    }

    fn make(
        &self,
        kind: &'static str,
        i: usize,
        key: &str,
        span: (i64, i64),
        update: u32,
        data: String,
    ) -> Out {
        Out {
            kind,
            window: self.specs[i].name.clone(),
            key: key.to_owned(),
            start: span.0,
            end: span.1,
            update,
            data,
            replaces: Vec::new(),
        }
    }

    /// Emits window `start` of `key` with everything accepted so far.
    fn emit_window(&mut self, i: usize, key: &str, start: i64, size: i64) {
        let end = start + size;
        let inside: Vec<&Accepted> = self
            .rows
            .iter()
            .filter(|r| r.ev.key == key && r.ev.time >= start && r.ev.time < end)
            .collect();
        let good: Vec<&Accepted> = inside.iter().copied().filter(|r| !r.ev.bad).collect();
        let errors = inside.len() - good.len();
        let data = (!good.is_empty()).then(|| self.data(&self.specs[i], &good));
        let counter = self.emitted.entry((i, key.to_owned(), start)).or_insert(0);
        let update = *counter;
        *counter += 1;
        if let Some(data) = data {
            self.out("Windowed Analytic", i, key, (start, end), update, data);
        }
        if errors > 0 {
            let data = format!("data_conversion_errors={errors}");
            self.out("Windowed Metric", i, key, (start, end), update, data);
        }
    }

    fn advance(&mut self, w1: i64) {
        if w1 <= self.wm {
            return;
        }
        let w0 = self.wm;
        for (i, spec) in {
            let specs: &[WindowSpec] = self.specs;
            specs
        }
        .iter()
        .enumerate()
        {
            if let Some((size, slide)) = shape(&spec.kind) {
                let dirty: Vec<_> = self.dirty.iter().filter(|d| d.0 == i).cloned().collect();
                for (_, key, start) in dirty {
                    self.emit_window(i, &key, start, size);
                }
                let mut firing = BTreeSet::new();
                for r in &self.rows {
                    for s in starts_holding(r.ev.time, size, slide) {
                        if s + size > w0 && s + size <= w1 {
                            firing.insert((r.ev.key.clone(), s));
                        }
                    }
                }
                for (key, s) in firing {
                    self.emit_window(i, &key, s, size);
                }
            }
        }
        self.dirty.clear();
        for (i, spec) in {
            let specs: &[WindowSpec] = self.specs;
            specs
        }
        .iter()
        .enumerate()
        {
            let WindowKind::Global { emit_every } = spec.kind else {
                continue;
            };
            let every = emit_every.as_millis() as i64;
            let first = if w0 == i64::MIN {
                i64::MIN
            } else {
                next_multiple_above(w0, every)
            };
            let covered = self.covered.entry(i).or_default().clone();
            let mut bs: BTreeSet<i64> = BTreeSet::new();
            for r in &self.rows {
                if !covered.contains(&r.arrival) {
                    let b = next_multiple_above(r.ev.time, every).max(first);
                    if b <= w1 {
                        bs.insert(b);
                    }
                }
            }
            for b in bs {
                let keys: BTreeSet<String> = self.rows.iter().map(|r| r.ev.key.clone()).collect();
                for key in keys {
                    let covered = self.covered.entry(i).or_default().clone();
                    let before: Vec<&Accepted> = self
                        .rows
                        .iter()
                        .filter(|r| r.ev.key == key && r.ev.time < b)
                        .collect();
                    let new: Vec<usize> = before
                        .iter()
                        .filter(|r| !covered.contains(&r.arrival))
                        .map(|r| r.arrival)
                        .collect();
                    let new_good = before.iter().any(|r| !r.ev.bad && new.contains(&r.arrival));
                    let new_bad = before.iter().any(|r| r.ev.bad && new.contains(&r.arrival));
                    let good: Vec<&Accepted> =
                        before.iter().copied().filter(|r| !r.ev.bad).collect();
                    let bad: Vec<&Accepted> = before.iter().copied().filter(|r| r.ev.bad).collect();
                    let analytic = new_good.then(|| {
                        let start = good.iter().map(|r| r.ev.time).min().unwrap_or(b);
                        (start, self.data(spec, &good))
                    });
                    let metric = new_bad.then(|| {
                        let start = bad.iter().map(|r| r.ev.time).min().unwrap_or(b);
                        (start, bad.len())
                    });
                    if let Some((start, data)) = analytic {
                        self.out("Global Analytic", i, &key, (start, b), 0, data);
                    }
                    if let Some((start, n)) = metric {
                        let data = format!("data_conversion_errors={n}");
                        self.out("Global Metric", i, &key, (start, b), 0, data);
                    }
                    self.covered.entry(i).or_default().extend(new);
                }
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
        if ev.time < self.wm {
            for (i, spec) in {
                let specs: &[WindowSpec] = self.specs;
                specs
            }
            .iter()
            .enumerate()
            {
                if let Some((size, slide)) = shape(&spec.kind) {
                    for s in starts_holding(ev.time, size, slide) {
                        if s + size <= self.wm {
                            self.dirty.insert((i, ev.key.clone(), s));
                        }
                    }
                }
            }
        }
        self.rows.push(Accepted {
            arrival,
            ev: ev.clone(),
        });
    }

    fn flush(&mut self) {
        let w0 = self.wm;
        // Time windows: every window not yet emitted, plus the dirty ones.
        self.advance_time_only(w0);
        let mut new = Vec::new();
        for (i, spec) in {
            let specs: &[WindowSpec] = self.specs;
            specs
        }
        .iter()
        .enumerate()
        {
            match spec.kind {
                WindowKind::Global { emit_every } => {
                    let every = emit_every.as_millis() as i64;
                    let covered = self.covered.entry(i).or_default().clone();
                    let keys: BTreeSet<String> =
                        self.rows.iter().map(|r| r.ev.key.clone()).collect();
                    for key in keys {
                        let all: Vec<&Accepted> =
                            self.rows.iter().filter(|r| r.ev.key == key).collect();
                        let Some(latest) = all.iter().map(|r| r.ev.time).max() else {
                            continue;
                        };
                        let end = next_multiple_above(latest, every);
                        let good: Vec<&Accepted> =
                            all.iter().copied().filter(|r| !r.ev.bad).collect();
                        let bad: Vec<&Accepted> =
                            all.iter().copied().filter(|r| r.ev.bad).collect();
                        if good.iter().any(|r| !covered.contains(&r.arrival)) {
                            let start = good.iter().map(|r| r.ev.time).min().unwrap_or(end);
                            let data = self.data(spec, &good);
                            new.push(self.make("Global Analytic", i, &key, (start, end), 0, data));
                        }
                        if bad.iter().any(|r| !covered.contains(&r.arrival)) {
                            let start = bad.iter().map(|r| r.ev.time).min().unwrap_or(end);
                            let data = format!("data_conversion_errors={}", bad.len());
                            new.push(self.make("Global Metric", i, &key, (start, end), 0, data));
                        }
                    }
                }
                WindowKind::Count { n } => {
                    let keys: BTreeSet<String> =
                        self.rows.iter().map(|r| r.ev.key.clone()).collect();
                    for key in keys {
                        let good: Vec<&Accepted> = self
                            .rows
                            .iter()
                            .filter(|r| r.ev.key == key && !r.ev.bad)
                            .collect();
                        for chunk in good.chunks(n as usize) {
                            let start = chunk.iter().map(|r| r.ev.time).min().unwrap_or(0);
                            let end = chunk.iter().map(|r| r.ev.time).max().unwrap_or(0) + 1;
                            let data = self.data(spec, chunk);
                            new.push(self.make(
                                "Windowed Analytic",
                                i,
                                &key,
                                (start, end),
                                0,
                                data,
                            ));
                        }
                    }
                }
                _ => {}
            }
        }
        self.outs.extend(new);
    }

    /// End of input for time windows: the dirty ones, then every window
    /// holding a row that has not been emitted.
    fn advance_time_only(&mut self, w0: i64) {
        for (i, spec) in {
            let specs: &[WindowSpec] = self.specs;
            specs
        }
        .iter()
        .enumerate()
        {
            if let Some((size, slide)) = shape(&spec.kind) {
                let dirty: Vec<_> = self.dirty.iter().filter(|d| d.0 == i).cloned().collect();
                for (_, key, start) in dirty {
                    self.emit_window(i, &key, start, size);
                }
                let mut firing = BTreeSet::new();
                for r in &self.rows {
                    for s in starts_holding(r.ev.time, size, slide) {
                        if s + size > w0 {
                            firing.insert((r.ev.key.clone(), s));
                        }
                    }
                }
                for (key, s) in firing {
                    self.emit_window(i, &key, s, size);
                }
            }
        }
        self.dirty.clear();
    }
}

/// The oracle: what the engine must emit for `stream`.
pub fn expected(specs: &[WindowSpec], lateness: i64, ooo: i64, stream: &[Ev]) -> Expected {
    let (wms, last) = watermarks(stream, ooo);
    let mut model = Model {
        specs,
        lateness,
        wm: i64::MIN,
        rows: Vec::new(),
        emitted: BTreeMap::new(),
        dirty: BTreeSet::new(),
        covered: BTreeMap::new(),
        outs: Vec::new(),
        late: Vec::new(),
    };
    for (arrival, ev) in stream.iter().enumerate() {
        model.row(arrival, ev, wms[arrival]);
    }
    model.advance(last);
    model.flush();
    model.outs.sort();
    Expected {
        outputs: model.outs,
        late: model.late,
    }
}

/// The late rows [`run_engine`] returned (indices into the stream's good
/// rows), as the oracle lists them.
pub fn late_of(stream: &[Ev], late: &[usize]) -> Vec<(String, i64, i64)> {
    let good: Vec<&Ev> = stream.iter().filter(|e| !e.bad).collect();
    late.iter()
        .map(|&i| (good[i].key.clone(), good[i].time, good[i].v))
        .collect()
}

/// Random streams: a few keys, times drifting forward with some rows
/// delayed within the out-of-orderness bound and some beyond it (late,
/// dropped or not depending on the lateness), a few bad rows.
pub fn stream(max_len: usize) -> impl Strategy<Value = (Vec<Ev>, i64, i64, Vec<bool>, Vec<bool>)> {
    (
        0..4i64,  // out-of-orderness
        0..8i64,  // allowed lateness
        0..10i64, // extra delay beyond the bound (late rows)
        prop::sample::select(vec![-37i64, 0, 1_000]),
        prop::collection::vec(
            (0..3usize, 0..4i64, 0..100i64, -5..20i64, 0..10u8),
            0..max_len,
        ),
        prop::collection::vec(any::<bool>(), max_len),
        prop::collection::vec(prop::bool::weighted(0.1), max_len),
    )
        .prop_map(|(ooo, lateness, extra, base, raw, cuts_a, cuts_b)| {
            let mut nominal = base;
            let evs = raw
                .into_iter()
                .map(|(key, step, delay, v, kind)| {
                    nominal += step;
                    // Most rows within the bound; one in five may be late.
                    let bound = if kind < 2 { ooo + extra + 1 } else { ooo + 1 };
                    Ev {
                        key: ["a", "b", "c"][key].to_owned(),
                        time: nominal - delay % bound,
                        v,
                        bad: kind == 9,
                    }
                })
                .collect();
            (evs, ooo, lateness, cuts_a, cuts_b)
        })
}

/// Checks the engine against the oracle for two batch splits and for one
/// batch per row; all must agree exactly (as multisets).
fn check(
    specs: &[WindowSpec],
    evs: &[Ev],
    ooo: i64,
    lateness: i64,
    cuts_a: &[bool],
    cuts_b: &[bool],
) {
    let want = expected(specs, lateness, ooo, evs);
    let every_row = vec![true; evs.len()];
    for cuts in [cuts_a, cuts_b, &every_row[..]] {
        let mut fake = Fake::default();
        let (out, shard) = run_engine(specs, lateness, ooo, evs, cuts, &mut fake);
        assert_eq!(
            canonical(&out.outputs),
            want.outputs,
            "outputs (cuts {cuts:?})"
        );
        assert_eq!(late_of(evs, &out.late), want.late, "late rows");
        assert_eq!(shard.stats().late_events_dropped, want.late.len() as u64);
        assert!(out.poisoned.is_empty());
        assert_eq!(shard.open_panes(), 0, "flush leaves nothing open");
    }
}

/// 96 per property, or `PROPTEST_CASES` for a longer soak.
pub fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(96)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn tumbling_windows_match_the_oracle(
        (evs, ooo, lateness, a, b) in stream(40), size in 1..12i64,
    ) {
        check(&[fake::tumbling("tumble", size, false)], &evs, ooo, lateness, &a, &b);
    }

    #[test]
    fn sliding_windows_match_the_oracle(
        (evs, ooo, lateness, a, b) in stream(40), size in 2..16i64, slide_pct in 1..=100i64,
    ) {
        let slide = (size * slide_pct / 100).max(1);
        check(&[fake::sliding("slide", size, slide, false)], &evs, ooo, lateness, &a, &b);
    }

    #[test]
    fn process_window_functions_match_the_oracle(
        (evs, ooo, lateness, a, b) in stream(40), size in 2..16i64, slide_pct in 1..=100i64,
        n in 1..5u64,
    ) {
        let slide = (size * slide_pct / 100).max(1);
        let specs = [
            fake::sliding("slide-p", size, slide, true),
            fake::tumbling("tumble-p", size, true),
            fake::count("count-p", n, true),
        ];
        check(&specs, &evs, ooo, lateness, &a, &b);
    }

    #[test]
    fn count_windows_match_the_oracle(
        (evs, ooo, lateness, a, b) in stream(40), n in 1..6u64,
    ) {
        check(&[fake::count("count", n, false)], &evs, ooo, lateness, &a, &b);
    }

    #[test]
    fn global_windows_match_the_oracle(
        (evs, ooo, lateness, a, b) in stream(40), every in 1..15i64,
    ) {
        check(&[fake::global("global", every)], &evs, ooo, lateness, &a, &b);
    }

    #[test]
    fn all_window_kinds_together_match_the_oracle(
        (evs, ooo, lateness, a, b) in stream(60), size in 2..16i64, slide_pct in 1..=100i64,
        every in 1..15i64, n in 1..5u64,
    ) {
        let slide = (size * slide_pct / 100).max(1);
        let specs = [
            fake::sliding("minute", size, slide, false),
            fake::tumbling("block", size, false),
            fake::count("count", n, false),
            fake::global("global", every),
        ];
        check(&specs, &evs, ooo, lateness, &a, &b);
    }
}
