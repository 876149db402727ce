//! How a listing or partition read ends early: the reader gone, a failure
//! that may be retried, and the consecutive failures of one range or
//! partition with their backoff.

use std::sync::atomic::Ordering;

use scylla::errors::{NextRowError, PagerExecutionError};

use super::plan::Plan;
use super::MAX_ATTEMPTS;
use crate::{pager_retryable, row_retryable};
use sluice_core::retry::Backoff;

/// Why a task stopped early.
#[derive(Debug)]
pub(super) enum Stop {
    /// The reader is gone (the pipeline stopped): nothing to report.
    Closed,
    Failed(String),
}

/// A failed attempt: whether retrying may help, and why.
#[derive(Debug)]
pub(super) struct Failure {
    pub(super) retry: bool,
    pub(super) message: String,
}

/// How an attempt ended early: a stop, or a failure that may be retried.
#[derive(Debug)]
pub(super) enum Interrupt {
    Stop(Stop),
    Failure(Failure),
}

impl Interrupt {
    pub(super) fn pager(e: &PagerExecutionError) -> Interrupt {
        Interrupt::Failure(Failure {
            retry: pager_retryable(e),
            message: e.to_string(),
        })
    }

    pub(super) fn row(e: &NextRowError) -> Interrupt {
        Interrupt::Failure(Failure {
            retry: row_retryable(e),
            message: e.to_string(),
        })
    }

    pub(super) fn fatal(e: &dyn std::fmt::Display) -> Interrupt {
        Interrupt::Failure(Failure {
            retry: false,
            message: e.to_string(),
        })
    }
}

/// Consecutive failures of one listing or partition read.
pub(super) struct Attempts {
    pub(super) failures: u32,
    pub(super) backoff: Backoff,
}

impl Attempts {
    pub(super) fn new() -> Attempts {
        Attempts {
            failures: 0,
            backoff: Backoff::new(),
        }
    }

    /// A row arrived: the next failure is a first one again.
    pub(super) fn progress(&mut self) {
        if self.failures > 0 {
            self.failures = 0;
            self.backoff.reset();
        }
    }

    /// Waits before the next attempt, or says why there is none.
    pub(super) async fn failed(
        &mut self,
        plan: &Plan,
        what: &str,
        failure: Failure,
    ) -> Result<(), Stop> {
        self.failures += 1;
        if !failure.retry {
            return Err(Stop::Failed(format!(
                "{}: {}",
                plan.context(what),
                failure.message
            )));
        }
        if self.failures >= MAX_ATTEMPTS {
            return Err(Stop::Failed(format!(
                "{}: {} (gave up after {} attempts)",
                plan.context(what),
                failure.message,
                self.failures
            )));
        }
        plan.counters.retries.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            keyspace = %plan.keyspace,
            tenant = %plan.tenant,
            error = %failure.message,
            "event scan: {what} failed; resuming in {:?}",
            self.backoff.peek()
        );
        tokio::time::sleep(self.backoff.advance()).await;
        Ok(())
    }
}
