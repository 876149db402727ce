//! Retrying a request: what a failed attempt says ([`Failure`]), whether
//! it wrote or read ([`Kind`]), the `retrying!` loop, and the error a
//! request ends with.

use super::{BatchResultStore, Error};

/// A failed attempt: whether retrying may help, and why.
pub(super) struct Failure {
    pub(super) retry: bool,
    pub(super) message: String,
}

impl Failure {
    pub(super) fn fatal(e: &dyn std::fmt::Display) -> Failure {
        Failure {
            retry: false,
            message: e.to_string(),
        }
    }
}

/// Whether a request writes or reads (which error it ends with).
#[derive(Debug, Clone, Copy)]
pub(super) enum Kind {
    Write,
    Read,
}

/// Retries `$attempt` (an expression yielding `Result<T, Failure>`) with
/// backoff until it succeeds, fails for good or `give_up` has passed.
macro_rules! retrying {
    ($store:expr, $kind:expr, $table:expr, $attempt:expr) => {{
        let mut backoff = Backoff::new();
        let started = Instant::now();
        loop {
            match $attempt {
                Ok(value) => break Ok(value),
                Err(Failure { retry, message })
                    if !retry || started.elapsed() >= $store.give_up =>
                {
                    break Err($store.failed($kind, $table, retry, message))
                }
                Err(Failure { message, .. }) => {
                    $store.retries.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        keyspace = %$store.keyspace,
                        table = $table,
                        error = %message,
                        "Cassandra request failed; retrying in {:?}",
                        backoff.peek()
                    );
                    tokio::time::sleep(backoff.advance()).await;
                }
            }
        }
    }};
}
pub(super) use retrying;

impl BatchResultStore {
    /// The error a request ends with: one retrying cannot fix, or the
    /// last of those retried until `give_up`.
    pub(super) fn failed(
        &self,
        kind: Kind,
        table: &'static str,
        retried: bool,
        message: String,
    ) -> Error {
        match (kind, retried) {
            (Kind::Write, false) => Error::Write { table, message },
            (Kind::Write, true) => Error::GaveUp {
                after: self.give_up,
                last: message,
            },
            (Kind::Read, false) => Error::Read { table, message },
            (Kind::Read, true) => Error::ReadGaveUp {
                table,
                after: self.give_up,
                last: message,
            },
        }
    }
}
