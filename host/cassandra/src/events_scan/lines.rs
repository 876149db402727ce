//! Rendering stored events back into CSV lines the parser reads to the
//! stored values, and handing them to the reader in chunks.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use tokio::sync::mpsc;

use super::attempts::Stop;
use super::plan::Plan;
use super::reader::Piece;
use super::values::{Cell, Column, Values};
use super::CHUNK_BYTES;

/// CSV lines being written for the reader.
pub(super) struct Lines {
    pub(super) csv: csv::Writer<Vec<u8>>,
    pub(super) delimiter: u8,
    pub(super) rows: u64,
    pub(super) field: String,
}

impl Lines {
    pub(super) fn new(delimiter: u8) -> Lines {
        Lines {
            csv: Self::writer(delimiter),
            delimiter,
            rows: 0,
            field: String::new(),
        }
    }

    /// The writer the parser's reader reads back: same delimiter, `\n`
    /// terminated, quotes only where needed (`"` doubled).
    pub(super) fn writer(delimiter: u8) -> csv::Writer<Vec<u8>> {
        csv::WriterBuilder::new()
            .has_headers(false)
            .delimiter(delimiter)
            .terminator(csv::Terminator::Any(b'\n'))
            .quote_style(csv::QuoteStyle::Necessary)
            .double_quote(true)
            .from_writer(Vec::with_capacity(CHUNK_BYTES + (8 << 10)))
    }

    /// Bytes written so far (the writer's own buffer, at most 8 KiB, not
    /// counted).
    pub(super) fn len(&self) -> usize {
        self.csv.get_ref().len()
    }

    /// Writes one event as a line of `columns`.
    pub(super) fn push(&mut self, columns: &[Column], values: &Values) -> Result<(), String> {
        let written = |e: csv::Error| format!("writing a CSV line: {e}");
        for column in columns {
            let cell = values.cell(column);
            self.field.clear();
            let text: &str = match cell {
                Cell::Text(t) => t,
                Cell::Absent => "",
                Cell::Int(i) => {
                    let _ = write!(self.field, "{i}");
                    &self.field
                }
                // Display of an f64 is the shortest text that parses back
                // to the same value.
                Cell::Float(f) => {
                    let _ = write!(self.field, "{f}");
                    &self.field
                }
                Cell::Bool(b) => {
                    if b {
                        "true"
                    } else {
                        "false"
                    }
                }
                Cell::Time(ms) => match &column.time {
                    Some(format) => {
                        if !format.format_into(ms, &mut self.field)
                            || format.parse(self.field.as_bytes()) != Some(ms)
                        {
                            return Err(format!(
                                "column `{}`: the stored time {ms} ms cannot be written in \
                                 the format `{}` so that it reads back the same (`{}`); the \
                                 format is coarser than the stored events",
                                column.name,
                                format.as_str(),
                                self.field
                            ));
                        }
                        &self.field
                    }
                    // A time stored for a column that is no timestamp now.
                    None => {
                        let _ = write!(self.field, "{ms}");
                        &self.field
                    }
                },
            };
            self.csv.write_field(text).map_err(written)?;
        }
        self.csv
            .write_record(std::iter::empty::<&[u8]>())
            .map_err(written)?;
        self.rows += 1;
        Ok(())
    }

    /// Hands the lines written so far to the reader (waiting while its
    /// channel is full) and counts them.
    pub(super) async fn send(
        &mut self,
        plan: &Plan,
        out: &mpsc::Sender<Piece>,
    ) -> Result<(), Stop> {
        if self.rows == 0 {
            return Ok(());
        }
        let csv = std::mem::replace(&mut self.csv, Self::writer(self.delimiter));
        let bytes = csv
            .into_inner()
            .map_err(|e| Stop::Failed(plan.context(&format!("writing CSV: {}", e.error()))))?;
        out.send(Piece::Lines(bytes))
            .await
            .map_err(|_| Stop::Closed)?;
        plan.counters.rows.fetch_add(self.rows, Ordering::Relaxed);
        self.rows = 0;
        Ok(())
    }
}
