//! A shard's window state in the checkpoint format: postcard (compact,
//! serde) of the dynamic state only — configuration comes from the
//! manifest, and the window names are recorded so a checkpoint of other
//! windows is refused rather than misread. Serialized straight from the
//! live structures (no copy of the state is made).
//!
//! Session specs were added as the last variant of the spec state, so a
//! checkpoint of a manifest without session windows is byte-for-byte what
//! it was, and one with them is refused by an older sluice as undecodable.
//!
//! Panes whose buffered rows a state ceiling refused are listed after
//! that, only when there are any: a shard without one is saved exactly as
//! before, and an older sluice reading the list ignores it (it reads what
//! it knows and stops). The bytes the budget counts are not saved but
//! recomputed on load.

use std::collections::BTreeMap;

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use super::count::CountKey;
use super::global::GlobalKey;
use super::session::SessionKey;
use super::time::TimeKey;
use super::{Error, KeyId, KeyTable, Result, ShardWindows, Spec};
use crate::parse::Key;

/// Timers: when each key next needs a visit.
type Timers = BTreeMap<i64, Vec<KeyId>>;

/// Refused panes: (spec index, key, pane, reason).
type Refused = Vec<(u32, KeyId, i64, String)>;

#[derive(Serialize)]
enum SpecRef<'a> {
    Time(&'a [Option<TimeKey>], &'a Timers, &'a [(KeyId, i64)]),
    Global(&'a [Option<GlobalKey>], &'a Timers),
    Count(&'a FxHashMap<KeyId, CountKey>),
    /// Added last, so checkpoints without sessions decode as before.
    Session(
        &'a [Option<SessionKey>],
        &'a Timers,
        &'a [(KeyId, i64)],
        i64,
    ),
}

/// The same layout as [`SpecRef`], owned.
#[derive(Deserialize)]
pub(super) enum SpecState {
    Time(Vec<Option<TimeKey>>, Timers, Vec<(KeyId, i64)>),
    Global(Vec<Option<GlobalKey>>, Timers),
    Count(FxHashMap<KeyId, CountKey>),
    Session(Vec<Option<SessionKey>>, Timers, Vec<(KeyId, i64)>, i64),
}

#[derive(Serialize)]
struct ShardRef<'a> {
    windows: Vec<&'a str>,
    wm: i64,
    seq: u64,
    keys: &'a [Key],
    specs: Vec<SpecRef<'a>>,
}

#[derive(Deserialize)]
struct ShardState {
    windows: Vec<String>,
    wm: i64,
    seq: u64,
    keys: Vec<Key>,
    specs: Vec<SpecState>,
}

pub(super) fn save(w: &ShardWindows) -> Result<Vec<u8>> {
    let specs = w
        .specs
        .iter()
        .map(|s| match s {
            Spec::Time(t) => SpecRef::Time(&t.keys, &t.timers, &t.dirty),
            Spec::Global(g) => SpecRef::Global(&g.keys, &g.timers),
            Spec::Count(c) => SpecRef::Count(&c.keys),
            Spec::Session(s) => SpecRef::Session(&s.keys, &s.timers, &s.bad, s.next_id),
        })
        .collect();
    let state = ShardRef {
        windows: w.specs.iter().map(spec_name).collect(),
        wm: w.wm,
        seq: w.seq,
        keys: &w.shared.keys.keys,
        specs,
    };
    let mut bytes = postcard::to_allocvec(&state).map_err(|e| Error::Snapshot(e.to_string()))?;
    let mut refused: Refused = Vec::new();
    for (i, spec) in w.specs.iter().enumerate() {
        let i = u32::try_from(i).unwrap_or(u32::MAX);
        let marked = match spec {
            Spec::Time(t) => t.refused(),
            Spec::Session(s) => s.refused(),
            Spec::Global(_) | Spec::Count(_) => continue,
        };
        refused.extend(marked.into_iter().map(|(k, q, why)| (i, k, q, why)));
    }
    if !refused.is_empty() {
        bytes = postcard::to_extend(&refused, bytes).map_err(|e| Error::Snapshot(e.to_string()))?;
    }
    Ok(bytes)
}

pub(super) fn load(w: &mut ShardWindows, bytes: &[u8]) -> Result<()> {
    let (state, rest): (ShardState, _) = postcard::take_from_bytes(bytes)
        .map_err(|e| Error::Snapshot(format!("does not decode: {e}")))?;
    let refused: Refused = if rest.is_empty() {
        Vec::new()
    } else {
        postcard::from_bytes(rest)
            .map_err(|e| Error::Snapshot(format!("refused panes do not decode: {e}")))?
    };
    let names: Vec<&str> = w.specs.iter().map(spec_name).collect();
    if state.windows != names || state.specs.len() != w.specs.len() {
        return Err(Error::Snapshot(format!(
            "it holds windows {:?}, the manifest has {names:?}",
            state.windows
        )));
    }
    for (spec, saved) in w.specs.iter_mut().zip(state.specs) {
        match (spec, saved) {
            (Spec::Time(t), SpecState::Time(keys, timers, dirty)) => {
                (t.keys, t.timers, t.dirty) = (keys, timers, dirty);
            }
            (Spec::Global(g), SpecState::Global(keys, timers)) => {
                (g.keys, g.timers) = (keys, timers);
            }
            (Spec::Count(c), SpecState::Count(keys)) => c.keys = keys,
            (Spec::Session(s), SpecState::Session(keys, timers, bad, next_id)) => {
                (s.keys, s.timers, s.bad, s.next_id) = (keys, timers, bad, next_id);
            }
            _ => {
                return Err(Error::Snapshot(
                    "a window changed kind since the checkpoint".to_owned(),
                ))
            }
        }
    }
    let mut table = KeyTable::default();
    for key in &state.keys {
        table.intern(key);
    }
    w.shared.keys = table;
    w.wm = state.wm;
    w.seq = state.seq;
    for (i, key, q, why) in refused {
        let marked = match w.specs.get_mut(i as usize) {
            Some(Spec::Time(t)) => t.set_refused(key, q, why),
            Some(Spec::Session(s)) => s.set_refused(key, q, why),
            _ => false,
        };
        if !marked {
            return Err(Error::Snapshot(format!(
                "a refused pane ({i}, {key}, {q}) is not in the checkpoint's windows"
            )));
        }
    }
    w.recount();
    Ok(())
}

fn spec_name(s: &Spec) -> &str {
    match s {
        Spec::Time(t) => &t.name,
        Spec::Global(g) => &g.name,
        Spec::Count(c) => &c.name,
        Spec::Session(s) => &s.name,
    }
}
