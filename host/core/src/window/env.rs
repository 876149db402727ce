//! What a shard step needs to call the tenant and emit: the [`Env`]
//! borrowed from the shard for one step, the batched finish and process
//! calls with poison isolation, and the adds pending until the step's
//! rows are in (one `aggregate-add` call per window spec and step).

use super::*;

/// Per-key state that holds panes, so pending adds can find them.
pub(crate) trait HasPanes {
    fn panes(&mut self) -> &mut BTreeMap<i64, Pane>;
    fn panes_ref(&self) -> &BTreeMap<i64, Pane>;
}

/// What the specs need to make calls and emit: borrowed from the shard for
/// one step.
pub(crate) struct Env<'a, 'r> {
    pub(super) calls: &'a mut dyn WindowCalls,
    pub(super) schema: &'a [FieldDef],
    pub(super) reads: &'a [u32],
    pub(super) keys: &'a KeyTable,
    /// The rows of the current `push` (pending adds refer to them).
    pub(super) rows: &'r [(ParsedRow, i64)],
    pub(super) lateness: i64,
    /// The shard's state ceilings and what it holds.
    pub(super) budget: &'a mut StateBudget,
    /// Outputs of the current step, sorted when the step ends.
    pub(super) step: Vec<WindowOutput>,
    pub(super) poisoned: &'a mut Vec<Poisoned>,
}

impl Env<'_, '_> {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn output(
        &mut self,
        kind: OutputType,
        window: &Arc<str>,
        key: KeyId,
        start: i64,
        end: i64,
        data: Vec<DataField>,
        update: u32,
    ) {
        self.step.push(WindowOutput {
            kind,
            window: Arc::clone(window),
            start,
            end,
            key: self.keys.key(key).clone(),
            data,
            update,
            replaces: Vec::new(),
        });
    }

    /// The output just pushed supersedes earlier emissions with these
    /// bounds (a session that absorbed fired sessions).
    pub(super) fn replacing(&mut self, bounds: &[(i64, i64)]) {
        if let Some(last) = self.step.last_mut() {
            last.replaces = bounds.to_vec();
        }
    }

    pub(super) fn metric(
        &mut self,
        kind: OutputType,
        window: &Arc<str>,
        key: KeyId,
        span: (i64, i64),
        errors: u64,
        update: u32,
    ) {
        let data = vec![DataField {
            name: DATA_CONVERSION_ERRORS.to_owned(),
            value: Value::Int(i64::try_from(errors).unwrap_or(i64::MAX)),
        }];
        self.output(kind, window, key, span.0, span.1, data, update);
    }

    pub(super) fn poison(&mut self, window: &str, key: KeyId, input: PoisonedInput, error: String) {
        self.poisoned.push(Poisoned {
            window: window.to_owned(),
            key: self.keys.key(key).clone(),
            input,
            error,
        });
    }

    /// Dead-letters a window whose call failed, with the rows its function
    /// got (`item`: a process window's; an aggregate's has none).
    pub(super) fn poison_window(
        &mut self,
        window: &str,
        key: KeyId,
        (start, end): (i64, i64),
        item: Option<&ProcessItem<'_>>,
        error: String,
    ) {
        let rows = item.map(ProcessItem::owned_rows).unwrap_or_default();
        self.poison(
            window,
            key,
            PoisonedInput::Window { start, end, rows },
            error,
        );
    }

    /// Dead-letters a window (`what`: "window", "session") whose rows the
    /// state ceilings refused; the rows were dead-lettered then.
    pub(super) fn poison_refused(
        &mut self,
        window: &str,
        key: KeyId,
        bounds: (i64, i64),
        what: &str,
        why: &str,
    ) {
        let error = format!("rows of this {what} were dead-lettered: {why}");
        self.poison_window(window, key, bounds, None, error);
    }

    /// Ends a step: its outputs, in a deterministic order, go to `out`.
    pub(super) fn end_step(&mut self, out: &mut Vec<WindowOutput>) {
        // Names and keys are shared allocations (the spec's, the key
        // table's): equal ones are mostly the same pointer, and comparing
        // text was most of this sort.
        self.step.sort_by(|a, b| {
            let window = if Arc::ptr_eq(&a.window, &b.window) {
                std::cmp::Ordering::Equal
            } else {
                a.window.cmp(&b.window)
            };
            let key = || {
                if a.key.same_allocation(&b.key) {
                    std::cmp::Ordering::Equal
                } else {
                    a.key.cmp(&b.key)
                }
            };
            window.then_with(key).then_with(|| {
                (a.start, a.kind, a.update, a.end).cmp(&(b.start, b.kind, b.update, b.end))
            })
        });
        out.append(&mut self.step);
    }
}

/// `aggregate-finish` over `windows` (pane accumulator lists), isolating
/// failures; one result per window.
pub(super) fn finish_all(
    env: &mut Env<'_, '_>,
    window: &str,
    function: &str,
    windows: &[&[&[u8]]],
    at_ms: i64,
) -> Result<Vec<Result<Vec<DataField>, String>>> {
    let calls = &mut *env.calls;
    isolate(windows.len(), &mut |range| {
        calls.aggregate_finish(function, &windows[range], at_ms)
    })
    .map_err(|source| Error::Call {
        window: window.to_owned(),
        source,
    })
}

/// One window handed to a process-window function: its key, bounds and
/// rows (sorted into event-time order, ties in arrival order, when built).
pub(super) struct ProcessItem<'a> {
    pub(super) key: KeyId,
    pub(super) start: i64,
    pub(super) end: i64,
    pub(super) rows: Vec<&'a Buffered>,
}

impl ProcessItem<'_> {
    /// The rows, as the function got them (after [`process_all`]: sorted
    /// by time, then arrival), owned for a dead letter.
    pub(super) fn owned_rows(&self) -> Vec<ParsedRow> {
        self.rows.iter().map(|b| b.row.clone()).collect()
    }
}

/// `process-window` over `items`, isolating failures.
pub(super) fn process_all(
    env: &mut Env<'_, '_>,
    window: &str,
    function: &str,
    items: &mut [ProcessItem<'_>],
) -> Result<Vec<Result<Vec<DataField>, String>>> {
    for item in items.iter_mut() {
        item.rows.sort_by_key(|b| (b.row.time, b.seq));
    }
    let (schema, reads, keys) = (env.schema, env.reads, env.keys);
    let calls = &mut *env.calls;
    let mut batch_error = None;
    let results = isolate(items.len(), &mut |range| {
        let mut batch = Batch::new(schema, reads);
        let mut groups = Vec::with_capacity(range.len());
        for item in &items[range] {
            let built = batch
                .group(Vec::new(), None)
                .and_then(|()| item.rows.iter().try_for_each(|b| batch.row(&b.row)));
            if let Err(e) = built {
                batch_error = Some(e);
                return Err(SandboxError::Engine("batch".into()));
            }
            groups.push((item.key, item.start, item.end));
        }
        let (spans, events) = batch.finish();
        let windows: Vec<_> = groups
            .iter()
            .zip(&spans)
            .map(|(&(key, start, end), span)| crate::data::WindowGroup {
                key: keys.key(key).to_vec(),
                start,
                end,
                first: span.start,
                len: span.len,
            })
            .collect();
        calls.process_window(function, &windows, &events)
    });
    if let Some(source) = batch_error {
        return Err(Error::Batch {
            window: window.to_owned(),
            source,
        });
    }
    results.map_err(|source| Error::Call {
        window: window.to_owned(),
        source,
    })
}

/// Rows waiting for one `aggregate-add`, grouped by (key, pane). Rows are
/// kept in one flat list and grouped when flushed, so a group costs no
/// allocation of its own (with many keys, most groups hold a row or two).
#[derive(Debug, Default)]
pub(crate) struct PendingAdds {
    pub(super) index: FxHashMap<(KeyId, i64), u32>,
    pub(super) groups: Vec<PendingGroup>,
    /// (group, row index in the current push), in arrival order.
    pub(super) rows: Vec<(u32, usize)>,
    /// Scratch: row indices grouped, and each group's offset in it.
    pub(super) grouped: Vec<usize>,
    pub(super) offsets: Vec<usize>,
}

#[derive(Debug)]
pub(super) struct PendingGroup {
    pub(super) key: KeyId,
    pub(super) pane: i64,
    pub(super) len: usize,
}

impl PendingAdds {
    pub(super) fn push(&mut self, key: KeyId, pane: i64, row: usize) {
        let groups = &mut self.groups;
        let g = *self.index.entry((key, pane)).or_insert_with(|| {
            groups.push(PendingGroup { key, pane, len: 0 });
            u32::try_from(groups.len() - 1).unwrap_or(u32::MAX)
        });
        self.groups[g as usize].len += 1;
        self.rows.push((g, row));
    }

    pub(super) fn clear(&mut self) {
        self.index.clear();
        self.groups.clear();
        self.rows.clear();
    }

    /// Sorts the groups by (key, pane) and lays their rows out contiguously
    /// (arrival order within a group); returns the groups.
    pub(super) fn take_grouped(&mut self) -> Vec<PendingGroup> {
        let mut order: Vec<u32> = (0..self.groups.len() as u32).collect();
        order
            .sort_unstable_by_key(|&g| (self.groups[g as usize].key, self.groups[g as usize].pane));
        // offsets[g] = where group g's rows start in `grouped`.
        self.offsets.clear();
        self.offsets.resize(self.groups.len(), 0);
        let mut at = 0;
        for &g in &order {
            self.offsets[g as usize] = at;
            at += self.groups[g as usize].len;
        }
        self.grouped.clear();
        self.grouped.resize(self.rows.len(), 0);
        for &(g, row) in &self.rows {
            let slot = &mut self.offsets[g as usize];
            self.grouped[*slot] = row;
            *slot += 1;
        }
        self.rows.clear();
        self.index.clear();
        let mut groups = std::mem::take(&mut self.groups);
        let sorted = order
            .iter()
            .map(|&g| {
                let group = &mut groups[g as usize];
                PendingGroup {
                    key: group.key,
                    pane: group.pane,
                    len: group.len,
                }
            })
            .collect();
        groups.clear();
        self.groups = groups;
        sorted
    }

    /// One `aggregate-add` for every pending group, each with its pane's
    /// accumulator; successful results replace the accumulators, failed
    /// groups are dead-lettered with their rows.
    pub(super) fn flush<K: HasPanes>(
        &mut self,
        window: &str,
        function: &str,
        states: &mut [Option<K>],
        env: &mut Env<'_, '_>,
    ) -> Result<()> {
        if self.groups.is_empty() {
            return Ok(());
        }
        let groups = self.take_grouped();
        // Each group's rows: `grouped[spans[i]]`.
        let mut spans = Vec::with_capacity(groups.len());
        let mut at = 0;
        for g in &groups {
            spans.push(at..at + g.len);
            at += g.len;
        }
        let grouped = &self.grouped;
        let (schema, reads, rows) = (env.schema, env.reads, env.rows);
        let calls = &mut *env.calls;
        let mut batch_error = None;
        let results = {
            let states = &*states;
            isolate(groups.len(), &mut |range| {
                let mut batch = Batch::new(schema, reads);
                let mut adds = Vec::with_capacity(range.len());
                for (g, span) in groups[range.clone()].iter().zip(&spans[range]) {
                    // Borrowed from the pane: the accumulator is packed
                    // for the call, not cloned per group.
                    let state = states
                        .get(g.key as usize)
                        .and_then(Option::as_ref)
                        .and_then(|s| s.panes_ref().get(&g.pane))
                        .and_then(|p| p.acc.as_deref());
                    let built = batch.group(Vec::new(), None).and_then(|()| {
                        grouped[span.clone()]
                            .iter()
                            .try_for_each(|&r| batch.row(&rows[r].0))
                    });
                    if let Err(e) = built {
                        batch_error = Some(e);
                        return Err(SandboxError::Engine("batch".into()));
                    }
                    adds.push(AddGroup {
                        rows: u32::try_from(span.len()).unwrap_or(u32::MAX),
                        state,
                    });
                }
                let (_, events) = batch.finish();
                calls.aggregate_add(function, &adds, &events)
            })
        };
        if let Some(source) = batch_error {
            return Err(Error::Batch {
                window: window.to_owned(),
                source,
            });
        }
        let results = results.map_err(|source| Error::Call {
            window: window.to_owned(),
            source,
        })?;
        for ((g, span), result) in groups.iter().zip(spans).zip(results) {
            let group_rows = &self.grouped[span];
            let pane = states
                .get_mut(g.key as usize)
                .and_then(Option::as_mut)
                .and_then(|s| s.panes().get_mut(&g.pane));
            let old = pane
                .as_ref()
                .and_then(|p| p.acc.as_ref())
                .map_or(0, Vec::len);
            match result.and_then(|acc| env.admit_accumulator(old, acc)) {
                Ok(acc) => {
                    let min = group_rows.iter().map(|&r| rows[r].0.time).min();
                    if let Some(pane) = pane {
                        env.budget.replace(old as u64, acc.len() as u64);
                        pane.acc = Some(acc);
                        pane.min_time = min_opt(pane.min_time, min);
                    }
                }
                Err(error) => {
                    let failed = group_rows.iter().map(|&r| rows[r].0.clone()).collect();
                    env.poison(window, g.key, PoisonedInput::Rows(failed), error);
                }
            }
        }
        Ok(())
    }
}
