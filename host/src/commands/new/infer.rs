//! What `sluice new --sample` learns from a CSV file: the columns' names
//! and types, the event-time column and its format, a window that suits
//! the sample's time span, and the rows the generated test uses.

use anyhow::{bail, Context};
use sluice_host::manifest::time_format::TimestampFormat;

use super::{BTS_EXPECTED, BTS_SAMPLE, TEST_ROWS};

/// What the generated crate is made of, from a sample or the BTS default.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Plan {
    pub(super) columns: Vec<Col>,
    pub(super) header: bool,
    pub(super) key: Vec<String>,
    pub(super) event_time: String,
    /// The column `stats` and `over_limit` read.
    pub(super) value: String,
    pub(super) value_is_int: bool,
    /// The `limit` param: a value of the sample that some rows exceed.
    pub(super) limit: String,
    /// Tumbling window size (a manifest duration).
    pub(super) window: String,
    pub(super) sample: String,
    /// Expected output over `sample` (`{{name}}` for the tenant), when known.
    pub(super) expected: Option<&'static str>,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Col {
    pub(super) name: String,
    pub(super) ty: Ty,
    pub(super) optional: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Ty {
    Text,
    Int,
    Float,
    Bool,
    Timestamp(&'static str),
}

impl Ty {
    pub(super) fn manifest(&self) -> &'static str {
        match self {
            Ty::Text => "text",
            Ty::Int => "int",
            Ty::Float => "float",
            Ty::Bool => "bool",
            Ty::Timestamp(_) => "timestamp",
        }
    }
}

/// Timestamp formats a sample column is tried against, most specific
/// first; each is one `sluice_guest::testing` also reads, so the generated
/// native test can use the sample's rows as they are.
pub(super) const TIME_FORMATS: &[&str] = &[
    "%Y-%m-%d %H:%M:%S UTC",
    "%Y-%m-%d %H:%M:%S%.3f UTC",
    "%Y-%m-%dT%H:%M:%SZ",
    "%Y-%m-%dT%H:%M:%S%.3fZ",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d %H:%M:%S%.3f",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%dT%H:%M:%S%.3f",
];

/// Window sizes to choose from (a nice one about a fifth of the sample's
/// time span, so the sample fires a few windows).
pub(super) const WINDOWS: &[(&str, i64)] = &[
    ("1s", 1_000),
    ("5s", 5_000),
    ("10s", 10_000),
    ("30s", 30_000),
    ("1m", 60_000),
    ("5m", 300_000),
    ("10m", 600_000),
    ("30m", 1_800_000),
    ("1h", 3_600_000),
    ("6h", 21_600_000),
    ("1d", 86_400_000),
    ("7d", 604_800_000),
];

impl Plan {
    pub(super) fn bts() -> Plan {
        let col = |name: &str, ty: Ty, optional: bool| Col {
            name: name.to_owned(),
            ty,
            optional,
        };
        Plan {
            columns: vec![
                col("station_id", Ty::Text, false),
                col("datapoint_id", Ty::Text, false),
                col("alarm_id", Ty::Text, false),
                col("event_time", Ty::Timestamp("%Y-%m-%d %H:%M:%S UTC"), false),
                col("value", Ty::Float, false),
                col("valueThreshold", Ty::Float, false),
                col("isActive", Ty::Bool, false),
                col("storedtime", Ty::Text, true),
            ],
            header: true,
            key: vec![
                "station_id".into(),
                "datapoint_id".into(),
                "alarm_id".into(),
            ],
            event_time: "event_time".into(),
            value: "value".into(),
            value_is_int: false,
            limit: "240".into(),
            window: "1m".into(),
            sample: BTS_SAMPLE.to_owned(),
            expected: Some(BTS_EXPECTED),
        }
    }
}

/// Infers a plan from a CSV sample (`,`-separated).
pub(super) fn infer(text: &str) -> anyhow::Result<Plan> {
    let records: Vec<Vec<String>> = records(text)?
        .into_iter()
        .map(|(_, fields)| fields)
        .filter(|fields| !fields.iter().all(String::is_empty))
        .collect();
    let Some(first) = records.first() else {
        bail!("the sample has no rows");
    };
    let width = first.len();
    if let Some((n, bad)) = records.iter().enumerate().find(|(_, r)| r.len() != width) {
        bail!(
            "row {} has {} fields, the first has {width}: the sample must be one table",
            n + 1,
            bad.len()
        );
    }
    // A header: the first row reads as names (no value parses as a number,
    // bool or time), and the rows after it are not all text too.
    let body_types = |rows: &[Vec<String>]| -> Vec<Ty> {
        (0..width)
            .map(|i| column_type(rows.iter().map(|r| r[i].as_str())))
            .collect()
    };
    let header = records.len() > 1
        && first
            .iter()
            .all(|v| !v.is_empty() && column_type(std::iter::once(v.as_str())) == Ty::Text)
        && body_types(&records[1..]).iter().any(|t| *t != Ty::Text);
    let (names, rows): (Vec<String>, &[Vec<String>]) = if header {
        (first.clone(), &records[1..])
    } else {
        ((1..=width).map(|i| format!("col{i}")).collect(), &records)
    };
    for (i, name) in names.iter().enumerate() {
        if names[..i].contains(name) {
            bail!("the header names column `{name}` twice");
        }
    }
    let types = body_types(rows);
    let columns: Vec<Col> = names
        .iter()
        .zip(&types)
        .enumerate()
        .map(|(i, (name, ty))| Col {
            name: name.clone(),
            ty: ty.clone(),
            optional: rows.iter().any(|r| r[i].is_empty()),
        })
        .collect();
    let time_index = columns
        .iter()
        .position(|c| matches!(c.ty, Ty::Timestamp(_)) && !c.optional)
        .context(
            "no column reads as a timestamp in every row (e.g. `2017-02-18 18:28:05 UTC` or \
             `2017-02-18T18:28:05Z`): the event time needs one",
        )?;
    let value_index = columns
        .iter()
        .position(|c| c.ty == Ty::Float && !c.optional)
        .or_else(|| columns.iter().rposition(|c| c.ty == Ty::Int && !c.optional))
        .context("no required numeric column for the generated functions to measure")?;
    let mut key: Vec<String> = columns
        .iter()
        .filter(|c| c.ty == Ty::Text && !c.optional)
        .take(3)
        .map(|c| c.name.clone())
        .collect();
    if key.is_empty() {
        let int = columns
            .iter()
            .enumerate()
            .find(|(i, c)| c.ty == Ty::Int && !c.optional && *i != value_index)
            .context("no required text or int column to key the rows by")?;
        key.push(int.1.name.clone());
    }
    // Times and values of the rows, for the window size and the limit.
    let Ty::Timestamp(format) = &columns[time_index].ty else {
        bail!("the event-time column is not a timestamp");
    };
    let format = TimestampFormat::new(format).map_err(anyhow::Error::msg)?;
    let times: Vec<i64> = rows
        .iter()
        .filter_map(|r| format.parse(r[time_index].as_bytes()))
        .collect();
    let span = times.iter().max().copied().unwrap_or(0) - times.iter().min().copied().unwrap_or(0);
    let window = WINDOWS
        .iter()
        .find(|(_, ms)| *ms * 5 >= span)
        .or(WINDOWS.last())
        .map_or("1m", |(name, _)| name);
    let mut values: Vec<(f64, &str)> = rows
        .iter()
        .filter_map(|r| {
            let v = r[value_index].as_str();
            v.parse::<f64>().ok().map(|f| (f, v))
        })
        .collect();
    values.sort_by(|a, b| a.0.total_cmp(&b.0));
    // About the 80th percentile, below the maximum: a few rows go above
    // it, so the sample raises an alert.
    let mut at = (values.len() * 4 / 5).min(values.len().saturating_sub(1));
    while at > 0 && values.last().is_some_and(|max| values[at].0 >= max.0) {
        at -= 1;
    }
    let limit = values.get(at).map_or("0", |(_, text)| text).to_owned();
    Ok(Plan {
        value: columns[value_index].name.clone(),
        value_is_int: columns[value_index].ty == Ty::Int,
        event_time: columns[time_index].name.clone(),
        columns,
        header,
        key,
        limit,
        window: window.to_owned(),
        sample: text.to_owned(),
        expected: None,
    })
}

/// The type every value of a column fits; empty values do not count (they
/// make the column optional). No values at all: text.
pub(super) fn column_type<'a>(values: impl Iterator<Item = &'a str> + Clone) -> Ty {
    let present = || values.clone().filter(|v| !v.is_empty());
    if present().next().is_none() {
        return Ty::Text;
    }
    if present().all(|v| v.parse::<i64>().is_ok()) {
        return Ty::Int;
    }
    if present().all(|v| v.parse::<f64>().is_ok_and(f64::is_finite)) {
        return Ty::Float;
    }
    if present().all(|v| v.eq_ignore_ascii_case("true") || v.eq_ignore_ascii_case("false")) {
        return Ty::Bool;
    }
    for &candidate in TIME_FORMATS {
        let Ok(format) = TimestampFormat::new(candidate) else {
            continue;
        };
        if present().all(|v| format.parse(v.as_bytes()).is_some()) {
            return Ty::Timestamp(candidate);
        }
    }
    Ty::Text
}

/// The first few data rows of the sample that every column reads (the
/// generated test embeds them), and their values of the measured column.
pub(super) fn test_rows(plan: &Plan) -> anyhow::Result<(String, Vec<f64>)> {
    let value = plan
        .columns
        .iter()
        .position(|c| c.name == plan.value)
        .context("the value column is not in the schema")?;
    let mut rows = String::new();
    let mut values = Vec::new();
    let skip = usize::from(plan.header);
    for (line, record) in records(&plan.sample)?.into_iter().skip(skip) {
        if record.len() > plan.columns.len() || !row_reads(plan, &record) {
            continue;
        }
        let Some(v) = record.get(value).and_then(|v| v.parse::<f64>().ok()) else {
            continue;
        };
        rows.push_str(line.trim());
        rows.push('\n');
        values.push(v);
        if values.len() == TEST_ROWS {
            break;
        }
    }
    if values.is_empty() {
        bail!("no row of the sample reads as its schema");
    }
    Ok((rows, values))
}

/// Whether every field of `record` reads as its column's type.
pub(super) fn row_reads(plan: &Plan, record: &[String]) -> bool {
    plan.columns.iter().enumerate().all(|(i, c)| {
        let v = record.get(i).map_or("", String::as_str);
        if v.is_empty() {
            return c.optional;
        }
        match &c.ty {
            Ty::Text => true,
            Ty::Int => v.parse::<i64>().is_ok(),
            Ty::Float => v.parse::<f64>().is_ok_and(f64::is_finite),
            Ty::Bool => v.eq_ignore_ascii_case("true") || v.eq_ignore_ascii_case("false"),
            Ty::Timestamp(f) => {
                TimestampFormat::new(f).is_ok_and(|f| f.parse(v.as_bytes()).is_some())
            }
        }
    })
}

/// The sample's non-blank lines, each with its fields: one record per
/// line as the host reads them (`,`-separated, `"`-quoted with `""` for a
/// quote, no line break inside a record).
pub(super) fn records(text: &str) -> anyhow::Result<Vec<(&str, Vec<String>)>> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(n, line)| {
            let fields = split_record(line)
                .with_context(|| format!("line {} of the sample is not CSV", n + 1))?;
            Ok((line, fields))
        })
        .collect()
}

/// Splits one CSV line into its fields.
pub(super) fn split_record(line: &str) -> anyhow::Result<Vec<String>> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = line.chars().peekable();
    let (mut quoted, mut at_start) = (false, true);
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
        bail!("unterminated quote");
    }
    fields.push(field);
    Ok(fields)
}
