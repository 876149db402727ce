//! The reader thread: lines of a byte stream or of broker messages, parsed
//! into rows and handed to the coordinator in chunks. Two guards act here,
//! where the raw line and its position are at hand: a line over
//! `max_line_bytes` is read through without being held and becomes a
//! `bad-row` dead letter with its first bytes and its length; a row whose
//! event time is beyond `max_future` becomes a `future` dead letter
//! instead of reaching the watermark.
//!
//! The reader owns the input (a byte stream or the broker's message
//! receiver) and the row parser; it sends [`Chunk`]s to the coordinator
//! over a `sync_channel(4)` and ends by dropping its sender.

use std::io::Read;
use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::time::Duration;

use super::limits::FutureGuard;
use super::{Error, Result, RowSelect};
use crate::ingress::lines::{self, Line, LineReader};
use crate::ingress::MessageSource;
use crate::parse::{BadKind, BadRow, ParsedRow, Position, RowParser};
use crate::sink::RowPos;

/// How the reader cuts its output into chunks, and its guards.
#[derive(Debug, Clone)]
pub(super) struct Chunking {
    /// Rows per chunk at most.
    pub batch_rows: usize,
    /// Leave out the parsed rows this does not keep.
    pub select: Option<Arc<RowSelect>>,
    /// Longest line, terminator excluded.
    pub max_line_bytes: usize,
    /// The manifest's `max_future` (`None`: off).
    pub max_future: Option<Duration>,
}

/// Parsed records handed from the reader to the coordinator; `seq`: the
/// last message they complete (message input only).
pub(super) struct Chunk {
    pub rows: Vec<std::result::Result<ParsedRow, BadRow>>,
    /// Where each record was read, parallel to `rows`: for the raw-event
    /// store and the dead letters of rows that parsed (`late`, `limit`).
    pub positions: Vec<RowPos>,
    pub seq: Option<u64>,
    /// File input: byte offset and line after the chunk.
    pub end: Option<(u64, u64)>,
    /// Message input: the fingerprints of the messages it completes.
    pub fingerprints: Vec<Vec<u8>>,
    /// Message input: the earliest publish time (ms) of its messages.
    pub published_ms: Option<i64>,
    /// Bytes of its records, line ends included. Counted when the
    /// coordinator applies the chunk, so a checkpoint's counters cover
    /// exactly the input it covers (not chunks still in the channel).
    pub bytes: u64,
}

/// One line through both guards.
#[inline]
fn parse_line(
    parser: &mut RowParser,
    guard: &FutureGuard,
    line: &[u8],
    source: &str,
    line_no: u64,
    at: u64,
) -> std::result::Result<ParsedRow, BadRow> {
    let row = parser.parse_record(line, source, line_no, at)?;
    guard.check(row, line, source, line_no, at)
}

/// The dead letter of a line over the limit: never parsed (its key cannot
/// be trusted from a prefix), so it counts at tenant level.
#[cold]
fn too_long(
    prefix: &[u8],
    length: u64,
    max: usize,
    source: &str,
    line: u64,
    offset: u64,
) -> BadRow {
    BadRow {
        raw: String::from_utf8_lossy(prefix).into(),
        reason: format!(
            "line of {length} bytes is over the limit of {max} bytes (max_line_bytes); \
             `raw` holds its first {} bytes",
            prefix.len()
        )
        .into(),
        position: Position {
            source: source.to_owned(),
            line,
            offset,
        },
        key: None,
        time: None,
        kind: BadKind::TooLong { length },
    }
}

/// Reads and parses the input; sends a chunk when it holds `batch_rows`
/// rows or when the input has nothing more buffered (so a quiet stream's
/// rows are not held back waiting for more).
pub(super) fn read_input(
    input: Box<dyn Read + Send>,
    mut parser: RowParser,
    source_name: &str,
    (start_offset, start_line): (u64, u64),
    Chunking {
        batch_rows,
        select,
        max_line_bytes,
        max_future,
    }: Chunking,
    tx: &SyncSender<Chunk>,
) -> Result<()> {
    let source: Arc<str> = Arc::from(source_name);
    let mut positions = Vec::with_capacity(batch_rows);
    let mut reader = LineReader::new(input, max_line_bytes);
    let mut guard = FutureGuard::new(max_future);
    let mut line_no: u64 = start_line;
    let mut offset: u64 = start_offset;
    let mut rows = Vec::with_capacity(batch_rows);
    let mut bytes: u64 = 0;
    // A resumed file is past its header.
    let mut skip_header = parser.skips_header() && start_offset == 0;
    let io_error = |source| Error::Input {
        source_name: source_name.to_owned(),
        source,
    };
    loop {
        let Some((line, n)) = reader.next_line().map_err(io_error)? else {
            break;
        };
        line_no += 1;
        let at = offset;
        offset += n;
        if skip_header {
            skip_header = false;
            continue;
        }
        bytes += n;
        let row = match line {
            Line::Whole(line) => parse_line(&mut parser, &guard, line, source_name, line_no, at),
            Line::TooLong { prefix, length } => Err(too_long(
                prefix,
                length,
                max_line_bytes,
                source_name,
                line_no,
                at,
            )),
        };
        if let (Some(select), Ok(parsed)) = (&select, &row) {
            if !select.keeps(parsed) {
                continue;
            }
        }
        rows.push(row);
        positions.push(RowPos {
            source: Arc::clone(&source),
            line: line_no,
            offset: at,
        });
        if rows.len() >= batch_rows || reader.buffer_is_empty() {
            let chunk = Chunk {
                rows: std::mem::replace(&mut rows, Vec::with_capacity(batch_rows)),
                positions: std::mem::replace(&mut positions, Vec::with_capacity(batch_rows)),
                seq: None,
                end: Some((offset, line_no)),
                fingerprints: Vec::new(),
                published_ms: None,
                bytes: std::mem::take(&mut bytes),
            };
            if tx.send(chunk).is_err() {
                // The coordinator stopped (an error there is reported).
                return Ok(());
            }
            guard.refresh();
        }
    }
    if !rows.is_empty() {
        // A closed channel means the coordinator stopped; it reports why.
        let _ = tx.send(Chunk {
            rows,
            positions,
            seq: None,
            end: Some((offset, line_no)),
            fingerprints: Vec::new(),
            published_ms: None,
            bytes,
        });
    }
    Ok(())
}

/// Parses messages as they arrive: every line of a message is a record
/// positioned by (message source, line, byte offset). Hands over a chunk
/// when it holds `batch_rows` rows or when no further message is waiting,
/// and always at a message boundary, so a chunk's `seq` settles whole
/// messages.
pub(super) fn read_messages(
    mut rx: Box<dyn MessageSource>,
    mut parser: RowParser,
    Chunking {
        batch_rows,
        max_line_bytes,
        max_future,
        ..
    }: Chunking,
    tx: &SyncSender<Chunk>,
) {
    let mut rows = Vec::with_capacity(batch_rows);
    let mut positions = Vec::with_capacity(batch_rows);
    let mut bytes: u64 = 0;
    let mut fingerprints = Vec::new();
    let mut published_ms: Option<i64> = None;
    let mut guard = FutureGuard::new(max_future);
    while let Some(message) = rx.next_message() {
        fingerprints.push(message.fingerprint);
        if let Some(at) = message.published_ms {
            published_ms = Some(published_ms.map_or(at, |p| p.min(at)));
        }
        let mut offset = 0u64;
        let source: Arc<str> = Arc::from(message.source.as_str());
        for (i, line) in message.body.split_inclusive(|b| *b == b'\n').enumerate() {
            let at = offset;
            let line_no = i as u64 + 1;
            offset += line.len() as u64;
            bytes += line.len() as u64;
            rows.push(match lines::check(line, max_line_bytes) {
                None => parse_line(&mut parser, &guard, line, &message.source, line_no, at),
                Some((prefix, length)) => Err(too_long(
                    prefix,
                    length,
                    max_line_bytes,
                    &message.source,
                    line_no,
                    at,
                )),
            });
            positions.push(RowPos {
                source: Arc::clone(&source),
                line: line_no,
                offset: at,
            });
        }
        if rows.len() >= batch_rows || rx.is_idle() {
            let chunk = Chunk {
                rows: std::mem::replace(&mut rows, Vec::with_capacity(batch_rows)),
                positions: std::mem::replace(&mut positions, Vec::with_capacity(batch_rows)),
                seq: Some(message.seq),
                end: None,
                fingerprints: std::mem::take(&mut fingerprints),
                published_ms: published_ms.take(),
                bytes: std::mem::take(&mut bytes),
            };
            if tx.send(chunk).is_err() {
                return;
            }
            guard.refresh();
        }
    }
}
