//! Reading checkpoints back: the slots' markers, newest first, each
//! checked against its chunks (missing, of another id, wrong length or
//! checksum, undecodable: skipped with a warning).

use std::time::Instant;

use futures_util::TryStreamExt;

use super::retry::{retrying, Failure};
use super::{CassandraStore, StoreError};
use sluice_core::retry::Backoff;
use sluice_core::state::{Checkpoint, Restored};

/// One slot's marker as read back; every column may be missing (a row
/// made only by `mark_acked`, a foreign write), so all are optional.
pub(super) type MarkerRow = (
    Option<i32>,
    Option<i64>,
    Option<i32>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
);

/// A marker row with its slot.
pub(super) type Marker6 = (
    i32,
    Option<i64>,
    Option<i32>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
);

/// A complete-looking marker.
#[derive(Debug, Clone, Copy)]
pub(super) struct Marker {
    pub(super) slot: i32,
    pub(super) id: i64,
    pub(super) chunks: i32,
    pub(super) length: i64,
    pub(super) crc32: i64,
    pub(super) acked: bool,
}

impl CassandraStore {
    pub(super) async fn markers(&self) -> Result<Vec<Marker6>, StoreError> {
        let what = "reading checkpoint markers";
        let result = self
            .execute(
                what,
                &self.statements.select_markers,
                (&self.tenant, &self.pipeline),
            )
            .await?;
        let fatal = |e: &dyn std::fmt::Display| StoreError::Failed {
            what,
            message: e.to_string(),
        };
        let rows = result.into_rows_result().map_err(|e| fatal(&e))?;
        let mut out = Vec::new();
        for row in rows.rows::<MarkerRow>().map_err(|e| fatal(&e))? {
            let row = row.map_err(|e| fatal(&e))?;
            // A claimed partition with no checkpoint yet has its static
            // owner columns only: a row without a slot.
            if let (Some(slot), id, chunks, length, crc32, acked_id) = row {
                out.push((slot, id, chunks, length, crc32, acked_id));
            }
        }
        Ok(out)
    }

    /// The id named by chunk 0 of `slot`, if there is one.
    pub(super) async fn first_chunk_id(&self, slot: i32) -> Result<Option<i64>, StoreError> {
        self.slot_value(
            "reading a checkpoint chunk",
            &self.statements.select_first_chunk,
            slot,
        )
        .await
    }

    /// The encoded checkpoint `marker` names, or why it is unusable.
    pub(super) async fn read_chunks(
        &self,
        marker: &Marker,
    ) -> Result<Result<Vec<u8>, String>, StoreError> {
        retrying!(
            self,
            "reading checkpoint chunks",
            self.try_read_chunks(marker).await
        )
    }

    pub(super) async fn try_read_chunks(
        &self,
        m: &Marker,
    ) -> Result<Result<Vec<u8>, String>, Failure> {
        let mut rows = self
            .session
            .execute_iter(
                self.statements.select_chunks.clone(),
                (&self.tenant, &self.pipeline, m.slot, m.chunks),
            )
            .await
            .map_err(|e| Failure::transient(&e))?
            .rows_stream::<(i32, Option<i64>, Option<Vec<u8>>)>()
            .map_err(|e| Failure::fatal(&e))?;
        // The length comes from the database: reserve at most 64 MiB up
        // front, so a corrupt marker cannot ask for an absurd allocation.
        let reserve = usize::try_from(m.length).unwrap_or(0).min(64 << 20);
        let mut bytes = Vec::with_capacity(reserve);
        let mut next = 0i32;
        while let Some((chunk, id, data)) =
            rows.try_next().await.map_err(|e| Failure::transient(&e))?
        {
            if chunk != next {
                return Ok(Err(format!("chunk {next} of {} is missing", m.chunks)));
            }
            if id != Some(m.id) {
                return Ok(Err(format!(
                    "chunk {chunk} belongs to checkpoint {} (the slot was being overwritten)",
                    id.map_or("?".to_owned(), |i| i.to_string())
                )));
            }
            let Some(data) = data else {
                return Ok(Err(format!("chunk {chunk} has no data")));
            };
            bytes.extend_from_slice(&data);
            if bytes.len() as u64 > m.length.unsigned_abs() {
                return Ok(Err(format!(
                    "longer than the {} bytes its marker names",
                    m.length
                )));
            }
            next += 1;
        }
        if next != m.chunks {
            return Ok(Err(format!("chunk {next} of {} is missing", m.chunks)));
        }
        if bytes.len() as i64 != m.length {
            return Ok(Err(format!(
                "{} bytes, its marker names {}",
                bytes.len(),
                m.length
            )));
        }
        if i64::from(crc32fast::hash(&bytes)) != m.crc32 {
            return Ok(Err("checksum mismatch (a chunk is corrupt)".to_owned()));
        }
        Ok(Ok(bytes))
    }

    pub(super) async fn latest_async(&self) -> Result<Option<Restored>, StoreError> {
        let mut markers = Vec::new();
        for (slot, id, chunks, length, crc32, acked_id) in self.markers().await? {
            match (id, chunks, length, crc32) {
                (Some(id), Some(chunks), Some(length), Some(crc32)) => markers.push(Marker {
                    slot,
                    id,
                    chunks,
                    length,
                    crc32,
                    acked: acked_id == Some(id),
                }),
                _ => tracing::warn!(
                    pipeline = %self.pipeline,
                    slot,
                    "checkpoint marker without its id, size or checksum skipped"
                ),
            }
        }
        markers.sort_by_key(|m| std::cmp::Reverse(m.id));

        // Checkpoints are written one after the other, so a write that did
        // not complete is the one after the newest marker: say so.
        let newest = markers.first().map_or(0, |m| m.id);
        if let Some(next) = newest.checked_add(1).and_then(|n| u64::try_from(n).ok()) {
            if self.first_chunk_id(self.slot(next)).await? == Some(newest + 1) {
                tracing::warn!(
                    pipeline = %self.pipeline,
                    "checkpoint {next} was not completed (its marker was never written): skipped"
                );
            }
        }

        for marker in &markers {
            let name = format!(
                "{}.checkpoints[{}/{}] id {}",
                self.keyspace, self.tenant, self.pipeline, marker.id
            );
            let reason = match self.read_chunks(marker).await? {
                Ok(bytes) => match Checkpoint::decode(&bytes, &name) {
                    Ok(checkpoint) if checkpoint.id == marker.id.unsigned_abs() => {
                        return Ok(Some(Restored {
                            checkpoint,
                            acked: marker.acked,
                        }))
                    }
                    Ok(checkpoint) => format!("its bytes are checkpoint {}", checkpoint.id),
                    Err(e) => e.to_string(),
                },
                Err(reason) => reason,
            };
            tracing::warn!(
                checkpoint = %name,
                reason = %reason,
                "unusable checkpoint skipped; trying the previous one"
            );
        }
        Ok(None)
    }
}
