//! A batch's calls cut to the call budget. The host batches up to 4096
//! rows per call, which a Rust tenant adds in well under a millisecond and
//! a Python one in ≈ 100 ms: over a 50 ms budget, every call would trap.
//! So each instance learns what a call costs per row (or per window) of
//! each function, from the CPU time of its calls, and cuts a call that
//! would take more than a quarter of the budget into pieces that would
//! not: groups (keys) are kept whole when they fit, a group too big for a
//! piece is run in row ranges with its state carried from one to the next
//! (an alert function sees its key's events in order either way, and an
//! accumulator adds them in order), and windows are cut between windows.
//! The results are those of the whole call — every piece has the whole
//! call's clock and seed — and a failing piece fails the whole call, which
//! the pipeline then isolates as before. So is the output cap: the pieces
//! together may return no more than the host's per-call ceiling, nor more
//! than one uncut call could (its results share the guest's memory with
//! its input and working set: half of `memory`, or `max_output` if
//! larger), else a tenant hoarding state per key would have the host
//! gather it piece by piece.

use std::ops::Range;
use std::time::Duration;

use super::error::Result;
use super::instance::TenantInstance;
use sluice_core::data::{
    AddGroup, AlertResult, Column, DataField, EventBatch, KeyGroup, TextColumn, WindowGroup,
};

/// What is counted per call: rows of the batch, or windows (items).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Unit {
    AddRows,
    AlertRows,
    WindowRows,
    MergeItems,
    FinishItems,
}

/// Units of a function's first call, before its cost is known: small
/// enough for the slowest guest, large enough to be measured.
const FIRST_PIECE: usize = 256;

/// Learned CPU cost per unit of each function, per instance. A list, not a
/// map: a module has a handful of functions, and it is read several times
/// a call, where hashing an owned key cost an allocation each time.
#[derive(Debug, Default)]
pub(crate) struct Sizer {
    per_unit: Vec<(String, Unit, f64)>,
}

impl Sizer {
    /// The most units a call of `function` should carry to stay within a
    /// quarter of `budget` (at least 1).
    pub(crate) fn max_units(&self, function: &str, unit: Unit, budget: Duration) -> usize {
        match self.cost(function, unit) {
            None => FIRST_PIECE,
            Some(&ns) if ns <= 0.0 => usize::MAX,
            Some(&ns) => {
                let target = budget.as_nanos() as f64 / 4.0;
                ((target / ns) as usize).max(1)
            }
        }
    }

    /// A call of `units` units took `cpu`: its cost per unit, smoothed, a
    /// rise taken at once (a piece that nearly broke the budget must not
    /// be repeated) and a fall gradually.
    pub(crate) fn observe(&mut self, function: &str, unit: Unit, units: usize, cpu: Duration) {
        if units == 0 {
            return;
        }
        let ns = cpu.as_nanos() as f64 / units as f64;
        match self
            .per_unit
            .iter_mut()
            .find(|(f, u, _)| f == function && *u == unit)
        {
            Some((_, _, old)) => *old = if ns > *old { ns } else { *old * 0.7 + ns * 0.3 },
            None => self.per_unit.push((function.to_owned(), unit, ns)),
        }
    }

    fn cost(&self, function: &str, unit: Unit) -> Option<&f64> {
        self.per_unit
            .iter()
            .find(|(f, u, _)| f == function && *u == unit)
            .map(|(_, _, ns)| ns)
    }
}

/// Rows `rows` of `batch` as a batch of their own (unread, empty columns
/// stay empty; absent rows renumbered).
pub(crate) fn slice_batch(batch: &EventBatch, rows: Range<usize>) -> EventBatch {
    let (a, b) = (rows.start, rows.end);
    let take = |v: &[i64]| v.get(a..b).map(<[i64]>::to_vec).unwrap_or_default();
    let columns = batch
        .columns
        .iter()
        .map(|column| match column {
            Column::Text(t) if t.offsets.len() > b => {
                let (lo, hi) = (t.offsets[a], t.offsets[b]);
                Column::Text(TextColumn {
                    data: t
                        .data
                        .get(lo as usize..hi as usize)
                        .unwrap_or_default()
                        .to_owned(),
                    offsets: t.offsets[a..=b].iter().map(|o| o - lo).collect(),
                })
            }
            Column::Text(_) => Column::Text(TextColumn {
                data: String::new(),
                offsets: Vec::new(),
            }),
            Column::Int(v) => Column::Int(take(v)),
            Column::Timestamp(v) => Column::Timestamp(take(v)),
            Column::Float(v) => Column::Float(v.get(a..b).map(<[f64]>::to_vec).unwrap_or_default()),
            Column::Boolean(v) => {
                Column::Boolean(v.get(a..b).map(<[u8]>::to_vec).unwrap_or_default())
            }
        })
        .collect();
    let absent = batch
        .absent
        .iter()
        .map(|rows| {
            rows.iter()
                .filter(|&&r| (a..b).contains(&(r as usize)))
                .map(|&r| r - a as u32)
                .collect()
        })
        .collect();
    EventBatch {
        times: batch
            .times
            .get(a..b)
            .map(<[i64]>::to_vec)
            .unwrap_or_default(),
        columns,
        absent,
    }
}

/// The next run of `sizes` from `i` whose sum fits `max` (at least one).
fn next_run(sizes: impl Iterator<Item = usize>, max: usize) -> (usize, usize) {
    let (mut n, mut sum) = (0, 0usize);
    for size in sizes {
        if n > 0 && sum.saturating_add(size) > max {
            break;
        }
        n += 1;
        sum = sum.saturating_add(size);
    }
    (n, sum)
}

impl TenantInstance {
    fn max_units(&self, function: &str, unit: Unit) -> usize {
        self.sizer.max_units(function, unit, self.call_budget())
    }

    /// Starts a batch's pieces: their output cap, shared (module docs).
    fn start_pieces(&mut self) {
        let limits = self.limits();
        let cap = self
            .module()
            .call_output_for(limits.max_output)
            .min((limits.memory / 2).max(limits.max_output));
        self.piece_output = Some((cap, 0));
    }

    fn observe(&mut self, function: &str, unit: Unit, units: usize) {
        let cpu = self.last_cpu;
        self.sizer.observe(function, unit, units, cpu);
    }

    /// Adds each group's events to its accumulator; returns the new
    /// accumulators in group order. Groups are consecutive runs of the
    /// batch's rows. Cut to the call budget (module docs).
    pub fn aggregate_add(
        &mut self,
        function: &str,
        groups: &[AddGroup<'_>],
        batch: &EventBatch,
    ) -> Result<Vec<Vec<u8>>> {
        self.start_pieces();
        let context = self.batch_context(function, None, batch);
        let total = batch.times.len();
        if total <= self.max_units(function, Unit::AddRows) {
            let out = self.aggregate_add_whole(function, groups, batch, context)?;
            self.observe(function, Unit::AddRows, total);
            return Ok(out);
        }
        let mut out = Vec::with_capacity(groups.len());
        let (mut i, mut row) = (0, 0usize);
        while i < groups.len() {
            let max = self.max_units(function, Unit::AddRows);
            let (n, rows) = next_run(groups[i..].iter().map(|g| g.rows as usize), max);
            if n == 1 && rows > max {
                // One group over a piece: its rows in ranges, the
                // accumulator carried from one to the next.
                let mut state: Option<Vec<u8>> = groups[i].state.map(<[u8]>::to_vec);
                let mut done = 0;
                while done < rows {
                    let len = (rows - done).min(self.max_units(function, Unit::AddRows));
                    let piece = slice_batch(batch, row + done..row + done + len);
                    let group = AddGroup {
                        rows: len as u32,
                        state: state.as_deref(),
                    };
                    let mut added =
                        self.aggregate_add_whole(function, &[group], &piece, context)?;
                    self.observe(function, Unit::AddRows, len);
                    state = added.pop();
                    done += len;
                }
                out.push(state.unwrap_or_default());
            } else {
                let piece = slice_batch(batch, row..row + rows);
                out.extend(self.aggregate_add_whole(
                    function,
                    &groups[i..i + n],
                    &piece,
                    context,
                )?);
                self.observe(function, Unit::AddRows, rows);
            }
            i += n;
            row += rows;
        }
        Ok(out)
    }

    /// Runs an alert function over the events of many keys. Cut to the
    /// call budget (module docs).
    pub fn alert(
        &mut self,
        function: &str,
        groups: &[KeyGroup],
        batch: &EventBatch,
    ) -> Result<Vec<AlertResult>> {
        self.start_pieces();
        let context = self.batch_context(function, groups.first().map(|g| &g.key[..]), batch);
        let total: usize = groups.iter().map(|g| g.len as usize).sum();
        if total <= self.max_units(function, Unit::AlertRows) {
            let out = self.alert_whole(function, groups, batch, context)?;
            self.observe(function, Unit::AlertRows, total);
            return Ok(out);
        }
        let mut out = Vec::with_capacity(groups.len());
        let mut i = 0;
        while i < groups.len() {
            let max = self.max_units(function, Unit::AlertRows);
            let (n, rows) = next_run(groups[i..].iter().map(|g| g.len as usize), max);
            if n == 1 && rows > max {
                out.push(self.alert_in_ranges(function, &groups[i], batch, context)?);
            } else {
                let first = groups[i..i + n].iter().map(|g| g.start).min().unwrap_or(0);
                let end = groups[i..i + n]
                    .iter()
                    .map(|g| g.start.saturating_add(g.len))
                    .max()
                    .unwrap_or(0);
                let piece = slice_batch(batch, first as usize..end as usize);
                let rebased: Vec<KeyGroup> = groups[i..i + n]
                    .iter()
                    .map(|g| KeyGroup {
                        start: g.start - first,
                        ..g.clone()
                    })
                    .collect();
                out.extend(self.alert_whole(function, &rebased, &piece, context)?);
                self.observe(function, Unit::AlertRows, rows);
            }
            i += n;
        }
        Ok(out)
    }

    /// One key group's rows in ranges, its state carried along and its
    /// alerts gathered in order.
    fn alert_in_ranges(
        &mut self,
        function: &str,
        group: &KeyGroup,
        batch: &EventBatch,
        context: (i64, u64),
    ) -> Result<AlertResult> {
        let mut state = group.state.clone();
        let mut alerts = Vec::new();
        let (start, rows) = (group.start as usize, group.len as usize);
        let mut done = 0;
        while done < rows {
            let len = (rows - done).min(self.max_units(function, Unit::AlertRows));
            let piece = slice_batch(batch, start + done..start + done + len);
            let one = KeyGroup {
                key: group.key.clone(),
                state: state.take(),
                start: 0,
                len: len as u32,
            };
            let mut result = self.alert_whole(function, &[one], &piece, context)?;
            self.observe(function, Unit::AlertRows, len);
            let result = result.pop().unwrap_or(AlertResult {
                state: Vec::new(),
                alerts: Vec::new(),
            });
            alerts.extend(result.alerts);
            state = Some(result.state);
            done += len;
        }
        Ok(AlertResult {
            state: state.unwrap_or_default(),
            alerts,
        })
    }

    /// Runs a process-window function over many fired windows, cut
    /// between windows to the call budget (a window is never cut).
    pub fn process_window(
        &mut self,
        function: &str,
        windows: &[WindowGroup],
        batch: &EventBatch,
    ) -> Result<Vec<Vec<DataField>>> {
        self.start_pieces();
        let at = windows.iter().map(|w| w.end).max().unwrap_or(0);
        let (_, seed) = self.batch_context(function, windows.first().map(|w| &w.key[..]), batch);
        let mut out = Vec::with_capacity(windows.len());
        let mut i = 0;
        while i < windows.len() {
            let max = self.max_units(function, Unit::WindowRows);
            let (n, rows) = next_run(windows[i..].iter().map(|w| w.len as usize), max);
            out.extend(self.process_window_whole(
                function,
                &windows[i..i + n],
                batch,
                (at, seed),
            )?);
            self.observe(function, Unit::WindowRows, rows);
            i += n;
        }
        Ok(out)
    }

    /// Merges each list of accumulators into one. `at_ms` is the instant the
    /// guest's clock shows (the watermark or window end being processed).
    /// A list is anything of byte slices: `Vec<Vec<u8>>`, or `&[&[u8]]`
    /// borrowed from where the accumulators are kept; they are packed
    /// into one buffer for the call. Cut between lists to the call budget.
    pub fn aggregate_merge<L, P>(
        &mut self,
        function: &str,
        accumulators: &[L],
        at_ms: i64,
    ) -> Result<Vec<Vec<u8>>>
    where
        L: AsRef<[P]>,
        P: AsRef<[u8]>,
    {
        self.start_pieces();
        let mut out = Vec::with_capacity(accumulators.len());
        for chunk in self.item_chunks(function, Unit::MergeItems, accumulators.len()) {
            out.extend(self.aggregate_merge_whole(
                function,
                &accumulators[chunk.clone()],
                at_ms,
            )?);
            self.observe(function, Unit::MergeItems, chunk.len());
        }
        Ok(out)
    }

    /// Merges each window's panes and finishes them into output fields
    /// (windows as in [`Self::aggregate_merge`]), cut between windows to
    /// the call budget.
    pub fn aggregate_finish<W, P>(
        &mut self,
        function: &str,
        windows: &[W],
        at_ms: i64,
    ) -> Result<Vec<Vec<DataField>>>
    where
        W: AsRef<[P]>,
        P: AsRef<[u8]>,
    {
        self.start_pieces();
        let mut out = Vec::with_capacity(windows.len());
        let mut start = 0;
        while start < windows.len() {
            let n = self
                .max_units(function, Unit::FinishItems)
                .min(windows.len() - start);
            out.extend(self.aggregate_finish_whole(function, &windows[start..start + n], at_ms)?);
            self.observe(function, Unit::FinishItems, n);
            start += n;
        }
        Ok(out)
    }

    /// Ranges of `items` items, each as many as the budget allows now
    /// (an empty call stays one call).
    fn item_chunks(&self, function: &str, unit: Unit, items: usize) -> Vec<Range<usize>> {
        let max = self.max_units(function, unit).max(1);
        if items == 0 {
            return std::iter::once(0..0).collect();
        }
        (0..items)
            .step_by(max)
            .map(|s| s..(s + max).min(items))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slice_keeps_its_rows_text_and_absent_rows() {
        let batch = EventBatch {
            times: vec![1, 2, 3, 4],
            columns: vec![
                Column::Text(TextColumn {
                    data: "aébbcdd".into(),
                    offsets: vec![0, 1, 3, 5, 6, 8],
                }),
                Column::Float(vec![1.0, 2.0, 3.0, 4.0]),
                Column::Int(Vec::new()),
            ],
            absent: vec![vec![1, 3], vec![], vec![]],
        };
        let piece = slice_batch(&batch, 1..3);
        assert_eq!(piece.times, vec![2, 3]);
        assert_eq!(
            piece.columns[0],
            Column::Text(TextColumn {
                data: "ébb".into(),
                offsets: vec![0, 2, 4],
            })
        );
        assert_eq!(piece.columns[1], Column::Float(vec![2.0, 3.0]));
        assert_eq!(piece.columns[2], Column::Int(Vec::new()));
        assert_eq!(piece.absent, vec![vec![0], vec![], vec![]]);
    }

    #[test]
    fn the_sizer_cuts_to_a_quarter_of_the_budget_and_reacts_to_a_rise() {
        let mut sizer = Sizer::default();
        let budget = Duration::from_millis(40);
        assert_eq!(sizer.max_units("f", Unit::AlertRows, budget), FIRST_PIECE);
        // 10 µs a row: 10 ms a quarter of the budget = 1000 rows.
        sizer.observe("f", Unit::AlertRows, 100, Duration::from_millis(1));
        assert_eq!(sizer.max_units("f", Unit::AlertRows, budget), 1000);
        sizer.observe("f", Unit::AlertRows, 100, Duration::from_millis(2));
        assert_eq!(sizer.max_units("f", Unit::AlertRows, budget), 500);
        assert_eq!(sizer.max_units("g", Unit::AlertRows, budget), FIRST_PIECE);
    }

    #[test]
    fn runs_fit_the_piece_or_hold_one_group() {
        assert_eq!(next_run([3, 3, 3].into_iter(), 7), (2, 6));
        assert_eq!(next_run([9, 1].into_iter(), 7), (1, 9));
    }
}
