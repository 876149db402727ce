//! Broker helpers the benchmarks share: the broker's address, a durable
//! queue collecting an output exchange, pre-publishing and paced
//! publishing with `sluice publish`'s code, and clean-up.

use lapin::options::{QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use lapin::Channel;
use sluice_host::amqp::publish::{self, PublishConfig};
use sluice_host::amqp::topology;

pub fn url() -> String {
    std::env::var("SLUICE_AMQP_URL").unwrap_or_else(|_| "amqp://127.0.0.1:5672/%2f".into())
}

/// Declares `exchange` and a durable `<exchange>.sink` queue bound to all
/// of it; returns the queue's name.
pub async fn bind_sink_queue(channel: &Channel, exchange: &str) -> String {
    topology::declare_output(channel, exchange)
        .await
        .expect("exchange");
    let q = format!("{exchange}.sink");
    channel
        .queue_declare(
            q.as_str().into(),
            QueueDeclareOptions::durable(),
            FieldTable::default(),
        )
        .await
        .expect("sink queue");
    channel
        .queue_bind(
            q.as_str().into(),
            exchange.into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("bind");
    q
}

/// Publishes `data`, `lines` rows a message, at `rate` rows/s (or at once).
pub async fn publish(queue: &str, data: &[u8], lines: usize, rate: Option<f64>) {
    publish::publish(
        &PublishConfig {
            url: url(),
            queue: queue.to_owned(),
            source_name: "bench".into(),
            rate,
            lines_per_message: lines,
            max_in_flight: 2000,
            partitioned: None,
        },
        data,
        std::future::pending(),
        |_| {},
    )
    .await
    .expect("publishing");
}

/// Publishes `data` at once, `lines` rows a message.
pub async fn prepublish(queue: &str, data: &[u8], lines: usize) {
    publish(queue, data, lines, None).await;
}

pub async fn delete(channel: &Channel, queues: &[&str]) {
    for q in queues {
        let _ = channel
            .queue_delete((*q).into(), QueueDeleteOptions::default())
            .await;
    }
}
