//! Rows grouped by partition into capped requests, in arrival order, each
//! with the next write timestamp (superseded sessions deleted after their
//! result).

use std::collections::{HashMap, HashSet};

use super::*;

/// A request's partition: table, insert or delete, tenant, joined key, day.
type Part<'a> = (Table, Op, &'a str, &'a str, u32);

/// Accumulates rows by (table, partition) in arrival order and cuts them
/// into requests. Each row gets the next write timestamp, so of two rows
/// with the same primary key in one batch (a window and its late update)
/// the later one wins, as it does across batches.
///
/// A session result that supersedes fired sessions (`replaces`) deletes
/// their rows from windowed_analytics and metrics, both, whichever line
/// carries the bounds (the merged session may have no metric line, or its
/// analytic may be dead-lettered). Why the timestamps make this safe:
///
/// - The delete takes the next timestamp after its result line, so it is
///   newer than every write of the superseded row: that write came earlier
///   in the stream, in this batch (an earlier timestamp of the same
///   sequence) or an earlier one (the sink's clock only moves forward, and
///   a restarted run starts at the wall clock, past the old run's writes).
/// - A replay (crash, redelivery) re-emits the stream from a checkpoint in
///   the same order, so a replayed write of the superseded row is followed
///   again by its delete, with newer timestamps still: the row ends
///   deleted. A replay stopped between the two leaves it, as a stopped run
///   leaves any result unwritten; finishing the replay deletes it.
/// - A replayed delete cannot remove a final row: a session only grows
///   when it absorbs others, so a superseded session's bounds differ from
///   every later session of its key and window (the engine leaves the
///   result's own bounds out of `replaces`, and a bound equal to the
///   result's is skipped here too), and rows are keyed by those bounds.
///
/// The timestamps are wall-clock based, not derived from the data: a host
/// whose clock is behind the previous writer's (another host taking over
/// a partition) could write older timestamps, as it could for inserts.
pub struct Grouper<'a> {
    next_ts: i64,
    /// Partition → index into `open`.
    index: HashMap<Part<'a>, usize>,
    /// Superseded sessions already deleted in this batch: tenant, joined
    /// key, window name, start, end.
    deleted: HashSet<(&'a str, &'a str, &'a str, i64, i64)>,
    open: Vec<Request<'a>>,
    done: Vec<Request<'a>>,
}

impl<'a> Grouper<'a> {
    /// `first_ts`: the write timestamp of the first row (µs); the caller
    /// reserved as many as there are rows.
    pub fn new(first_ts: i64) -> Grouper<'a> {
        Grouper {
            next_ts: first_ts,
            index: HashMap::new(),
            deleted: HashSet::new(),
            open: Vec::new(),
            done: Vec::new(),
        }
    }

    /// How many write timestamps a batch needs (its rows, chunks included).
    pub fn rows_needed(
        results: &[TypedResult],
        dead: &[TypedDeadLetter],
        events: &EventBatch<'_>,
    ) -> usize {
        results
            .iter()
            .map(|r| 1 + 2 * r.replaces.len())
            .sum::<usize>()
            + dead
                .iter()
                .map(|d| d.line.len().div_ceil(CHUNK_BYTES).max(1))
                .sum::<usize>()
            + events.events.len()
    }

    fn ts(&mut self) -> i64 {
        let ts = self.next_ts;
        self.next_ts += 1;
        ts
    }

    /// The open request of a partition, or a new one; a full request is
    /// closed first.
    fn slot(&mut self, part: Part<'a>, bytes: usize) -> &mut Request<'a> {
        if let Some(&i) = self.index.get(&part) {
            let r = &self.open[i];
            if r.rows.len() < MAX_BATCH_ROWS && r.bytes + bytes <= MAX_BATCH_BYTES {
                return &mut self.open[i];
            }
            let empty = Request {
                table: part.0,
                op: part.1,
                rows: empty_rows(part.0, part.1),
                bytes: 0,
            };
            let full = std::mem::replace(&mut self.open[i], empty);
            self.done.push(full);
            return &mut self.open[i];
        }
        self.index.insert(part, self.open.len());
        self.open.push(Request {
            table: part.0,
            op: part.1,
            rows: empty_rows(part.0, part.1),
            bytes: 0,
        });
        let last = self.open.len() - 1;
        &mut self.open[last]
    }

    pub fn result(&mut self, r: &'a TypedResult) {
        let table = Table::of(r.ty);
        let joined = r.key.as_ref().map_or("", Key::as_joined);
        let key = key_map(&r.key_names, r.key.as_ref());
        let fields = Fields::of(&r.fields);
        let bytes = 64
            + r.tenant.len()
            + 2 * joined.len()
            + r.key_names.iter().map(|n| 2 * n.len()).sum::<usize>()
            + Fields::bytes(&r.fields)
            + r.window.as_ref().map_or(0, |w| w.name.len());
        let ts = self.ts();
        let update = i32::try_from(r.update).unwrap_or(i32::MAX);
        match (&r.window, &r.alert) {
            (_, Some((kind, event_time))) => {
                let part = (
                    table,
                    Op::Insert,
                    r.tenant.as_str(),
                    joined,
                    day(*event_time).0,
                );
                let slot = self.slot(part, bytes);
                slot.bytes += bytes;
                if let Rows::Alert(rows) = &mut slot.rows {
                    rows.push((
                        &r.tenant,
                        key,
                        day(*event_time),
                        kind,
                        CqlTimestamp(*event_time),
                        names(&r.key_names),
                        fields.names,
                        fields.ints,
                        fields.floats,
                        fields.texts,
                        fields.bools,
                        ts,
                    ));
                }
            }
            (Some(w), None) => {
                // A global window keeps its start (the key's first event)
                // and emits forever: bucket it by the emission (its end).
                let bucket = match r.ty {
                    OutputType::GlobalAnalytic | OutputType::GlobalMetric => day(w.end),
                    _ => day(w.start),
                };
                let part = (table, Op::Insert, r.tenant.as_str(), joined, bucket.0);
                let slot = self.slot(part, bytes);
                slot.bytes += bytes;
                match &mut slot.rows {
                    Rows::Window(rows) => rows.push((
                        &r.tenant,
                        key,
                        bucket,
                        &w.name,
                        CqlTimestamp(w.start),
                        CqlTimestamp(w.end),
                        names(&r.key_names),
                        fields.names,
                        fields.ints,
                        fields.floats,
                        fields.texts,
                        fields.bools,
                        update,
                        ts,
                    )),
                    Rows::Metric(rows) => rows.push((
                        &r.tenant,
                        key,
                        bucket,
                        r.ty.as_str(),
                        &w.name,
                        CqlTimestamp(w.start),
                        CqlTimestamp(w.end),
                        names(&r.key_names),
                        fields.names,
                        fields.ints,
                        fields.floats,
                        fields.texts,
                        fields.bools,
                        update,
                        ts,
                    )),
                    _ => {}
                }
            }
            // Only alerts lack a window, and they have their kind.
            (None, None) => tracing::warn!(
                tenant = %r.tenant,
                ty = r.ty.as_str(),
                "a result without a window is not stored"
            ),
        }
        self.superseded(r);
    }

    /// Deletes of the fired sessions `r` supersedes, in both tables (see
    /// the type's doc for why their timestamps are safe).
    fn superseded(&mut self, r: &'a TypedResult) {
        let Some(w) = &r.window else { return };
        if r.replaces.is_empty()
            || !matches!(
                r.ty,
                OutputType::WindowedAnalytic | OutputType::WindowedMetric
            )
        {
            return;
        }
        let joined = r.key.as_ref().map_or("", Key::as_joined);
        let bytes = 48
            + r.tenant.len()
            + 2 * joined.len()
            + r.key_names.iter().map(|n| 2 * n.len()).sum::<usize>()
            + w.name.len();
        for &(start, end) in &r.replaces {
            // Its own row, and one already deleted by its other line.
            if (start, end) == (w.start, w.end)
                || !self
                    .deleted
                    .insert((&r.tenant, joined, &w.name, start, end))
            {
                continue;
            }
            let bucket = day(start);
            for table in [Table::WindowedAnalytics, Table::Metrics] {
                let ts = self.ts();
                let key = key_map(&r.key_names, r.key.as_ref());
                let part = (table, Op::Delete, r.tenant.as_str(), joined, bucket.0);
                let slot = self.slot(part, bytes);
                slot.bytes += bytes;
                match &mut slot.rows {
                    Rows::WindowDelete(rows) => rows.push((
                        ts,
                        &r.tenant,
                        key,
                        bucket,
                        &w.name,
                        CqlTimestamp(start),
                        CqlTimestamp(end),
                    )),
                    Rows::MetricDelete(rows) => rows.push((
                        ts,
                        &r.tenant,
                        key,
                        bucket,
                        OutputType::WindowedMetric.as_str(),
                        &w.name,
                        CqlTimestamp(start),
                        CqlTimestamp(end),
                    )),
                    _ => {}
                }
            }
        }
    }

    pub fn dead_letter(&mut self, d: &'a TypedDeadLetter) {
        let day_ms = d.event_time.unwrap_or(0);
        let chunks = split_chunks(&d.line, CHUNK_BYTES);
        let n = i32::try_from(chunks.len()).unwrap_or(i32::MAX);
        for (i, body) in chunks.into_iter().enumerate() {
            let bytes = 96 + d.tenant.len() + d.id.len() + body.len();
            let ts = self.ts();
            let part = (
                Table::DeadLetters,
                Op::Insert,
                d.tenant.as_str(),
                "",
                day(day_ms).0,
            );
            let slot = self.slot(part, bytes);
            slot.bytes += bytes;
            if let Rows::DeadLetter(rows) = &mut slot.rows {
                rows.push((
                    &d.tenant,
                    day(day_ms),
                    d.kind,
                    &d.id,
                    i32::try_from(i).unwrap_or(i32::MAX),
                    n,
                    body,
                    d.key.as_ref().map(|k| key_map(&d.key_names, Some(k))),
                    names(&d.key_names),
                    d.event_time.map(CqlTimestamp),
                    d.position.as_ref().map(|p| p.source.as_str()),
                    d.position.as_ref().map(|p| p.line as i64),
                    d.position.as_ref().map(|p| p.offset as i64),
                    ts,
                ));
            }
        }
    }

    pub fn events(&mut self, batch: &EventBatch<'a>) {
        for e in batch.events {
            let joined = e.key.as_joined();
            let mut ints = BTreeMap::new();
            let mut floats = BTreeMap::new();
            let mut texts = BTreeMap::new();
            let mut bools = BTreeMap::new();
            let mut times = BTreeMap::new();
            let mut bytes = 64 + batch.tenant.len() + 2 * joined.len() + e.position.source.len();
            for (name, value) in batch.columns.iter().zip(e.values) {
                let name = name.as_str();
                bytes += name.len() + 12;
                match value {
                    OwnedValue::Text(t) => {
                        bytes += t.len();
                        texts.insert(name, &**t);
                    }
                    OwnedValue::Int(i) => {
                        ints.insert(name, *i);
                    }
                    OwnedValue::Float(f) => {
                        floats.insert(name, *f);
                    }
                    OwnedValue::Bool(b) => {
                        bools.insert(name, *b);
                    }
                    OwnedValue::Timestamp(t) => {
                        times.insert(name, CqlTimestamp(*t));
                    }
                    OwnedValue::Absent => {}
                }
            }
            let ts = self.ts();
            let part = (
                Table::Events,
                Op::Insert,
                batch.tenant,
                joined,
                day(e.time).0,
            );
            let slot = self.slot(part, bytes);
            slot.bytes += bytes;
            if let Rows::Event(rows) = &mut slot.rows {
                rows.push((
                    batch.tenant,
                    key_map(batch.key_names, Some(e.key)),
                    day(e.time),
                    CqlTimestamp(e.time),
                    &e.position.source,
                    i64::try_from(e.position.line).unwrap_or(i64::MAX),
                    i64::try_from(e.position.offset).unwrap_or(i64::MAX),
                    names(batch.key_names),
                    ints,
                    floats,
                    texts,
                    bools,
                    times,
                    ts,
                ));
            }
        }
    }

    /// Every request, partitions in order of first appearance.
    pub fn finish(mut self) -> Vec<Request<'a>> {
        self.done.extend(self.open);
        self.done
    }
}

fn empty_rows<'a>(table: Table, op: Op) -> Rows<'a> {
    match (op, table) {
        (Op::Delete, Table::Metrics) => return Rows::MetricDelete(Vec::new()),
        (Op::Delete, _) => return Rows::WindowDelete(Vec::new()),
        (Op::Insert, _) => {}
    }
    match table {
        Table::WindowedAnalytics | Table::GlobalAnalytics => Rows::Window(Vec::new()),
        Table::Metrics => Rows::Metric(Vec::new()),
        Table::Alerts => Rows::Alert(Vec::new()),
        Table::Events => Rows::Event(Vec::new()),
        Table::DeadLetters => Rows::DeadLetter(Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_is_cut_into_requests_below_the_row_cap() {
        let key = Key::from_parts(["a", "b"]).expect("no separator");
        let names = vec!["x".to_owned(), "y".to_owned()];
        let columns = vec!["v".to_owned()];
        let pos = sluice_core::sink::RowPos {
            source: "f".into(),
            line: 1,
            offset: 0,
        };
        let values = vec![OwnedValue::Float(1.0)];
        let events: Vec<_> = (0..MAX_BATCH_ROWS + 10)
            .map(|i| sluice_core::sink::Event {
                key: &key,
                time: i as i64,
                values: &values,
                position: &pos,
            })
            .collect();
        let batch = EventBatch {
            tenant: "t",
            key_names: &names,
            columns: &columns,
            events: &events,
        };
        let mut g = Grouper::new(1);
        g.events(&batch);
        let requests = g.finish();
        assert_eq!(requests.len(), 2);
        assert_eq!(requests[0].rows.len(), MAX_BATCH_ROWS);
        assert_eq!(requests[1].rows.len(), 10);
    }
}
