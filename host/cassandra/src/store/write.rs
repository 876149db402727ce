//! Writing a checkpoint: its chunks into its slot, then the marker that
//! completes it (fenced by the generation once claimed), then trimming
//! what an older or torn checkpoint left in the slot.

use std::sync::atomic::Ordering;

use futures_util::{StreamExt, TryStreamExt};

use super::{CassandraStore, StoreError};
use sluice_core::state::failpoint;

impl CassandraStore {
    /// Writes `slot`'s marker, conditionally when the pipeline was claimed.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn write_marker(
        &self,
        slot: i32,
        id: i64,
        chunks: i32,
        length: i64,
        crc: i64,
        chunk_bytes: i32,
    ) -> Result<(), StoreError> {
        let (tenant, pipeline) = (self.tenant.as_str(), self.pipeline.as_str());
        let Some(generation) = self.generation else {
            self.execute(
                "writing a checkpoint marker",
                &self.statements.insert_marker,
                (tenant, pipeline, slot, id, chunks, length, crc, chunk_bytes),
            )
            .await?;
            return Ok(());
        };
        let what = "writing a checkpoint marker";
        // Retried as a whole: a repeated conditional write of the same
        // values by the owner is harmless.
        let result = self
            .execute(
                what,
                &self.statements.fenced_marker,
                (
                    id,
                    chunks,
                    length,
                    crc,
                    chunk_bytes,
                    tenant,
                    pipeline,
                    slot,
                    generation,
                ),
            )
            .await?;
        let fatal = |e: &dyn std::fmt::Display| StoreError::Failed {
            what,
            message: e.to_string(),
        };
        let rows = result.into_rows_result().map_err(|e| fatal(&e))?;
        let row = rows
            .maybe_first_row::<scylla::value::Row>()
            .map_err(|e| fatal(&e))?;
        let column = |i: usize| {
            row.as_ref()
                .and_then(|r| r.columns.get(i).cloned().flatten())
        };
        match column(0) {
            Some(scylla::value::CqlValue::Boolean(true)) => Ok(()),
            _ => {
                let now = match column(1) {
                    Some(scylla::value::CqlValue::BigInt(g)) => g,
                    _ => 0,
                };
                Err(StoreError::Fenced {
                    pipeline: self.pipeline.clone(),
                    ours: generation,
                    now,
                })
            }
        }
    }

    /// Writes the chunks, then the marker; see the module docs.
    pub(super) async fn write_bytes(&self, id: u64, bytes: &[u8]) -> Result<(), StoreError> {
        let cql_id = i64::try_from(id).map_err(|_| StoreError::Id(id))?;
        let slot = self.slot(id);
        let chunks: Vec<&[u8]> = bytes.chunks(self.chunk_bytes).collect();
        let count = i32::try_from(chunks.len()).map_err(|_| StoreError::TooLarge {
            id,
            chunks: chunks.len(),
        })?;
        let (tenant, pipeline) = (self.tenant.as_str(), self.pipeline.as_str());
        let before = self.slot_chunks(slot).await?;

        let insert = &self.statements.insert_chunk;
        futures_util::stream::iter(chunks.iter().enumerate())
            .map(|(n, data)| {
                // `n < count`, which fits an i32.
                let n = i32::try_from(n).unwrap_or(i32::MAX);
                self.execute(
                    "writing a checkpoint chunk",
                    insert,
                    (tenant, pipeline, slot, n, cql_id, *data),
                )
            })
            .buffer_unordered(self.concurrency)
            .try_for_each(|_| std::future::ready(Ok(())))
            .await?;

        failpoint::hit("after-checkpoint-write-before-rename");
        let crc = i64::from(crc32fast::hash(bytes));
        let length = i64::try_from(bytes.len()).unwrap_or(i64::MAX);
        let chunk_bytes = i32::try_from(self.chunk_bytes).unwrap_or(i32::MAX);
        self.write_marker(slot, cql_id, count, length, crc, chunk_bytes)
            .await?;
        self.drop_older_generations().await;

        // Chunks past the new end (an older, larger checkpoint in this
        // slot, or a torn write of an earlier run) are never read —
        // reads stop at the marker's count — but they hold space: drop
        // them when there may be some. Rarely, so range tombstones stay
        // few.
        let first = !self.trimmed_once.swap(true, Ordering::Relaxed);
        if first || before.is_some_and(|b| b > count) {
            self.execute(
                "trimming a checkpoint slot",
                &self.statements.trim_chunks,
                (tenant, pipeline, slot, count),
            )
            .await?;
        }
        Ok(())
    }

    /// The chunk count of the checkpoint `slot` holds now, if any.
    pub(super) async fn slot_chunks(&self, slot: i32) -> Result<Option<i32>, StoreError> {
        self.slot_value(
            "reading a checkpoint slot",
            &self.statements.select_slot_chunks,
            slot,
        )
        .await
    }
}
