//! The scan's tasks: the token ring cut into ranges, each range's
//! partition keys listed, and the kept partitions handed to reads, at most
//! `parallelism` at once.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use futures_util::TryStreamExt;
use scylla::value::CqlDate;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;

use super::attempts::{Attempts, Interrupt, Stop};
use super::plan::{Partition, Plan};
use super::read::read;
use super::reader::Piece;
use super::RANGES_PER_TASK;

/// Runs the scan, then tells the reader how it ended.
pub(super) async fn coordinate(plan: Arc<Plan>, out: mpsc::Sender<Piece>) {
    let last = match drive(&plan, &out).await {
        Ok(()) => Piece::End,
        Err(Stop::Closed) => return,
        Err(Stop::Failed(message)) => Piece::Failed(message),
    };
    // The reader may be gone; then nobody is waiting for the outcome.
    let _ = out.send(last).await;
}

/// Lists the token ranges' partitions and reads the kept ones, at most
/// `parallelism` at once; returns once every task ended, or at the first
/// failure (dropping the task sets aborts the others).
pub(super) async fn drive(plan: &Arc<Plan>, out: &mpsc::Sender<Piece>) -> Result<(), Stop> {
    if plan.from >= plan.to {
        return Ok(());
    }
    let ranges = Arc::new(token_ranges(plan.parallelism * RANGES_PER_TASK));
    let next = Arc::new(AtomicUsize::new(0));
    let (parts_tx, mut parts_rx) = mpsc::channel::<Partition>(plan.parallelism * 2);
    let mut listings = JoinSet::new();
    for _ in 0..plan.parallelism.min(ranges.len()) {
        listings.spawn(list(
            Arc::clone(plan),
            Arc::clone(&ranges),
            Arc::clone(&next),
            parts_tx.clone(),
        ));
    }
    drop(parts_tx);
    let permits = Arc::new(Semaphore::new(plan.parallelism));
    let mut reads = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            Some(done) = reads.join_next(), if !reads.is_empty() => ended(done)?,
            Some(done) = listings.join_next(), if !listings.is_empty() => ended(done)?,
            part = parts_rx.recv() => match part {
                Some(part) => {
                    let permit = Arc::clone(&permits)
                        .acquire_owned()
                        .await
                        .map_err(|e| Stop::Failed(plan.context(&e.to_string())))?;
                    reads.spawn(read(Arc::clone(plan), part, out.clone(), permit));
                }
                // Every listing task has ended.
                None => break,
            },
        }
    }
    while let Some(done) = listings.join_next().await {
        ended(done)?;
    }
    while let Some(done) = reads.join_next().await {
        ended(done)?;
    }
    Ok(())
}

/// A task's outcome; a panic is a failure like any other.
pub(super) fn ended(done: Result<Result<(), Stop>, tokio::task::JoinError>) -> Result<(), Stop> {
    match done {
        Ok(outcome) => outcome,
        Err(e) => Err(Stop::Failed(format!("a scan task ended abnormally: {e}"))),
    }
}

/// The Murmur3 ring `(i64::MIN, i64::MAX]` cut into `n` ranges `(a, b]`
/// (the partitioner never yields `i64::MIN`).
pub(super) fn token_ranges(n: usize) -> Vec<(i64, i64)> {
    let n = i128::try_from(n.max(1)).unwrap_or(1);
    let lo = i128::from(i64::MIN);
    let span = i128::from(i64::MAX) - lo;
    let at = |i: i128| i64::try_from(lo + span * i / n).unwrap_or(i64::MAX);
    (0..n).map(|i| (at(i), at(i + 1))).collect()
}

/// Lists the partitions of the ranges it takes (until none are left) and
/// hands the kept ones on.
pub(super) async fn list(
    plan: Arc<Plan>,
    ranges: Arc<Vec<(i64, i64)>>,
    next: Arc<AtomicUsize>,
    parts: mpsc::Sender<Partition>,
) -> Result<(), Stop> {
    while let Some(&(lo, hi)) = ranges.get(next.fetch_add(1, Ordering::Relaxed)) {
        let mut after = lo;
        let mut attempts = Attempts::new();
        loop {
            match list_from(&plan, &mut after, hi, &parts, &mut attempts).await {
                Ok(()) => break,
                Err(Interrupt::Stop(stop)) => return Err(stop),
                Err(Interrupt::Failure(failure)) => {
                    let what = format!("listing the partitions of tokens ({after}, {hi}]");
                    attempts.failed(&plan, &what, failure).await?;
                }
            }
        }
    }
    Ok(())
}

/// One attempt at listing `(after, hi]`; `after` follows the partitions
/// handed on, so a retry resumes behind the last one.
pub(super) async fn list_from(
    plan: &Plan,
    after: &mut i64,
    hi: i64,
    parts: &mpsc::Sender<Partition>,
    attempts: &mut Attempts,
) -> Result<(), Interrupt> {
    let mut rows = plan
        .session
        .execute_iter(plan.list_partitions.clone(), (*after, hi))
        .await
        .map_err(|e| Interrupt::pager(&e))?
        .rows_stream::<(String, BTreeMap<String, String>, CqlDate, i64)>()
        .map_err(|e| Interrupt::fatal(&e))?;
    while let Some((tenant, key, day, token)) =
        rows.try_next().await.map_err(|e| Interrupt::row(&e))?
    {
        attempts.progress();
        plan.counters.listed.fetch_add(1, Ordering::Relaxed);
        if let Some(row_rules) = plan.keep(&tenant, &key, day) {
            parts
                .send(Partition {
                    key,
                    day,
                    row_rules,
                })
                .await
                .map_err(|_| Interrupt::Stop(Stop::Closed))?;
        }
        *after = token;
    }
    Ok(())
}
