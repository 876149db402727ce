//! Every declaration sluice makes, in one place. Declarations are
//! idempotent on the broker only when name, flags and arguments match
//! exactly, so everything that declares a sluice queue or exchange calls
//! these functions and nothing else.
//!
//! - Input: a durable queue `<queue>` whose dead-letter exchange is
//!   `<queue>.dead` (fanout, durable), bound to a durable queue
//!   `<queue>.dead` that keeps what nobody could process: messages sluice
//!   could not decode (published there by the host with the reason in a
//!   header), bad rows, late rows and poison events (as JSON dead letters),
//!   and anything the broker itself dead-letters (rejections, TTL).
//! - Partitioned input (`[input] partitions = P`): a durable
//!   consistent-hash exchange `<queue>` (RabbitMQ's
//!   `rabbitmq_consistent_hash_exchange` plugin) bound to P durable queues
//!   `<queue>.p0` … `<queue>.p{P-1}` (equal weights), each declared with
//!   `x-single-active-consumer` so the broker delivers a partition to one
//!   host at a time, and all dead-lettering to the one `<queue>.dead`.
//!   Publishers set the routing key to the record's key
//!   ([`partition_routing_key`]); the exchange sends a key to one queue.
//! - Output: a durable topic exchange; routing key
//!   `<type>.<key values joined by '.'>`.

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, ExchangeKind};

use super::{Error, Result};

/// Header naming why a message was dead-lettered.
pub const REASON_HEADER: &str = "x-sluice-reason";
/// Header naming what a dead letter is: `message` (a whole message that
/// could not be decoded), `bad-row`, `late`, `poison`.
pub const KIND_HEADER: &str = "x-sluice-kind";

/// Header of a packed results message: how many results (lines) it holds.
pub const RESULTS_HEADER: &str = "x-sluice-results";

/// Content type of a packed results message: newline-delimited JSON.
pub const PACKED_CONTENT_TYPE: &str = "application/x-ndjson";

/// Header with the publish time in ms since the epoch (the `timestamp`
/// property holds whole seconds); the name RabbitMQ's message-timestamp
/// plugin uses, so a broker with the plugin sets it for any publisher.
pub const TIMESTAMP_MS_HEADER: &str = "timestamp_in_ms";

/// The dead-letter exchange (and queue) of an input queue.
pub fn dead_letter_name(queue: &str) -> String {
    format!("{queue}.dead")
}

/// The input queue's arguments: its dead-letter exchange.
pub fn input_queue_arguments(queue: &str) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(dead_letter_name(queue).into()),
    );
    args
}

/// Points each partition queue gets on the exchange's hash ring. With one
/// point a queue's share of the keys is as uneven as P random cuts of a
/// circle; with 50 it is within a few percent of 1/P.
pub const PARTITION_WEIGHT: &str = "50";

/// The partitioned input a partition queue belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partitioned {
    /// The manifest's `[input] queue`: the exchange's name and the queues'
    /// prefix.
    pub base: String,
    pub count: u16,
}

impl Partitioned {
    /// Partition `index`'s queue.
    pub fn queue(&self, index: u16) -> String {
        format!("{}.p{index}", self.base)
    }
}

/// Separates key values in a partition routing key. Which character it is
/// matters only for where keys land, not for correctness: the exchange
/// hashes the whole routing key, so one key always goes to one queue.
pub const ROUTING_KEY_SEPARATOR: char = '|';

/// The routing key of a record with these key values on a partitioned
/// input: the values joined by [`ROUTING_KEY_SEPARATOR`]. A row without
/// a readable key uses the empty routing key, so all of them reach one
/// partition (which then counts them all in the tenant-level metric).
pub fn partition_routing_key<'a>(values: impl IntoIterator<Item = &'a str>) -> String {
    let mut key = String::new();
    for (i, v) in values.into_iter().enumerate() {
        if i > 0 {
            key.push(ROUTING_KEY_SEPARATOR);
        }
        key.push_str(v);
    }
    key
}

/// A partition queue's arguments: the shared dead-letter exchange and a
/// single active consumer.
pub fn partition_queue_arguments(base: &str) -> FieldTable {
    let mut args = input_queue_arguments(base);
    args.insert("x-single-active-consumer".into(), AMQPValue::Boolean(true));
    args
}

/// Declares a partitioned input: the dead-letter exchange and queue, the
/// consistent-hash exchange and its partition queues with their bindings.
pub async fn declare_partitioned_input(channel: &Channel, input: &Partitioned) -> Result<()> {
    declare_dead_letter(channel, &input.base).await?;
    channel
        .exchange_declare(
            input.base.as_str().into(),
            ExchangeKind::Custom("x-consistent-hash".into()),
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(declare(format!(
            "the partition exchange {} (is the rabbitmq_consistent_hash_exchange plugin enabled?)",
            input.base
        )))?;
    for index in 0..input.count {
        let queue = input.queue(index);
        partition_depth(channel, input, &queue).await?;
        channel
            .queue_bind(
                queue.as_str().into(),
                input.base.as_str().into(),
                // The consistent-hash exchange reads the binding key as the
                // queue's number of points on its hash ring: equal weights,
                // and enough points that keys spread evenly.
                PARTITION_WEIGHT.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(declare(format!("the binding of {queue}")))?;
    }
    Ok(())
}

/// Messages ready in one partition queue and its consumers (one per host
/// consuming it, active or waiting), declared as everywhere.
pub async fn partition_depth(
    channel: &Channel,
    input: &Partitioned,
    queue: &str,
) -> Result<(u32, u32)> {
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions::durable(),
            partition_queue_arguments(&input.base),
        )
        .await
        .map(|q| (q.message_count(), q.consumer_count()))
        .map_err(declare(format!("the partition queue {queue}")))
}

/// Declares the input queue with its dead-letter exchange and queue.
pub async fn declare_input(channel: &Channel, queue: &str) -> Result<()> {
    declare_dead_letter(channel, queue).await?;
    input_depth(channel, queue).await.map(|_| ())
}

/// The dead-letter exchange and queue of input `queue`.
async fn declare_dead_letter(channel: &Channel, queue: &str) -> Result<()> {
    let dead = dead_letter_name(queue);
    channel
        .exchange_declare(
            dead.as_str().into(),
            ExchangeKind::Fanout,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(declare(format!("the dead-letter exchange {dead}")))?;
    channel
        .queue_declare(
            dead.as_str().into(),
            QueueDeclareOptions::durable(),
            FieldTable::default(),
        )
        .await
        .map_err(declare(format!("the dead-letter queue {dead}")))?;
    channel
        .queue_bind(
            dead.as_str().into(),
            dead.as_str().into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(declare(format!("the binding of {dead}")))?;
    Ok(())
}

/// Messages ready in the input queue (delivered ones not counted), read by
/// declaring it again as it is declared everywhere: a passive declare of a
/// missing queue would close the channel.
pub async fn input_depth(channel: &Channel, queue: &str) -> Result<u32> {
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions::durable(),
            input_queue_arguments(queue),
        )
        .await
        .map(|q| q.message_count())
        .map_err(declare(format!("the input queue {queue}")))
}

/// Declares the output exchange (durable, topic).
pub async fn declare_output(channel: &Channel, exchange: &str) -> Result<()> {
    channel
        .exchange_declare(
            exchange.into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(declare(format!("the output exchange {exchange}")))
}

fn declare(what: String) -> impl FnOnce(lapin::Error) -> Error {
    move |source| Error::Declare { what, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_queues_and_routing_keys() {
        let input = Partitioned {
            base: "bts.readings".into(),
            count: 6,
        };
        assert_eq!(input.queue(0), "bts.readings.p0");
        assert_eq!(input.queue(5), "bts.readings.p5");
        assert_eq!(
            partition_routing_key(["1161115009", "121", "308"]),
            "1161115009|121|308"
        );
        assert_eq!(partition_routing_key(std::iter::empty()), "");
        let args = partition_queue_arguments("bts.readings");
        let inner = args.inner();
        assert_eq!(
            inner.get("x-single-active-consumer"),
            Some(&AMQPValue::Boolean(true))
        );
        assert_eq!(
            inner.get("x-dead-letter-exchange"),
            Some(&AMQPValue::LongString("bts.readings.dead".into()))
        );
    }
}
