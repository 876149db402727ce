//! The last dead letters of a tenant, for the console's tenant page: a tap
//! on the tenant's message sink that keeps a copy of the newest
//! [`KEEP`] dead-letter lines (each cut to [`LINE_BYTES`]) after the broker
//! confirmed them. The broker's `<queue>.dead` stays the record; this is a
//! window onto it, in memory, bounded (≤ 50 × 4 KiB per tenant), empty
//! after a restart.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::sink::{MessageSink, Rendered, Stream};

/// Dead letters kept per tenant.
pub const KEEP: usize = 50;
/// Longest line kept (a letter carries the row it refused, up to 4 KiB).
pub const LINE_BYTES: usize = 4096;

/// One kept dead letter.
#[derive(Debug, Clone, Serialize)]
pub struct KeptLetter {
    /// Seconds since the Unix epoch when the broker confirmed it.
    pub at: u64,
    /// The letter as published: a JSON object, or its text when it was
    /// cut (then not JSON any more).
    pub letter: serde_json::Value,
    /// The line was longer than [`LINE_BYTES`] and was cut.
    pub cut: bool,
}

/// A tenant's last dead letters; the same book across its runs.
#[derive(Debug, Default)]
pub struct DeadLetterBook {
    /// (when, the line as published, cut): text, not parsed, so the bound
    /// is the bytes kept (≤ 50 × 4 KiB); parsed when read.
    letters: Mutex<VecDeque<(u64, String, bool)>>,
}

impl DeadLetterBook {
    fn keep(&self, line: &[u8], at: u64) {
        let cut = line.len() > LINE_BYTES;
        let text = String::from_utf8_lossy(&line[..line.len().min(LINE_BYTES)]).into_owned();
        let mut letters = self.letters.lock().unwrap_or_else(|e| e.into_inner());
        if letters.len() == KEEP {
            letters.pop_front();
        }
        letters.push_back((at, text, cut));
    }

    /// The kept letters, newest first.
    pub fn newest_first(&self) -> Vec<KeptLetter> {
        let letters = self.letters.lock().unwrap_or_else(|e| e.into_inner());
        letters
            .iter()
            .rev()
            .map(|(at, text, cut)| KeptLetter {
                at: *at,
                letter: serde_json::from_str(text)
                    .unwrap_or_else(|_| serde_json::Value::String(text.clone())),
                cut: *cut,
            })
            .collect()
    }
}

/// The tenant's message sink, keeping its dead letters once published.
pub struct Tap {
    pub inner: Arc<dyn MessageSink>,
    pub book: Arc<DeadLetterBook>,
}

impl MessageSink for Tap {
    fn publish(&self, stream: Stream, batch: &Rendered) -> crate::sink::Result<()> {
        self.inner.publish(stream, batch)?;
        if matches!(stream, Stream::DeadLetters) {
            let at = super::history::unix_now();
            // Only the last KEEP can stay: skip copying the others.
            let skip = batch.messages_len().saturating_sub(KEEP);
            for (line, _) in batch.messages().skip(skip) {
                self.book.keep(line, at);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_letters_and_cuts_long_ones() {
        let book = DeadLetterBook::default();
        for i in 0..(KEEP + 5) {
            book.keep(format!("{{\"n\":{i}}}").as_bytes(), 1);
        }
        book.keep(&vec![b'x'; LINE_BYTES + 10], 2);
        let kept = book.newest_first();
        assert_eq!(kept.len(), KEEP);
        assert!(kept[0].cut);
        assert_eq!(kept[0].letter.as_str().map(str::len), Some(LINE_BYTES));
        assert_eq!(kept[1].letter["n"], KEEP + 4);
    }
}
