//! The broker sink: every result line becomes a persistent JSON message on
//! the tenant's output exchange (routing key `<type>.<key…>`, a
//! deterministic `message_id`) — or, with `[output] messages = "packed"`,
//! a batch's results of one type one newline-delimited JSON message
//! (routing key `<type>`, [`Rendered::packed`]) — every dead letter a message on the input's
//! dead-letter exchange; each batch is published with publisher confirms
//! and [`MessageSink::publish`] returns only when the broker has confirmed
//! all of it. A lost connection is re-opened with backoff and the batch
//! published again: duplicates carry the ids they had, so consumers drop
//! them.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Confirmation, Connection};

use crate::topology;
use sluice_core::manifest::OutputMessages;
use sluice_core::retry::Backoff;
use sluice_core::sink::{Error, MessageSink, Rendered, Result, Stream, MAX_PACKED};

/// Where the sink publishes.
#[derive(Debug, Clone)]
pub struct AmqpSinkConfig {
    pub url: String,
    /// The tenant's output exchange (declared durable topic).
    pub exchange: String,
    /// The input queue's dead-letter exchange, for dead letters; `None`
    /// keeps dead letters to the line sink only.
    pub dead_letter_exchange: Option<String>,
    /// Stop retrying a batch after the broker has been unreachable this long.
    pub give_up: Duration,
    /// One message per result, or packed (results only; dead letters are
    /// always one message each).
    pub messages: OutputMessages,
}

struct Link {
    /// Kept so the channel's connection stays open.
    _connection: Connection,
    channel: Channel,
    generation: u64,
}

/// Publishes results and dead letters to RabbitMQ; shared by all workers.
pub struct AmqpSink {
    config: AmqpSinkConfig,
    runtime: tokio::runtime::Handle,
    link: Mutex<Option<(Channel, u64)>>,
    /// Held while (re)connecting, so workers that fail together reconnect once.
    reconnect: tokio::sync::Mutex<Option<Link>>,
}

impl std::fmt::Debug for AmqpSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpSink")
            .field("exchange", &self.config.exchange)
            .finish()
    }
}

impl AmqpSink {
    /// Connects and declares the output exchange; fails at once when the
    /// broker is unreachable (a run should not start against nothing).
    pub async fn connect(
        config: AmqpSinkConfig,
        runtime: tokio::runtime::Handle,
    ) -> crate::Result<AmqpSink> {
        let link = open(&config, 1).await?;
        let sink = AmqpSink {
            link: Mutex::new(Some((link.channel.clone(), link.generation))),
            reconnect: tokio::sync::Mutex::new(Some(link)),
            config,
            runtime,
        };
        Ok(sink)
    }

    fn current(&self) -> Option<(Channel, u64)> {
        self.link.lock().ok().and_then(|l| l.clone())
    }

    /// Replaces a failed link (generation `failed`) unless another worker
    /// already did.
    async fn relink(&self, failed: u64) -> crate::Result<(Channel, u64)> {
        let mut guard = self.reconnect.lock().await;
        if let Some(link) = guard.as_ref() {
            if link.generation != failed && link.channel.status().connected() {
                return Ok((link.channel.clone(), link.generation));
            }
        }
        let started = Instant::now();
        let mut backoff = Backoff::new();
        let next = guard.as_ref().map_or(failed, |l| l.generation) + 1;
        let link = loop {
            match open(&self.config, next).await {
                Ok(link) => break link,
                Err(e) if started.elapsed() >= self.config.give_up => {
                    return Err(crate::Error::GaveUp {
                        url: crate::redact(&self.config.url),
                        after: self.config.give_up,
                        last: e.to_string(),
                    })
                }
                Err(e) => {
                    tracing::warn!(error = %e, "result sink: broker unreachable; retrying");
                    tokio::time::sleep(backoff.advance()).await;
                }
            }
        };
        tracing::info!(
            exchange = %self.config.exchange,
            "result sink: reconnected to the broker"
        );
        let current = (link.channel.clone(), link.generation);
        if let Ok(mut l) = self.link.lock() {
            *l = Some(current.clone());
        }
        *guard = Some(link);
        Ok(current)
    }

    async fn publish_async(&self, stream: Stream, batch: &Rendered) -> crate::Result<()> {
        let exchange = match stream {
            Stream::Results => self.config.exchange.as_str(),
            Stream::DeadLetters => match &self.config.dead_letter_exchange {
                Some(x) => x.as_str(),
                None => return Ok(()),
            },
        };
        let (mut channel, mut generation) = match self.current() {
            Some(c) => c,
            None => self.relink(0).await?,
        };
        let started = Instant::now();
        let mut backoff = Backoff::new();
        loop {
            let packed =
                stream == Stream::Results && self.config.messages == OutputMessages::Packed;
            let published = if packed {
                publish_packed(&channel, exchange, batch).await
            } else {
                publish_batch(&channel, exchange, stream, batch).await
            };
            match published {
                Ok(()) => return Ok(()),
                Err(e) if started.elapsed() >= self.config.give_up => {
                    return Err(crate::Error::GaveUp {
                        url: crate::redact(&self.config.url),
                        after: self.config.give_up,
                        last: e.to_string(),
                    })
                }
                Err(e) => {
                    tracing::warn!(error = %e, exchange, "publishing a batch failed; reconnecting and publishing it again");
                    tokio::time::sleep(backoff.advance()).await;
                    (channel, generation) = self.relink(generation).await?;
                }
            }
        }
    }
}

impl MessageSink for AmqpSink {
    fn publish(&self, stream: Stream, batch: &Rendered) -> Result<()> {
        if batch.messages_len() == 0 {
            return Ok(());
        }
        self.runtime
            .block_on(self.publish_async(stream, batch))
            .map_err(|e| Error::Publish {
                sink: match stream {
                    Stream::Results => "result exchange",
                    Stream::DeadLetters => "dead-letter exchange",
                },
                source: Box::new(e),
            })
    }
}

async fn open(config: &AmqpSinkConfig, generation: u64) -> crate::Result<Link> {
    let connection = crate::connect(&config.url, "sluice-results").await?;
    let channel = connection
        .create_channel()
        .await
        .map_err(crate::Error::amqp("opening a channel"))?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(crate::Error::amqp("enabling publisher confirms"))?;
    topology::declare_output(&channel, &config.exchange).await?;
    Ok(Link {
        _connection: connection,
        channel,
        generation,
    })
}

/// Publishes `batch`'s results packed by type, then waits for every
/// confirm.
async fn publish_packed(channel: &Channel, exchange: &str, batch: &Rendered) -> crate::Result<()> {
    let mut confirms = Vec::new();
    for message in batch.packed(MAX_PACKED) {
        let mut headers = FieldTable::default();
        headers.insert(
            topology::RESULTS_HEADER.into(),
            AMQPValue::LongLongInt(i64::try_from(message.results).unwrap_or(i64::MAX)),
        );
        let props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type(topology::PACKED_CONTENT_TYPE.into())
            .with_message_id(message.message_id.as_str().into())
            .with_app_id("sluice".into())
            .with_headers(headers);
        let confirm = channel
            .basic_publish(
                exchange.into(),
                message.routing_key.as_str().into(),
                BasicPublishOptions::default(),
                &message.body,
                props,
            )
            .await
            .map_err(crate::Error::amqp("publishing packed results"))?;
        confirms.push(confirm);
    }
    await_confirms(confirms, exchange).await
}

/// Publishes every message of `batch`, then waits for every confirm.
async fn publish_batch(
    channel: &Channel,
    exchange: &str,
    stream: Stream,
    batch: &Rendered,
) -> crate::Result<()> {
    let mut confirms = Vec::with_capacity(batch.messages_len());
    for (line, route) in batch.messages() {
        let mut props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/json".into())
            .with_message_id(route.message_id.as_str().into())
            .with_app_id("sluice".into());
        if stream == Stream::DeadLetters {
            let mut headers = FieldTable::default();
            headers.insert(
                topology::KIND_HEADER.into(),
                AMQPValue::LongString(route.routing_key.as_str().into()),
            );
            props = props.with_headers(headers);
        }
        let confirm = channel
            .basic_publish(
                exchange.into(),
                route.routing_key.as_str().into(),
                BasicPublishOptions::default(),
                line,
                props,
            )
            .await
            .map_err(crate::Error::amqp("publishing a result"))?;
        confirms.push(confirm);
    }
    await_confirms(confirms, exchange).await
}

/// Waits for every publisher confirm; a nack fails the batch.
async fn await_confirms(
    confirms: Vec<lapin::PublisherConfirm>,
    exchange: &str,
) -> crate::Result<()> {
    for confirm in confirms {
        match confirm
            .await
            .map_err(crate::Error::amqp("waiting for a publisher confirm"))?
        {
            Confirmation::Ack(_) | Confirmation::NotRequested => {}
            Confirmation::Nack(_) => {
                return Err(crate::Error::Nacked {
                    exchange: exchange.to_owned(),
                })
            }
        }
    }
    Ok(())
}
