//! `sluice query`: stored results read back and printed as the JSON lines
//! the pipeline printed — rebuilt as a [`Record`] and written by the same
//! serializer, so key order, data order and float formatting (`241.0`)
//! come back exactly. A window that was updated late holds its last
//! update, as its row does.
//!
//! It reads each table with `WHERE tenant = ? ALLOW FILTERING` (a scan:
//! the partition key also holds the key and the day) and filters keys
//! here: a tool to check what was written, not a serving path.

use std::collections::BTreeMap;
use std::io::Write;

use futures_util::TryStreamExt;
use scylla::client::pager::TypedRowStream;
use scylla::client::session::Session;
use scylla::deserialize::row::DeserializeRow;
use scylla::value::CqlTimestamp;

use super::rows::Table;
use super::{Error, Result};
use sluice_core::data::{DataField, Value};
use sluice_core::parse::Key;
use sluice_core::sink::{Data, OutputType, Record, WindowRef};

/// Which results to print.
#[derive(Debug, Clone, Default)]
pub struct QueryFilter {
    pub tenant: String,
    /// Only this type.
    pub ty: Option<OutputType>,
    /// Only rows whose key has each of these column values.
    pub key: Vec<(String, String)>,
}

pub(super) type Map<V> = Option<BTreeMap<String, V>>;

/// A stored row's typed data columns (`fields` and the maps), as read.
pub(super) struct Typed {
    pub names: Option<Vec<String>>,
    pub ints: Map<i64>,
    pub floats: Map<f64>,
    pub texts: Map<String>,
    pub bools: Map<bool>,
}

impl Typed {
    /// The fields in their stored order.
    pub(super) fn fields(self) -> Vec<DataField> {
        let (mut ints, mut floats, mut texts, mut bools) = (
            self.ints.unwrap_or_default(),
            self.floats.unwrap_or_default(),
            self.texts.unwrap_or_default(),
            self.bools.unwrap_or_default(),
        );
        let mut out = Vec::new();
        for name in self.names.unwrap_or_default() {
            let value = if let Some(i) = ints.remove(&name) {
                Value::Int(i)
            } else if let Some(f) = floats.remove(&name) {
                Value::Float(f)
            } else if let Some(t) = texts.remove(&name) {
                Value::Text(t)
            } else if let Some(b) = bools.remove(&name) {
                Value::Boolean(b)
            } else {
                continue;
            };
            out.push(DataField { name, value });
        }
        out
    }
}

/// The key in key order; `None` when empty (a tenant-level result).
fn key_of(
    names: Option<Vec<String>>,
    map: &BTreeMap<String, String>,
) -> (Vec<String>, Option<Key>) {
    let names = names.unwrap_or_default();
    if map.is_empty() {
        return (names, None);
    }
    let parts: Vec<&str> = names
        .iter()
        .map(|n| map.get(n).map_or("", String::as_str))
        .collect();
    (names.clone(), Key::from_parts(parts).ok())
}

fn matches(filter: &QueryFilter, key: &BTreeMap<String, String>) -> bool {
    filter
        .key
        .iter()
        .all(|(name, value)| key.get(name) == Some(value))
}

/// Writes rebuilt records as JSON lines and counts them.
struct Printer<'o> {
    out: &'o mut dyn Write,
    line: Vec<u8>,
    printed: u64,
}

impl Printer<'_> {
    fn print(&mut self, record: &Record<'_>, table: Table) -> Result<()> {
        self.line.clear();
        record.write_line(&mut self.line);
        self.out.write_all(&self.line).map_err(|e| Error::Read {
            table: table.name(),
            message: format!("writing the output: {e}"),
        })?;
        self.printed += 1;
        Ok(())
    }
}

/// A stored windowed result: the columns the analytics and metrics tables
/// share.
struct WindowRow {
    tenant: String,
    key: BTreeMap<String, String>,
    name: String,
    start: CqlTimestamp,
    end: CqlTimestamp,
    key_names: Option<Vec<String>>,
    typed: Typed,
    update: Option<i32>,
}

impl WindowRow {
    /// Rebuilds the pipeline's record of type `ty` and prints it.
    fn print(self, ty: OutputType, printer: &mut Printer<'_>, table: Table) -> Result<()> {
        let (key_names, key) = key_of(self.key_names, &self.key);
        let fields = self.typed.fields();
        printer.print(
            &Record {
                tenant: &self.tenant,
                ty,
                window: Some(WindowRef {
                    name: &self.name,
                    start: self.start.0,
                    end: self.end.0,
                }),
                key_names: &key_names,
                key: key.as_ref(),
                data: Data::Fields(&fields),
                update: u32::try_from(self.update.unwrap_or(0)).unwrap_or(0),
                replaces: &[],
            },
            table,
        )
    }
}

/// Streams the rows of `cql` (one `?`, bound to the tenant) decoded as `R`.
async fn scan<R>(
    session: &Session,
    cql: String,
    tenant: &str,
    table: Table,
) -> Result<TypedRowStream<R>>
where
    R: for<'f, 'm> DeserializeRow<'f, 'm>,
{
    let err = read_err(table);
    session
        .query_iter(cql, (tenant,))
        .await
        .map_err(|e| err(&e))?
        .rows_stream::<R>()
        .map_err(|e| err(&e))
}

fn read_err(table: Table) -> impl Fn(&dyn std::fmt::Display) -> Error {
    move |e| Error::Read {
        table: table.name(),
        message: e.to_string(),
    }
}

/// A result row's typed data columns, as selected after its own columns.
const DATA_COLUMNS: &str = "key_names, fields, ints, floats, texts, bools";

/// Prints the tenant's stored results as JSON lines to `out`; returns how
/// many.
pub async fn query(
    session: &Session,
    keyspace: &str,
    filter: &QueryFilter,
    out: &mut dyn Write,
) -> Result<u64> {
    let wanted = |ty: OutputType| filter.ty.is_none_or(|t| t == ty);
    let mut printer = Printer {
        out,
        line: Vec::with_capacity(512),
        printed: 0,
    };

    for (table, ty) in [
        (Table::WindowedAnalytics, OutputType::WindowedAnalytic),
        (Table::GlobalAnalytics, OutputType::GlobalAnalytic),
    ] {
        if !wanted(ty) {
            continue;
        }
        type Row = (
            String,
            BTreeMap<String, String>,
            String,
            CqlTimestamp,
            CqlTimestamp,
            Option<Vec<String>>,
            Option<Vec<String>>,
            Map<i64>,
            Map<f64>,
            Map<String>,
            Map<bool>,
            Option<i32>,
        );
        let cql = format!(
            "SELECT tenant, key, window_name, window_start, window_end, {DATA_COLUMNS}, \
             late_update FROM {keyspace}.{} WHERE tenant = ? ALLOW FILTERING",
            table.name()
        );
        let mut rows = scan::<Row>(session, cql, &filter.tenant, table).await?;
        let err = read_err(table);
        while let Some(row) = rows.try_next().await.map_err(|e| err(&e))? {
            let (
                tenant,
                key,
                name,
                start,
                end,
                key_names,
                names,
                ints,
                floats,
                texts,
                bools,
                update,
            ) = row;
            if !matches(filter, &key) {
                continue;
            }
            let typed = Typed {
                names,
                ints,
                floats,
                texts,
                bools,
            };
            WindowRow {
                tenant,
                key,
                name,
                start,
                end,
                key_names,
                typed,
                update,
            }
            .print(ty, &mut printer, table)?;
        }
    }

    if wanted(OutputType::WindowedMetric) || wanted(OutputType::GlobalMetric) {
        let table = Table::Metrics;
        type Row = (
            String,
            BTreeMap<String, String>,
            String,
            String,
            CqlTimestamp,
            CqlTimestamp,
            Option<Vec<String>>,
            Option<Vec<String>>,
            Map<i64>,
            Map<f64>,
            Map<String>,
            Map<bool>,
            Option<i32>,
        );
        let cql = format!(
            "SELECT tenant, key, metric_type, window_name, window_start, window_end, \
             {DATA_COLUMNS}, late_update FROM {keyspace}.metrics WHERE tenant = ? ALLOW FILTERING"
        );
        let mut rows = scan::<Row>(session, cql, &filter.tenant, table).await?;
        let err = read_err(table);
        while let Some(row) = rows.try_next().await.map_err(|e| err(&e))? {
            let (
                tenant,
                key,
                ty,
                name,
                start,
                end,
                key_names,
                names,
                ints,
                floats,
                texts,
                bools,
                update,
            ) = row;
            let ty = match ty.as_str() {
                "Windowed Metric" => OutputType::WindowedMetric,
                "Global Metric" => OutputType::GlobalMetric,
                _ => continue,
            };
            if !wanted(ty) || !matches(filter, &key) {
                continue;
            }
            let typed = Typed {
                names,
                ints,
                floats,
                texts,
                bools,
            };
            WindowRow {
                tenant,
                key,
                name,
                start,
                end,
                key_names,
                typed,
                update,
            }
            .print(ty, &mut printer, table)?;
        }
    }

    if wanted(OutputType::Alert) {
        let table = Table::Alerts;
        type Row = (
            String,
            BTreeMap<String, String>,
            String,
            CqlTimestamp,
            Option<Vec<String>>,
            Option<Vec<String>>,
            Map<i64>,
            Map<f64>,
            Map<String>,
            Map<bool>,
        );
        let cql = format!(
            "SELECT tenant, key, kind, event_time, {DATA_COLUMNS} \
             FROM {keyspace}.alerts WHERE tenant = ? ALLOW FILTERING"
        );
        let mut rows = scan::<Row>(session, cql, &filter.tenant, table).await?;
        let err = read_err(table);
        while let Some(row) = rows.try_next().await.map_err(|e| err(&e))? {
            let (tenant, key, kind, event_time, key_names, names, ints, floats, texts, bools) = row;
            if !matches(filter, &key) {
                continue;
            }
            let (key_names, key) = key_of(key_names, &key);
            let fields = Typed {
                names,
                ints,
                floats,
                texts,
                bools,
            }
            .fields();
            printer.print(
                &Record {
                    tenant: &tenant,
                    ty: OutputType::Alert,
                    window: None,
                    key_names: &key_names,
                    key: key.as_ref(),
                    data: Data::Alert {
                        kind: &kind,
                        event_time: event_time.0,
                        fields: &fields,
                    },
                    update: 0,
                    replaces: &[],
                },
                table,
            )?;
        }
    }
    printer.out.flush().map_err(|e| Error::Read {
        table: "output",
        message: e.to_string(),
    })?;
    Ok(printer.printed)
}
