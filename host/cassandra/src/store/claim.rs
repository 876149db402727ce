//! Ownership of a partition's checkpoints: claiming the next generation
//! by lightweight transaction, dropping the slots of the generations
//! before it once it has written its first checkpoint, and reading who
//! holds it (for hosts that stand by).

use std::sync::atomic::Ordering;
use std::time::Duration;

use scylla::statement::prepared::PreparedStatement;
use scylla::statement::Consistency;

use super::{CassandraStore, StoreError};
use crate as sink;

/// The statement [`read_owner`] runs, prepared once per session: a host
/// standing by for a partitioned tenant reads each standby partition's
/// owner every few seconds. At `ONE`: the read is informational (who runs
/// a partition, for the views), and a claim racing with it shows on the
/// next.
pub async fn prepare_owner_read(
    session: &scylla::client::session::Session,
    keyspace: &str,
) -> Result<PreparedStatement, StoreError> {
    let mut statement = session
        .prepare(format!(
            "SELECT owner_generation, owner FROM {keyspace}.checkpoints \
             WHERE tenant = ? AND pipeline = ? LIMIT 1"
        ))
        .await
        .map_err(|e| StoreError::Failed {
            what: "preparing the partition owner read",
            message: e.to_string(),
        })?;
    statement.set_consistency(Consistency::One);
    Ok(statement)
}

/// The current owner of `pipeline`'s checkpoints: its generation and the
/// name it claimed with (without the per-attempt suffix `claim` adds);
/// `None` before any claim. `statement`: [`prepare_owner_read`]'s.
pub async fn read_owner(
    session: &scylla::client::session::Session,
    statement: &PreparedStatement,
    tenant: &str,
    pipeline: &str,
) -> Result<Option<(i64, String)>, StoreError> {
    let fail = |e: &dyn std::fmt::Display| StoreError::Failed {
        what: "reading a partition's owner",
        message: e.to_string(),
    };
    let row = session
        .execute_unpaged(statement, (tenant, pipeline))
        .await
        .map_err(|e| fail(&e))?
        .into_rows_result()
        .map_err(|e| fail(&e))?
        .maybe_first_row::<(Option<i64>, Option<String>)>()
        .map_err(|e| fail(&e))?;
    Ok(match row {
        Some((Some(generation), Some(owner))) => {
            let name = owner.rsplit_once(" #").map_or(owner.as_str(), |(n, _)| n);
            Some((generation, name.to_owned()))
        }
        _ => None,
    })
}

impl CassandraStore {
    /// Claims the pipeline for `owner` (a name for logs and
    /// `checkpoints.owner`): the next ownership generation, through a
    /// lightweight transaction, so two hosts never hold the same one. From
    /// now on this store's checkpoints are written only while no later
    /// claim was made. Returns the generation.
    pub fn claim(&mut self, owner: &str) -> Result<i64, StoreError> {
        let generation = self.runtime.clone().block_on(self.claim_async(owner))?;
        self.generation = Some(generation);
        self.dropped_older.store(false, Ordering::Relaxed);
        Ok(generation)
    }

    pub(super) async fn claim_async(&self, owner: &str) -> Result<i64, StoreError> {
        // A unique name per attempt: after a claim whose outcome was not
        // known (a timeout), the read that follows says whether it was ours.
        static CLAIMS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let me = format!(
            "{owner} #{}.{nanos}.{}",
            std::process::id(),
            CLAIMS.fetch_add(1, Ordering::Relaxed)
        );
        let (tenant, pipeline) = (self.tenant.as_str(), self.pipeline.as_str());
        let what = "claiming a partition";
        let fatal = |e: &dyn std::fmt::Display| StoreError::Failed {
            what,
            message: e.to_string(),
        };
        for _ in 0..100 {
            let current = self
                .execute(what, &self.statements.select_owner, (tenant, pipeline))
                .await?
                .into_rows_result()
                .map_err(|e| fatal(&e))?
                .maybe_first_row::<(Option<i64>, Option<String>)>()
                .map_err(|e| fatal(&e))?;
            let (now, holder) = current.unwrap_or((None, None));
            if let (Some(g), Some(h)) = (now, &holder) {
                if *h == me {
                    return Ok(g);
                }
            }
            let next = now.unwrap_or(0) + 1;
            let attempt = match now {
                None => {
                    self.session
                        .execute_unpaged(
                            &self.statements.claim_first,
                            (next, me.as_str(), tenant, pipeline),
                        )
                        .await
                }
                Some(g) => {
                    self.session
                        .execute_unpaged(
                            &self.statements.claim_next,
                            (next, me.as_str(), tenant, pipeline, g),
                        )
                        .await
                }
            };
            match attempt {
                Ok(result) => {
                    if applied(result).map_err(|e| fatal(&e))? {
                        return Ok(next);
                    }
                    // Another claim came first: read again.
                }
                Err(e) if sink::retryable(&e) => {
                    tracing::warn!(%pipeline, error = %e, "claim: outcome unknown; reading the owner again");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(fatal(&e)),
            }
        }
        Err(StoreError::Failed {
            what,
            message: "100 claims in a row were beaten by other hosts".into(),
        })
    }

    /// After the first checkpoint of a claimed generation: the slots of
    /// earlier generations (their markers and chunks) are not needed any
    /// more. A failure only leaves them for the next claim to drop.
    pub(super) async fn drop_older_generations(&self) {
        let Some(generation) = self.generation else {
            return;
        };
        if self.dropped_older.swap(true, Ordering::Relaxed) {
            return;
        }
        let base = i32::try_from(generation * i64::from(self.slots)).unwrap_or(i32::MAX);
        let (tenant, pipeline) = (self.tenant.as_str(), self.pipeline.as_str());
        let old: Vec<i32> = match self.markers().await {
            Ok(rows) => rows
                .into_iter()
                .map(|r| r.0)
                .filter(|s| *s < base)
                .collect(),
            Err(e) => {
                tracing::warn!(%pipeline, error = %e, "listing older checkpoint slots");
                return;
            }
        };
        for slot in &old {
            if let Err(e) = self
                .execute(
                    "dropping a slot",
                    &self.statements.drop_slot,
                    (tenant, pipeline, *slot),
                )
                .await
            {
                tracing::warn!(%pipeline, slot, error = %e, "dropping an older checkpoint slot");
                return;
            }
        }
        if !old.is_empty() {
            if let Err(e) = self
                .execute(
                    "dropping older markers",
                    &self.statements.drop_markers_below,
                    (tenant, pipeline, base),
                )
                .await
            {
                tracing::warn!(%pipeline, error = %e, "dropping older checkpoint markers");
            }
        }
    }
}

/// Whether a lightweight transaction was applied (its `[applied]` column).
fn applied(
    result: scylla::response::query_result::QueryResult,
) -> Result<bool, Box<dyn std::error::Error + Send + Sync>> {
    let rows = result.into_rows_result()?;
    let row = rows.maybe_first_row::<scylla::value::Row>()?;
    Ok(matches!(
        row.and_then(|r| r.columns.into_iter().next().flatten()),
        Some(scylla::value::CqlValue::Boolean(true))
    ))
}
