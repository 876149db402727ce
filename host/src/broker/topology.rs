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

/// Declares the input queue with its dead-letter exchange and queue.
pub async fn declare_input(channel: &Channel, queue: &str) -> Result<()> {
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
    input_depth(channel, queue).await.map(|_| ())
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
