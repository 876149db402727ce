//! Writing: results grouped by partition into capped requests (one
//! unlogged batch or a single insert each), sent at most `concurrency` at
//! once and retried; a run's row.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::time::Instant;

use futures_util::{StreamExt, TryStreamExt};
use scylla::errors::ExecutionError;
use scylla::statement::batch::{Batch, BatchStatement, BatchType};
use scylla::value::CqlTimestamp;

use super::retry::{retrying, Failure, Kind};
use super::{BatchResultStore, BatchRun, RESULTS, RUNS};
use crate::retryable;
use crate::rows::{self, Fields, KeyMap, MAX_BATCH_BYTES, MAX_BATCH_ROWS};
use crate::{Error, Result};
use sluice_core::batch::{BatchResult, JobRange};
use sluice_core::retry::Backoff;

/// batch_results, as bound to the insert (the last value is the write
/// timestamp).
pub(super) type ResultRow<'a> = (
    &'a str,
    &'a str,
    CqlTimestamp,
    CqlTimestamp,
    &'a str,
    CqlTimestamp,
    CqlTimestamp,
    KeyMap<'a>,
    Vec<&'a str>,
    Vec<&'a str>,
    BTreeMap<&'a str, i64>,
    BTreeMap<&'a str, f64>,
    BTreeMap<&'a str, &'a str>,
    BTreeMap<&'a str, bool>,
    i64,
);

/// One partition's rows of one write, under the caps: one request.
#[derive(Default)]
pub(super) struct Request<'a> {
    pub(super) rows: Vec<ResultRow<'a>>,
    pub(super) bytes: usize,
}

impl BatchResultStore {
    /// [`BatchResultStore::write`] for async callers.
    pub async fn write_async(&self, results: &[BatchResult]) -> Result<()> {
        let requests = requests_of(results, self.timestamps.reserve(results.len()))?;
        futures_util::stream::iter(requests.iter().map(|r| self.send(r)))
            .buffer_unordered(self.concurrency)
            .try_for_each(|()| std::future::ready(Ok(())))
            .await
    }

    /// Sends one request, retrying with backoff until it is acknowledged,
    /// the error is one retrying cannot fix, or `give_up` has passed.
    pub(super) async fn send(&self, request: &Request<'_>) -> Result<()> {
        retrying!(
            self,
            Kind::Write,
            RESULTS,
            self.execute(request).await.map_err(|e| Failure {
                retry: retryable(&e),
                message: e.to_string(),
            })
        )?;
        self.rows
            .fetch_add(request.rows.len() as u64, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    pub(super) async fn execute(
        &self,
        request: &Request<'_>,
    ) -> std::result::Result<(), ExecutionError> {
        let prepared = &self.statements.insert_result;
        if let [row] = request.rows.as_slice() {
            return self
                .session
                .execute_unpaged(prepared, row)
                .await
                .map(|_| ());
        }
        let mut batch = Batch::new_with_statements(
            BatchType::Unlogged,
            vec![BatchStatement::PreparedStatement(prepared.clone()); request.rows.len()],
        );
        batch.set_is_idempotent(true);
        self.session.batch(&batch, &request.rows).await.map(|_| ())
    }

    /// [`BatchResultStore::record_run`] for async callers.
    pub async fn record_run_async(&self, run: &BatchRun) -> Result<()> {
        let count = |what: &str, n: u64| {
            i64::try_from(n).map_err(|_| Error::Invalid {
                table: RUNS,
                message: format!("{what} {n} does not fit a CQL bigint"),
            })
        };
        let values = (
            run.tenant.as_str(),
            run.job.as_str(),
            CqlTimestamp(run.range.from),
            CqlTimestamp(run.range.to),
            &run.scope,
            run.trigger.as_str(),
            CqlTimestamp(run.started_at),
            CqlTimestamp(run.finished_at),
            count("rows_in", run.rows_in)?,
            count("results", run.results)?,
        );
        retrying!(
            self,
            Kind::Write,
            RUNS,
            self.session
                .execute_unpaged(&self.statements.insert_run, &values)
                .await
                .map_err(|e| Failure {
                    retry: retryable(&e),
                    message: e.to_string(),
                })
        )
        .map(|_| ())
    }
}

/// Groups `results` by partition into capped requests, in order of
/// first appearance, each row with the next write timestamp from
/// `first_ts` (the caller reserved one per result); checks each result.
pub(super) fn requests_of<'a>(
    results: &'a [BatchResult],
    first_ts: i64,
) -> Result<Vec<Request<'a>>> {
    let mut index: HashMap<(&str, &str, JobRange), usize> = HashMap::new();
    let mut open: Vec<Request<'a>> = Vec::new();
    let mut done: Vec<Request<'a>> = Vec::new();
    for (ts, r) in (first_ts..).zip(results) {
        let key = rows::key_map_of(&r.key_names, &r.key).ok_or_else(|| Error::Invalid {
            table: RESULTS,
            message: format!(
                "a result of job `{}` has {} key values for {} key names",
                r.job,
                r.key.len(),
                r.key_names.len()
            ),
        })?;
        let fields = Fields::of(&r.fields);
        let bytes = 96
            + r.tenant.len()
            + r.job.len()
            + r.window.name.len()
            + r.key_names
                .iter()
                .zip(&r.key)
                .map(|(n, v)| 2 * n.len() + v.len())
                .sum::<usize>()
            + Fields::bytes(&r.fields);
        let part = (r.tenant.as_str(), r.job.as_str(), r.range);
        let i = *index.entry(part).or_insert_with(|| {
            open.push(Request::default());
            open.len() - 1
        });
        let request = &mut open[i];
        if !request.rows.is_empty()
            && (request.rows.len() >= MAX_BATCH_ROWS || request.bytes + bytes > MAX_BATCH_BYTES)
        {
            done.push(std::mem::take(request));
        }
        let request = &mut open[i];
        request.bytes += bytes;
        request.rows.push((
            &r.tenant,
            &r.job,
            CqlTimestamp(r.range.from),
            CqlTimestamp(r.range.to),
            &r.window.name,
            CqlTimestamp(r.window.start),
            CqlTimestamp(r.window.end),
            key,
            rows::names(&r.key_names),
            fields.names,
            fields.ints,
            fields.floats,
            fields.texts,
            fields.bools,
            ts,
        ));
    }
    done.extend(open.into_iter().filter(|r| !r.rows.is_empty()));
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::data::{DataField, Value};
    use sluice_core::sink::OwnedWindow;

    fn result(job: &str, range: JobRange, key: &str, n: i64) -> BatchResult {
        BatchResult {
            tenant: "t".into(),
            job: job.into(),
            range,
            window: OwnedWindow {
                name: "range".into(),
                start: range.from,
                end: range.to,
            },
            key_names: vec!["k".into()],
            key: vec![key.into()],
            fields: vec![DataField {
                name: "n".into(),
                value: Value::Int(n),
            }],
        }
    }

    #[test]
    fn results_are_grouped_by_range_under_the_row_cap_in_write_order() {
        let a = JobRange { from: 0, to: 10 };
        let b = JobRange { from: 10, to: 20 };
        let mut results: Vec<BatchResult> = (0..MAX_BATCH_ROWS + 3)
            .map(|i| result("j", a, &i.to_string(), i as i64))
            .collect();
        results.insert(1, result("j", b, "x", 1));
        let requests = requests_of(&results, 100).expect("valid");
        let shape: Vec<(i64, usize)> = requests
            .iter()
            .map(|r| (r.rows[0].2 .0, r.rows.len()))
            .collect();
        assert_eq!(shape, vec![(0, MAX_BATCH_ROWS), (0, 3), (10, 1)]);
        // One timestamp per result, increasing in the order given.
        let mut stamps: Vec<i64> = requests
            .iter()
            .flat_map(|r| r.rows.iter().map(|row| row.14))
            .collect();
        stamps.sort_unstable();
        assert_eq!(
            stamps,
            (100..100 + results.len() as i64).collect::<Vec<_>>()
        );
        assert_eq!(requests[2].rows[0].14, 101);
    }

    #[test]
    fn a_result_whose_key_values_do_not_match_its_names_is_refused() {
        let mut bad = result("j", JobRange { from: 0, to: 10 }, "x", 1);
        bad.key.push("extra".into());
        let err = requests_of(std::slice::from_ref(&bad), 1)
            .err()
            .expect("refused");
        assert!(
            err.to_string().contains("2 key values for 1 key names"),
            "{err}"
        );
    }
}
