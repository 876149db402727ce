//! A native stand-in for a tenant module: an aggregate that keeps every
//! (time, value) pair it sees (so a window's output names its exact rows)
//! and a process-window function that lists values in the order given.

use serde::{Deserialize, Serialize};

use crate::data::error::Result as CallResult;
use crate::data::{
    AddGroup, Column, DataField, EventBatch, FieldDef, FieldType, SandboxError, Value, WindowGroup,
};
use crate::manifest::{WindowFunction, WindowKind, WindowSpec};
use crate::parse::{BadRow, Key, OwnedValue, ParsedRow, Position};
use crate::window::WindowCalls;

/// Column of the value in [`schema`].
pub const VALUE: usize = 2;

/// `key` (text), `t` (timestamp), `v` (int).
pub fn schema() -> Vec<FieldDef> {
    vec![
        FieldDef {
            name: "key".into(),
            ty: FieldType::Text,
            optional: false,
        },
        FieldDef {
            name: "t".into(),
            ty: FieldType::Timestamp,
            optional: false,
        },
        FieldDef {
            name: "v".into(),
            ty: FieldType::Int,
            optional: false,
        },
    ]
}

pub fn row(key: &str, time: i64, v: i64) -> ParsedRow {
    ParsedRow {
        key: Key::from_parts([key]).expect("no separator"),
        time,
        values: vec![
            OwnedValue::Text(key.into()),
            OwnedValue::Timestamp(time),
            OwnedValue::Int(v),
        ],
    }
}

pub fn bad_row(key: &str, time: i64) -> BadRow {
    BadRow {
        raw: format!("{key},{time},oops").into(),
        reason: "column `v`: `oops` is not an integer".into(),
        position: Position {
            source: "test".into(),
            line: 1,
            offset: 0,
        },
        key: Some(Key::from_parts([key]).expect("no separator")),
        time: Some(time),
        kind: Default::default(),
    }
}

fn spec(name: &str, kind: WindowKind, process: bool) -> WindowSpec {
    WindowSpec {
        name: name.into(),
        kind,
        function: if process {
            WindowFunction::Process("listing".into())
        } else {
            WindowFunction::Aggregate("pairs".into())
        },
    }
}

pub fn ms(n: i64) -> std::time::Duration {
    std::time::Duration::from_millis(n.unsigned_abs())
}

pub fn tumbling(name: &str, size: i64, process: bool) -> WindowSpec {
    spec(name, WindowKind::Tumbling { size: ms(size) }, process)
}

pub fn sliding(name: &str, size: i64, slide: i64, process: bool) -> WindowSpec {
    spec(
        name,
        WindowKind::Sliding {
            size: ms(size),
            slide: ms(slide),
        },
        process,
    )
}

pub fn count(name: &str, n: u64, process: bool) -> WindowSpec {
    spec(name, WindowKind::Count { n }, process)
}

pub fn global(name: &str, every: i64) -> WindowSpec {
    spec(
        name,
        WindowKind::Global {
            emit_every: ms(every),
        },
        false,
    )
}

pub fn session(name: &str, gap: i64, max: Option<i64>, process: bool) -> WindowSpec {
    spec(
        name,
        WindowKind::Session {
            gap: ms(gap),
            max_duration: max.map(ms),
        },
        process,
    )
}

/// The accumulator of `pairs`.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Acc {
    count: u64,
    sum: i64,
    pairs: Vec<(i64, i64)>,
}

/// What `pairs` outputs for a window holding `pairs` (time, value):
/// count, sum, min, max and the sorted pairs, so that any missing or
/// doubled row shows.
pub fn aggregate_fields(pairs: &[(i64, i64)]) -> Vec<DataField> {
    let mut sorted = pairs.to_vec();
    sorted.sort_unstable();
    let values = pairs.iter().map(|p| p.1);
    vec![
        int("count", pairs.len() as i64),
        int("sum", values.clone().sum()),
        int("min", values.clone().min().unwrap_or(0)),
        int("max", values.max().unwrap_or(0)),
        DataField {
            name: "pairs".into(),
            value: Value::Text(format!("{sorted:?}")),
        },
    ]
}

/// What `listing` outputs for a window's values in the order given.
pub fn process_fields(values: &[i64]) -> Vec<DataField> {
    vec![
        int("count", values.len() as i64),
        int("sum", values.iter().sum()),
        DataField {
            name: "values".into(),
            value: Value::Text(format!("{values:?}")),
        },
    ]
}

fn int(name: &str, v: i64) -> DataField {
    DataField {
        name: name.into(),
        value: Value::Int(v),
    }
}

/// Calls made, per function kind.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CallCounts {
    pub add: usize,
    pub merge: usize,
    pub finish: usize,
    pub process: usize,
    /// Groups / windows over all calls.
    pub add_groups: usize,
    pub finish_windows: usize,
}

#[derive(Debug)]
pub struct Fake {
    pub reads: Vec<u32>,
    /// `aggregate-add` fails for any call holding this value.
    pub poison_add: Option<i64>,
    /// `aggregate-finish` and `process-window` fail for any call holding a
    /// window with this value.
    pub poison_finish: Option<i64>,
    /// Every call fails with an engine (not input) error.
    pub engine_down: bool,
    pub counts: CallCounts,
    /// State-ceiling refusals the engine reported (`breached_limit`).
    pub breaches: usize,
}

impl Default for Fake {
    fn default() -> Self {
        Fake {
            reads: vec![VALUE as u32],
            poison_add: None,
            poison_finish: None,
            engine_down: false,
            counts: CallCounts::default(),
            breaches: 0,
        }
    }
}

fn guest(function: &str, message: String) -> SandboxError {
    SandboxError::Guest {
        tenant: "fake".into(),
        function: function.into(),
        message,
    }
}

fn values(batch: &EventBatch) -> CallResult<&[i64]> {
    match batch.columns.get(VALUE) {
        Some(Column::Int(v)) => Ok(v),
        other => Err(guest("batch", format!("value column missing: {other:?}"))),
    }
}

fn decode(bytes: &[u8]) -> CallResult<Acc> {
    postcard::from_bytes(bytes).map_err(|e| guest("decode", e.to_string()))
}

fn encode(acc: &Acc) -> CallResult<Vec<u8>> {
    postcard::to_allocvec(acc).map_err(|e| guest("encode", e.to_string()))
}

fn merged(list: &[&[u8]]) -> CallResult<Acc> {
    let mut out = Acc::default();
    for bytes in list {
        let acc = decode(bytes)?;
        out.count += acc.count;
        out.sum += acc.sum;
        out.pairs.extend(acc.pairs);
    }
    Ok(out)
}

impl Fake {
    fn check_engine(&self) -> CallResult<()> {
        if self.engine_down {
            return Err(SandboxError::Engine("engine down".into()));
        }
        Ok(())
    }
}

impl WindowCalls for Fake {
    fn aggregate_add(
        &mut self,
        function: &str,
        groups: &[AddGroup<'_>],
        batch: &EventBatch,
    ) -> CallResult<Vec<Vec<u8>>> {
        self.check_engine()?;
        self.counts.add += 1;
        self.counts.add_groups += groups.len();
        let values = values(batch)?;
        let mut out = Vec::with_capacity(groups.len());
        let mut start = 0usize;
        for g in groups {
            let mut acc = match g.state {
                Some(bytes) => decode(bytes)?,
                None => Acc::default(),
            };
            let rows = start..start + g.rows as usize;
            start = rows.end;
            for i in rows {
                let (t, v) = (batch.times[i], values[i]);
                if Some(v) == self.poison_add {
                    return Err(guest(function, format!("poison value {v}")));
                }
                acc.count += 1;
                acc.sum += v;
                acc.pairs.push((t, v));
            }
            out.push(encode(&acc)?);
        }
        Ok(out)
    }

    fn aggregate_merge(
        &mut self,
        _function: &str,
        accumulators: &[&[&[u8]]],
        _at_ms: i64,
    ) -> CallResult<Vec<Vec<u8>>> {
        self.check_engine()?;
        self.counts.merge += 1;
        accumulators
            .iter()
            .map(|list| encode(&merged(list)?))
            .collect()
    }

    fn aggregate_finish(
        &mut self,
        function: &str,
        windows: &[&[&[u8]]],
        _at_ms: i64,
    ) -> CallResult<Vec<Vec<DataField>>> {
        self.check_engine()?;
        self.counts.finish += 1;
        self.counts.finish_windows += windows.len();
        let mut out = Vec::with_capacity(windows.len());
        for list in windows {
            let acc = merged(list)?;
            if acc.count != acc.pairs.len() as u64 {
                return Err(guest(function, "count and pairs disagree".into()));
            }
            if let Some(poison) = self.poison_finish {
                if acc.pairs.iter().any(|p| p.1 == poison) {
                    return Err(guest(function, format!("poison value {poison}")));
                }
            }
            out.push(aggregate_fields(&acc.pairs));
        }
        Ok(out)
    }

    fn process_window(
        &mut self,
        function: &str,
        windows: &[WindowGroup],
        batch: &EventBatch,
    ) -> CallResult<Vec<Vec<DataField>>> {
        self.check_engine()?;
        self.counts.process += 1;
        let values = values(batch)?;
        let mut out = Vec::with_capacity(windows.len());
        for w in windows {
            let rows = w.first as usize..(w.first + w.len) as usize;
            let times = &batch.times[rows.clone()];
            if times.windows(2).any(|p| p[0] > p[1]) {
                return Err(guest(
                    function,
                    format!("rows out of time order: {times:?}"),
                ));
            }
            if times.iter().any(|t| *t < w.start || *t >= w.end) {
                return Err(guest(function, "row outside its window".into()));
            }
            let vs = &values[rows];
            if self.poison_finish.is_some_and(|p| vs.contains(&p)) {
                return Err(guest(function, "poison value".into()));
            }
            out.push(process_fields(vs));
        }
        Ok(out)
    }

    fn reads(&self) -> &[u32] {
        &self.reads
    }

    fn breached_limit(&mut self) {
        self.breaches += 1;
    }
}
