//! The tenant's log: `host.log` and guest stdout/stderr end up here, as
//! `tracing` events tagged with the tenant and as entries of the tenant's
//! [`LogBook`] (what `sluice logs` reads), rate-limited so a chatty or
//! hostile guest cannot flood either. Every line is cut to [`MAX_LINE`]
//! bytes and its control characters escaped, so one write — of any
//! length, with any newlines — is at most one short log line. The host's
//! own warnings about a tenant's failed calls are summarised ([`Repeats`]:
//! the first few in full, then a count), so a tenant trapping on every
//! call cannot flood the log either, nor silence its own log lines; every
//! failed call is in the book.
//!
//! One [`TenantLog`] is shared by all instances of a tenant's module (one
//! rate limit, one book); each instance has its own handle
//! ([`TenantLog::for_instance`]) for the stdout lines its own trap quotes.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use sluice_core::repeats::Repeats;

use super::bindings::LogLevel;
use super::log_book::{LogBook, Source};

/// Lines per second a tenant may log (burst of the same size).
const LINES_PER_SECOND: f64 = 100.0;
/// Longest line kept; the rest is cut.
const MAX_LINE: usize = 1024;
/// stdout/stderr lines kept for quoting in a trap message.
const RECENT_LINES: usize = 4;

#[derive(Debug, Clone)]
pub struct TenantLog {
    shared: Arc<Shared>,
    /// This instance's recent stdout/stderr lines, kept (even when
    /// rate-limited) so its trap can quote the guest's panic message.
    recent_stdio: Arc<Mutex<VecDeque<String>>>,
}

#[derive(Debug)]
struct Shared {
    tenant: String,
    bucket: Mutex<Bucket>,
    written: AtomicU64,
    dropped: AtomicU64,
    book: Arc<LogBook>,
    failures: Repeats,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl TenantLog {
    /// A log with a book of its own.
    pub fn new(tenant: &str) -> Self {
        TenantLog::with_book(tenant, Arc::new(LogBook::default()))
    }

    /// A log writing into `book` (kept by the host across the tenant's
    /// module versions).
    pub fn with_book(tenant: &str, book: Arc<LogBook>) -> Self {
        TenantLog {
            shared: Arc::new(Shared {
                tenant: tenant.to_owned(),
                bucket: Mutex::new(Bucket {
                    tokens: LINES_PER_SECOND,
                    last: Instant::now(),
                }),
                written: AtomicU64::new(0),
                dropped: AtomicU64::new(0),
                book,
                failures: Repeats::new(tenant, "guest call failed"),
            }),
            recent_stdio: Arc::default(),
        }
    }

    /// A handle for one instance: the same rate limit and book, its own
    /// recent stdout lines.
    pub fn for_instance(&self) -> Self {
        TenantLog {
            shared: Arc::clone(&self.shared),
            recent_stdio: Arc::default(),
        }
    }

    /// The tenant's book.
    pub fn book(&self) -> &Arc<LogBook> {
        &self.shared.book
    }

    /// Lines written and lines dropped by the rate limit so far.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.shared.written.load(Ordering::Relaxed),
            self.shared.dropped.load(Ordering::Relaxed),
        )
    }

    fn admit(&self) -> bool {
        let admitted = take(&self.shared.bucket, LINES_PER_SECOND);
        let counter = if admitted {
            &self.shared.written
        } else {
            self.shared.book.rate_limited();
            &self.shared.dropped
        };
        counter.fetch_add(1, Ordering::Relaxed);
        admitted
    }

    /// A call of this tenant failed (`what`: trapped, or its result was
    /// refused): into the book always, into the host's log summarised.
    pub(crate) fn failure(&self, what: &str, error: &dyn std::fmt::Display) {
        let message = clean(&error.to_string());
        if self.shared.failures.admit() {
            tracing::warn!(tenant = %self.shared.tenant, error = %message, "{what}");
        }
        self.shared.book.push("warn", Source::Trap, message);
    }

    /// Logs how many failed-call warnings were held back, now (a run's
    /// end; they are also logged when the next failure comes a period
    /// later, and when the last module of the tenant is dropped).
    pub fn flush(&self) {
        self.shared.failures.flush();
    }

    /// What the host did about this tenant (an auto-pause, a failed run),
    /// for the tenant to read.
    pub fn host_note(&self, level: &'static str, message: &str) {
        self.shared.book.push(level, Source::Host, clean(message));
    }

    /// A line from the `host.log` import.
    pub fn line(&self, level: LogLevel, message: &str) {
        self.write(level, Source::Guest, message);
    }

    fn write(&self, level: LogLevel, source: Source, message: &str) {
        if !self.admit() {
            return;
        }
        let message = clean(message);
        let tenant = self.shared.tenant.as_str();
        let name = match level {
            LogLevel::Trace => {
                tracing::trace!(tenant, guest = true, "{message}");
                "trace"
            }
            LogLevel::Debug => {
                tracing::debug!(tenant, guest = true, "{message}");
                "debug"
            }
            LogLevel::Info => {
                tracing::info!(tenant, guest = true, "{message}");
                "info"
            }
            LogLevel::Warn => {
                tracing::warn!(tenant, guest = true, "{message}");
                "warn"
            }
            LogLevel::Error => {
                tracing::error!(tenant, guest = true, "{message}");
                "error"
            }
        };
        self.shared.book.push(name, source, message);
    }

    /// Bytes the guest wrote to stdout or stderr.
    pub fn stdio(&self, bytes: &[u8]) {
        let text = String::from_utf8_lossy(bytes);
        let text = text.trim_end();
        if text.is_empty() {
            return;
        }
        if let Ok(mut recent) = self.recent_stdio.lock() {
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                if recent.len() == RECENT_LINES {
                    recent.pop_front();
                }
                recent.push_back(clean(line));
            }
        }
        self.write(LogLevel::Info, Source::Stdio, text);
    }

    /// Forgets the recent stdout/stderr lines (before a call).
    pub fn clear_recent_stdio(&self) {
        if let Ok(mut recent) = self.recent_stdio.lock() {
            recent.clear();
        }
    }

    /// What the guest wrote to stdout/stderr since the last clear, minus
    /// std's "run with RUST_BACKTRACE" hint: usually its panic message.
    pub fn recent_stdio(&self) -> Option<String> {
        let recent = self.recent_stdio.lock().ok()?;
        let lines: Vec<&str> = recent
            .iter()
            .map(String::as_str)
            .filter(|l| !l.starts_with("note: run with `RUST_BACKTRACE"))
            .collect();
        (!lines.is_empty()).then(|| lines.join(" / "))
    }
}

/// Takes a token from a bucket refilled at `rate` per second.
fn take(bucket: &Mutex<Bucket>, rate: f64) -> bool {
    let Ok(mut bucket) = bucket.lock() else {
        return false;
    };
    let now = Instant::now();
    let refill = now.duration_since(bucket.last).as_secs_f64() * rate;
    bucket.tokens = (bucket.tokens + refill).min(rate);
    bucket.last = now;
    if bucket.tokens >= 1.0 {
        bucket.tokens -= 1.0;
        true
    } else {
        false
    }
}

/// A guest's line as logged: cut to [`MAX_LINE`] bytes (saying so), control
/// characters (newlines included) escaped, so it stays one log line.
fn clean(message: &str) -> String {
    let cut = truncate(message);
    let mut out = String::with_capacity(cut.len() + 16);
    for c in cut.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    if cut.len() < message.len() {
        out.push_str(&format!("… [cut, {} bytes]", message.len()));
    }
    out
}

fn truncate(message: &str) -> &str {
    if message.len() <= MAX_LINE {
        return message;
    }
    let mut end = MAX_LINE;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    &message[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_of_lines_is_cut_to_the_rate() {
        let log = TenantLog::new("t");
        for _ in 0..10_000 {
            log.line(LogLevel::Info, "spam");
        }
        let (written, dropped) = log.counts();
        assert!(written <= 110, "written {written}");
        assert_eq!(written + dropped, 10_000);
    }

    #[test]
    fn a_line_stays_one_short_line_whatever_the_guest_writes() {
        let line = clean(&"a\nb".repeat(1 << 20));
        assert!(!line.contains('\n'), "newlines are escaped");
        assert!(line.len() < 3 * MAX_LINE, "{}", line.len());
        assert!(
            line.ends_with(&format!("[cut, {} bytes]", 3 << 20)),
            "{line}"
        );
    }

    #[test]
    fn every_failure_is_in_the_book_and_the_flood_is_bounded() {
        let log = TenantLog::with_book("t", Arc::new(LogBook::new(1500, usize::MAX)));
        for i in 0..1000 {
            log.failure("guest call failed", &format!("trap {i}\nsecond line"));
        }
        for _ in 0..10_000 {
            log.line(LogLevel::Info, "spam");
        }
        let page = log.book().after(0, usize::MAX);
        let traps = page.entries.iter().filter(|e| e.source == Source::Trap);
        assert_eq!(traps.count(), 1000, "every failure is kept");
        assert_eq!(page.entries.len(), 1000 + log.counts().0 as usize);
        for _ in 0..1000 {
            log.failure("guest call failed", &"x");
        }
        assert_eq!(log.book().held().0, 1500, "the book holds its bound");
        assert!(page.entries.iter().all(|e| !e.message.contains('\n')));
        assert_eq!(page.rate_limited, log.counts().1);
        assert!(page.rate_limited >= 9_000, "{}", page.rate_limited);
    }

    #[test]
    fn instances_share_the_book_but_quote_their_own_stdout() {
        let log = TenantLog::new("t");
        let (a, b) = (log.for_instance(), log.for_instance());
        a.stdio(b"panicked at a");
        b.stdio(b"panicked at b");
        assert_eq!(a.recent_stdio().as_deref(), Some("panicked at a"));
        assert_eq!(b.recent_stdio().as_deref(), Some("panicked at b"));
        let page = log.book().after(0, 10);
        assert_eq!(page.entries.len(), 2);
        assert!(page.entries.iter().all(|e| e.source == Source::Stdio));
    }

    #[test]
    fn long_lines_are_cut_on_a_char_boundary() {
        let line = "é".repeat(MAX_LINE);
        let cut = truncate(&line);
        assert!(cut.len() <= MAX_LINE);
        assert!(cut.chars().all(|c| c == 'é'));
    }
}
