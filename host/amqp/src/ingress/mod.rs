//! The RabbitMQ consumer: manual acknowledgements, a bounded prefetch, and
//! an acknowledgement only after the pipeline has settled a message (its
//! records applied, every output they triggered confirmed by the sinks).
//!
//! Each delivery gets a sequence number and goes to the pipeline in
//! delivery order; the pipeline's stages report the numbers they have
//! settled ([`Acknowledger`](sluice_core::ingress::Acknowledger)), and the consumer acks every delivery up to
//! the lowest of them — one `multiple` ack when the tags allow.
//!
//! A lost connection is re-opened with backoff. The broker then redelivers
//! every unacked message, including some the pipeline has already applied
//! or still holds. Those are recognised — by `message_id`, or by a hash of
//! the body when a publisher sets none, and only among redeliveries — and
//! not applied twice: one still in the pipeline takes the new delivery tag
//! for its ack, one already settled is acked at once — also one whose ack
//! was sent but lost with the connection (see [`AppliedUnacked`]).
//!
//! A message that cannot be decoded (over the size limit, not UTF-8) is
//! published to `<queue>.dead` with the reason in a header, then acked in
//! its turn; it never comes back.
//!
//! This file: the consumer's configuration, [`AmqpIngress`] (starting and
//! finishing it), [`IngressControl`] and its gauges, and the
//! `Deliveries` the pipeline reads. `consumer.rs`: the consumer task's
//! loop (deliveries, pause, resume, activation, dead letters); `ack.rs`:
//! the pipeline's settled numbers and the acks they release; `link.rs`:
//! the connection, its channels, reconnecting; `redelivery.rs`: recognising
//! redeliveries (`Fingerprint`, `AppliedUnacked`).

mod ack;
mod consumer;
mod link;
mod redelivery;

use std::collections::{BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::topology;
use sluice_core::ingress::{Input, Message, MessageSource};

use ack::Settled;
use consumer::ConsumerTask;
use link::Link;
use redelivery::{AppliedUnacked, Fingerprint};

/// How to consume.
#[derive(Debug, Clone)]
pub struct AmqpIngressConfig {
    pub url: String,
    pub queue: String,
    /// Unacked messages the broker may hand over at once.
    pub prefetch: u16,
    /// End the input once no message has arrived for this long.
    pub until_idle: Option<Duration>,
    /// A message larger than this is dead-lettered undecoded.
    pub max_message_bytes: usize,
    /// Stop reconnecting after the broker has been unreachable this long.
    pub give_up: Duration,
    /// Fingerprints of messages a restored checkpoint covers but that were
    /// not acked: their redeliveries are acked and skipped.
    pub skip: Vec<Vec<u8>>,
    /// Acks in a transaction (`tx.select`), committed before they count as
    /// done: a checkpoint then knows for sure its input was acknowledged.
    pub commit_acks: bool,
    /// `queue` is one partition of this partitioned input (declared with
    /// it, dead letters to its `<base>.dead`).
    pub partitioned: Option<topology::Partitioned>,
    /// Hold the first delivery and everything after it until
    /// [`IngressControl::activate`]: on a single-active-consumer queue the
    /// first delivery is how a standby consumer learns it became the
    /// active one, and the state to restore (with the redeliveries it
    /// covers) is only known then.
    pub await_activation: bool,
    /// Re-open a lost connection (a plain queue). Off for a partition:
    /// while this consumer was gone the broker may have made another host
    /// active, so a lost connection ends the input and raises
    /// [`IngressControl::lost`] instead.
    pub reconnect: bool,
}

impl AmqpIngressConfig {
    pub const DEFAULT_PREFETCH: u16 = 1000;
    pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 16 << 20;

    /// A plain queue's consumer: reconnects, no activation.
    pub fn plain(url: String, queue: String, prefetch: u16, give_up: Duration) -> Self {
        AmqpIngressConfig {
            url,
            queue,
            prefetch,
            until_idle: None,
            max_message_bytes: Self::DEFAULT_MAX_MESSAGE_BYTES,
            give_up,
            skip: Vec::new(),
            commit_acks: false,
            partitioned: None,
            await_activation: false,
            reconnect: true,
        }
    }

    /// The dead-letter exchange of this input.
    fn dead_letter_exchange(&self) -> String {
        match &self.partitioned {
            Some(p) => topology::dead_letter_name(&p.base),
            None => topology::dead_letter_name(&self.queue),
        }
    }
}

/// What the consumer did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IngressReport {
    /// Deliveries handed to the pipeline (redeliveries of those not counted).
    pub messages: u64,
    /// Messages dead-lettered undecoded.
    pub dead_messages: u64,
    /// Redeliveries recognised as already applied or in flight.
    pub duplicates_skipped: u64,
    pub reconnects: u64,
    /// With `commit_acks`: when the input finished, the broker had
    /// committed the ack of every settled delivery (so none of them comes
    /// back). False when the last acks failed: their messages will be
    /// redelivered, and whoever consumes next must recognise them.
    pub acks_committed: bool,
}

/// A running consumer. Dropping it aborts it (unacked messages go back to
/// the queue when its connection closes).
pub struct AmqpIngress {
    task: Option<tokio::task::JoinHandle<crate::Result<IngressReport>>>,
    finish: Option<oneshot::Sender<()>>,
    runtime: tokio::runtime::Handle,
    control: IngressControl,
    /// Completes at the first delivery of an `await_activation` consumer.
    activation: Option<oneshot::Receiver<()>>,
}

/// What an operator can do to a running consumer (`sluice serve`): pause
/// and resume consumption, or end the input. Cheap to clone; a command to
/// a consumer that has finished is ignored.
#[derive(Debug, Clone)]
pub struct IngressControl {
    tx: mpsc::UnboundedSender<Command>,
    gauges: Arc<IngressGauges>,
    lost: Arc<AtomicBool>,
}

/// The input's backlog, sampled about once a second while connected.
#[derive(Debug, Default)]
pub struct IngressGauges {
    /// Messages ready in the queue (the broker's count).
    ready: AtomicU64,
    /// Delivered to this consumer and not yet acked.
    unacked: AtomicU64,
    /// Consumers of the queue (partitions: the hosts consuming it).
    consumers: AtomicU64,
}

impl IngressGauges {
    /// Messages waiting in the queue.
    pub fn queue_depth(&self) -> u64 {
        self.ready.load(Ordering::Relaxed)
    }

    /// Messages not yet done with: waiting in the queue, or delivered and
    /// not yet acked.
    pub fn lag(&self) -> u64 {
        self.queue_depth() + self.unacked.load(Ordering::Relaxed)
    }

    /// Consumers of a partition queue as last sampled: the hosts
    /// consuming the partition, this one included.
    pub fn consumers(&self) -> u64 {
        self.consumers.load(Ordering::Relaxed)
    }
}

#[derive(Debug)]
enum Command {
    /// Replies once the broker has confirmed the cancel.
    Pause(oneshot::Sender<()>),
    Resume,
    End,
    /// Apply the held deliveries, recognising these redeliveries.
    Activate(Vec<Vec<u8>>),
}

impl IngressControl {
    /// Stops taking deliveries (`basic.cancel`): new messages stay in the
    /// queue, those already delivered are still processed and acked. The
    /// receiver completes once the broker has confirmed the cancel (or
    /// the consumer is gone): from then on nothing more is delivered.
    pub fn pause(&self) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        let _ = self.tx.send(Command::Pause(tx));
        rx
    }

    /// Consumes again after [`IngressControl::pause`].
    pub fn resume(&self) {
        let _ = self.tx.send(Command::Resume);
    }

    /// Ends the pipeline's input: what was delivered is processed, what
    /// was not goes back to the queue when the connection closes.
    pub fn end(&self) {
        let _ = self.tx.send(Command::End);
    }

    /// The input's backlog as last sampled.
    pub fn gauges(&self) -> &IngressGauges {
        &self.gauges
    }

    /// After the activation signal of an `await_activation` consumer:
    /// hands the held deliveries on, recognising redeliveries of `skip`
    /// (the restored checkpoint's applied-but-unacked messages).
    pub fn activate(&self, skip: Vec<Vec<u8>>) {
        let _ = self.tx.send(Command::Activate(skip));
    }

    /// Set once a consumer that does not reconnect has lost its
    /// connection: the broker may already deliver its queue to another
    /// host, so nothing this run still produces may be emitted.
    pub fn lost(&self) -> &Arc<AtomicBool> {
        &self.lost
    }
}

impl AmqpIngress {
    /// Connects (failing at once if the broker is unreachable), declares
    /// the input topology, and starts consuming on `runtime`. The returned
    /// [`Input`] goes to the pipeline.
    pub async fn start(
        config: AmqpIngressConfig,
        runtime: tokio::runtime::Handle,
    ) -> crate::Result<(Input, AmqpIngress)> {
        let link = Link::open(&config, false).await?;
        let applied_unacked = AppliedUnacked::new(
            config.skip.iter().cloned().map(Fingerprint).collect(),
            usize::from(config.prefetch.max(1)),
        );
        let (tx, rx) = mpsc::channel(usize::from(config.prefetch.max(1)));
        let acks = Arc::new(Settled::default());
        let (finish_tx, finish_rx) = oneshot::channel();
        let (control_tx, control_rx) = mpsc::unbounded_channel();
        let gauges = Arc::new(IngressGauges::default());
        let lost = Arc::new(AtomicBool::new(false));
        let (activation_tx, activation_rx) = if config.await_activation {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let consumer = ConsumerTask {
            held: config.await_activation.then(Vec::new),
            pause_held: None,
            activation: activation_tx,
            lost: Arc::clone(&lost),
            gauges: Arc::clone(&gauges),
            paused: false,
            cancelling: false,
            config,
            link: Some(link),
            generation: 1,
            sender: Some(tx),
            acks: Arc::clone(&acks),
            pending: VecDeque::new(),
            applied_unacked,
            outstanding: BTreeSet::new(),
            next_seq: 1,
            report: IngressReport::default(),
            acks_failed: false,
        };
        let task = runtime.spawn(consumer.run(finish_rx, control_rx));
        Ok((
            Input::Messages {
                rx: Box::new(Deliveries(rx)),
                acks,
            },
            AmqpIngress {
                task: Some(task),
                finish: Some(finish_tx),
                runtime,
                control: IngressControl {
                    tx: control_tx,
                    gauges,
                    lost,
                },
                activation: activation_rx,
            },
        ))
    }

    /// A handle to pause, resume or end this consumer.
    pub fn control(&self) -> IngressControl {
        self.control.clone()
    }

    /// Of an `await_activation` consumer: completes at its first delivery
    /// (an error: the consumer ended before any). Taken once.
    pub fn activation(&mut self) -> Option<oneshot::Receiver<()>> {
        self.activation.take()
    }

    /// After the pipeline has returned (every delivered message settled):
    /// acks everything and closes the connection.
    pub fn finish(mut self) -> crate::Result<IngressReport> {
        if let Some(finish) = self.finish.take() {
            let _ = finish.send(());
        }
        let Some(task) = self.task.take() else {
            return Ok(IngressReport::default());
        };
        match self.runtime.block_on(task) {
            Ok(result) => result,
            Err(e) => Err(crate::Error::GaveUp {
                url: String::new(),
                after: Duration::ZERO,
                last: format!("the consumer task failed: {e}"),
            }),
        }
    }
}

impl Drop for AmqpIngress {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// The consumer's messages as the pipeline reads them: the receiving end of
/// the channel the consumer task fills, read from the pipeline's (blocking)
/// reader thread.
struct Deliveries(mpsc::Receiver<Message>);

impl MessageSource for Deliveries {
    fn next_message(&mut self) -> Option<Message> {
        self.0.blocking_recv()
    }

    fn is_idle(&self) -> bool {
        self.0.is_empty()
    }
}
