//! Ingress: where records enter. A byte stream (file, stdin) is read by
//! the pipeline itself; a message broker delivers [`Message`]s, and learns
//! through [`Acknowledger`] when the pipeline is done with them, so it
//! acknowledges a message only after everything it triggered reached the
//! sinks. A broker client hands its messages over as a [`MessageSource`];
//! a batch job over stored events reads them as a byte stream.

pub mod lines;

use std::io::Read;
use std::sync::Arc;

/// Where a run's records come from.
pub enum Input {
    /// A byte stream read until it ends; `name` is the position source.
    Bytes {
        reader: Box<dyn Read + Send>,
        name: String,
        /// Where `reader` starts: byte offset and lines before it (a file
        /// resumed from a checkpoint).
        start: (u64, u64),
    },
    /// Messages from a broker, in delivery order; the stream ends when the
    /// source says so (an idle or stopped consumer).
    Messages {
        rx: Box<dyn MessageSource>,
        acks: Arc<dyn Acknowledger>,
    },
}

impl Input {
    /// A byte stream.
    pub fn bytes(reader: Box<dyn Read + Send>, name: impl Into<String>) -> Input {
        Input::Bytes {
            reader,
            name: name.into(),
            start: (0, 0),
        }
    }

    /// A byte stream that starts `offset` bytes and `line` lines into its
    /// source.
    pub fn bytes_from(
        reader: Box<dyn Read + Send>,
        name: impl Into<String>,
        offset: u64,
        line: u64,
    ) -> Input {
        Input::Bytes {
            reader,
            name: name.into(),
            start: (offset, line),
        }
    }
}

/// One message: one or many newline-separated records.
#[derive(Debug, Clone)]
pub struct Message {
    /// Delivery order; the pipeline reports progress in these numbers.
    pub seq: u64,
    /// Position source of its rows (`amqp:<message id>` or similar).
    pub source: String,
    /// The records. Empty for a message the ingress dead-lettered itself:
    /// it still flows through so its acknowledgement keeps its place.
    pub body: Vec<u8>,
    /// What recognises its redelivery (the broker client's fingerprint),
    /// recorded by checkpoints that cover it before it is acked.
    pub fingerprint: Vec<u8>,
    /// When its publisher published it (ms since the epoch), if it said:
    /// the start of the end-to-end latency.
    pub published_ms: Option<i64>,
}

/// A broker's messages in delivery order, read by the pipeline's reader
/// thread. Blocking: the broker client runs elsewhere (an async runtime)
/// and hands messages over through a channel.
pub trait MessageSource: Send {
    /// The next message, waiting for it; `None` once the stream ended.
    fn next_message(&mut self) -> Option<Message>;
    /// Whether no message is waiting right now (the reader hands over what
    /// it has rather than hold rows back).
    fn is_idle(&self) -> bool;
}

/// A message input that has already ended: a partition whose windows are
/// flushed with no host consuming it.
pub struct NoMessages;

impl MessageSource for NoMessages {
    fn next_message(&mut self) -> Option<Message> {
        None
    }

    fn is_idle(&self) -> bool {
        true
    }
}

/// Told by each stage of the pipeline (`stage` = one per shard worker plus
/// one for the coordinator) when everything triggered by the messages up
/// to `seq` is in the sinks. A message is settled when every stage has
/// passed its number.
pub trait Acknowledger: Send + Sync {
    /// The number of stages that report.
    fn set_stages(&self, stages: usize);
    fn settled(&self, stage: usize, seq: u64);
    /// The highest sequence number whose acknowledgement has been sent.
    fn acked(&self) -> u64;
}
