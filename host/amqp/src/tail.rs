//! `sluice tail`: a tenant's receiver. Binds its own exclusive,
//! server-named queue to the tenant's output exchange and prints each
//! result message as one JSON line.

use std::io::Write;

use futures_lite::StreamExt;
use lapin::options::{BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;

use crate::topology;
use sluice_core::data::OutputType;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Broker(#[from] crate::Error),
    #[error("writing the output: {0}")]
    Write(#[from] std::io::Error),
    #[error("the broker closed the connection: {0}")]
    Closed(String),
}

/// The binding key for a result type (its slug, `windowed-analytic.#`),
/// or all.
pub fn binding_key(ty: Option<OutputType>) -> String {
    match ty {
        Some(ty) => format!("{}.#", ty.slug()),
        None => "#".to_owned(),
    }
}

/// Prints results (each line of a packed message counts) until at least
/// `count` were printed (or forever; `stop` ends it cleanly). `on_ready`
/// runs once the queue is bound: from then on no result is missed. Returns
/// how many were printed.
pub async fn tail(
    url: &str,
    exchange: &str,
    binding: &str,
    count: Option<u64>,
    out: &mut dyn Write,
    stop: impl std::future::Future<Output = ()>,
    on_ready: impl FnOnce(),
) -> Result<u64, Error> {
    let connection = crate::connect(url, "sluice-tail").await?;
    let channel = connection
        .create_channel()
        .await
        .map_err(crate::Error::amqp("opening a channel"))?;
    topology::declare_output(&channel, exchange).await?;
    let queue = channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(crate::Error::amqp("declaring the tail queue"))?;
    channel
        .queue_bind(
            queue.name().clone(),
            exchange.into(),
            binding.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(crate::Error::amqp("binding the tail queue"))?;
    let mut consumer = channel
        .basic_consume(
            queue.name().clone(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(crate::Error::amqp("consuming"))?;
    on_ready();
    let mut printed = 0u64;
    tokio::pin!(stop);
    while count.is_none_or(|c| printed < c) {
        let delivery = tokio::select! {
            d = consumer.next() => d,
            () = &mut stop => break,
        };
        match delivery {
            Some(Ok(d)) => {
                // A packed message holds many lines, each ending in `\n`;
                // a per-result message one line without it.
                out.write_all(&d.data)?;
                if d.data.ends_with(b"\n") {
                    printed += d.data.iter().filter(|&&b| b == b'\n').count() as u64;
                } else {
                    out.write_all(b"\n")?;
                    printed += 1;
                }
                out.flush()?;
            }
            Some(Err(e)) => return Err(Error::Closed(e.to_string())),
            None => return Err(Error::Closed("the consumer was cancelled".into())),
        }
    }
    let _ = connection.close(200, "done".into()).await;
    Ok(printed)
}
