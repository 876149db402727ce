//! The key of a row: the values of the manifest's key columns.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Separates key parts inside a [`Key`]. A key value containing it is a bad
/// row (it would make two different keys equal).
pub const KEY_SEPARATOR: char = '\u{1f}';

/// A row's key: its key column values, in key order.
///
/// One shared allocation holding the parts joined by U+001F: a row costs a
/// single allocation for its key, clones are a reference count, and `Eq`,
/// `Hash` and `Ord` work on one string. `Ord` is the byte order of the
/// joined text (a total order; parts compare as tuples as long as they hold
/// no control characters).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key(Arc<str>);

/// A key part held the reserved separator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("key part {part:?} contains U+001F, which keys reserve as their separator")]
pub struct KeySeparatorError {
    pub part: String,
}

impl Key {
    /// A key from its parts, in key order.
    pub fn from_parts<I, S>(parts: I) -> Result<Key, KeySeparatorError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut joined = String::new();
        for (i, part) in parts.into_iter().enumerate() {
            let part = part.as_ref();
            if part.contains(KEY_SEPARATOR) {
                return Err(KeySeparatorError {
                    part: part.to_owned(),
                });
            }
            if i > 0 {
                joined.push(KEY_SEPARATOR);
            }
            joined.push_str(part);
        }
        Ok(Key(Arc::from(joined)))
    }

    /// Builds a key from text already joined with [`KEY_SEPARATOR`] (the
    /// parser's scratch buffer), in one allocation.
    pub(crate) fn from_joined(joined: &str) -> Key {
        Key(Arc::from(joined))
    }

    /// The parts, in key order.
    pub fn parts(&self) -> std::str::Split<'_, char> {
        self.0.split(KEY_SEPARATOR)
    }

    /// A copy in an allocation of the calling thread's own, for a key a
    /// thread keeps and clones often (a shard's key table, its alert
    /// states). A clone shares the row's allocation, made by the reader
    /// thread among the other rows' keys it keeps allocating and the
    /// workers keep freeing: every reference count change on it then
    /// bounced a cache line between cores (issue 22).
    pub fn local_copy(&self) -> Key {
        Key(Arc::from(&*self.0))
    }

    /// Whether both are the same allocation (clones of one key): a cheap
    /// equality test before comparing text.
    pub fn same_allocation(&self, other: &Key) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// The parts as owned strings (what `BatchBuilder::begin_group` takes).
    pub fn to_vec(&self) -> Vec<String> {
        self.parts().map(str::to_owned).collect()
    }

    /// Number of parts.
    pub fn len(&self) -> usize {
        self.parts().count()
    }

    /// Always false: a key has at least one part (possibly empty text).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The parts joined by [`KEY_SEPARATOR`].
    pub fn as_joined(&self) -> &str {
        &self.0
    }

    /// A hash that is the same on every run, machine and build: FNV-1a over
    /// the joined bytes, then the MurmurHash3 finalizer so that keys that
    /// differ in one character spread over all bits. Shards are chosen from
    /// it and checkpoints are laid out by shard, so it must never change.
    pub fn hash64(&self) -> u64 {
        fmix64(fnv1a(self.0.as_bytes()))
    }

    /// The shard of this key among `shards` (0 when `shards` is 0), by
    /// multiply-shift on [`Key::hash64`]: uniform, no modulo bias.
    pub fn shard(&self, shards: u32) -> u32 {
        ((u128::from(self.hash64()) * u128::from(shards)) >> 64) as u32
    }
}

/// 64-bit FNV-1a.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// MurmurHash3's 64-bit finalizer (full avalanche).
fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.parts()).finish()
    }
}

/// `part/part/part`, for logs and messages.
impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, part) in self.parts().enumerate() {
            if i > 0 {
                f.write_str("/")?;
            }
            f.write_str(part)?;
        }
        Ok(())
    }
}

/// Serialized as the list of its parts, so stored keys do not depend on the
/// in-memory separator.
impl Serialize for Key {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // With its length up front: compact formats (postcard, in
        // checkpoints) need it.
        use serde::ser::SerializeSeq;
        let mut seq = serializer.serialize_seq(Some(self.parts().count()))?;
        for part in self.parts() {
            seq.serialize_element(part)?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Key, D::Error> {
        let parts = Vec::<String>::deserialize(deserializer)?;
        Key::from_parts(parts).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(parts: &[&str]) -> Key {
        Key::from_parts(parts).expect("no separator")
    }

    #[test]
    fn parts_round_trip_including_empty_parts() {
        let k = key(&["1161115009", "", "308"]);
        assert_eq!(k.to_vec(), vec!["1161115009", "", "308"]);
        assert_eq!(k.len(), 3);
        assert_eq!(k.to_string(), "1161115009//308");
        assert_eq!(format!("{k:?}"), r#"["1161115009", "", "308"]"#);
    }

    #[test]
    fn a_part_holding_the_separator_is_refused() {
        let err = Key::from_parts(["a\u{1f}b", "c"]).expect_err("separator");
        assert_eq!(err.part, "a\u{1f}b");
    }

    #[test]
    fn fnv1a_matches_the_published_test_vectors() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
        assert_eq!(fmix64(0), 0);
    }

    #[test]
    fn the_hash_is_pinned_so_shard_assignment_never_changes() {
        // Golden values, computed by an independent (Python) implementation
        // of FNV-1a + fmix64: changing the hash moves every key to another
        // shard and invalidates checkpoints laid out by shard.
        assert_eq!(
            key(&["1161115009", "121", "308"]).hash64(),
            0x3bc4_aad5_2eb2_0083
        );
        assert_eq!(key(&["a"]).hash64(), 0x82a2_a958_a9be_ce5b);
    }

    #[test]
    fn keys_that_differ_by_where_parts_split_hash_differently() {
        assert_ne!(key(&["ab", "c"]), key(&["a", "bc"]));
        assert_ne!(key(&["ab", "c"]).hash64(), key(&["a", "bc"]).hash64());
    }

    #[test]
    fn shards_are_spread_evenly_over_many_keys() {
        let shards = 8u32;
        let mut counts = vec![0u32; shards as usize];
        for station in 0..100 {
            for dp in [115, 121, 141, 143, 145] {
                for alarm in [308, 309, 312] {
                    let k = key(&[
                        &format!("11611{station:05}"),
                        &dp.to_string(),
                        &alarm.to_string(),
                    ]);
                    counts[k.shard(shards) as usize] += 1;
                }
            }
        }
        let expected = 1500.0 / f64::from(shards);
        for (shard, &c) in counts.iter().enumerate() {
            assert!(
                (f64::from(c) - expected).abs() < expected * 0.2,
                "shard {shard} has {c} keys, expected ≈ {expected}: {counts:?}"
            );
        }
        assert_eq!(key(&["x"]).shard(0), 0);
    }

    #[test]
    fn keys_serialize_as_their_parts() {
        let k = key(&["s1", "121", "308"]);
        let json = serde_json::to_string(&k).expect("serialize");
        assert_eq!(json, r#"["s1","121","308"]"#);
        let back: Key = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, k);
        assert!(serde_json::from_str::<Key>(r#"["a\u001fb"]"#).is_err());
    }
}
