//! RabbitMQ (AMQP 0-9-1): connecting with backoff, and the topology —
//! every queue and exchange sluice declares, with its arguments, in one
//! place ([`topology`]), so the host, `sluice publish` and `sluice tail`
//! never meet a mismatched declaration. `ingress/`: the consumer the
//! pipeline reads; `sink.rs`: results and dead letters published with
//! confirms; `publish.rs` and `tail.rs`: the `sluice publish` (sensor
//! simulator) and `sluice tail` (the tenant's receiver) clients.

pub mod ingress;
pub mod publish;
pub mod sink;
pub mod tail;
pub mod topology;

use sluice_core::retry::Backoff;

use std::time::Duration;

use lapin::{Connection, ConnectionProperties};

/// Result of broker operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Broker errors. Connection failures are retried by the callers that can
/// wait (ingress, sinks); these are what is left after that, or a
/// declaration the broker refused.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("connecting to the broker at {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: lapin::Error,
    },
    #[error("declaring {what}: {source}")]
    Declare {
        what: String,
        #[source]
        source: lapin::Error,
    },
    #[error("{what}: {source}")]
    Amqp {
        what: &'static str,
        #[source]
        source: lapin::Error,
    },
    #[error("the broker refused (nack) a message published to {exchange}")]
    Nacked { exchange: String },
    #[error("the broker at {url} stayed unreachable for {after:?}; last error: {last}")]
    GaveUp {
        url: String,
        after: Duration,
        last: String,
    },
}

impl Error {
    /// `Amqp` with a description of what was being done.
    pub fn amqp(what: &'static str) -> impl FnOnce(lapin::Error) -> Error {
        move |source| Error::Amqp { what, source }
    }
}

/// Opens a connection named `name` (shown in the broker's management UI).
pub async fn connect(url: &str, name: &str) -> Result<Connection> {
    let props = ConnectionProperties::default().with_connection_name(name.into());
    Connection::connect(url, props)
        .await
        .map_err(|source| Error::Connect {
            url: redact(url),
            source,
        })
}

/// Connects, retrying with [`Backoff`] until `give_up` has passed.
pub async fn connect_with_retry(url: &str, name: &str, give_up: Duration) -> Result<Connection> {
    let started = std::time::Instant::now();
    let mut backoff = Backoff::new();
    loop {
        match connect(url, name).await {
            Ok(conn) => return Ok(conn),
            Err(e) if started.elapsed() >= give_up => {
                return Err(Error::GaveUp {
                    url: redact(url),
                    after: give_up,
                    last: e.to_string(),
                })
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff.peek(), "broker unreachable; retrying");
                tokio::time::sleep(backoff.advance()).await;
            }
        }
    }
}

/// The URL without its password, for messages and logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &userinfo[..colon],
                    &url[at..]
                ),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_only_the_password() {
        assert_eq!(
            redact("amqp://guest:secret@127.0.0.1:5672/%2f"),
            "amqp://guest:***@127.0.0.1:5672/%2f"
        );
        assert_eq!(redact("amqp://127.0.0.1:5672"), "amqp://127.0.0.1:5672");
        assert_eq!(redact("amqp://user@host"), "amqp://user@host");
    }
}
