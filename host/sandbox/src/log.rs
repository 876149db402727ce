//! The tenant's log: `host.log` and guest stdout/stderr end up here, as
//! `tracing` events tagged with the tenant, rate-limited so a chatty or
//! hostile guest cannot flood the host's log. Every line is cut to
//! [`MAX_LINE`] bytes and its control characters escaped, so one write —
//! of any length, with any newlines — is at most one short log line. The
//! host's own warnings about a tenant's failed calls have a bucket of
//! their own (a tenant trapping on every call cannot flood the log either,
//! nor silence its own log lines).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::bindings::LogLevel;

/// Lines per second a tenant may log (burst of the same size).
const LINES_PER_SECOND: f64 = 100.0;
/// Host warnings per second about one tenant's failed calls.
const HOST_LINES_PER_SECOND: f64 = 10.0;
/// Longest line kept; the rest is cut.
const MAX_LINE: usize = 1024;
/// stdout/stderr lines kept for quoting in a trap message.
const RECENT_LINES: usize = 4;

#[derive(Debug, Clone)]
pub struct TenantLog {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    tenant: String,
    bucket: Mutex<Bucket>,
    host_bucket: Mutex<Bucket>,
    written: AtomicU64,
    dropped: AtomicU64,
    /// Recent stdout/stderr lines, kept (even when rate-limited) so a trap
    /// can quote the guest's panic message.
    recent_stdio: Mutex<VecDeque<String>>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl TenantLog {
    pub fn new(tenant: &str) -> Self {
        TenantLog {
            inner: Arc::new(Inner {
                tenant: tenant.to_owned(),
                bucket: Mutex::new(Bucket {
                    tokens: LINES_PER_SECOND,
                    last: Instant::now(),
                }),
                host_bucket: Mutex::new(Bucket {
                    tokens: HOST_LINES_PER_SECOND,
                    last: Instant::now(),
                }),
                written: AtomicU64::new(0),
                dropped: AtomicU64::new(0),
                recent_stdio: Mutex::new(VecDeque::new()),
            }),
        }
    }

    /// Lines written and lines dropped by the rate limit so far.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.inner.written.load(Ordering::Relaxed),
            self.inner.dropped.load(Ordering::Relaxed),
        )
    }

    fn admit(&self) -> bool {
        let admitted = take(&self.inner.bucket, LINES_PER_SECOND);
        let counter = if admitted {
            &self.inner.written
        } else {
            &self.inner.dropped
        };
        counter.fetch_add(1, Ordering::Relaxed);
        admitted
    }

    /// Whether the host may log one more warning about this tenant's
    /// failed calls now.
    pub(crate) fn admit_host(&self) -> bool {
        take(&self.inner.host_bucket, HOST_LINES_PER_SECOND)
    }

    /// A line from the `host.log` import.
    pub fn line(&self, level: LogLevel, message: &str) {
        if !self.admit() {
            return;
        }
        let message = clean(message);
        let tenant = self.inner.tenant.as_str();
        match level {
            LogLevel::Trace => tracing::trace!(tenant, guest = true, "{message}"),
            LogLevel::Debug => tracing::debug!(tenant, guest = true, "{message}"),
            LogLevel::Info => tracing::info!(tenant, guest = true, "{message}"),
            LogLevel::Warn => tracing::warn!(tenant, guest = true, "{message}"),
            LogLevel::Error => tracing::error!(tenant, guest = true, "{message}"),
        }
    }

    /// Bytes the guest wrote to stdout or stderr.
    pub fn stdio(&self, bytes: &[u8]) {
        let text = String::from_utf8_lossy(bytes);
        let text = text.trim_end();
        if text.is_empty() {
            return;
        }
        if let Ok(mut recent) = self.inner.recent_stdio.lock() {
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                if recent.len() == RECENT_LINES {
                    recent.pop_front();
                }
                recent.push_back(clean(line));
            }
        }
        self.line(LogLevel::Info, text);
    }

    /// Forgets the recent stdout/stderr lines (before a call).
    pub fn clear_recent_stdio(&self) {
        if let Ok(mut recent) = self.inner.recent_stdio.lock() {
            recent.clear();
        }
    }

    /// What the guest wrote to stdout/stderr since the last clear, minus
    /// std's "run with RUST_BACKTRACE" hint: usually its panic message.
    pub fn recent_stdio(&self) -> Option<String> {
        let recent = self.inner.recent_stdio.lock().ok()?;
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
    fn host_warnings_about_a_tenant_are_rate_limited() {
        let log = TenantLog::new("t");
        let admitted = (0..1000).filter(|_| log.admit_host()).count();
        assert!((1..=20).contains(&admitted), "{admitted}");
    }

    #[test]
    fn long_lines_are_cut_on_a_char_boundary() {
        let line = "é".repeat(MAX_LINE);
        let cut = truncate(&line);
        assert!(cut.len() <= MAX_LINE);
        assert!(cut.chars().all(|c| c == 'é'));
    }
}
