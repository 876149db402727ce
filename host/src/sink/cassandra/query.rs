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
use scylla::client::session::Session;
use scylla::value::CqlTimestamp;

use super::rows::Table;
use super::{Error, Result};
use crate::parse::Key;
use crate::sandbox::{DataField, Value};
use crate::sink::{Data, OutputType, Record, WindowRef};

/// Which results to print.
#[derive(Debug, Clone, Default)]
pub struct QueryFilter {
    pub tenant: String,
    /// Only this type.
    pub ty: Option<OutputType>,
    /// Only rows whose key has each of these column values.
    pub key: Vec<(String, String)>,
}

type Map<V> = Option<BTreeMap<String, V>>;

struct Typed {
    names: Option<Vec<String>>,
    ints: Map<i64>,
    floats: Map<f64>,
    texts: Map<String>,
    bools: Map<bool>,
}

impl Typed {
    /// The fields in their stored order.
    fn fields(self) -> Vec<DataField> {
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

/// Prints the tenant's stored results as JSON lines to `out`; returns how
/// many.
pub async fn query(
    session: &Session,
    keyspace: &str,
    filter: &QueryFilter,
    out: &mut dyn Write,
) -> Result<u64> {
    let wanted = |ty: OutputType| filter.ty.is_none_or(|t| t == ty);
    let mut printed = 0;
    let mut line = Vec::with_capacity(512);
    let mut emit = |record: &Record<'_>, out: &mut dyn Write, table: Table| -> Result<()> {
        line.clear();
        record.write_line(&mut line);
        out.write_all(&line).map_err(|e| Error::Read {
            table: table.name(),
            message: format!("writing the output: {e}"),
        })?;
        printed += 1;
        Ok(())
    };
    let read_err = |table: Table| {
        move |e: &dyn std::fmt::Display| Error::Read {
            table: table.name(),
            message: e.to_string(),
        }
    };

    for (table, ty) in [
        (Table::WindowedAnalytics, OutputType::WindowedAnalytic),
        (Table::GlobalAnalytics, OutputType::GlobalAnalytic),
    ] {
        if !wanted(ty) {
            continue;
        }
        let err = read_err(table);
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
            "SELECT tenant, key, window_name, window_start, window_end, key_names, fields, \
             ints, floats, texts, bools, late_update FROM {keyspace}.{} \
             WHERE tenant = ? ALLOW FILTERING",
            table.name()
        );
        let mut rows = session
            .query_iter(cql, (&filter.tenant,))
            .await
            .map_err(|e| err(&e))?
            .rows_stream::<Row>()
            .map_err(|e| err(&e))?;
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
            let (key_names, key) = key_of(key_names, &key);
            let fields = Typed {
                names,
                ints,
                floats,
                texts,
                bools,
            }
            .fields();
            emit(
                &Record {
                    tenant: &tenant,
                    ty,
                    window: Some(WindowRef {
                        name: &name,
                        start: start.0,
                        end: end.0,
                    }),
                    key_names: &key_names,
                    key: key.as_ref(),
                    data: Data::Fields(&fields),
                    update: u32::try_from(update.unwrap_or(0)).unwrap_or(0),
                },
                out,
                table,
            )?;
        }
    }

    if wanted(OutputType::WindowedMetric) || wanted(OutputType::GlobalMetric) {
        let table = Table::Metrics;
        let err = read_err(table);
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
            "SELECT tenant, key, metric_type, window_name, window_start, window_end, key_names, \
             fields, ints, floats, texts, bools, late_update FROM {keyspace}.metrics \
             WHERE tenant = ? ALLOW FILTERING"
        );
        let mut rows = session
            .query_iter(cql, (&filter.tenant,))
            .await
            .map_err(|e| err(&e))?
            .rows_stream::<Row>()
            .map_err(|e| err(&e))?;
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
            let (key_names, key) = key_of(key_names, &key);
            let fields = Typed {
                names,
                ints,
                floats,
                texts,
                bools,
            }
            .fields();
            emit(
                &Record {
                    tenant: &tenant,
                    ty,
                    window: Some(WindowRef {
                        name: &name,
                        start: start.0,
                        end: end.0,
                    }),
                    key_names: &key_names,
                    key: key.as_ref(),
                    data: Data::Fields(&fields),
                    update: u32::try_from(update.unwrap_or(0)).unwrap_or(0),
                },
                out,
                table,
            )?;
        }
    }

    if wanted(OutputType::Alert) {
        let table = Table::Alerts;
        let err = read_err(table);
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
            "SELECT tenant, key, kind, event_time, key_names, fields, ints, floats, texts, bools \
             FROM {keyspace}.alerts WHERE tenant = ? ALLOW FILTERING"
        );
        let mut rows = session
            .query_iter(cql, (&filter.tenant,))
            .await
            .map_err(|e| err(&e))?
            .rows_stream::<Row>()
            .map_err(|e| err(&e))?;
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
            emit(
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
                },
                out,
                table,
            )?;
        }
    }
    out.flush().map_err(|e| Error::Read {
        table: "output",
        message: e.to_string(),
    })?;
    Ok(printed)
}
