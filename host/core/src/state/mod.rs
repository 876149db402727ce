//! State and checkpoints: what a run must persist to resume exactly where
//! it stopped, the on-disk format, and where checkpoints are kept.
//!
//! A checkpoint is taken at a barrier between two batches: every shard
//! serializes its windows and alert states after applying everything
//! before the barrier and nothing after, the coordinator adds the input's
//! watermark, the keyless metric, the counters, the input position and the
//! bytes written to the output files. It is written atomically, and only
//! then is the input acknowledged up to it.

pub mod failpoint;
pub mod local;

use serde::{Deserialize, Serialize};

/// Counter and guard states are the metrics' own; a checkpoint carries them.
pub use crate::metrics::{CounterState, GuardState};

/// Result of checkpoint operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("checkpoint store {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("checkpoint {name} is unusable: {reason}")]
    Corrupt { name: String, reason: String },
    #[error("encoding a checkpoint: {0}")]
    Encode(String),
    #[error(
        "the checkpoint was taken with {saved} workers and this run has {now}; \
         run with --workers {saved} (keys are sharded by worker count)"
    )]
    Workers { saved: usize, now: usize },
    #[error("the checkpoint belongs to tenant `{saved}`, not `{now}`")]
    Tenant { saved: String, now: String },
    /// A checkpoint store's own failure (a database's, say), boxed so the
    /// core does not name its client's error type.
    #[error("checkpoint store in {store}: {source}")]
    Store {
        store: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// The format version; bumped on any incompatible change of [`Checkpoint`].
/// 2 added [`GuardState`]; version 1 is still read (with no guard state).
pub const FORMAT_VERSION: u32 = 2;
const MAGIC: &[u8; 4] = b"SLCK";

/// Where the input stood at the barrier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum InputPosition {
    /// A file: the byte offset and line number after the last record read.
    File { offset: u64, line: u64 },
    /// Broker messages: fingerprints of the messages this checkpoint covers
    /// that were not yet acknowledged when it was written. After a restart
    /// their redeliveries are acknowledged and skipped.
    Messages { unacked: Vec<Vec<u8>> },
}

/// The coordinator's state: the input's watermark and the tenant-level
/// (keyless) error metric.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoordinatorState {
    pub wm: i64,
    pub max_time: Option<i64>,
    pub wm_at_last_record: i64,
    pub keyless: u64,
    /// Per global window: (next boundary, count at the last emission).
    pub keyless_metrics: Vec<(Option<i64>, u64)>,
}

/// One shard: its windows (see `ShardWindows::snapshot`) and its alert
/// function's per-key state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardState {
    pub windows: Vec<u8>,
    pub alert_states: Vec<(crate::parse::Key, Vec<u8>)>,
}

/// Everything a run needs to resume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Increasing within a checkpoint directory.
    pub id: u64,
    pub tenant: String,
    /// The tenant module's content hash when it was taken: keyed state is
    /// that module's format (a redeploy decides whether it can carry it).
    pub module_hash: String,
    pub input: InputPosition,
    /// Bytes of the output and dead-letter files covered (a restore cuts
    /// the files back to these, so a replay does not write lines twice).
    pub output_bytes: Option<u64>,
    pub dead_letter_bytes: Option<u64>,
    pub coordinator: CoordinatorState,
    pub counters: CounterState,
    pub shards: Vec<ShardState>,
    /// The host's guards: their counters, and the keys the key ceiling
    /// counts.
    pub guards: GuardState,
}

/// A version-1 checkpoint: the same fields without [`GuardState`].
#[derive(Deserialize)]
struct CheckpointV1 {
    id: u64,
    tenant: String,
    module_hash: String,
    input: InputPosition,
    output_bytes: Option<u64>,
    dead_letter_bytes: Option<u64>,
    coordinator: CoordinatorState,
    counters: CounterState,
    shards: Vec<ShardState>,
}

impl From<CheckpointV1> for Checkpoint {
    fn from(c: CheckpointV1) -> Checkpoint {
        Checkpoint {
            id: c.id,
            tenant: c.tenant,
            module_hash: c.module_hash,
            input: c.input,
            output_bytes: c.output_bytes,
            dead_letter_bytes: c.dead_letter_bytes,
            coordinator: c.coordinator,
            counters: c.counters,
            shards: c.shards,
            guards: GuardState::default(),
        }
    }
}

impl Checkpoint {
    /// `MAGIC`, version, payload length, CRC-32 of the payload, payload.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let payload = postcard::to_allocvec(self).map_err(|e| Error::Encode(e.to_string()))?;
        let mut out = Vec::with_capacity(payload.len() + 20);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        out.extend_from_slice(&payload);
        Ok(out)
    }

    /// Decodes and verifies; `name` is used in errors.
    pub fn decode(bytes: &[u8], name: &str) -> Result<Checkpoint> {
        let corrupt = |reason: String| Error::Corrupt {
            name: name.to_owned(),
            reason,
        };
        if bytes.len() < 20 || &bytes[..4] != MAGIC {
            return Err(corrupt("not a sluice checkpoint (bad header)".into()));
        }
        let word = |at: usize| -> [u8; 4] {
            let mut w = [0; 4];
            w.copy_from_slice(&bytes[at..at + 4]);
            w
        };
        let version = u32::from_le_bytes(word(4));
        if version != FORMAT_VERSION && version != 1 {
            return Err(corrupt(format!(
                "format version {version}, this sluice reads {FORMAT_VERSION}"
            )));
        }
        let mut len = [0; 8];
        len.copy_from_slice(&bytes[8..16]);
        let len = u64::from_le_bytes(len);
        let payload = &bytes[20..];
        if payload.len() as u64 != len {
            return Err(corrupt(format!(
                "torn: {} payload bytes of {len}",
                payload.len()
            )));
        }
        if crc32fast::hash(payload) != u32::from_le_bytes(word(16)) {
            return Err(corrupt("checksum mismatch".into()));
        }
        let decoded = if version == 1 {
            postcard::from_bytes::<CheckpointV1>(payload).map(Checkpoint::from)
        } else {
            postcard::from_bytes(payload)
        };
        decoded.map_err(|e| corrupt(format!("does not decode: {e}")))
    }
}

/// Where checkpoints are kept.
pub trait CheckpointStore: Send + Sync {
    /// Writes `checkpoint` durably and atomically: after a crash, either it
    /// is complete or it is absent.
    fn write(&self, checkpoint: &Checkpoint) -> Result<()>;
    /// Records durably that the input checkpoint `id` covers has been
    /// acknowledged (the broker committed the acks): a restore from it then
    /// expects no redelivery of what it covers.
    fn mark_acked(&self, id: u64) -> Result<()>;
    /// The newest complete checkpoint; corrupt ones are skipped with a log
    /// line.
    fn latest(&self) -> Result<Option<Restored>>;
}

/// A checkpoint read back, and whether its input was known acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    pub checkpoint: Checkpoint,
    pub acked: bool,
}

impl Restored {
    /// The checkpoint to resume from: when its acks are known committed, no
    /// message it covers will come back, so none is to be skipped (a body
    /// hash kept there could match a later identical message).
    pub fn into_resume(self) -> Checkpoint {
        let mut c = self.checkpoint;
        if self.acked {
            if let InputPosition::Messages { unacked } = &mut c.input {
                unacked.clear();
            }
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Checkpoint {
        Checkpoint {
            id: 7,
            tenant: "bts".into(),
            module_hash: "abc".into(),
            input: InputPosition::File {
                offset: 1234,
                line: 20,
            },
            output_bytes: Some(99),
            dead_letter_bytes: None,
            coordinator: CoordinatorState {
                wm: 5,
                max_time: Some(10),
                wm_at_last_record: 5,
                keyless: 2,
                keyless_metrics: vec![(Some(60_000), 1)],
            },
            counters: CounterState {
                rows_in: 20,
                ..CounterState::default()
            },
            shards: vec![ShardState {
                windows: vec![1, 2, 3],
                alert_states: vec![(
                    crate::parse::Key::from_parts(["a", "b"]).expect("key"),
                    vec![9],
                )],
            }],
            guards: GuardState {
                future_dropped: 3,
                limited: 1,
                keys: vec![4, 8],
            },
        }
    }

    #[test]
    fn a_version_1_checkpoint_still_restores_without_guard_state() {
        let mut c = sample();
        c.guards = GuardState::default();
        let mut bytes = c.encode().expect("encode");
        // A version-1 payload is this one without the trailing guard state
        // (three zero bytes in postcard: two varints and an empty list).
        bytes.truncate(bytes.len() - 3);
        let payload_len = (bytes.len() - 20) as u64;
        bytes[4..8].copy_from_slice(&1u32.to_le_bytes());
        bytes[8..16].copy_from_slice(&payload_len.to_le_bytes());
        let crc = crc32fast::hash(&bytes[20..]);
        bytes[16..20].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(Checkpoint::decode(&bytes, "t").expect("version 1"), c);
    }

    #[test]
    fn round_trips() {
        let c = sample();
        let bytes = c.encode().expect("encode");
        assert_eq!(Checkpoint::decode(&bytes, "t").expect("decode"), c);
    }

    #[test]
    fn a_flipped_bit_or_a_torn_write_is_detected() {
        let bytes = sample().encode().expect("encode");
        let mut flipped = bytes.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        let err = Checkpoint::decode(&flipped, "t").expect_err("corrupt");
        assert!(err.to_string().contains("checksum"), "{err}");
        let err = Checkpoint::decode(&bytes[..bytes.len() - 3], "t").expect_err("torn");
        assert!(err.to_string().contains("torn"), "{err}");
        let err = Checkpoint::decode(b"hello world, not a checkpoint", "t").expect_err("header");
        assert!(err.to_string().contains("bad header"), "{err}");
    }
}
