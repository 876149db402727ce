//! The consumer task: its loop over deliveries, operator commands, settled
//! acks, backlog samples and the idle timer; pausing, resuming and
//! activating; each delivery recognised, dead-lettered when undecodable,
//! or handed to the pipeline.

use std::collections::{BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicCancelOptions, BasicPublishOptions};
use lapin::types::AMQPValue;
use lapin::{BasicProperties, Confirmation};
use tokio::sync::{mpsc, oneshot};

use crate::topology;
use sluice_core::ingress::Message;

use super::ack::{Pending, Settled};
use super::link::{consume, Link};
use super::redelivery::{AppliedUnacked, Fingerprint};
use super::{AmqpIngressConfig, Command, IngressGauges, IngressReport};

/// The task behind an [`AmqpIngress`](super::AmqpIngress). Its fields are
/// `pub(super)`: `start` builds it, and `ack.rs` and `link.rs` hold the
/// methods of their concerns.
pub(super) struct ConsumerTask {
    pub(super) config: AmqpIngressConfig,
    /// Paused by the operator: no consumer on the queue.
    pub(super) paused: bool,
    /// A `basic.cancel` was sent; the consumer's stream still yields what
    /// the broker had pushed before it, then ends.
    pub(super) cancelling: bool,
    pub(super) link: Option<Link>,
    pub(super) generation: u64,
    /// `None` once the input has ended (idle): no more deliveries go on.
    pub(super) sender: Option<mpsc::Sender<Message>>,
    pub(super) acks: Arc<Settled>,
    pub(super) pending: VecDeque<Pending>,
    /// Applied deliveries the broker may still redeliver: their
    /// redeliveries are acked without being applied.
    pub(super) applied_unacked: AppliedUnacked,
    /// Unacked delivery tags of the current connection.
    pub(super) outstanding: BTreeSet<u64>,
    pub(super) next_seq: u64,
    pub(super) report: IngressReport,
    /// Some ack of this input was not sent or not committed: its message
    /// will come back (see [`IngressReport::acks_committed`]).
    pub(super) acks_failed: bool,
    pub(super) gauges: Arc<IngressGauges>,
    /// Deliveries held until activation (`await_activation`).
    pub(super) held: Option<Vec<Delivery>>,
    /// Deliveries held while paused (`await_activation`: the consumer
    /// stays, see [`ConsumerTask::pause`]).
    pub(super) pause_held: Option<Vec<Delivery>>,
    pub(super) activation: Option<oneshot::Sender<()>>,
    pub(super) lost: Arc<AtomicBool>,
}

impl ConsumerTask {
    pub(super) async fn run(
        mut self,
        mut finish: oneshot::Receiver<()>,
        mut control: mpsc::UnboundedReceiver<Command>,
    ) -> crate::Result<IngressReport> {
        // Last delivery, or the moment the pipeline caught up with it.
        let mut last_delivery = Instant::now();
        let acks = Arc::clone(&self.acks);
        let mut sample = tokio::time::interval(Duration::from_secs(1));
        sample.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // Idle means: nothing arrived for the idle time *and* nothing
            // is still being processed (a full prefetch window being worked
            // through delivers nothing new, but is not an ended input).
            let idle_at = self
                .config
                .until_idle
                .filter(|_| self.sender.is_some() && self.pending.is_empty())
                .map(|d| tokio::time::Instant::from_std(last_delivery + d));
            let consumer = self.link.as_mut().and_then(|l| l.consumer.as_mut());
            tokio::select! {
                delivery = next(consumer) => match delivery {
                    Some(Ok(delivery)) => {
                        last_delivery = Instant::now();
                        self.delivery(delivery).await;
                    }
                    Some(Err(e)) => {
                        self.lost(&e.to_string()).await?;
                        last_delivery = Instant::now();
                    }
                    None if self.cancelling => self.cancelled().await?,
                    None => {
                        self.lost("the consumer was cancelled").await?;
                        last_delivery = Instant::now();
                    }
                },
                Some(command) = control.recv() => match command {
                    Command::Pause(done) => {
                        self.pause().await;
                        let _ = done.send(());
                    }
                    Command::Resume => self.resume().await?,
                    Command::End => self.end_input().await,
                    Command::Activate(skip) => self.activate(skip).await,
                },
                () = acks.notify.notified() => {
                    let upto = acks.upto.load(Ordering::Acquire);
                    self.ack_settled(upto).await;
                    if self.pending.is_empty() {
                        last_delivery = Instant::now();
                    }
                }
                _ = sample.tick() => self.sample_backlog().await,
                () = sleep_until(idle_at) => {
                    tracing::info!(queue = %self.config.queue, "no message for the idle time: ending the input");
                    self.end_input().await;
                }
                _ = &mut finish => {
                    self.end_input().await;
                    self.ack_settled(u64::MAX).await;
                    self.report.acks_committed =
                        !self.acks_failed && self.config.commit_acks && self.link.is_some();
                    if let Some(link) = self.link.take() {
                        let _ = link.connection.close(200, "done".into()).await;
                    }
                    return Ok(self.report);
                }
            }
        }
    }

    /// Samples the queue's depth and what is delivered but not acked. A
    /// failure is left to the consumer's stream to report.
    async fn sample_backlog(&mut self) {
        self.gauges
            .unacked
            .store(self.pending.len() as u64, Ordering::Relaxed);
        let Some(link) = &self.link else {
            return;
        };
        let depth = match &self.config.partitioned {
            Some(p) => topology::partition_depth(&link.channel, p, &self.config.queue)
                .await
                .map(|(ready, consumers)| {
                    self.gauges
                        .consumers
                        .store(u64::from(consumers), Ordering::Relaxed);
                    ready
                }),
            None => topology::input_depth(&link.channel, &self.config.queue).await,
        };
        match depth {
            Ok(ready) => self.gauges.ready.store(u64::from(ready), Ordering::Relaxed),
            Err(e) => tracing::debug!(error = %e, "sampling the queue depth"),
        }
    }

    /// Applies the deliveries held since the first one, recognising
    /// redeliveries of `skip`.
    async fn activate(&mut self, skip: Vec<Vec<u8>>) {
        let Some(held) = self.held.take() else {
            return;
        };
        self.applied_unacked = AppliedUnacked::new(
            skip.into_iter().map(Fingerprint).collect(),
            usize::from(self.config.prefetch.max(1)),
        );
        for delivery in held {
            self.delivery(delivery).await;
        }
    }

    /// Cancels the consumer; its stream is drained (deliveries already
    /// pushed are processed as usual) until it ends.
    async fn pause(&mut self) {
        if self.paused || self.sender.is_none() {
            return;
        }
        self.paused = true;
        tracing::info!(queue = %self.config.queue, "consumer paused");
        if self.config.await_activation {
            // A single-active-consumer queue would make another host's
            // consumer active at a cancel, while this one still holds
            // unacked messages: hold deliveries instead (the broker sends
            // at most the prefetch), and stay the active consumer.
            self.pause_held.get_or_insert_with(Vec::new);
            return;
        }
        let Some(link) = self.link.as_mut() else {
            return;
        };
        let Some(tag) = link.consumer.as_ref().map(|c| c.tag()) else {
            return;
        };
        self.cancelling = true;
        if let Err(e) = link
            .channel
            .basic_cancel(tag, BasicCancelOptions::default())
            .await
        {
            // The reconnect that follows opens the link without a consumer.
            tracing::warn!(queue = %self.config.queue, error = %e, "cancelling the consumer failed");
        }
    }

    /// The cancelled consumer's stream has ended: consume again if resumed
    /// meanwhile.
    async fn cancelled(&mut self) -> crate::Result<()> {
        self.cancelling = false;
        if let Some(link) = self.link.as_mut() {
            link.consumer = None;
        }
        if !self.paused {
            self.start_consuming().await?;
        }
        Ok(())
    }

    async fn resume(&mut self) -> crate::Result<()> {
        if !self.paused || self.sender.is_none() {
            return Ok(());
        }
        self.paused = false;
        tracing::info!(queue = %self.config.queue, "consumer resumed");
        if let Some(held) = self.pause_held.take() {
            for delivery in held {
                self.delivery(delivery).await;
            }
            return Ok(());
        }
        if !self.cancelling {
            self.start_consuming().await?;
        }
        Ok(())
    }

    async fn start_consuming(&mut self) -> crate::Result<()> {
        let Some(link) = self.link.as_mut() else {
            // Reconnecting: the new link consumes.
            return Ok(());
        };
        if link.consumer.is_some() {
            return Ok(());
        }
        match consume(&link.channel, &self.config.queue).await {
            Ok(consumer) => {
                link.consumer = Some(consumer);
                Ok(())
            }
            Err(e) => self.lost(&e.to_string()).await,
        }
    }

    /// Stops consuming and ends the pipeline's input.
    async fn end_input(&mut self) {
        self.sender = None;
        self.pause_held = None;
        if self.config.await_activation {
            // No cancel on a single-active-consumer queue: the broker
            // would make the next host active at once, and hand it new
            // messages while this one still checkpoints and acks what it
            // applied. What arrives from now on is left unacked and goes
            // back, in order, when the connection closes — after the acks.
            return;
        }
        if let Some(link) = self.link.as_mut() {
            if let Some(consumer) = link.consumer.take() {
                let _ = link
                    .channel
                    .basic_cancel(consumer.tag(), BasicCancelOptions::default())
                    .await;
            }
        }
    }

    async fn delivery(&mut self, delivery: Delivery) {
        if let Some(held) = self.held.as_mut() {
            if let Some(activated) = self.activation.take() {
                tracing::info!(queue = %self.config.queue, "first delivery: this consumer is the active one");
                let _ = activated.send(());
            }
            held.push(delivery);
            return;
        }
        if let Some(held) = self.pause_held.as_mut() {
            held.push(delivery);
            return;
        }
        let fingerprint = Fingerprint::of(&delivery);
        let tag = delivery.delivery_tag;
        if self.sender.is_none() {
            // The input has ended; left unacked, it goes back to the queue.
            return;
        }
        if delivery.redelivered {
            // Settled ones are older than those still in the pipeline, so
            // they come back first.
            if let Some(seq) = self.applied_unacked.take(&fingerprint) {
                self.report.duplicates_skipped += 1;
                self.outstanding.insert(tag);
                let sent = self.ack(vec![tag]).await;
                if !(sent && self.config.commit_acks) {
                    // Not known to have arrived: it may come back again.
                    self.applied_unacked.acked(seq, fingerprint);
                }
                return;
            }
            if let Some(p) = self
                .pending
                .iter_mut()
                .find(|p| p.generation < self.generation && p.fingerprint == fingerprint)
            {
                // Still in the pipeline: ack it under its new tag.
                p.generation = self.generation;
                p.tag = tag;
                self.outstanding.insert(tag);
                self.report.duplicates_skipped += 1;
                return;
            }
        } else {
            self.applied_unacked.first_delivery();
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let source = match fingerprint.id() {
            Some(id) => format!("amqp:{id}"),
            None => format!("amqp:{}#{seq}", self.config.queue),
        };
        let body = match self.decode(&delivery) {
            Ok(()) => delivery.data,
            Err(reason) => {
                if let Err(e) = self.dead_letter(&delivery, &reason).await {
                    // Unacked: it comes back after the reconnect.
                    self.lost(&e.to_string()).await.ok();
                    return;
                }
                self.report.dead_messages += 1;
                tracing::warn!(queue = %self.config.queue, %source, %reason, "undecodable message dead-lettered");
                Vec::new()
            }
        };
        let message_fingerprint = fingerprint.0.clone();
        let published_ms = published_ms(&delivery.properties);
        self.pending.push_back(Pending {
            seq,
            fingerprint,
            generation: self.generation,
            tag,
        });
        self.outstanding.insert(tag);
        self.report.messages += 1;
        if let Some(sender) = &self.sender {
            let message = Message {
                seq,
                source,
                body,
                fingerprint: message_fingerprint,
                published_ms,
            };
            if sender.send(message).await.is_err() {
                // The pipeline stopped; its error is reported by the run.
                self.sender = None;
            }
        }
    }

    fn decode(&self, delivery: &Delivery) -> Result<(), String> {
        if delivery.data.len() > self.config.max_message_bytes {
            return Err(format!(
                "message of {} bytes exceeds the limit of {} bytes",
                delivery.data.len(),
                self.config.max_message_bytes
            ));
        }
        std::str::from_utf8(&delivery.data)
            .map(|_| ())
            .map_err(|e| format!("not UTF-8: {e}"))
    }

    async fn dead_letter(&self, delivery: &Delivery, reason: &str) -> crate::Result<()> {
        let exchange = self.config.dead_letter_exchange();
        let Some(link) = &self.link else {
            return Err(crate::Error::Nacked { exchange });
        };
        let mut headers = delivery.properties.headers().clone().unwrap_or_default();
        headers.insert(
            topology::REASON_HEADER.into(),
            AMQPValue::LongString(reason.into()),
        );
        headers.insert(
            topology::KIND_HEADER.into(),
            AMQPValue::LongString("message".into()),
        );
        let mut props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_headers(headers);
        if let Some(id) = delivery.properties.message_id() {
            props = props.with_message_id(id.clone());
        }
        let confirm = link
            .publisher
            .basic_publish(
                exchange.as_str().into(),
                self.config.queue.as_str().into(),
                BasicPublishOptions::default(),
                &delivery.data,
                props,
            )
            .await
            .map_err(crate::Error::amqp("dead-lettering a message"))?
            .await
            .map_err(crate::Error::amqp("dead-lettering a message"))?;
        match confirm {
            Confirmation::Nack(_) => Err(crate::Error::Nacked { exchange }),
            _ => Ok(()),
        }
    }
}

/// When the publisher published a message, in ms: the
/// [`topology::TIMESTAMP_MS_HEADER`] header (`sluice publish` and
/// RabbitMQ's message-timestamp plugin set it), else the `timestamp`
/// property (whole seconds, as AMQP defines it).
fn published_ms(properties: &BasicProperties) -> Option<i64> {
    let header = properties
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get(topology::TIMESTAMP_MS_HEADER));
    let from_header = match header {
        Some(AMQPValue::LongLongInt(ms)) => Some(*ms),
        Some(AMQPValue::Timestamp(ms)) => i64::try_from(*ms).ok(),
        Some(AMQPValue::LongUInt(ms)) => Some(i64::from(*ms)),
        Some(AMQPValue::LongInt(ms)) => Some(i64::from(*ms)),
        _ => None,
    };
    from_header.or_else(|| {
        properties
            .timestamp()
            .and_then(|s| i64::try_from(s).ok())
            .map(|s| s.saturating_mul(1000))
    })
}

async fn next(consumer: Option<&mut lapin::Consumer>) -> Option<lapin::Result<Delivery>> {
    match consumer {
        Some(c) => c.next().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
