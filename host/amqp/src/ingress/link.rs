//! The consumer's connection: its consuming channel, a publisher channel
//! with confirms for dead letters, the consumer; and reconnecting with
//! backoff once it is lost.

use std::sync::atomic::Ordering;
use std::time::Instant;

use lapin::options::{BasicConsumeOptions, BasicQosOptions, ConfirmSelectOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection};

use crate::topology;
use sluice_core::retry::Backoff;

use super::consumer::ConsumerTask;
use super::AmqpIngressConfig;

pub(super) struct Link {
    pub(super) connection: Connection,
    pub(super) channel: Channel,
    /// For dead-lettering undecodable messages, with confirms.
    pub(super) publisher: Channel,
    pub(super) consumer: Option<lapin::Consumer>,
}

impl Link {
    /// Connects, declares the input and, unless `paused`, consumes.
    pub(super) async fn open(config: &AmqpIngressConfig, paused: bool) -> crate::Result<Link> {
        let connection = crate::connect(&config.url, "sluice-ingress").await?;
        let channel = connection
            .create_channel()
            .await
            .map_err(crate::Error::amqp("opening a channel"))?;
        match &config.partitioned {
            Some(p) => topology::declare_partitioned_input(&channel, p).await?,
            None => topology::declare_input(&channel, &config.queue).await?,
        }
        if config.commit_acks {
            channel
                .tx_select()
                .await
                .map_err(crate::Error::amqp("starting ack transactions"))?;
        }
        channel
            .basic_qos(config.prefetch, BasicQosOptions::default())
            .await
            .map_err(crate::Error::amqp("setting the prefetch"))?;
        let publisher = connection
            .create_channel()
            .await
            .map_err(crate::Error::amqp("opening a channel"))?;
        publisher
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(crate::Error::amqp("enabling publisher confirms"))?;
        let consumer = if paused {
            None
        } else {
            Some(consume(&channel, &config.queue).await?)
        };
        Ok(Link {
            connection,
            channel,
            publisher,
            consumer,
        })
    }
}

pub(super) async fn consume(channel: &Channel, queue: &str) -> crate::Result<lapin::Consumer> {
    channel
        .basic_consume(
            queue.into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(crate::Error::amqp("starting to consume"))
}

impl ConsumerTask {
    /// The connection is gone: reconnect with backoff. Deliveries not yet
    /// acked keep their place and are matched with their redeliveries.
    pub(super) async fn lost(&mut self, why: &str) -> crate::Result<()> {
        tracing::warn!(queue = %self.config.queue, reason = why, "lost the broker connection; reconnecting");
        if let Some(link) = self.link.take() {
            let _ = link.connection.close(200, "reconnecting".into()).await;
        }
        // Acks still on the wire are lost with the connection.
        self.applied_unacked.connection_lost();
        self.outstanding.clear();
        self.generation += 1;
        if !self.config.reconnect {
            // Another consumer may be active by now: end the input, and
            // tell the run so it emits nothing more.
            self.lost.store(true, Ordering::Release);
            self.held = None;
            self.activation = None;
            self.sender = None;
            return Ok(());
        }
        if self.sender.is_none() {
            // The input has ended; nothing more to consume.
            return Ok(());
        }
        let started = Instant::now();
        let mut backoff = Backoff::new();
        loop {
            match Link::open(&self.config, self.paused).await {
                Ok(link) => {
                    self.cancelling = false;
                    self.link = Some(link);
                    self.report.reconnects += 1;
                    tracing::info!(queue = %self.config.queue, "reconnected to the broker");
                    return Ok(());
                }
                Err(e) if started.elapsed() >= self.config.give_up => {
                    return Err(crate::Error::GaveUp {
                        url: crate::redact(&self.config.url),
                        after: self.config.give_up,
                        last: e.to_string(),
                    })
                }
                Err(e) => {
                    tracing::debug!(error = %e, "broker still unreachable");
                    tokio::time::sleep(backoff.advance()).await;
                }
            }
        }
    }
}
