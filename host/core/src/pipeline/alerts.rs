//! The alert function of one shard: every parsed row of each key, in
//! arrival order, with the key's state held by the host.
//!
//! Per batch, rows are grouped by key (first appearance order, rows in
//! arrival order within a key) and the function is called once for all
//! keys. New states are applied only for a successful call. A call that
//! fails because of its input is retried in halves until the failing key
//! group is alone; that group is dead-lettered with the error, its state is
//! left as it was, and every other group's results are kept.

use std::ops::Range;

use super::{Ctx, Error, Result};
use crate::data::error::{Result as CallResult, SandboxError};
use crate::data::{AlertResult, BatchBuilder, EventBatch, FieldValue, KeyGroup};
use crate::metrics::Counters;
use crate::parse::{Key, ParsedRow};
use crate::sink::{Data, DeadLetter, OutputType, Record, Rendered};
use crate::window::{StateBudget, WindowCalls};

/// The alert call, so tests and the benchmark can use a native stand-in.
pub trait AlertCalls {
    fn alert(
        &mut self,
        function: &str,
        groups: &[KeyGroup],
        batch: &EventBatch,
    ) -> CallResult<Vec<AlertResult>>;

    /// A key's new alert state went over a state ceiling: counted as a trap
    /// (see [`WindowCalls::breached_limit`]). Native stand-ins: nothing.
    fn breached_limit(&mut self) {}
}

/// Each key's alert state, as the guest last returned it. Fx, not SipHash:
/// looked up per key group of every batch (checkpoints sort it).
pub(super) type States = rustc_hash::FxHashMap<Key, Vec<u8>>;

/// Runs the alert function over one batch; appends alert lines to `out`
/// and poison groups to `dead`. Returns the number of alert lines.
///
/// A key's new state is refused (not stored: the call counts as failed on
/// that key, its old state kept, and as a trap of the tenant) when it is
/// over `budget`'s per-key ceiling, or would grow the shard — whose window
/// state is charged to the same budget — past its share of the tenant's.
#[allow(clippy::too_many_arguments)]
pub(super) fn run<C: AlertCalls + WindowCalls>(
    worker: usize,
    ctx: &Ctx,
    function: &str,
    calls: &mut C,
    states: &mut States,
    budget: &mut StateBudget,
    rows: &[(ParsedRow, i64)],
    out: &mut Rendered,
    dead: &mut Rendered,
    counters: &Counters,
) -> Result<u64> {
    if rows.is_empty() {
        return Ok(0);
    }
    // Group by key, keys in order of first appearance.
    let mut index: rustc_hash::FxHashMap<&Key, usize> = rustc_hash::FxHashMap::default();
    let mut groups: Vec<(&Key, Vec<&ParsedRow>)> = Vec::new();
    for (row, _) in rows {
        let i = *index.entry(&row.key).or_insert_with(|| {
            groups.push((&row.key, Vec::new()));
            groups.len() - 1
        });
        groups[i].1.push(row);
    }
    let reads = calls.reads().to_vec();
    // Per group: the call's result, refused (`Err` inside) when its state
    // is over a ceiling. Refused as each call returns, so a batch of many
    // hoarding keys never holds all their states at once.
    type Checked = std::result::Result<AlertResult, String>;
    let mut results: Vec<std::result::Result<Checked, String>> = Vec::with_capacity(groups.len());
    let used_before = budget.used();
    let mut used = used_before;
    let mut refused = 0u64;
    isolate(0..groups.len(), &mut results, &mut |range| {
        let mut builder = BatchBuilder::projected(&ctx.schema, &reads);
        let mut values: Vec<FieldValue<'_>> = Vec::with_capacity(ctx.schema.len());
        let called = &groups[range.clone()];
        for (key, group_rows) in called {
            builder
                .begin_group(key.to_vec(), states.get(*key).cloned())
                .map_err(|source| Error::AlertBatch {
                    worker,
                    function: function.to_owned(),
                    source,
                })?;
            for row in group_rows {
                values.clear();
                values.extend(row.values.iter().map(|v| v.as_field_value()));
                builder
                    .push_row(row.time, &values)
                    .map_err(|source| Error::AlertBatch {
                        worker,
                        function: function.to_owned(),
                        source,
                    })?;
            }
        }
        let (key_groups, batch) = builder.finish();
        Ok(calls.alert(function, &key_groups, &batch).map(|got| {
            if got.len() != called.len() {
                // `isolate` reports the mismatch; nothing is kept.
                return got.into_iter().map(Ok).collect();
            }
            got.into_iter()
                .zip(called)
                .map(|(r, (key, _))| {
                    let old = states.get(*key).map_or(0, Vec::len);
                    match budget.refuse_alert_state(used, old, r.state.len()) {
                        None => {
                            used = used - old as u64 + r.state.len() as u64;
                            Ok(r)
                        }
                        Some(reason) => {
                            refused += 1;
                            Err(reason)
                        }
                    }
                })
                .collect()
        }))
    })
    .map_err(|e| match e {
        Isolate::Fatal(source) => Error::Alert {
            worker,
            function: function.to_owned(),
            source,
        },
        Isolate::Pipeline(e) => e,
    })?;

    let mut lines = 0;
    let mut poisoned = 0;
    budget.set_alert_bytes((budget.alert_bytes() + used).saturating_sub(used_before));
    for _ in 0..refused {
        AlertCalls::breached_limit(calls);
    }
    for ((key, group_rows), result) in groups.iter().zip(results) {
        match result.and_then(|checked| checked) {
            Ok(AlertResult { state, alerts }) => {
                for alert in &alerts {
                    out.push_record(&Record {
                        tenant: &ctx.tenant,
                        ty: OutputType::Alert,
                        window: None,
                        key_names: &ctx.key_names,
                        key: Some(key),
                        data: Data::Alert {
                            kind: &alert.kind,
                            event_time: alert.event_time,
                            fields: &alert.data,
                        },
                        update: 0,
                        replaces: &[],
                    });
                    lines += 1;
                }
                // A known key keeps its entry (no clone of the row's key);
                // a new one is stored as the shard's own copy.
                match states.get_mut(*key) {
                    Some(old) => *old = state,
                    None => {
                        states.insert(key.local_copy(), state);
                    }
                }
            }
            Err(error) => {
                poisoned += 1;
                if ctx.alert_failures.admit() {
                    tracing::warn!(tenant = %ctx.tenant, function, key = %key, %error, "alert call failed on this key's events; dead-lettered");
                }
                ctx.dead_letter(
                    DeadLetter::Poison {
                        function: Some(function),
                        window: None,
                        bounds: None,
                        key,
                        rows: group_rows,
                        error: &error,
                    },
                    dead,
                );
            }
        }
    }
    counters.add_poisoned(poisoned);
    Ok(lines)
}

enum Isolate {
    /// A failure no smaller call can fix (engine, I/O).
    Fatal(SandboxError),
    /// Building the call failed.
    Pipeline(Error),
}

/// Calls `call` on `range` at once; on a failure caused by the input,
/// retries in halves until the failing group is alone (O(log n) extra
/// calls per poison group). One result per item, in order.
fn isolate<T>(
    range: Range<usize>,
    out: &mut Vec<std::result::Result<T, String>>,
    call: &mut dyn FnMut(Range<usize>) -> Result<CallResult<Vec<T>>>,
) -> std::result::Result<(), Isolate> {
    if range.is_empty() {
        return Ok(());
    }
    let error = match call(range.clone()).map_err(Isolate::Pipeline)? {
        Ok(results) if results.len() == range.len() => {
            out.extend(results.into_iter().map(Ok));
            return Ok(());
        }
        Ok(results) => format!(
            "returned {} results for {} key groups",
            results.len(),
            range.len()
        ),
        Err(e) if e.is_caused_by_input() => e.to_string(),
        Err(e) => return Err(Isolate::Fatal(e)),
    };
    if range.len() == 1 {
        out.push(Err(error));
        return Ok(());
    }
    let mid = range.start + range.len() / 2;
    isolate(range.start..mid, out, call)?;
    isolate(mid..range.end, out, call)
}

/// [`isolate`] over `0..n`, for the unit tests.
#[cfg(test)]
pub(super) fn isolate_for_tests<T>(
    n: usize,
    out: &mut Vec<std::result::Result<T, String>>,
    call: &mut dyn FnMut(Range<usize>) -> Result<CallResult<Vec<T>>>,
) -> bool {
    isolate(0..n, out, call).is_ok()
}
