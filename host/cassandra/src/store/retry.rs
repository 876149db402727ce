//! Retrying a request: what a failed attempt says ([`Failure`]), the
//! `retrying!` loop, and the wait (or the reason for none) after a
//! failure.

use std::time::Instant;

use scylla::errors::ExecutionError;
use scylla::statement::prepared::PreparedStatement;

use super::{CassandraStore, StoreError};
use crate as sink;
use sluice_core::retry::Backoff;

/// A failed attempt: whether retrying may help, and why.
pub(super) struct Failure {
    pub(super) retry: bool,
    pub(super) message: String,
}

impl Failure {
    pub(super) fn execution(e: &ExecutionError) -> Failure {
        Failure {
            retry: sink::retryable(e),
            message: e.to_string(),
        }
    }

    /// A failed read (paging, a lost connection): worth another attempt.
    pub(super) fn transient(e: &dyn std::fmt::Display) -> Failure {
        Failure {
            retry: true,
            message: e.to_string(),
        }
    }

    /// Rows that do not have the expected types: a schema this host does
    /// not know; retrying cannot help.
    pub(super) fn fatal(e: &dyn std::fmt::Display) -> Failure {
        Failure {
            retry: false,
            message: e.to_string(),
        }
    }
}

/// Retries `$attempt` (an expression yielding `Result<T, Failure>`) with
/// backoff until it succeeds, fails for good or `give_up` has passed.
macro_rules! retrying {
    ($store:expr, $what:expr, $attempt:expr) => {{
        let mut backoff = Backoff::new();
        let started = Instant::now();
        loop {
            match $attempt {
                Ok(value) => break Ok(value),
                Err(failure) => {
                    if let Err(e) = $store.failed($what, started, &mut backoff, failure).await {
                        break Err(e);
                    }
                }
            }
        }
    }};
}
pub(super) use retrying;

impl CassandraStore {
    /// After a failed attempt: waits before the next one, or says why
    /// there will be none.
    pub(super) async fn failed(
        &self,
        what: &'static str,
        started: Instant,
        backoff: &mut Backoff,
        failure: Failure,
    ) -> Result<(), StoreError> {
        if !failure.retry {
            return Err(StoreError::Failed {
                what,
                message: failure.message,
            });
        }
        if started.elapsed() >= self.give_up {
            return Err(StoreError::GaveUp {
                what,
                after: self.give_up,
                last: failure.message,
            });
        }
        tracing::warn!(
            keyspace = %self.keyspace,
            pipeline = %self.pipeline,
            error = %failure.message,
            "checkpoint store: {what} failed; retrying in {:?}",
            backoff.peek()
        );
        tokio::time::sleep(backoff.advance()).await;
        Ok(())
    }

    pub(super) async fn execute(
        &self,
        what: &'static str,
        statement: &PreparedStatement,
        values: impl scylla::serialize::row::SerializeRow + Clone,
    ) -> Result<scylla::response::query_result::QueryResult, StoreError> {
        retrying!(
            self,
            what,
            self.session
                .execute_unpaged(statement, values.clone())
                .await
                .map_err(|e| Failure::execution(&e))
        )
    }

    /// The one column of `statement`'s first row for `slot`, if there is a
    /// row and the column is set (a slot's chunk count, a chunk's id).
    pub(super) async fn slot_value<T>(
        &self,
        what: &'static str,
        statement: &PreparedStatement,
        slot: i32,
    ) -> Result<Option<T>, StoreError>
    where
        (Option<T>,): for<'f, 'm> scylla::deserialize::row::DeserializeRow<'f, 'm>,
    {
        let result = self
            .execute(what, statement, (&self.tenant, &self.pipeline, slot))
            .await?;
        let fatal = |e: &dyn std::fmt::Display| StoreError::Failed {
            what,
            message: e.to_string(),
        };
        let rows = result.into_rows_result().map_err(|e| fatal(&e))?;
        let row = rows
            .maybe_first_row::<(Option<T>,)>()
            .map_err(|e| fatal(&e))?;
        Ok(row.and_then(|(value,)| value))
    }
}
