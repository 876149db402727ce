//! The guest calls the window engine makes, and how a failing call is
//! narrowed down to the input that makes it fail.

use std::ops::Range;

use crate::data::error::{Result as CallResult, SandboxError};
use crate::data::{
    AddGroup, BatchBuilder, BatchError, DataField, EventBatch, FieldDef, FieldValue, KeyGroup,
    WindowGroup,
};
use crate::parse::ParsedRow;

/// The guest calls the engine needs, so tests can use a native fake and the
/// benchmark a native baseline. Every call is batched across keys; results
/// come back one per input, in order.
pub trait WindowCalls {
    /// Adds each group's rows to its accumulator (`state`, or a fresh one).
    /// Groups are consecutive runs of the batch's rows; their accumulators
    /// are borrowed from the panes that keep them.
    fn aggregate_add(
        &mut self,
        function: &str,
        groups: &[AddGroup<'_>],
        batch: &EventBatch,
    ) -> CallResult<Vec<Vec<u8>>>;

    /// Merges each list of accumulators into one. The accumulators are
    /// borrowed from the panes that keep them: a window's are not copied.
    fn aggregate_merge(
        &mut self,
        function: &str,
        accumulators: &[&[&[u8]]],
        at_ms: i64,
    ) -> CallResult<Vec<Vec<u8>>>;

    /// Merges each window's pane accumulators and finishes them.
    fn aggregate_finish(
        &mut self,
        function: &str,
        windows: &[&[&[u8]]],
        at_ms: i64,
    ) -> CallResult<Vec<Vec<DataField>>>;

    /// Runs a process-window function over many fired windows.
    fn process_window(
        &mut self,
        function: &str,
        windows: &[WindowGroup],
        batch: &EventBatch,
    ) -> CallResult<Vec<Vec<DataField>>>;

    /// Schema fields the module reads: batches carry only those columns.
    fn reads(&self) -> &[u32];

    /// A result of the tenant's (an accumulator) or the rows it makes the
    /// host buffer went over a state ceiling: counted as a trap, so the
    /// trap backoff and `serve`'s auto-pause act on a tenant that keeps
    /// doing it. Native stand-ins have nothing to count.
    fn breached_limit(&mut self) {}
}

/// Calls `call` on items `0..n` at once. When the call fails because of
/// its input (trap, limit, guest error, broken contract), the items are
/// retried in halves until each failing item is alone: one poison key
/// group or window then costs O(log n) extra calls and spoils nothing
/// else. Returns one result per item (a failure as its error message);
/// failures not caused by the input (engine, I/O) are returned as `Err`.
pub(super) fn isolate<T>(
    n: usize,
    call: &mut dyn FnMut(Range<usize>) -> CallResult<Vec<T>>,
) -> Result<Vec<Result<T, String>>, SandboxError> {
    let mut out = Vec::with_capacity(n);
    isolate_range(0..n, call, &mut out)?;
    Ok(out)
}

fn isolate_range<T>(
    range: Range<usize>,
    call: &mut dyn FnMut(Range<usize>) -> CallResult<Vec<T>>,
    out: &mut Vec<Result<T, String>>,
) -> Result<(), SandboxError> {
    if range.is_empty() {
        return Ok(());
    }
    let error = match call(range.clone()) {
        Ok(results) if results.len() == range.len() => {
            out.extend(results.into_iter().map(Ok));
            return Ok(());
        }
        // `TenantInstance` checks this itself; other implementations may not.
        Ok(results) => SandboxError::Contract {
            tenant: String::new(),
            function: String::new(),
            message: format!(
                "returned {} results for {} inputs",
                results.len(),
                range.len()
            ),
        },
        Err(e) if e.is_caused_by_input() => e,
        Err(e) => return Err(e),
    };
    if range.len() == 1 {
        out.push(Err(error.to_string()));
        return Ok(());
    }
    let mid = range.start + range.len() / 2;
    isolate_range(range.start..mid, call, out)?;
    isolate_range(mid..range.end, call, out)
}

/// Builds columnar batches from parsed rows, reusing one value buffer.
pub(super) struct Batch<'a> {
    builder: BatchBuilder,
    values: Vec<FieldValue<'a>>,
}

impl<'a> Batch<'a> {
    pub fn new(schema: &[FieldDef], reads: &[u32]) -> Self {
        Batch {
            builder: BatchBuilder::projected(schema, reads),
            values: Vec::with_capacity(schema.len()),
        }
    }

    pub fn group(&mut self, key: Vec<String>, state: Option<Vec<u8>>) -> Result<(), BatchError> {
        self.builder.begin_group(key, state)
    }

    pub fn row(&mut self, row: &'a ParsedRow) -> Result<(), BatchError> {
        self.values.clear();
        self.values
            .extend(row.values.iter().map(|v| v.as_field_value()));
        self.builder.push_row(row.time, &self.values)
    }

    pub fn finish(self) -> (Vec<KeyGroup>, EventBatch) {
        self.builder.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guest_error(message: &str) -> SandboxError {
        SandboxError::Guest {
            tenant: "t".into(),
            function: "f".into(),
            message: message.into(),
        }
    }

    #[test]
    fn isolation_fails_only_the_poison_items_and_keeps_the_others() {
        let items = [1, 2, 66, 4, 5, 66, 7];
        let mut calls = 0;
        let results = isolate(items.len(), &mut |range: Range<usize>| {
            calls += 1;
            let part = &items[range];
            if part.contains(&66) {
                Err(guest_error("poison"))
            } else {
                Ok(part.iter().map(|x| x * 10).collect())
            }
        })
        .expect("only input errors");
        let shown: Vec<Option<i32>> = results.iter().map(|r| r.as_ref().ok().copied()).collect();
        assert_eq!(
            shown,
            vec![Some(10), Some(20), None, Some(40), Some(50), None, Some(70)]
        );
        assert!(results[2].as_ref().expect_err("poison").contains("poison"));
        assert!(calls <= 2 * 2 * 3 + 1, "{calls} calls");
    }

    #[test]
    fn an_engine_failure_is_not_isolated_but_returned() {
        let err = isolate::<i32>(4, &mut |_| Err(SandboxError::Engine("down".into())))
            .expect_err("engine errors propagate");
        assert!(matches!(err, SandboxError::Engine(_)));
    }

    #[test]
    fn a_wrong_number_of_results_counts_as_a_failure_of_the_input() {
        let results = isolate(2, &mut |range: Range<usize>| {
            Ok(if range.len() == 2 { vec![1] } else { vec![7] })
        })
        .expect("contract errors are isolated");
        assert_eq!(results, vec![Ok(7), Ok(7)]);
    }
}
