//! Reading back: a job's results (fields in stored order), its runs, the
//! ranges it has results for, and counts; each paged read retried from
//! the start on a failure retrying may fix.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Instant;

use futures_util::TryStreamExt;
use scylla::deserialize::row::DeserializeRow;
use scylla::serialize::row::SerializeRow;
use scylla::statement::prepared::PreparedStatement;
use scylla::value::CqlTimestamp;

use super::retry::{retrying, Failure, Kind};
use super::{BatchResultStore, BatchRun, RESULTS, RUNS};
use crate::query::{Map, Typed};
use crate::{pager_retryable, row_retryable};
use crate::{Error, Result};
use sluice_core::batch::{BatchResult, JobRange};
use sluice_core::retry::Backoff;
use sluice_core::sink::OwnedWindow;

/// batch_results, as read back (the partition key columns are known).
pub(super) type StoredResult = (
    String,
    CqlTimestamp,
    CqlTimestamp,
    Option<BTreeMap<String, String>>,
    Option<Vec<String>>,
    Option<Vec<String>>,
    Map<i64>,
    Map<f64>,
    Map<String>,
    Map<bool>,
);

/// batch_runs, as read back.
pub(super) type StoredRun = (
    CqlTimestamp,
    CqlTimestamp,
    Option<BTreeMap<String, String>>,
    Option<String>,
    Option<CqlTimestamp>,
    Option<CqlTimestamp>,
    Option<i64>,
    Option<i64>,
);

impl BatchResultStore {
    /// Every row of a paged read, retried from the start on a failure
    /// retrying may fix.
    pub(super) async fn read_all<R, V>(
        &self,
        table: &'static str,
        statement: &PreparedStatement,
        values: V,
    ) -> Result<Vec<R>>
    where
        R: for<'f, 'm> DeserializeRow<'f, 'm>,
        V: SerializeRow,
    {
        retrying!(
            self,
            Kind::Read,
            table,
            self.try_read_all(statement, &values).await
        )
    }

    pub(super) async fn try_read_all<R, V>(
        &self,
        statement: &PreparedStatement,
        values: &V,
    ) -> std::result::Result<Vec<R>, Failure>
    where
        R: for<'f, 'm> DeserializeRow<'f, 'm>,
        V: SerializeRow,
    {
        let mut rows = self
            .session
            .execute_iter(statement.clone(), values)
            .await
            .map_err(|e| Failure {
                retry: pager_retryable(&e),
                message: e.to_string(),
            })?
            .rows_stream::<R>()
            .map_err(|e| Failure::fatal(&e))?;
        let mut out = Vec::new();
        while let Some(row) = rows.try_next().await.map_err(|e| Failure {
            retry: row_retryable(&e),
            message: e.to_string(),
        })? {
            out.push(row);
        }
        Ok(out)
    }

    /// [`BatchResultStore::runs`] for async callers.
    pub async fn runs_async(&self, tenant: &str, job: &str) -> Result<Vec<BatchRun>> {
        let rows: Vec<StoredRun> = self
            .read_all(RUNS, &self.statements.select_runs, (tenant, job))
            .await?;
        Ok(rows
            .into_iter()
            .map(
                |(from, to, scope, trigger, started, finished, rows_in, results)| BatchRun {
                    tenant: tenant.to_owned(),
                    job: job.to_owned(),
                    range: JobRange {
                        from: from.0,
                        to: to.0,
                    },
                    scope: scope.unwrap_or_default(),
                    trigger: trigger.unwrap_or_default(),
                    started_at: started.map_or(0, |t| t.0),
                    finished_at: finished.map_or(0, |t| t.0),
                    rows_in: rows_in.map_or(0, i64::unsigned_abs),
                    results: results.map_or(0, i64::unsigned_abs),
                },
            )
            .collect())
    }

    /// [`BatchResultStore::ranges`] for async callers.
    pub async fn ranges_async(&self, tenant: &str, job: &str) -> Result<Vec<JobRange>> {
        let rows: Vec<(String, String, CqlTimestamp, CqlTimestamp)> = self
            .read_all(RESULTS, &self.statements.select_ranges, (tenant, job))
            .await?;
        let mut ranges: Vec<JobRange> = rows
            .into_iter()
            .map(|(_, _, from, to)| JobRange {
                from: from.0,
                to: to.0,
            })
            .collect();
        ranges.sort();
        Ok(ranges)
    }

    /// [`BatchResultStore::read`] for async callers.
    pub async fn read_async(
        &self,
        tenant: &str,
        job: &str,
        range: Option<JobRange>,
    ) -> Result<Vec<BatchResult>> {
        let ranges = match range {
            Some(range) => vec![range],
            None => self.ranges_async(tenant, job).await?,
        };
        let mut out = Vec::new();
        for range in ranges {
            let rows: Vec<StoredResult> = self
                .read_all(
                    RESULTS,
                    &self.statements.select_results,
                    (
                        tenant,
                        job,
                        CqlTimestamp(range.from),
                        CqlTimestamp(range.to),
                    ),
                )
                .await?;
            for (name, start, end, key, key_names, names, ints, floats, texts, bools) in rows {
                let key_names = key_names.unwrap_or_default();
                let key_map = key.unwrap_or_default();
                let key = key_names
                    .iter()
                    .map(|n| {
                        key_map.get(n).cloned().ok_or_else(|| Error::Read {
                            table: RESULTS,
                            message: format!(
                                "a stored result of job `{job}` has no value for key column `{n}`"
                            ),
                        })
                    })
                    .collect::<Result<Vec<String>>>()?;
                let fields = Typed {
                    names,
                    ints,
                    floats,
                    texts,
                    bools,
                }
                .fields();
                out.push(BatchResult {
                    tenant: tenant.to_owned(),
                    job: job.to_owned(),
                    range,
                    window: OwnedWindow {
                        name,
                        start: start.0,
                        end: end.0,
                    },
                    key_names,
                    key,
                    fields,
                });
            }
        }
        Ok(out)
    }

    /// [`BatchResultStore::count`] for async callers: reads each range's
    /// clustering keys, paged (a server-side `COUNT(*)` of a large
    /// partition can time out; pages cannot).
    pub async fn count_async(&self, tenant: &str, job: &str) -> Result<u64> {
        let mut total = 0u64;
        for range in self.ranges_async(tenant, job).await? {
            let values = (
                tenant,
                job,
                CqlTimestamp(range.from),
                CqlTimestamp(range.to),
            );
            total += retrying!(self, Kind::Read, RESULTS, self.try_count(&values).await)?;
        }
        Ok(total)
    }

    pub(super) async fn try_count(
        &self,
        values: &impl SerializeRow,
    ) -> std::result::Result<u64, Failure> {
        let mut rows = self
            .session
            .execute_iter(self.statements.select_keys.clone(), values)
            .await
            .map_err(|e| Failure {
                retry: pager_retryable(&e),
                message: e.to_string(),
            })?
            .rows_stream::<(Option<String>,)>()
            .map_err(|e| Failure::fatal(&e))?;
        let mut n = 0u64;
        while rows
            .try_next()
            .await
            .map_err(|e| Failure {
                retry: row_retryable(&e),
                message: e.to_string(),
            })?
            .is_some()
        {
            n += 1;
        }
        Ok(n)
    }
}
