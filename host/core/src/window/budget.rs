//! The host's state ceilings over one shard: what it holds for its keys
//! (window accumulators, the rows buffered for process-window functions,
//! alert states) counted in one running figure.
//!
//! # Design
//! - **Per key** (`max_key_state`): an accumulator a call returns, an alert
//!   state, and the rows one key buffers for one process window (a pane:
//!   for tumbling and count windows, the window itself) each stay under it,
//!   and so do a key's open sessions at a fixed cost each.
//! - **Per shard** (`max_tenant_state` / workers, so which key hits it
//!   does not depend on thread timing): everything the shard holds. The
//!   figure is kept running — charged where an accumulator is stored or
//!   replaced and a row buffered, released where panes and windows are
//!   dropped or fired — so the hot path adds or subtracts a number instead
//!   of walking the state; it is recomputed on restore (the checkpoint
//!   format is unchanged).
//! - **Over a ceiling**, what would grow is refused: an accumulator or
//!   alert state is not stored (its rows are dead-lettered, the old state
//!   kept, as for any failed call); a process window's buffer is freed and
//!   dead-lettered with its rows, the window is marked, and its later rows
//!   and its firing are dead letters too — the window never emits a result
//!   missing rows. The trade-off: the shard ceiling refuses whichever key
//!   grows once the share is full, so a hoarding tenant can starve its own
//!   healthy keys (never another tenant's), and a window refused stays
//!   refused until it fires, even if state is freed meanwhile. Every
//!   refusal counts as a trap of the tenant (`WindowCalls::breached_limit`),
//!   so the trap backoff and `serve`'s auto-pause act on a tenant that
//!   keeps hitting them.

use std::mem::size_of;

use super::{
    Buffered, Env, KeyId, KeyTable, Pane, Poisoned, PoisonedInput, ShardWindows, Spec, WindowCalls,
};
use crate::parse::{OwnedValue, ParsedRow};

/// The ceilings and the running figure of one shard.
#[derive(Debug, Clone)]
pub struct StateBudget {
    max_key: usize,
    max_shard: u64,
    /// Window accumulators and buffered rows, all specs.
    windows: u64,
    /// Alert states.
    alerts: u64,
}

impl Default for StateBudget {
    fn default() -> Self {
        StateBudget::new(usize::MAX, u64::MAX)
    }
}

/// A row's in-memory size, estimated cheaply and deterministically: the
/// row and its buffer entry, each value, and the bytes of text values
/// (the key is shared with the key table, so not charged).
pub fn row_bytes(row: &ParsedRow) -> u64 {
    const ROW: usize = size_of::<ParsedRow>() + size_of::<u64>();
    let text: usize = row
        .values
        .iter()
        .map(|v| match v {
            OwnedValue::Text(t) => t.len(),
            _ => 0,
        })
        .sum();
    (ROW + row.values.len() * size_of::<OwnedValue>() + text) as u64
}

impl StateBudget {
    pub fn new(max_key: usize, max_shard: u64) -> StateBudget {
        StateBudget {
            max_key,
            max_shard,
            windows: 0,
            alerts: 0,
        }
    }

    pub fn max_key(&self) -> usize {
        self.max_key
    }

    pub fn max_shard(&self) -> u64 {
        self.max_shard
    }

    pub(super) fn set_max_key(&mut self, bytes: usize) {
        self.max_key = bytes;
    }

    pub(super) fn set_max_shard(&mut self, bytes: u64) {
        self.max_shard = bytes;
    }

    /// Bytes the shard holds now: window state and alert states.
    pub fn used(&self) -> u64 {
        self.windows.saturating_add(self.alerts)
    }

    /// Bytes of window state (accumulators and buffered rows).
    pub fn window_bytes(&self) -> u64 {
        self.windows
    }

    pub fn alert_bytes(&self) -> u64 {
        self.alerts
    }

    /// The alert states now take `bytes` (after a restore, or a batch of
    /// alert calls).
    pub fn set_alert_bytes(&mut self, bytes: u64) {
        self.alerts = bytes;
    }

    pub(super) fn set_window_bytes(&mut self, bytes: u64) {
        self.windows = bytes;
    }

    pub(super) fn charge(&mut self, bytes: u64) {
        self.windows = self.windows.saturating_add(bytes);
    }

    pub(super) fn release(&mut self, bytes: u64) {
        self.windows = self.windows.saturating_sub(bytes);
    }

    /// Window state of `old` bytes is now `new` bytes.
    pub(super) fn replace(&mut self, old: u64, new: u64) {
        self.release(old);
        self.charge(new);
    }

    /// Whether growing from `old` to `new` bytes keeps the shard (now at
    /// `used`) within its share; shrinking always does.
    fn shard_fits(&self, used: u64, old: u64, new: u64) -> bool {
        new <= old || used.saturating_sub(old).saturating_add(new) <= self.max_shard
    }

    fn shard_reason(&self, after: u64, what: &str) -> String {
        format!(
            "limit: the tenant's state would take {after} bytes on this shard, over its share \
             of {} bytes of this host's ceiling (max_tenant_state); {what}",
            self.max_shard
        )
    }

    /// Why an accumulator of `new` bytes may not replace one of `old`, if
    /// it may not: the call then counts as failed on that key.
    pub(super) fn refuse_accumulator(&self, old: usize, new: usize) -> Option<String> {
        if new > self.max_key {
            return Some(format!(
                "limit: the accumulator returned is {new} bytes, over this host's ceiling of {} \
                 bytes per key (max_key_state); it was not stored",
                self.max_key
            ));
        }
        let (old, new) = (old as u64, new as u64);
        (!self.shard_fits(self.used(), old, new)).then(|| {
            let after = self.used().saturating_sub(old).saturating_add(new);
            self.shard_reason(after, "it was not stored")
        })
    }

    /// Why an alert state of `new` bytes may not replace one of `old` when
    /// the shard holds `used` bytes, if it may not.
    pub fn refuse_alert_state(&self, used: u64, old: usize, new: usize) -> Option<String> {
        if new > self.max_key {
            return Some(format!(
                "limit: the alert state returned is {new} bytes, over this host's ceiling of \
                 {} bytes per key (max_key_state); the state was not stored",
                self.max_key
            ));
        }
        let (old, new) = (old as u64, new as u64);
        (!self.shard_fits(used, old, new)).then(|| {
            let after = used.saturating_sub(old).saturating_add(new);
            self.shard_reason(after, "the state was not stored")
        })
    }

    /// Whether `bytes` more keep the shard within its share.
    pub(super) fn fits_shard(&self, bytes: u64) -> bool {
        self.shard_fits(self.used(), 0, bytes)
    }

    /// Why a key may not open its `open`-th session of `window`, costing
    /// `bytes`, if it may not: `open × bytes` stays under the per-key
    /// ceiling, `bytes` more under the shard's share.
    pub(super) fn refuse_session(&self, window: &str, open: u64, bytes: u64) -> Option<String> {
        let after = open.saturating_mul(bytes);
        if after > self.max_key as u64 {
            return Some(format!(
                "limit: the {open} sessions of window `{window}` open for this key would take \
                 {after} bytes, over this host's ceiling of {} bytes per key (max_key_state); \
                 the row opening one was dead-lettered",
                self.max_key
            ));
        }
        (!self.fits_shard(bytes)).then(|| {
            self.shard_reason(
                self.used().saturating_add(bytes),
                &format!("the row opening a session of window `{window}` was dead-lettered"),
            )
        })
    }

    /// Why a row of `row` bytes may not join a window buffer of `held`
    /// bytes, if it may not.
    pub(super) fn refuse_row(&self, window: &str, held: u64, row: u64) -> Option<String> {
        let after = held.saturating_add(row);
        if after > self.max_key as u64 {
            return Some(format!(
                "limit: the rows buffered for window `{window}` of this key would take {after} \
                 bytes, over this host's ceiling of {} bytes per key (max_key_state); the \
                 window's rows were dead-lettered and its later rows are too",
                self.max_key
            ));
        }
        (!self.shard_fits(self.used(), 0, row)).then(|| {
            self.shard_reason(
                self.used().saturating_add(row),
                &format!(
                    "the rows buffered for window `{window}` of this key were dead-lettered \
                     and its later rows are too"
                ),
            )
        })
    }
}

/// What buffering a row for a process-window function needs: the budget
/// to charge, the calls to tell of a refusal, where dead letters go.
pub(super) struct Admit<'a> {
    pub budget: &'a mut StateBudget,
    pub calls: &'a mut dyn WindowCalls,
    pub keys: &'a KeyTable,
    pub poisoned: &'a mut Vec<Poisoned>,
}

/// One key's rows buffered for one window (a pane or a count window):
/// the rows, their bytes, and why the window was refused, if it was.
pub(super) struct Buffer<'s> {
    pub events: &'s mut Vec<Buffered>,
    pub bytes: &'s mut u64,
    pub refused: &'s mut Option<String>,
}

impl Admit<'_> {
    /// Buffers `row`, unless its window was refused (the row is then a
    /// dead letter) or the row would take it over a ceiling (the window's
    /// buffer is freed and dead-lettered with the row, and the window
    /// marked refused). `what` names the window in later rows' reason.
    pub fn buffer(
        &mut self,
        window: &str,
        what: &str,
        key: KeyId,
        buf: Buffer<'_>,
        seq: u64,
        row: &ParsedRow,
    ) {
        if let Some(why) = buf.refused.as_deref() {
            let error = format!("its {what} was dead-lettered earlier: {why}");
            self.poison(window, key, vec![row.clone()], error);
            return;
        }
        let size = row_bytes(row);
        match self.budget.refuse_row(window, *buf.bytes, size) {
            None => {
                buf.events.push(Buffered {
                    seq,
                    row: row.clone(),
                });
                *buf.bytes += size;
                self.budget.charge(size);
            }
            Some(reason) => {
                self.budget.release(std::mem::take(buf.bytes));
                let mut rows: Vec<ParsedRow> = std::mem::take(buf.events)
                    .into_iter()
                    .map(|b| b.row)
                    .collect();
                rows.push(row.clone());
                self.poison(window, key, rows, reason.clone());
                *buf.refused = Some(reason);
                self.calls.breached_limit();
            }
        }
    }

    /// Dead-letters `row`, refused by a state ceiling (`why`): a trap.
    pub fn refuse(&mut self, window: &str, key: KeyId, row: &ParsedRow, why: String) {
        self.poison(window, key, vec![row.clone()], why);
        self.calls.breached_limit();
    }

    fn poison(&mut self, window: &str, key: KeyId, rows: Vec<ParsedRow>, error: String) {
        self.poisoned.push(Poisoned {
            window: window.to_owned(),
            key: self.keys.key(key).clone(),
            input: PoisonedInput::Rows(rows),
            error,
        });
    }
}

impl Pane {
    /// Bytes it holds against the state ceilings.
    pub(super) fn held(&self) -> u64 {
        self.acc.as_ref().map_or(0, |a| a.len() as u64) + self.bytes
    }
}

/// Recomputes the bytes each pane of `panes` buffers; returns all they
/// hold.
pub(super) fn recount_panes<'p>(panes: impl Iterator<Item = &'p mut Pane>) -> u64 {
    panes
        .map(|p| {
            p.bytes = p.events.iter().map(|b| row_bytes(&b.row)).sum();
            p.held()
        })
        .sum()
}

impl Env<'_, '_> {
    /// Checks an accumulator of `new` bytes about to replace one of `old`
    /// against the state ceilings: refused, the call counts as failed on
    /// that key (and as a trap of the tenant).
    pub(super) fn admit_accumulator(
        &mut self,
        old: usize,
        new: Vec<u8>,
    ) -> Result<Vec<u8>, String> {
        match self.budget.refuse_accumulator(old, new.len()) {
            None => Ok(new),
            Some(reason) => {
                self.calls.breached_limit();
                Err(reason)
            }
        }
    }

    /// For buffering rows within a step.
    pub(super) fn admit(&mut self) -> Admit<'_> {
        Admit {
            budget: &mut *self.budget,
            calls: &mut *self.calls,
            keys: self.keys,
            poisoned: &mut *self.poisoned,
        }
    }
}

impl ShardWindows {
    /// The host's state ceilings for this shard: per key, and for all it
    /// holds (its share of the tenant's ceiling). See [`StateBudget`].
    pub fn set_state_ceilings(&mut self, max_key: usize, max_shard: u64) {
        self.shared.budget.set_max_key(max_key);
        self.shared.budget.set_max_shard(max_shard);
    }

    /// The shard's state ceilings and running figure; the alert function's
    /// states are charged to it too.
    pub fn budget(&self) -> &StateBudget {
        &self.shared.budget
    }

    pub fn budget_mut(&mut self) -> &mut StateBudget {
        &mut self.shared.budget
    }
    /// Recomputes the bytes of window state the budget holds, walking
    /// every pane: after a restore, and once the input ended.
    pub(super) fn recount(&mut self) {
        let bytes = self
            .specs
            .iter_mut()
            .map(|s| match s {
                Spec::Time(s) => s.recount(),
                Spec::Global(s) => s.recount(),
                Spec::Count(s) => s.recount(),
                Spec::Session(s) => s.recount(),
            })
            .sum();
        self.shared.budget.set_window_bytes(bytes);
    }

    /// The running figure of window bytes, and what a walk of the panes
    /// counts (the running figure is left as it was), for tests.
    #[cfg(test)]
    pub(crate) fn running_and_recounted_bytes(&mut self) -> (u64, u64) {
        let running = self.shared.budget.window_bytes();
        self.recount();
        let counted = self.shared.budget.window_bytes();
        self.shared.budget.set_window_bytes(running);
        (running, counted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::Key;

    fn row(text: &str) -> ParsedRow {
        ParsedRow {
            key: Key::from_parts(["k"]).expect("key"),
            time: 0,
            values: vec![OwnedValue::Text(text.into()), OwnedValue::Int(1)],
        }
    }

    #[test]
    fn a_row_costs_its_values_and_text() {
        let short = row_bytes(&row(""));
        assert!(short >= (size_of::<ParsedRow>() + 2 * size_of::<OwnedValue>()) as u64);
        assert_eq!(row_bytes(&row(&"x".repeat(1000))), short + 1000);
    }

    #[test]
    fn the_shard_share_refuses_growth_only() {
        let mut b = StateBudget::new(100, 150);
        b.charge(120);
        b.set_alert_bytes(20);
        assert_eq!(b.used(), 140);
        assert!(b.refuse_accumulator(10, 20).is_none(), "150 fits");
        let why = b.refuse_accumulator(10, 21).expect("151 does not");
        assert!(why.contains("max_tenant_state"), "{why}");
        assert!(b.refuse_accumulator(50, 40).is_none(), "shrinking fits");
        let why = b.refuse_accumulator(0, 101).expect("over the key ceiling");
        assert!(why.contains("max_key_state"), "{why}");
        assert!(b.refuse_row("w", 90, 10).is_none());
        assert!(b
            .refuse_row("w", 95, 10)
            .expect("key")
            .contains("max_key_state"));
        assert!(b
            .refuse_row("w", 0, 11)
            .expect("shard")
            .contains("max_tenant_state"));
        b.replace(120, 0);
        assert_eq!(b.used(), 20);
    }
}
