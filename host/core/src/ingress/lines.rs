//! Lines of a byte stream (file, stdin) with a length limit: a line over
//! the limit is read through in pieces as it arrives and never held whole —
//! only its first [`PREFIX_BYTES`] are kept, for the dead letter that
//! reports it, and its length is counted. The next line reads normally.
//! Without this, one 200 MB line without a newline was held (and copied
//! into its dead letter) whole.

use std::io::{self, BufRead, BufReader, Read};

/// The default longest line, terminator excluded (`sluice run
/// --max-line-bytes`): far above any sensor record, far below what hurts.
pub const DEFAULT_MAX_LINE_BYTES: usize = 1 << 20;

/// How much of a line over the limit its dead letter keeps.
pub const PREFIX_BYTES: usize = 4096;

/// One line as read.
#[derive(Debug, PartialEq, Eq)]
pub enum Line<'a> {
    /// The whole line, with its `\n` when it had one.
    Whole(&'a [u8]),
    /// A line over the limit: its first bytes (at most [`PREFIX_BYTES`])
    /// and its length without the terminator.
    TooLong { prefix: &'a [u8], length: u64 },
}

/// Reads lines of at most `max` bytes (terminator excluded) from `R`.
pub struct LineReader<R> {
    inner: BufReader<R>,
    buf: Vec<u8>,
    max: usize,
}

impl<R: Read> LineReader<R> {
    pub fn new(inner: R, max: usize) -> LineReader<R> {
        LineReader {
            inner: BufReader::with_capacity(1 << 16, inner),
            buf: Vec::with_capacity(256),
            max,
        }
    }

    /// Whether nothing read ahead is waiting in the buffer (the source may
    /// have more later): a reader hands over what it has then.
    pub fn buffer_is_empty(&self) -> bool {
        self.inner.buffer().is_empty()
    }

    /// The next line and the bytes it took (terminator included), or
    /// `None` at the end of the input.
    pub fn next_line(&mut self) -> io::Result<Option<(Line<'_>, u64)>> {
        self.buf.clear();
        let mut taken: u64 = 0;
        let mut length: u64 = 0;
        let mut too_long = false;
        loop {
            let available = match self.inner.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if available.is_empty() {
                break;
            }
            let (piece, ends) = match memchr::memchr(b'\n', available) {
                Some(i) => (i + 1, true),
                None => (available.len(), false),
            };
            let content = if ends { piece - 1 } else { piece };
            length += content as u64;
            if !too_long && length > self.max as u64 {
                too_long = true;
                let keep = PREFIX_BYTES.saturating_sub(self.buf.len()).min(content);
                self.buf.extend_from_slice(&available[..keep]);
                self.buf.truncate(PREFIX_BYTES);
            } else if !too_long {
                self.buf.extend_from_slice(&available[..piece]);
            }
            taken += piece as u64;
            self.inner.consume(piece);
            if ends {
                break;
            }
        }
        if taken == 0 {
            return Ok(None);
        }
        let line = if too_long {
            Line::TooLong {
                prefix: &self.buf,
                length,
            }
        } else {
            Line::Whole(&self.buf)
        };
        Ok(Some((line, taken)))
    }
}

/// A message's line (split out of a body already in memory) checked
/// against the same limit: the prefix and length when it is over.
pub fn check(line: &[u8], max: usize) -> Option<(&[u8], u64)> {
    let content = line.strip_suffix(b"\n").unwrap_or(line);
    (content.len() > max).then(|| {
        (
            &content[..PREFIX_BYTES.min(content.len())],
            content.len() as u64,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8], max: usize) -> Vec<(String, u64)> {
        let mut r = LineReader::new(input, max);
        let mut out = Vec::new();
        while let Some((line, taken)) = r.next_line().expect("in memory") {
            out.push((
                match line {
                    Line::Whole(b) => format!("whole:{}", String::from_utf8_lossy(b)),
                    Line::TooLong { prefix, length } => {
                        format!("long:{length}:{}", String::from_utf8_lossy(prefix))
                    }
                },
                taken,
            ));
        }
        out
    }

    #[test]
    fn lines_within_the_limit_read_whole_with_their_terminator() {
        assert_eq!(
            lines(b"ab\ncde\n\nf", 3),
            vec![
                ("whole:ab\n".to_owned(), 3),
                ("whole:cde\n".to_owned(), 4),
                ("whole:\n".to_owned(), 1),
                ("whole:f".to_owned(), 1),
            ]
        );
    }

    #[test]
    fn a_line_over_the_limit_keeps_a_prefix_and_its_length_and_the_next_reads_normally() {
        let mut input = vec![b'x'; 3 * PREFIX_BYTES + 7];
        input.extend_from_slice(b"\nnext\n");
        let max = PREFIX_BYTES + 1;
        let got = lines(&input, max);
        assert_eq!(got.len(), 2);
        let expected = format!("long:{}:{}", 3 * PREFIX_BYTES + 7, "x".repeat(PREFIX_BYTES));
        assert_eq!(got[0], (expected, 3 * PREFIX_BYTES as u64 + 8));
        assert_eq!(got[1], ("whole:next\n".to_owned(), 5));
    }

    #[test]
    fn a_long_last_line_without_newline_is_reported_too() {
        let input = vec![b'y'; 200_000];
        let got = lines(&input, 1000);
        assert_eq!(got.len(), 1);
        assert!(
            got[0].0.starts_with("long:200000:yyy"),
            "{}",
            &got[0].0[..20]
        );
        assert_eq!(got[0].0.len(), "long:200000:".len() + PREFIX_BYTES);
        assert_eq!(got[0].1, 200_000);
    }

    #[test]
    fn a_line_of_exactly_the_limit_is_whole() {
        assert_eq!(lines(b"abc\n", 3), vec![("whole:abc\n".to_owned(), 4)]);
        assert_eq!(check(b"abc\n", 3), None);
        assert_eq!(check(b"abcd\n", 3), Some((&b"abcd"[..], 4)));
    }
}
