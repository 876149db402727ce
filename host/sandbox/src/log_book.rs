//! A tenant's recent log, kept for the tenant to read (`sluice logs`): its
//! guest's log lines and stdout/stderr, its traps and limit hits, and what
//! the host did about them (an auto-pause, a failed run). Bounded by line
//! count and bytes, oldest first out, so what a tenant can make the host
//! hold is fixed whatever it writes; every entry has a sequence number, so
//! a reader that polls (`--follow`) gets each line once and learns how many
//! it missed when it fell behind.

use std::collections::VecDeque;
use std::sync::Mutex;

/// Entries kept per tenant by default.
pub const DEFAULT_LINES: usize = 1000;
/// Bytes of messages kept per tenant by default.
pub const DEFAULT_BYTES: usize = 512 * 1024;
/// What an entry costs beyond its message (its fields, the queue's slot).
const ENTRY_OVERHEAD: usize = 64;

/// Who wrote an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The `log` import.
    Guest,
    /// The guest's stdout or stderr (a panic message lands here).
    Stdio,
    /// A call that trapped or hit a limit.
    Trap,
    /// The host, about this tenant.
    Host,
}

/// One line of a tenant's log.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LogEntry {
    /// Increases by one per entry, from 1.
    pub seq: u64,
    /// ms since the Unix epoch (wall clock).
    pub time: i64,
    /// `trace`, `debug`, `info`, `warn` or `error`.
    pub level: &'static str,
    pub source: Source,
    pub message: String,
}

/// The entries after a sequence number.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LogPage {
    pub entries: Vec<LogEntry>,
    /// Pass this as `after` to get what follows.
    pub next: u64,
    /// Entries after the requested point that were evicted before they
    /// were read.
    pub missed: u64,
    /// Guest lines dropped by the rate limit so far (never kept).
    pub rate_limited: u64,
}

/// A bounded log of one tenant, shared by all its instances.
#[derive(Debug)]
pub struct LogBook {
    max_lines: usize,
    max_bytes: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    entries: VecDeque<LogEntry>,
    bytes: usize,
    /// The last sequence number given.
    last: u64,
    rate_limited: u64,
}

impl Default for LogBook {
    fn default() -> Self {
        LogBook::new(DEFAULT_LINES, DEFAULT_BYTES)
    }
}

impl LogBook {
    pub fn new(max_lines: usize, max_bytes: usize) -> LogBook {
        LogBook {
            max_lines: max_lines.max(1),
            max_bytes,
            state: Mutex::new(State::default()),
        }
    }

    /// Appends a line (already cut and escaped by the caller), evicting the
    /// oldest past the bounds.
    pub fn push(&self, level: &'static str, source: Source, message: String) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        state.last += 1;
        let entry = LogEntry {
            seq: state.last,
            time: now_ms(),
            level,
            source,
            message,
        };
        state.bytes += cost(&entry);
        state.entries.push_back(entry);
        while state.entries.len() > self.max_lines
            || (state.bytes > self.max_bytes && state.entries.len() > 1)
        {
            if let Some(old) = state.entries.pop_front() {
                state.bytes -= cost(&old);
            }
        }
    }

    /// Counts a guest line the rate limit dropped.
    pub fn rate_limited(&self) {
        if let Ok(mut state) = self.state.lock() {
            state.rate_limited += 1;
        }
    }

    /// Up to `limit` entries with a sequence number above `after`, oldest
    /// first. A point past the last entry means the numbering began again
    /// (the host restarted): the page starts from the oldest entry.
    pub fn after(&self, after: u64, limit: usize) -> LogPage {
        let Ok(state) = self.state.lock() else {
            return LogPage {
                entries: Vec::new(),
                next: after,
                missed: 0,
                rate_limited: 0,
            };
        };
        let after = if after > state.last { 0 } else { after };
        let first = state.entries.front().map_or(state.last + 1, |e| e.seq);
        let missed = first.saturating_sub(after.saturating_add(1));
        // Sequence numbers are contiguous: the entry after `after` is at
        // a known index.
        let skip =
            usize::try_from(after.saturating_add(1).saturating_sub(first)).unwrap_or(usize::MAX);
        let entries: Vec<LogEntry> = state
            .entries
            .iter()
            .skip(skip)
            .take(limit)
            .cloned()
            .collect();
        let next = entries.last().map_or(state.last, |e| e.seq);
        LogPage {
            entries,
            next,
            missed,
            rate_limited: state.rate_limited,
        }
    }

    /// Entries and bytes held now.
    pub fn held(&self) -> (usize, usize) {
        self.state
            .lock()
            .map_or((0, 0), |s| (s.entries.len(), s.bytes))
    }
}

fn cost(entry: &LogEntry) -> usize {
    entry.message.len() + ENTRY_OVERHEAD
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(page: &LogPage) -> Vec<&str> {
        page.entries.iter().map(|e| e.message.as_str()).collect()
    }

    #[test]
    fn a_reader_gets_each_entry_once_and_is_told_what_it_missed() {
        let book = LogBook::new(3, usize::MAX);
        for m in ["a", "b"] {
            book.push("info", Source::Guest, m.into());
        }
        let page = book.after(0, 10);
        assert_eq!(messages(&page), vec!["a", "b"]);
        assert_eq!((page.next, page.missed), (2, 0));
        // Nothing new: the same point again.
        let idle = book.after(page.next, 10);
        assert!(idle.entries.is_empty());
        assert_eq!((idle.next, idle.missed), (2, 0));
        for m in ["c", "d", "e", "f"] {
            book.push("warn", Source::Trap, m.into());
        }
        // Only the last three are kept: "c" was evicted unread.
        let page = book.after(2, 10);
        assert_eq!(messages(&page), vec!["d", "e", "f"]);
        assert_eq!((page.next, page.missed), (6, 1));
        // A point past the end (a restarted host) reads from the start.
        assert_eq!(messages(&book.after(99, 1)), vec!["d"]);
        // A limit pages through.
        let first = book.after(0, 2);
        assert_eq!(messages(&first), vec!["d", "e"]);
        assert_eq!((first.next, first.missed), (5, 3));
        assert_eq!(messages(&book.after(first.next, 2)), vec!["f"]);
    }

    #[test]
    fn the_bytes_held_stay_under_the_bound_whatever_is_written() {
        let book = LogBook::new(1_000_000, 64 * 1024);
        for i in 0..100_000 {
            book.push("info", Source::Stdio, format!("{i:>1000}"));
        }
        let (lines, bytes) = book.held();
        assert!(bytes <= 64 * 1024, "{bytes}");
        assert!(lines > 10, "{lines}");
        let page = book.after(0, usize::MAX);
        assert_eq!(page.entries.last().map(|e| e.seq), Some(100_000));
        assert_eq!(page.missed, 100_000 - lines as u64);
    }
}
