//! Recognising redeliveries: what identifies a message ([`Fingerprint`])
//! and the applied messages the broker may still redeliver
//! ([`AppliedUnacked`]).

use std::collections::VecDeque;

use lapin::message::Delivery;
use sha2::{Digest, Sha256};

/// What recognises a redelivery: the publisher's `message_id` (`i` +
/// id), or 128 bits of SHA-256 of the body (`b` + hash) when it set none.
/// Bytes, because checkpoints store them across restarts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Fingerprint(pub(super) Vec<u8>);

impl Fingerprint {
    pub(super) fn of(delivery: &Delivery) -> Fingerprint {
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
    pub(super) fn id(&self) -> Option<&str> {
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
pub(super) struct AppliedUnacked {
    /// Of lost connections and a restored checkpoint, by sequence number
    /// (a restored checkpoint's are 0: before every delivery of this run).
    lost: VecDeque<(u64, Fingerprint)>,
    /// The last acks sent on this connection, not known to have arrived.
    unconfirmed: VecDeque<(u64, Fingerprint)>,
    /// How many of those to keep: the prefetch.
    window: usize,
}

impl AppliedUnacked {
    pub(super) fn new(restored: Vec<Fingerprint>, window: usize) -> AppliedUnacked {
        AppliedUnacked {
            lost: restored.into_iter().map(|f| (0, f)).collect(),
            unconfirmed: VecDeque::with_capacity(window),
            window,
        }
    }

    /// Its ack is being sent on the current connection.
    pub(super) fn acked(&mut self, seq: u64, fingerprint: Fingerprint) {
        if self.unconfirmed.len() == self.window {
            self.unconfirmed.pop_front();
        }
        insert_ordered(&mut self.unconfirmed, seq, fingerprint);
    }

    /// Settled after its connection was lost: it will come back.
    pub(super) fn settled_unacked(&mut self, seq: u64, fingerprint: Fingerprint) {
        insert_ordered(&mut self.lost, seq, fingerprint);
    }

    /// The acks sent so far were committed (`tx.commit` answered).
    pub(super) fn confirmed(&mut self) {
        self.unconfirmed.clear();
    }

    /// The connection is gone, and maybe the last acks with it.
    pub(super) fn connection_lost(&mut self) {
        while let Some((seq, f)) = self.unconfirmed.pop_front() {
            insert_ordered(&mut self.lost, seq, f);
        }
    }

    /// For a redelivery: the sequence number of the applied message it
    /// repeats (then forgotten: it is acked), or `None` for one to apply.
    pub(super) fn take(&mut self, fingerprint: &Fingerprint) -> Option<u64> {
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
    pub(super) fn first_delivery(&mut self) {
        self.lost.clear();
    }
}

/// Inserts after every entry with a sequence number up to `seq`.
fn insert_ordered(list: &mut VecDeque<(u64, Fingerprint)>, seq: u64, fingerprint: Fingerprint) {
    let at = list.partition_point(|(s, _)| *s <= seq);
    list.insert(at, (seq, fingerprint));
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
