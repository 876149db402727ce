//! The shared line writer: every worker's rendered lines (and the
//! coordinator's) go through one locked writer per output, in whole chunks.

use std::io::Write;
use std::sync::{Arc, Mutex};

use super::{Error, Result};

/// A shared line writer: shard workers hand it whole chunks of rendered
/// lines, so lines never interleave mid-line and the lock is taken once per
/// chunk (a batch, or `SPILL_BYTES` of it), not per line.
#[derive(Clone)]
pub struct LineSink {
    name: &'static str,
    inner: Arc<Mutex<Box<dyn Write + Send>>>,
    /// Bytes written so far (from `start`): a checkpoint records it.
    written: Arc<std::sync::atomic::AtomicU64>,
    /// The file behind the writer, when there is one, to fsync at a
    /// checkpoint.
    file: Option<Arc<std::fs::File>>,
}

impl std::fmt::Debug for LineSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LineSink")
            .field("name", &self.name)
            .finish()
    }
}

impl LineSink {
    /// `name` is used in errors (`output`, `dead-letter`).
    pub fn new(name: &'static str, writer: Box<dyn Write + Send>) -> LineSink {
        LineSink {
            name,
            inner: Arc::new(Mutex::new(writer)),
            written: Arc::default(),
            file: None,
        }
    }

    /// A sink appending to `file`, which already holds `start` bytes;
    /// [`sync`](Self::sync) makes what was written durable.
    pub fn file(name: &'static str, file: std::fs::File, start: u64) -> LineSink {
        let file = Arc::new(file);
        let writer = std::io::BufWriter::with_capacity(1 << 16, ArcFile(Arc::clone(&file)));
        LineSink {
            name,
            inner: Arc::new(Mutex::new(Box::new(writer))),
            written: Arc::new(std::sync::atomic::AtomicU64::new(start)),
            file: Some(file),
        }
    }

    /// Bytes written so far (including the `start` of a file sink).
    pub fn written(&self) -> u64 {
        self.written.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Flushes, and for a file sink fsyncs: a checkpoint covers only what
    /// is on disk.
    pub fn sync(&self) -> Result<()> {
        self.flush()?;
        if let Some(file) = &self.file {
            file.sync_data().map_err(|source| Error::Write {
                sink: self.name,
                source,
            })?;
        }
        Ok(())
    }

    /// A sink that drops everything (no dead-letter file asked for, or a
    /// benchmark that measures without output).
    pub fn discard(name: &'static str) -> LineSink {
        LineSink::new(name, Box::new(std::io::sink()))
    }

    /// Writes complete lines and flushes them: a chunk is a whole batch,
    /// so this is one write per batch, and a reader of a live stream (stdin
    /// in, stdout out) sees results as windows fire.
    pub fn write_chunk(&self, chunk: &[u8]) -> Result<()> {
        if chunk.is_empty() {
            return Ok(());
        }
        let mut writer = self.inner.lock().map_err(|_| Error::Poisoned(self.name))?;
        writer
            .write_all(chunk)
            .and_then(|()| writer.flush())
            .map_err(|source| Error::Write {
                sink: self.name,
                source,
            })?;
        self.written
            .fetch_add(chunk.len() as u64, std::sync::atomic::Ordering::AcqRel);
        Ok(())
    }

    pub fn flush(&self) -> Result<()> {
        let mut writer = self.inner.lock().map_err(|_| Error::Poisoned(self.name))?;
        writer.flush().map_err(|source| Error::Write {
            sink: self.name,
            source,
        })
    }
}

/// A shared file handle as a writer (the sink writes, the checkpoint
/// fsyncs the same file).
struct ArcFile(Arc<std::fs::File>);

impl Write for ArcFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        (&*self.0).write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        (&*self.0).flush()
    }
}
