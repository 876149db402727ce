//! Native test helpers: run one function of a tenant over a few events
//! written as CSV, without building a [`Batch`] or a component by hand.
//!
//! A [`Harness`] is the tenant initialised as the host would (params and
//! schema through [`Module::init`]); [`Harness::csv`] turns CSV text into
//! [`Rows`] against its schema; then one call runs an aggregate (add,
//! merge, finish), an alert function (state carried between calls by an
//! [`AlertRun`]) or a process-window function. The calls go through the
//! same dispatcher as the component export, so what passes here is what
//! the host runs; only the parsing of the host (strftime formats, the
//! dead letters) is not reproduced.
//!
//! ```
//! # use sluice_guest::{Aggregate, Event, Function, GuestError, Output, Params, Schema, Tenant, FloatField};
//! # use serde::{Deserialize, Serialize};
//! # struct Sensors { value: FloatField }
//! # impl Tenant for Sensors {
//! #     const NAME: &'static str = "sensors";
//! #     const VERSION: &'static str = "0.1.0";
//! #     fn init(_: &Params, schema: &Schema) -> Result<Self, GuestError> {
//! #         Ok(Sensors { value: schema.float("value")? })
//! #     }
//! #     fn functions() -> Vec<Function<Self>> { vec![Function::aggregate::<Sum>("sum")] }
//! # }
//! # #[derive(Default, Serialize, Deserialize)]
//! # struct Sum(f64);
//! # impl Aggregate<Sensors> for Sum {
//! #     const OUTPUTS: &'static [&'static str] = &["sum"];
//! #     fn add(&mut self, t: &Sensors, e: Event<'_>) { self.0 += e.get(t.value); }
//! #     fn merge(&mut self, o: Self) { self.0 += o.0; }
//! #     fn finish(&self, _: &Sensors) -> Output { Output::new().float("sum", self.0) }
//! # }
//! use sluice_guest::testing::{schema, Harness};
//!
//! let h = Harness::<Sensors>::new(&[], schema("station: text, at: timestamp, value: float")?)?;
//! let rows = h.csv("s1,2017-02-18 18:28:05 UTC,1.5\ns1,2017-02-18 18:28:06 UTC,2.0")?;
//! let out = h.aggregate("sum", &rows)?;
//! assert_eq!(out.get("sum").and_then(|v| v.as_float()), Some(3.5));
//! # Ok::<(), GuestError>(())
//! ```
//!
//! Native only: it is compiled out of the component.

use serde::de::DeserializeOwned;

use crate::events::{Event, Events, WindowInfo};
use crate::function::decode;
use crate::module::Module;
use crate::output::Output;
use crate::types::{
    AddGroup, Alert, Batch, Column, FieldDef, FieldType, GuestError, KeyGroup, Result, TextColumn,
    WindowGroup,
};
use crate::Tenant;

/// Parses a schema written as `name: type` pairs separated by commas, a
/// trailing `?` marking an optional field:
/// `"station: text, value: float, note: text?, at: timestamp"`.
/// Types are the manifest's: `text`, `int`, `float`, `bool` (or
/// `boolean`), `timestamp`.
pub fn schema(spec: &str) -> Result<Vec<FieldDef>> {
    spec.split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(|part| {
            let (name, ty) = part.split_once(':').ok_or_else(|| {
                GuestError::new(format!("schema entry `{part}`: expected `name: type`"))
            })?;
            let ty = ty.trim();
            let (ty, optional) = match ty.strip_suffix('?') {
                Some(ty) => (ty.trim(), true),
                None => (ty, false),
            };
            let ty = match ty {
                "text" => FieldType::Text,
                "int" => FieldType::Int,
                "float" => FieldType::Float,
                "bool" | "boolean" => FieldType::Boolean,
                "timestamp" => FieldType::Timestamp,
                other => {
                    return Err(GuestError::new(format!(
                        "schema entry `{part}`: unknown type `{other}` \
                         (text, int, float, bool or timestamp)"
                    )))
                }
            };
            Ok(FieldDef {
                name: name.trim().to_string(),
                ty,
                optional,
            })
        })
        .collect()
}

/// Events parsed from CSV against a schema: a validated [`Batch`] and the
/// views a tenant's functions take ([`Events`], [`Event`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Rows {
    batch: Batch,
}

impl Rows {
    /// Parses CSV text, one event per line, values in schema order.
    ///
    /// Lines are trimmed; empty lines and lines starting with `#` are
    /// skipped, and so is a first line that is the schema's field names.
    /// Values are read as the host reads them: `int` as `i64`, `float` a
    /// finite `f64`, `bool` `true`/`false` in any case, an empty value is
    /// absent in an optional field and an error in a required one.
    /// `timestamp` values are ms since the Unix epoch or
    /// `YYYY-MM-DD HH:MM:SS[.fff]` (a `T` may separate date and time; a
    /// trailing ` UTC` or `Z` is allowed), UTC. The event time of a row is
    /// its first required `timestamp` field; without one, rows get times
    /// 0, 1, 2… ms in order.
    pub fn from_csv(fields: &[FieldDef], csv: &str) -> Result<Rows> {
        let time_field = fields
            .iter()
            .position(|f| f.ty == FieldType::Timestamp && !f.optional);
        let mut values: Vec<Vec<Cell>> = vec![Vec::new(); fields.len()];
        let mut absent: Vec<Vec<u32>> = vec![Vec::new(); fields.len()];
        let mut times = Vec::new();
        let mut first = true;
        for (n, line) in csv.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let at = |msg: String| GuestError::new(format!("CSV line {}: {msg}", n + 1));
            let record = split_record(line).map_err(at)?;
            let is_header = first
                && record.len() == fields.len()
                && record.iter().zip(fields).all(|(v, f)| *v == f.name);
            first = false;
            if is_header {
                continue;
            }
            if record.len() > fields.len() {
                return Err(at(format!(
                    "{} values, the schema has {} fields",
                    record.len(),
                    fields.len()
                )));
            }
            let row = u32::try_from(times.len())
                .map_err(|_| at("more rows than a batch can address".into()))?;
            for (i, field) in fields.iter().enumerate() {
                let text = record.get(i).map_or("", String::as_str);
                let cell = if text.is_empty() {
                    if !field.optional {
                        return Err(at(format!(
                            "field `{}` is empty, but it is required",
                            field.name
                        )));
                    }
                    absent[i].push(row);
                    Cell::placeholder(field.ty)
                } else {
                    Cell::parse(field.ty, text)
                        .map_err(|e| at(format!("field `{}`: `{text}` {e}", field.name)))?
                };
                values[i].push(cell);
            }
            times.push(match time_field {
                Some(t) => match values[t].last() {
                    Some(Cell::Int(ms)) => *ms,
                    _ => 0,
                },
                None => i64::from(row),
            });
        }
        let columns = fields
            .iter()
            .zip(values)
            .map(|(f, cells)| Cell::column(f.ty, cells))
            .collect();
        let absent = if absent.iter().all(Vec::is_empty) {
            Vec::new()
        } else {
            absent
        };
        Ok(Rows {
            batch: Batch {
                times,
                columns,
                absent,
            },
        })
    }

    pub fn len(&self) -> usize {
        self.batch.times.len()
    }

    pub fn is_empty(&self) -> bool {
        self.batch.times.is_empty()
    }

    /// All rows as one group, as a function receives them.
    pub fn events(&self) -> Events<'_> {
        Events::new(&self.batch, 0..self.len())
    }

    /// Row `i` as an [`Event`], e.g. to call an [`Aggregate`](crate::Aggregate)'s
    /// `add` directly.
    pub fn event(&self, i: usize) -> Option<Event<'_>> {
        self.events().get(i)
    }

    /// Event times, ms since the Unix epoch.
    pub fn times(&self) -> &[i64] {
        &self.batch.times
    }

    pub fn batch(&self) -> &Batch {
        &self.batch
    }

    /// The rows at `indices`, in that order (a row may be taken twice).
    ///
    /// # Panics
    /// If an index is not below [`len`](Self::len), as slice indexing does.
    pub fn select(&self, indices: &[usize]) -> Rows {
        let b = &self.batch;
        let columns = b
            .columns
            .iter()
            .map(|column| match column {
                Column::Text(t) => {
                    Column::Text(TextColumn::from_values(indices.iter().map(|&i| {
                        let (start, end) = (t.offsets[i] as usize, t.offsets[i + 1] as usize);
                        &t.data[start..end]
                    })))
                }
                Column::Int(v) => Column::Int(indices.iter().map(|&i| v[i]).collect()),
                Column::Float(v) => Column::Float(indices.iter().map(|&i| v[i]).collect()),
                Column::Boolean(v) => Column::Boolean(indices.iter().map(|&i| v[i]).collect()),
                Column::Timestamp(v) => Column::Timestamp(indices.iter().map(|&i| v[i]).collect()),
            })
            .collect();
        let absent = b
            .absent
            .iter()
            .map(|rows| {
                (0u32..)
                    .zip(indices)
                    .filter(|(_, &i)| rows.binary_search(&(i as u32)).is_ok())
                    .map(|(new, _)| new)
                    .collect::<Vec<u32>>()
            })
            .collect::<Vec<_>>();
        let absent = if absent.iter().all(Vec::is_empty) {
            Vec::new()
        } else {
            absent
        };
        Rows {
            batch: Batch {
                times: indices.iter().map(|&i| b.times[i]).collect(),
                columns,
                absent,
            },
        }
    }

    /// The rows sorted by event time; rows with equal times keep their
    /// order (as the host hands a process-window function its window).
    pub fn sorted_by_time(&self) -> Rows {
        let mut order: Vec<usize> = (0..self.len()).collect();
        order.sort_by_key(|&i| self.batch.times[i]);
        self.select(&order)
    }
}

/// A tenant initialised as the host would, with one-call runners for its
/// functions.
pub struct Harness<T: Tenant> {
    module: Module<T>,
}

impl<T: Tenant> Harness<T> {
    /// Runs [`Tenant::init`] with `params` (the manifest's `[params]`) and
    /// the schema (see [`schema`]); an error is `init`'s.
    pub fn new(params: &[(&str, &str)], fields: Vec<FieldDef>) -> Result<Self> {
        let params = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Ok(Harness {
            module: Module::init(params, fields)?,
        })
    }

    pub fn tenant(&self) -> &T {
        self.module.tenant()
    }

    pub fn module(&self) -> &Module<T> {
        &self.module
    }

    /// Parses CSV against the tenant's schema ([`Rows::from_csv`]).
    pub fn csv(&self, text: &str) -> Result<Rows> {
        Rows::from_csv(self.module.schema().fields(), text)
    }

    /// Runs aggregate `function` over all rows as one window: adds them to
    /// a fresh accumulator and finishes it.
    pub fn aggregate(&self, function: &str, rows: &Rows) -> Result<Output> {
        self.aggregate_panes(function, &[rows])
    }

    /// Runs aggregate `function` as a window made of panes: each pane's
    /// rows added to its own accumulator, the accumulators merged in order,
    /// the result finished — `add`, `merge` and `finish` as the host calls
    /// them for a sliding window.
    pub fn aggregate_panes(&self, function: &str, panes: &[&Rows]) -> Result<Output> {
        let mut accumulators = Vec::with_capacity(panes.len());
        for pane in panes {
            let group = AddGroup {
                rows: rows_u32(pane.len())?,
                state: None,
            };
            let mut added = self
                .module
                .aggregate_add(function, &[group], pane.batch.clone())?;
            accumulators.push(added.pop().unwrap_or_default());
        }
        let merged = self.module.aggregate_merge(function, &[accumulators])?;
        let fields = self.module.aggregate_finish(function, &[merged])?;
        Ok(to_output(fields.into_iter().next().unwrap_or_default()))
    }

    /// Runs aggregate `function` over tumbling windows of `size_ms`
    /// (aligned to the epoch, as the host aligns them), one result per
    /// window that has rows, in time order.
    pub fn aggregate_tumbling(
        &self,
        function: &str,
        rows: &Rows,
        size_ms: i64,
    ) -> Result<Vec<(WindowInfo, Output)>> {
        if size_ms <= 0 {
            return Err(GuestError::new(format!(
                "window size {size_ms} ms: must be positive"
            )));
        }
        let mut starts: Vec<i64> = rows
            .times()
            .iter()
            .map(|t| t.div_euclid(size_ms) * size_ms)
            .collect();
        starts.sort_unstable();
        starts.dedup();
        starts
            .into_iter()
            .map(|start| {
                let end = start.saturating_add(size_ms);
                let indices: Vec<usize> = (0..rows.len())
                    .filter(|&i| (start..end).contains(&rows.times()[i]))
                    .collect();
                let out = self.aggregate(function, &rows.select(&indices))?;
                Ok((WindowInfo { start, end }, out))
            })
            .collect()
    }

    /// Runs aggregate `function` over session windows of `gap_ms` (with
    /// `max_ms`, the manifest's `max_duration`), formed as the host forms
    /// them from rows in event-time order: a row at most `gap_ms` after
    /// the session's last row (and less than `max_ms` after its first)
    /// joins it, else opens the next; `end` = the last row's time +
    /// `gap_ms`, at most `start + max_ms`. One result per session, in
    /// time order. A session's rows go in as two accumulators merged, as
    /// when the host merges the sessions a late row bridges.
    pub fn aggregate_sessions(
        &self,
        function: &str,
        rows: &Rows,
        gap_ms: i64,
        max_ms: Option<i64>,
    ) -> Result<Vec<(WindowInfo, Output)>> {
        if gap_ms <= 0 || max_ms.is_some_and(|m| m <= 0) {
            return Err(GuestError::new(format!(
                "session gap {gap_ms} ms, max {max_ms:?} ms: must be positive"
            )));
        }
        let mut order: Vec<usize> = (0..rows.len()).collect();
        order.sort_by_key(|&i| rows.times()[i]);
        // (first, last, row indices) of each session.
        let mut sessions: Vec<(i64, i64, Vec<usize>)> = Vec::new();
        for i in order {
            let t = rows.times()[i];
            match sessions.last_mut() {
                Some((first, last, members))
                    if t <= last.saturating_add(gap_ms)
                        && max_ms.is_none_or(|m| t.saturating_sub(*first) < m) =>
                {
                    *last = t;
                    members.push(i);
                }
                _ => sessions.push((t, t, vec![i])),
            }
        }
        sessions
            .into_iter()
            .map(|(start, last, members)| {
                let end = last.saturating_add(gap_ms);
                let end = max_ms.map_or(end, |m| end.min(start.saturating_add(m)));
                let (a, b) = members.split_at(members.len() / 2);
                let (a, b) = (rows.select(a), rows.select(b));
                let out = self.aggregate_panes(function, &[&a, &b])?;
                Ok((WindowInfo { start, end }, out))
            })
            .collect()
    }

    /// An alert function of one key, whose state is carried from one
    /// [`AlertRun::feed`] to the next as the host carries it.
    pub fn alerts<'h>(&'h self, function: &str, key: &[&str]) -> AlertRun<'h, T> {
        AlertRun {
            harness: self,
            function: function.to_string(),
            key: key.iter().map(|k| k.to_string()).collect(),
            state: None,
        }
    }

    /// Runs process-window function `function` over the rows of one window
    /// of `key`, sorted by event time as the host sends them.
    pub fn process_window(
        &self,
        function: &str,
        key: &[&str],
        window: WindowInfo,
        rows: &Rows,
    ) -> Result<Output> {
        let rows = rows.sorted_by_time();
        let group = WindowGroup {
            key: key.iter().map(|k| k.to_string()).collect(),
            start: window.start,
            end: window.end,
            first: 0,
            len: rows_u32(rows.len())?,
        };
        let fields = self
            .module
            .process_window(function, vec![group], rows.batch)?;
        Ok(to_output(fields.into_iter().next().unwrap_or_default()))
    }
}

impl<T: Tenant> std::fmt::Debug for Harness<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Harness")
            .field("module", &self.module)
            .finish()
    }
}

/// One key of an alert function, with its host-held state.
pub struct AlertRun<'h, T: Tenant> {
    harness: &'h Harness<T>,
    function: String,
    key: Vec<String>,
    state: Option<Vec<u8>>,
}

impl<T: Tenant> AlertRun<'_, T> {
    /// Calls the function with `rows` as the key's new events (in the
    /// given order: alerts see arrival order); returns the alerts raised
    /// and keeps the new state for the next call. A failed call keeps the
    /// old state, as the host does.
    pub fn feed(&mut self, rows: &Rows) -> Result<Vec<Alert>> {
        let group = KeyGroup {
            key: self.key.clone(),
            state: self.state.clone(),
            start: 0,
            len: rows_u32(rows.len())?,
        };
        let mut results =
            self.harness
                .module
                .alert(&self.function, vec![group], rows.batch.clone())?;
        let result = results
            .pop()
            .ok_or_else(|| GuestError::new("the alert call returned no result"))?;
        self.state = Some(result.state);
        Ok(result.alerts)
    }

    /// The key's state, decoded (the default before the first call).
    pub fn state<S: DeserializeOwned + Default>(&self) -> Result<S> {
        decode(self.state.as_deref())
    }

    /// The key's state as the host holds it (`postcard` bytes).
    pub fn state_bytes(&self) -> Option<&[u8]> {
        self.state.as_deref()
    }
}

impl<T: Tenant> std::fmt::Debug for AlertRun<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlertRun")
            .field("function", &self.function)
            .field("key", &self.key)
            .field("state_bytes", &self.state.as_ref().map(Vec::len))
            .finish()
    }
}

fn rows_u32(n: usize) -> Result<u32> {
    u32::try_from(n).map_err(|_| GuestError::new(format!("{n} rows: more than a batch holds")))
}

fn to_output(fields: Vec<crate::types::DataField>) -> Output {
    let mut out = Output::with_capacity(fields.len());
    for field in fields {
        out.push(field.name, field.value);
    }
    out
}

/// One parsed CSV value, before it goes into its column.
#[derive(Debug, Clone)]
enum Cell {
    Text(String),
    /// `int` and `timestamp` (ms).
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl Cell {
    fn placeholder(ty: FieldType) -> Cell {
        match ty {
            FieldType::Text => Cell::Text(String::new()),
            FieldType::Int | FieldType::Timestamp => Cell::Int(0),
            FieldType::Float => Cell::Float(0.0),
            FieldType::Boolean => Cell::Bool(false),
        }
    }

    fn parse(ty: FieldType, text: &str) -> std::result::Result<Cell, &'static str> {
        match ty {
            FieldType::Text => Ok(Cell::Text(text.to_string())),
            FieldType::Int => text.parse().map(Cell::Int).map_err(|_| "is not an integer"),
            FieldType::Float => match text.parse::<f64>() {
                Ok(v) if v.is_finite() => Ok(Cell::Float(v)),
                Ok(_) => Err("is not a finite number"),
                Err(_) => Err("is not a float"),
            },
            FieldType::Boolean if text.eq_ignore_ascii_case("true") => Ok(Cell::Bool(true)),
            FieldType::Boolean if text.eq_ignore_ascii_case("false") => Ok(Cell::Bool(false)),
            FieldType::Boolean => Err("is not a bool (expected true or false)"),
            FieldType::Timestamp => parse_time(text)
                .map(Cell::Int)
                .ok_or("is not a time (ms since the epoch or YYYY-MM-DD HH:MM:SS[.fff], UTC)"),
        }
    }

    fn column(ty: FieldType, cells: Vec<Cell>) -> Column {
        match ty {
            FieldType::Text => {
                Column::Text(TextColumn::from_values(cells.iter().map(|c| match c {
                    Cell::Text(s) => s.as_str(),
                    _ => "",
                })))
            }
            FieldType::Int => Column::Int(cells.iter().map(Cell::int).collect()),
            FieldType::Timestamp => Column::Timestamp(cells.iter().map(Cell::int).collect()),
            FieldType::Float => Column::Float(
                cells
                    .iter()
                    .map(|c| match c {
                        Cell::Float(v) => *v,
                        _ => 0.0,
                    })
                    .collect(),
            ),
            FieldType::Boolean => Column::Boolean(
                cells
                    .iter()
                    .map(|c| u8::from(matches!(c, Cell::Bool(true))))
                    .collect(),
            ),
        }
    }

    fn int(&self) -> i64 {
        match self {
            Cell::Int(v) => *v,
            _ => 0,
        }
    }
}

/// Splits one CSV line: `,`-separated, `"`-quoted values with `""` for a
/// quote inside.
fn split_record(line: &str) -> std::result::Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    let mut at_start = true;
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            '"' if quoted => quoted = false,
            '"' if at_start => quoted = true,
            ',' if !quoted => {
                fields.push(std::mem::take(&mut field));
                at_start = true;
                continue;
            }
            c => field.push(c),
        }
        at_start = false;
    }
    if quoted {
        return Err("unterminated quote".into());
    }
    fields.push(field);
    Ok(fields)
}

/// Ms since the epoch, or `YYYY-MM-DD[ T]HH:MM:SS[.fff][ UTC|Z]` as UTC.
fn parse_time(text: &str) -> Option<i64> {
    if let Ok(ms) = text.parse::<i64>() {
        return Some(ms);
    }
    let text = text
        .strip_suffix(" UTC")
        .or_else(|| text.strip_suffix('Z'))
        .unwrap_or(text);
    let (date, time) = text.split_once([' ', 'T'])?;
    let mut d = date.splitn(3, '-');
    let year: i64 = d.next()?.parse().ok()?;
    let month: u32 = d.next()?.parse().ok()?;
    let day: u32 = d.next()?.parse().ok()?;
    let (hms, frac) = match time.split_once('.') {
        Some((hms, frac)) => (hms, Some(frac)),
        None => (time, None),
    };
    let mut t = hms.splitn(3, ':');
    let hour: i64 = t.next()?.parse().ok()?;
    let minute: i64 = t.next()?.parse().ok()?;
    let second: i64 = t.next()?.parse().ok()?;
    let ms = match frac {
        Some(f) if !f.is_empty() && f.len() <= 3 && f.bytes().all(|b| b.is_ascii_digit()) => {
            let digits: i64 = f.parse().ok()?;
            digits * 10_i64.pow(3 - f.len() as u32)
        }
        Some(_) => return None,
        None => 0,
    };
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        _ => return None,
    };
    if day == 0 || day > days_in_month || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some((((days * 24 + hour) * 60 + minute) * 60 + second) * 1000 + ms)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_utc_milliseconds() {
        assert_eq!(parse_time("1970-01-01 00:00:00 UTC"), Some(0));
        assert_eq!(
            parse_time("2017-02-18 18:28:05 UTC"),
            Some(1_487_442_485_000)
        );
        assert_eq!(
            parse_time("2017-02-18T18:28:05.25Z"),
            Some(1_487_442_485_250)
        );
        assert_eq!(parse_time("2000-02-29 00:00:00"), Some(951_782_400_000));
        assert_eq!(parse_time("1487442485000"), Some(1_487_442_485_000));
        assert_eq!(parse_time("2017-02-30 00:00:00"), None);
        assert_eq!(parse_time("2017-02-18"), None);
    }

    #[test]
    fn schema_reads_types_and_optional_marks() {
        let fields = schema("a: text, b: int?, c: bool").expect("valid");
        assert_eq!(fields[1], FieldDef::optional("b", FieldType::Int));
        assert_eq!(fields[2], FieldDef::new("c", FieldType::Boolean));
        let err = schema("a: decimal").expect_err("unknown type");
        assert!(err.message.contains("unknown type `decimal`"), "{err}");
    }

    #[test]
    fn csv_rows_skip_the_header_and_mark_absent_optionals() {
        let fields = schema("s: text, at: timestamp, note: text?").expect("valid");
        let rows = Rows::from_csv(&fields, "s,at,note\n\"a,b\",5,\n c,6,x \n").expect("valid");
        assert_eq!(rows.times(), &[5, 6]);
        assert_eq!(rows.batch().absent, vec![vec![], vec![], vec![0]]);
        let Column::Text(s) = &rows.batch().columns[0] else {
            panic!("text column");
        };
        assert_eq!(s.data, "a,bc");
        let reversed = rows.select(&[1, 0]);
        assert_eq!(reversed.times(), &[6, 5]);
        assert_eq!(reversed.batch().absent, vec![vec![], vec![], vec![1]]);
    }

    #[test]
    fn a_bad_value_names_line_field_and_value() {
        let fields = schema("v: float").expect("valid");
        let err = Rows::from_csv(&fields, "1.0\nNaN").expect_err("NaN");
        assert_eq!(
            err.message,
            "CSV line 2: field `v`: `NaN` is not a finite number"
        );
        let err = Rows::from_csv(&fields, "\n\n")
            .map(|r| r.len())
            .expect("empty");
        assert_eq!(err, 0);
        let two = schema("v: float, w: float").expect("valid");
        let err = Rows::from_csv(&two, ",1.0").expect_err("required");
        assert!(
            err.message.contains("is empty, but it is required"),
            "{err}"
        );
    }
}
