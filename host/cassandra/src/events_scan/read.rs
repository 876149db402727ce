//! Reading one partition's events of the range, paged, in clustering
//! order; a retry resumes after the last row read.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures_util::TryStreamExt;
use scylla::value::CqlTimestamp;
use tokio::sync::{mpsc, OwnedSemaphorePermit};

use super::attempts::{Attempts, Interrupt, Stop};
use super::lines::Lines;
use super::plan::{describe, Partition, Plan};
use super::reader::Piece;
use super::values::Values;
use super::{StoredEvent, CHUNK_BYTES};

/// The clustering key of the last row read: a retry skips up to it.
pub(super) type Cursor = Option<(i64, String, i64)>;

/// Reads one partition's events of the range into CSV chunks for the
/// reader; holds a permit of the read concurrency while it runs.
pub(super) async fn read(
    plan: Arc<Plan>,
    part: Partition,
    out: mpsc::Sender<Piece>,
    _permit: OwnedSemaphorePermit,
) -> Result<(), Stop> {
    let mut lines = Lines::new(plan.delimiter);
    let mut cursor: Cursor = None;
    let mut attempts = Attempts::new();
    loop {
        match read_from(&plan, &part, &mut cursor, &mut lines, &out, &mut attempts).await {
            Ok(()) => break,
            Err(Interrupt::Stop(stop)) => return Err(stop),
            Err(Interrupt::Failure(failure)) => {
                attempts.failed(&plan, &describe(&part), failure).await?;
            }
        }
    }
    lines.send(&plan, &out).await?;
    plan.counters.partitions.fetch_add(1, Ordering::Relaxed);
    if let Some(progress) = &plan.progress {
        progress.inc(1);
    }
    Ok(())
}

/// One attempt at reading the partition from `cursor` on.
pub(super) async fn read_from(
    plan: &Plan,
    part: &Partition,
    cursor: &mut Cursor,
    lines: &mut Lines,
    out: &mpsc::Sender<Piece>,
    attempts: &mut Attempts,
) -> Result<(), Interrupt> {
    let from = cursor.as_ref().map_or(plan.from, |c| c.0);
    let values = (
        plan.tenant.as_str(),
        &part.key,
        part.day,
        CqlTimestamp(from),
        CqlTimestamp(plan.to),
    );
    let mut rows = plan
        .session
        .execute_iter(plan.read_partition.clone(), values)
        .await
        .map_err(|e| Interrupt::pager(&e))?
        .rows_stream::<StoredEvent>()
        .map_err(|e| Interrupt::fatal(&e))?;
    while let Some(row) = rows.try_next().await.map_err(|e| Interrupt::row(&e))? {
        attempts.progress();
        let (time, source, line, ints, floats, texts, bools, times) = row;
        if let Some((t, s, l)) = cursor.as_ref() {
            // Rows come in clustering order; a resumed read starts at the
            // last row's event time and skips what was already written.
            if (time.0, source.as_str(), line) <= (*t, s.as_str(), *l) {
                continue;
            }
        }
        let values = Values {
            ints: ints.unwrap_or_default(),
            floats: floats.unwrap_or_default(),
            texts: texts.unwrap_or_default(),
            bools: bools.unwrap_or_default(),
            times: times.unwrap_or_default(),
        };
        let passes = part
            .row_rules
            .iter()
            .filter_map(|&i| plan.rules.get(i))
            .all(|rule| {
                plan.columns
                    .get(rule.column)
                    .is_some_and(|c| rule.wanted.matches(values.cell(c)))
            });
        if passes {
            lines.push(&plan.columns, &values).map_err(|message| {
                Interrupt::Stop(Stop::Failed(format!(
                    "{}: {message}",
                    plan.context(&describe(part))
                )))
            })?;
        } else {
            plan.counters.filtered.fetch_add(1, Ordering::Relaxed);
        }
        *cursor = Some((time.0, source, line));
        if lines.len() >= CHUNK_BYTES {
            lines.send(plan, out).await.map_err(Interrupt::Stop)?;
        }
    }
    Ok(())
}
