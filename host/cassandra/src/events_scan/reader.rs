//! The scan as the pipeline reads it: a blocking `Read` over the chunks of
//! lines the scan sends, ending cleanly only when the scan says it ended.

use std::io::{self, Read};

use tokio::sync::mpsc;

/// What the reader receives.
#[derive(Debug)]
pub(super) enum Piece {
    Lines(Vec<u8>),
    /// Every range and partition was read to its end.
    End,
    Failed(String),
}

/// How far the reader is.
#[derive(Debug)]
pub(super) enum State {
    Open,
    Ended,
    Failed(String),
}

/// The scan as a byte stream: chunks of lines until the scan says it
/// ended; its failure, or a scan that stops without saying so, is an
/// error (repeated on every later read).
pub(super) struct ScanReader {
    pub(super) rx: mpsc::Receiver<Piece>,
    pub(super) chunk: Vec<u8>,
    pub(super) pos: usize,
    pub(super) state: State,
    pub(super) name: String,
}

impl Read for ScanReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.pos < self.chunk.len() {
                let n = buf.len().min(self.chunk.len() - self.pos);
                buf[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
                self.pos += n;
                return Ok(n);
            }
            match &self.state {
                State::Ended => return Ok(0),
                State::Failed(message) => return Err(io::Error::other(message.clone())),
                State::Open => {}
            }
            match self.rx.blocking_recv() {
                Some(Piece::Lines(bytes)) => {
                    self.chunk = bytes;
                    self.pos = 0;
                }
                Some(Piece::End) => self.state = State::Ended,
                Some(Piece::Failed(message)) => self.state = State::Failed(message),
                None => {
                    self.state = State::Failed(format!(
                        "the scan of {} stopped before it finished (its runtime shut down?)",
                        self.name
                    ))
                }
            }
        }
    }
}
