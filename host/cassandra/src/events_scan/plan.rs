//! The checked scan ([`Plan`]): its columns and scope rules, its prepared
//! statements, and which listed partitions to read.

use std::collections::BTreeMap;
use std::sync::Arc;

use indicatif::ProgressBar;
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use scylla::value::CqlDate;

use super::values::{Column, Rule, Wanted};
use super::{Counters, Error, EventScan, PAGE_SIZE};
use crate::rows::day;
use crate::schema;
use sluice_core::batch::JobRange;
use sluice_core::data::FieldType;
use sluice_core::parse::TimestampFormat;

/// A partition to read, and the scope rules its rows must pass.
#[derive(Debug)]
pub(super) struct Partition {
    pub(super) key: BTreeMap<String, String>,
    pub(super) day: CqlDate,
    /// Indices of the rules on columns that are not key columns.
    pub(super) row_rules: Vec<usize>,
}

/// Everything the scan's tasks share.
pub(super) struct Plan {
    pub(super) session: Arc<Session>,
    pub(super) keyspace: String,
    pub(super) tenant: String,
    pub(super) from: i64,
    pub(super) to: i64,
    /// First and last UTC day (as CQL `date`) the range meets.
    pub(super) days: (u32, u32),
    pub(super) columns: Vec<Column>,
    pub(super) rules: Vec<Rule>,
    pub(super) delimiter: u8,
    pub(super) parallelism: usize,
    pub(super) list_partitions: PreparedStatement,
    pub(super) read_partition: PreparedStatement,
    pub(super) counters: Arc<Counters>,
    pub(super) progress: Option<ProgressBar>,
}

impl Plan {
    pub(super) async fn new(
        session: Arc<Session>,
        scan: EventScan,
        progress: Option<ProgressBar>,
    ) -> Result<Plan, Error> {
        if !schema::valid_keyspace(&scan.keyspace) {
            return Err(Error::Keyspace(scan.keyspace));
        }
        let JobRange { from, to } = scan.range;
        if from > to {
            return Err(Error::Range { from, to });
        }
        if scan.columns.is_empty() {
            return Err(Error::NoColumns);
        }
        let mut columns = Vec::with_capacity(scan.columns.len());
        for c in scan.columns {
            let time = match (c.ty, &c.format) {
                (FieldType::Timestamp, Some(f)) => Some(TimestampFormat::new(f).map_err(
                    |message| Error::TimeFormat {
                        column: c.name.clone(),
                        message,
                    },
                )?),
                (FieldType::Timestamp, None) => {
                    return Err(Error::TimeFormat {
                        column: c.name,
                        message: "no format".to_owned(),
                    })
                }
                _ => None,
            };
            columns.push(Column {
                name: c.name,
                ty: c.ty,
                time,
            });
        }
        let mut rules = Vec::with_capacity(scan.scope.len());
        for (name, value) in scan.scope {
            let Some(i) = columns.iter().position(|c| c.name == name) else {
                return Err(Error::ScopeColumn(name));
            };
            let wanted =
                Wanted::parse(&columns[i], &value).map_err(|message| Error::ScopeValue {
                    column: name.clone(),
                    value: value.clone(),
                    message,
                })?;
            rules.push(Rule { column: i, wanted });
        }
        let ks = &scan.keyspace;
        let prepare = |statement: &'static str, cql: String| {
            let session = Arc::clone(&session);
            let keyspace = ks.clone();
            async move {
                let mut prepared = session.prepare(cql).await.map_err(|e| Error::Prepare {
                    keyspace,
                    statement,
                    message: e.to_string(),
                })?;
                prepared.set_is_idempotent(true);
                prepared.set_page_size(PAGE_SIZE);
                Ok::<_, Error>(prepared)
            }
        };
        let list_partitions = prepare(
            "listing partitions",
            format!(
                "SELECT DISTINCT tenant, key, day, token(tenant, key, day) FROM {ks}.events \
                 WHERE token(tenant, key, day) > ? AND token(tenant, key, day) <= ?"
            ),
        )
        .await?;
        let read_partition = prepare(
            "reading a partition",
            format!(
                "SELECT event_time, source, line, ints, floats, texts, bools, times \
                 FROM {ks}.events WHERE tenant = ? AND key = ? AND day = ? \
                 AND event_time >= ? AND event_time < ?"
            ),
        )
        .await?;
        // The days of the first and last instant of [from, to); an empty
        // range has none (the scan then ends at once).
        let days = (day(from).0, day(to.saturating_sub(1)).0);
        Ok(Plan {
            session,
            keyspace: scan.keyspace,
            tenant: scan.tenant,
            from,
            to,
            days,
            columns,
            rules,
            delimiter: scan.delimiter,
            parallelism: scan.parallelism.max(1),
            list_partitions,
            read_partition,
            counters: Arc::new(Counters::default()),
            progress,
        })
    }

    /// The rules a listed partition's rows must pass, or `None` when the
    /// partition is not to be read (another tenant, a day outside the
    /// range, a key the scope excludes).
    pub(super) fn keep(
        &self,
        tenant: &str,
        key: &BTreeMap<String, String>,
        day: CqlDate,
    ) -> Option<Vec<usize>> {
        if tenant != self.tenant || day.0 < self.days.0 || day.0 > self.days.1 {
            return None;
        }
        let mut row_rules = Vec::new();
        for (i, rule) in self.rules.iter().enumerate() {
            let column = &self.columns[rule.column];
            match key.get(&column.name) {
                Some(text) if rule.wanted.matches_text(column, text) => {}
                Some(_) => return None,
                None => row_rules.push(i),
            }
        }
        Some(row_rules)
    }

    /// What a failure message names: the scan and where it failed.
    pub(super) fn context(&self, what: &str) -> String {
        format!(
            "scanning the stored events of tenant `{}` in {}.events ({what})",
            self.tenant, self.keyspace
        )
    }
}

/// A partition for messages: its key and UTC day.
pub(super) fn describe(part: &Partition) -> String {
    let days = i64::from(part.day.0) - (1i64 << 31);
    let date = chrono::DateTime::from_timestamp(days * 86_400, 0)
        .map_or_else(|| days.to_string(), |d| d.format("%Y-%m-%d").to_string());
    let key: Vec<String> = part.key.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("partition {} of {date}", key.join(","))
}
