//! Acknowledgement: the pipeline's stages report what they settled
//! ([`Settled`]), and the consumer acks the deliveries up to the lowest of
//! them — one `multiple` ack when the tags allow.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use lapin::options::BasicAckOptions;
use sluice_core::ingress::Acknowledger;
use tokio::sync::Notify;

use super::consumer::ConsumerTask;
use super::redelivery::Fingerprint;

/// The pipeline's progress: per stage, the last settled sequence number;
/// the lowest of them is what may be acked.
#[derive(Default)]
pub(super) struct Settled {
    stages: Mutex<Vec<u64>>,
    pub(super) upto: AtomicU64,
    pub(super) notify: Notify,
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
pub(super) struct Pending {
    pub(super) seq: u64,
    pub(super) fingerprint: Fingerprint,
    /// The connection generation and delivery tag to ack it with.
    pub(super) generation: u64,
    pub(super) tag: u64,
}

impl ConsumerTask {
    /// Acks every pending delivery settled up to `upto` (a failure is
    /// remembered in `acks_failed`).
    pub(super) async fn ack_settled(&mut self, upto: u64) {
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
    pub(super) async fn ack(&mut self, mut tags: Vec<u64>) -> bool {
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
}
