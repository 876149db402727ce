//! The RabbitMQ consumer: manual acknowledgements, a bounded prefetch, and
//! an acknowledgement only after the pipeline has settled a message (its
//! records applied, every output they triggered confirmed by the sinks).
//!
//! Each delivery gets a sequence number and goes to the pipeline in
//! delivery order; the pipeline's stages report the numbers they have
//! settled ([`Acknowledger`]), and the consumer acks every delivery up to
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

use std::collections::{BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_lite::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Confirmation, Connection};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot, Notify};

use crate::topology;
use sluice_core::ingress::{Acknowledger, Input, Message, MessageSource};
use sluice_core::retry::Backoff;

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

/// The pipeline's progress: per stage, the last settled sequence number;
/// the lowest of them is what may be acked.
#[derive(Default)]
struct Settled {
    stages: Mutex<Vec<u64>>,
    upto: AtomicU64,
    notify: Notify,
    /// Acknowledgements sent up to here.
    acked: AtomicU64,
}

impl Acknowledger for Settled {
    fn set_stages(&self, stages: usize) {
        if let Ok(mut s) = self.stages.lock() {
            *s = vec![0; stages.max(1)];
        }
    }

    fn settled(&self, stage: usize, seq: u64) {
        let Ok(mut stages) = self.stages.lock() else {
            return;
        };
        if let Some(s) = stages.get_mut(stage) {
            *s = (*s).max(seq);
        }
        let low = stages.iter().copied().min().unwrap_or(0);
        if low > self.upto.load(Ordering::Acquire) {
            self.upto.store(low, Ordering::Release);
            self.notify.notify_one();
        }
    }

    fn acked(&self) -> u64 {
        self.acked.load(Ordering::Acquire)
    }
}

/// A delivery handed to the pipeline and not yet acked.
struct Pending {
    seq: u64,
    fingerprint: Fingerprint,
    /// The connection generation and delivery tag to ack it with.
    generation: u64,
    tag: u64,
}

/// What recognises a redelivery: the publisher's `message_id` (`i` +
/// id), or 128 bits of SHA-256 of the body (`b` + hash) when it set none.
/// Bytes, because checkpoints store them across restarts.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fingerprint(Vec<u8>);

impl Fingerprint {
    fn of(delivery: &Delivery) -> Fingerprint {
        match delivery.properties.message_id() {
            Some(id) => {
                let mut f = Vec::with_capacity(id.as_str().len() + 1);
                f.push(b'i');
                f.extend_from_slice(id.as_str().as_bytes());
                Fingerprint(f)
            }
            None => {
                let hash = Sha256::digest(&delivery.data);
                let mut f = Vec::with_capacity(17);
                f.push(b'b');
                f.extend_from_slice(&hash[..16]);
                Fingerprint(f)
            }
        }
    }

    fn is_id(&self) -> bool {
        self.0.first() == Some(&b'i')
    }

    /// The message id, for positions.
    fn id(&self) -> Option<&str> {
        self.is_id()
            .then(|| std::str::from_utf8(&self.0[1..]).ok())
            .flatten()
    }
}

/// Applied messages the broker may still hold unacked, so may redeliver:
/// those settled after their connection was lost, those a restored
/// checkpoint covers, and the last acks sent on a connection that was then
/// lost. Outside a transaction the broker does not answer an ack, and one
/// still on the wire when the connection drops is lost: its message comes
/// back redelivered and must not be applied again. The broker holds at most
/// `prefetch` unacked messages per channel and handles acks in order, so
/// the acks it may have missed are among the last `prefetch` sent.
///
/// Kept in delivery order, because the broker redelivers in queue order
/// (a requeued message keeps its place) and these are older than anything
/// else unacked: they come back first, in this order, or not at all. So a
/// redelivery matches the first equal entry and the entries before it are
/// dropped (they did not come back: their acks had arrived), and one that
/// matches nothing ends them all. That keeps a stale entry — a message
/// whose ack did arrive — from matching a later message with the same
/// body (publishers without message ids are told apart by body hash).
#[derive(Debug)]
struct AppliedUnacked {
    /// Of lost connections and a restored checkpoint, by sequence number
    /// (a restored checkpoint's are 0: before every delivery of this run).
    lost: VecDeque<(u64, Fingerprint)>,
    /// The last acks sent on this connection, not known to have arrived.
    unconfirmed: VecDeque<(u64, Fingerprint)>,
    /// How many of those to keep: the prefetch.
    window: usize,
}

impl AppliedUnacked {
    fn new(restored: Vec<Fingerprint>, window: usize) -> AppliedUnacked {
        AppliedUnacked {
            lost: restored.into_iter().map(|f| (0, f)).collect(),
            unconfirmed: VecDeque::with_capacity(window),
            window,
        }
    }

    /// Its ack is being sent on the current connection.
    fn acked(&mut self, seq: u64, fingerprint: Fingerprint) {
        if self.unconfirmed.len() == self.window {
            self.unconfirmed.pop_front();
        }
        insert_ordered(&mut self.unconfirmed, seq, fingerprint);
    }

    /// Settled after its connection was lost: it will come back.
    fn settled_unacked(&mut self, seq: u64, fingerprint: Fingerprint) {
        insert_ordered(&mut self.lost, seq, fingerprint);
    }

    /// The acks sent so far were committed (`tx.commit` answered).
    fn confirmed(&mut self) {
        self.unconfirmed.clear();
    }

    /// The connection is gone, and maybe the last acks with it.
    fn connection_lost(&mut self) {
        while let Some((seq, f)) = self.unconfirmed.pop_front() {
            insert_ordered(&mut self.lost, seq, f);
        }
    }

    /// For a redelivery: the sequence number of the applied message it
    /// repeats (then forgotten: it is acked), or `None` for one to apply.
    fn take(&mut self, fingerprint: &Fingerprint) -> Option<u64> {
        match self.lost.iter().position(|(_, f)| f == fingerprint) {
            Some(i) => self.lost.drain(..=i).next_back().map(|(seq, _)| seq),
            None => {
                self.lost.clear();
                None
            }
        }
    }

    /// A message delivered for the first time: every redelivery has come
    /// before it, and what is left never will.
    fn first_delivery(&mut self) {
        self.lost.clear();
    }
}

/// Inserts after every entry with a sequence number up to `seq`.
fn insert_ordered(list: &mut VecDeque<(u64, Fingerprint)>, seq: u64, fingerprint: Fingerprint) {
    let at = list.partition_point(|(s, _)| *s <= seq);
    list.insert(at, (seq, fingerprint));
}

struct Link {
    connection: Connection,
    channel: Channel,
    /// For dead-lettering undecodable messages, with confirms.
    publisher: Channel,
    consumer: Option<lapin::Consumer>,
}

impl Link {
    /// Connects, declares the input and, unless `paused`, consumes.
    async fn open(config: &AmqpIngressConfig, paused: bool) -> crate::Result<Link> {
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

async fn consume(channel: &Channel, queue: &str) -> crate::Result<lapin::Consumer> {
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

struct ConsumerTask {
    config: AmqpIngressConfig,
    /// Paused by the operator: no consumer on the queue.
    paused: bool,
    /// A `basic.cancel` was sent; the consumer's stream still yields what
    /// the broker had pushed before it, then ends.
    cancelling: bool,
    link: Option<Link>,
    generation: u64,
    /// `None` once the input has ended (idle): no more deliveries go on.
    sender: Option<mpsc::Sender<Message>>,
    acks: Arc<Settled>,
    pending: VecDeque<Pending>,
    /// Applied deliveries the broker may still redeliver: their
    /// redeliveries are acked without being applied.
    applied_unacked: AppliedUnacked,
    /// Unacked delivery tags of the current connection.
    outstanding: BTreeSet<u64>,
    next_seq: u64,
    report: IngressReport,
    /// Some ack of this input was not sent or not committed: its message
    /// will come back (see [`IngressReport::acks_committed`]).
    acks_failed: bool,
    gauges: Arc<IngressGauges>,
    /// Deliveries held until activation (`await_activation`).
    held: Option<Vec<Delivery>>,
    /// Deliveries held while paused (`await_activation`: the consumer
    /// stays, see [`ConsumerTask::pause`]).
    pause_held: Option<Vec<Delivery>>,
    activation: Option<oneshot::Sender<()>>,
    lost: Arc<AtomicBool>,
}

impl ConsumerTask {
    async fn run(
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

    /// Acks every pending delivery settled up to `upto` (a failure is
    /// remembered in `acks_failed`).
    async fn ack_settled(&mut self, upto: u64) {
        let before = self.pending.front().map(|p| p.seq);
        let mut tags = Vec::new();
        while self.pending.front().is_some_and(|p| p.seq <= upto) {
            let Some(p) = self.pending.pop_front() else {
                break;
            };
            if p.generation == self.generation {
                tags.push(p.tag);
                self.applied_unacked.acked(p.seq, p.fingerprint);
            } else {
                self.applied_unacked.settled_unacked(p.seq, p.fingerprint);
            }
        }
        let sent = self.ack(tags).await;
        self.acks_failed |= !sent;
        if sent && self.config.commit_acks {
            // A committed transaction: the broker has every ack.
            self.applied_unacked.confirmed();
        }
        if sent && before.is_some() {
            self.acks
                .acked
                .fetch_max(upto.min(self.next_seq - 1), Ordering::AcqRel);
        }
    }

    /// Acks `tags` of the current connection: one `multiple` ack when they
    /// are all the outstanding tags up to the highest, else one by one.
    /// Whether every ack was sent.
    async fn ack(&mut self, mut tags: Vec<u64>) -> bool {
        let Some(link) = &self.link else {
            return tags.is_empty();
        };
        let Some(&max) = tags.iter().max() else {
            return true;
        };
        if self.sender.is_none() && sluice_core::state::failpoint::armed("final-acks-lost") {
            // Test: the acks that follow the end of the input do not reach
            // the broker, as when a cut takes them with it.
            tracing::warn!("fail point `final-acks-lost`: not sending these acks");
            return false;
        }
        let below = self.outstanding.range(..=max).count();
        let result = if below == tags.len() {
            link.channel
                .basic_ack(max, BasicAckOptions { multiple: true })
                .await
        } else {
            tags.sort_unstable();
            let mut result = Ok(());
            for tag in &tags {
                result = link
                    .channel
                    .basic_ack(*tag, BasicAckOptions::default())
                    .await;
                if result.is_err() {
                    break;
                }
            }
            result
        };
        let result = match result {
            Ok(()) if self.config.commit_acks => link.channel.tx_commit().await,
            other => other,
        };
        for tag in &tags {
            self.outstanding.remove(tag);
        }
        match result {
            Ok(()) => true,
            Err(e) => {
                // The connection is going; these are redelivered and then
                // recognised as settled.
                tracing::warn!(error = %e, "acknowledging failed; the broker will redeliver");
                false
            }
        }
    }

    /// The connection is gone: reconnect with backoff. Deliveries not yet
    /// acked keep their place and are matched with their redeliveries.
    async fn lost(&mut self, why: &str) -> crate::Result<()> {
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

#[cfg(test)]
mod tests {
    use super::{AppliedUnacked, Fingerprint};

    fn fp(id: &str) -> Fingerprint {
        Fingerprint(format!("b{id}").into_bytes())
    }

    #[test]
    fn an_ack_lost_with_its_connection_is_recognised_once() {
        let mut applied = AppliedUnacked::new(Vec::new(), 4);
        applied.acked(1, fp("a"));
        applied.acked(2, fp("b"));
        assert_eq!(
            applied.take(&fp("a")),
            None,
            "not before the connection is lost"
        );
        applied.connection_lost();
        assert_eq!(applied.take(&fp("a")), Some(1));
        assert_eq!(applied.take(&fp("b")), Some(2));
        assert_eq!(applied.take(&fp("b")), None, "a second redelivery is new");
    }

    #[test]
    fn only_the_last_prefetch_acks_can_be_missing() {
        let mut applied = AppliedUnacked::new(Vec::new(), 2);
        for (seq, id) in [(1, "a"), (2, "b"), (3, "c")] {
            applied.acked(seq, fp(id));
        }
        applied.connection_lost();
        assert_eq!(applied.take(&fp("b")), Some(2));
        assert_eq!(applied.take(&fp("c")), Some(3));
        applied.connection_lost();
        assert_eq!(applied.take(&fp("a")), None, "the broker had its ack");
    }

    #[test]
    fn committed_acks_are_not_expected_back() {
        let mut applied = AppliedUnacked::new(Vec::new(), 8);
        applied.acked(1, fp("a"));
        applied.confirmed();
        applied.acked(2, fp("b"));
        applied.connection_lost();
        assert_eq!(applied.take(&fp("b")), Some(2));
    }

    #[test]
    fn a_first_delivery_ends_the_redeliveries() {
        let mut applied = AppliedUnacked::new(vec![fp("restored")], 8);
        applied.settled_unacked(4, fp("settled"));
        applied.first_delivery();
        assert_eq!(applied.take(&fp("restored")), None);
        assert_eq!(applied.take(&fp("settled")), None);
    }

    #[test]
    fn redeliveries_come_in_order_so_skipped_entries_had_their_acks() {
        // Body hashes: `x` twice. The restored checkpoint covers x, y, x;
        // the first x's ack had arrived, so the redeliveries are y, x, then
        // a new message that happens to equal x.
        let mut applied = AppliedUnacked::new(vec![fp("x"), fp("y"), fp("x")], 8);
        assert!(applied.take(&fp("y")).is_some(), "y drops the stale x");
        assert!(applied.take(&fp("x")).is_some());
        assert_eq!(applied.take(&fp("x")), None, "a new x is applied");
    }

    #[test]
    fn a_redelivery_matching_nothing_ends_the_redeliveries() {
        let mut applied = AppliedUnacked::new(vec![fp("x")], 8);
        assert_eq!(applied.take(&fp("new")), None);
        assert_eq!(applied.take(&fp("x")), None, "x's ack had arrived");
    }

    #[test]
    fn entries_are_kept_in_delivery_order_across_connections() {
        let mut applied = AppliedUnacked::new(Vec::new(), 8);
        // Settled after the first connection was lost (seq 5), then acked
        // on the second (seq 3, redelivered and re-matched earlier).
        applied.settled_unacked(5, fp("p5"));
        applied.acked(3, fp("p3"));
        applied.connection_lost();
        assert_eq!(applied.take(&fp("p3")), Some(3));
        assert_eq!(applied.take(&fp("p5")), Some(5));
    }
}
