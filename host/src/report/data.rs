//! What a chart draws, computed from a job's results: the numbers are
//! gathered and checked here, apart from drawing, so the tables print the
//! same numbers the charts draw and tests can check them without SVG.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::ops::{Add, AddAssign};

use chrono::{DateTime, Timelike, Utc};

use crate::batch::{BatchResult, ChartKind, ChartSpec};
use crate::data::Value;

use super::Error;

/// Bars drawn at most; more keys are summarised in a note.
pub const MAX_BARS: usize = 30;
/// Lines of a series chart at most (the keys with the largest totals).
pub const MAX_SERIES_KEYS: usize = 8;
/// Small charts of a histogram or profile at most (the largest counts).
pub const MAX_PANELS: usize = 6;
/// Prefix of a histogram's bin fields: `bin:<lower edge>`.
pub const BIN_PREFIX: &str = "bin:";
/// The histogram field naming its bins' width.
pub const BIN_WIDTH: &str = "bin_width";

/// A number as the module returned it. Sums stay exact integers while every
/// term is one, so a count in a table is the count, not `1.2e7`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Amount {
    Int(i128),
    Float(f64),
}

impl Amount {
    pub const ZERO: Amount = Amount::Int(0);

    pub fn as_f64(self) -> f64 {
        match self {
            Amount::Int(i) => i as f64,
            Amount::Float(f) => f,
        }
    }

    /// Descending by value: the order of bars, lines and panels.
    fn cmp_desc(&self, other: &Amount) -> Ordering {
        other.as_f64().total_cmp(&self.as_f64())
    }
}

/// A float (or an overflow) makes the sum a float.
impl Add for Amount {
    type Output = Amount;

    fn add(self, other: Amount) -> Amount {
        match (self, other) {
            (Amount::Int(a), Amount::Int(b)) => match a.checked_add(b) {
                Some(sum) => Amount::Int(sum),
                None => Amount::Float(a as f64 + b as f64),
            },
            (a, b) => Amount::Float(a.as_f64() + b.as_f64()),
        }
    }
}

impl AddAssign for Amount {
    fn add_assign(&mut self, other: Amount) {
        *self = *self + other;
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Amount::Int(i) => write!(f, "{i}"),
            Amount::Float(x) => f.write_str(&format_float(x)),
        }
    }
}

/// A float for people: whole numbers without a fraction, others with at
/// most four decimals (trailing zeros trimmed), very large or small ones in
/// scientific notation.
pub fn format_float(x: f64) -> String {
    let abs = x.abs();
    if !x.is_finite() {
        return x.to_string();
    }
    if abs >= 1e15 || (abs != 0.0 && abs < 1e-3) {
        return format!("{x:.4e}");
    }
    if x.fract() == 0.0 {
        return format!("{x:.0}");
    }
    let s = format!("{x:.4}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// A key's label: its values joined with " / "; a tenant-level result (no
/// key columns) is "(all)".
pub fn key_label(key: &[String]) -> String {
    if key.is_empty() {
        "(all)".to_owned()
    } else {
        key.join(" / ")
    }
}

/// The header of a key column: the key's column names joined like its
/// values.
pub fn key_header(results: &[&BatchResult]) -> String {
    match results.first() {
        Some(r) if !r.key_names.is_empty() => r.key_names.join(" / "),
        _ => "key".to_owned(),
    }
}

/// Which chart a problem is in, for errors.
#[derive(Debug, Clone, Copy)]
pub struct Ctx<'a> {
    pub job: &'a str,
    pub chart: &'a str,
}

impl Ctx<'_> {
    fn not_numeric(&self, field: &str, key: &str, value: &Value) -> Error {
        Error::NotNumeric {
            job: self.job.to_owned(),
            chart: self.chart.to_owned(),
            field: field.to_owned(),
            key: key.to_owned(),
            found: match value {
                Value::Text(_) => "text",
                Value::Boolean(_) => "a boolean",
                Value::Int(_) | Value::Float(_) => "a number",
            },
        }
    }
}

/// One field of one result, read as a number.
enum Reading {
    Absent,
    /// NaN or ±∞: left out (and counted), since it has no place on an axis.
    NonFinite,
    Number(Amount),
}

fn read(ctx: Ctx<'_>, r: &BatchResult, name: &str) -> Result<Reading, Error> {
    match r.fields.iter().find(|f| f.name == name) {
        None => Ok(Reading::Absent),
        Some(field) => number(ctx, r, name, &field.value),
    }
}

fn number(ctx: Ctx<'_>, r: &BatchResult, name: &str, value: &Value) -> Result<Reading, Error> {
    match *value {
        Value::Int(i) => Ok(Reading::Number(Amount::Int(i128::from(i)))),
        Value::Float(f) if f.is_finite() => Ok(Reading::Number(Amount::Float(f))),
        Value::Float(_) => Ok(Reading::NonFinite),
        Value::Text(_) | Value::Boolean(_) => Err(ctx.not_numeric(name, &key_label(&r.key), value)),
    }
}

/// The results a chart draws: those of its window.
pub fn chart_results<'a>(spec: &ChartSpec, results: &'a [BatchResult]) -> Vec<&'a BatchResult> {
    results
        .iter()
        .filter(|r| r.window.name == spec.window)
        .collect()
}

/// One bar: a key's `field` summed over its windows.
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    pub label: String,
    pub value: Amount,
    /// Windows of the key that had the field.
    pub windows: usize,
}

/// A bars chart: the largest first; the first is highlighted.
#[derive(Debug, Clone, PartialEq)]
pub struct BarsData {
    pub bars: Vec<Bar>,
    /// Keys beyond [`MAX_BARS`], and their sum.
    pub omitted: usize,
    pub omitted_sum: Amount,
    /// Non-finite values left out.
    pub skipped: usize,
}

pub fn bars(ctx: Ctx<'_>, field: &str, results: &[&BatchResult]) -> Result<BarsData, Error> {
    let mut by_key: BTreeMap<&[String], (Amount, usize)> = BTreeMap::new();
    let mut skipped = 0;
    for r in results {
        match read(ctx, r, field)? {
            Reading::Absent => {}
            Reading::NonFinite => skipped += 1,
            Reading::Number(v) => {
                let entry = by_key.entry(&r.key).or_insert((Amount::ZERO, 0));
                entry.0 += v;
                entry.1 += 1;
            }
        }
    }
    let mut bars: Vec<Bar> = by_key
        .into_iter()
        .map(|(key, (value, windows))| Bar {
            label: key_label(key),
            value,
            windows,
        })
        .collect();
    // Ties keep the keys' order, so the same data draws the same chart.
    bars.sort_by(|a, b| a.value.cmp_desc(&b.value));
    let rest = bars.split_off(bars.len().min(MAX_BARS));
    Ok(BarsData {
        bars,
        omitted: rest.len(),
        omitted_sum: rest.iter().fold(Amount::ZERO, |s, b| s + b.value),
        skipped,
    })
}

/// One line of a series chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub label: String,
    pub total: Amount,
    /// By window start; a key's results of the same start are summed.
    pub points: Vec<(DateTime<Utc>, Amount)>,
}

/// A series chart: the keys with the largest totals first.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesData {
    pub lines: Vec<Line>,
    /// Every window start of the drawn lines, ascending.
    pub starts: Vec<DateTime<Utc>>,
    /// Every start is at 00:00 UTC: the axis shows dates only.
    pub whole_days: bool,
    /// Keys beyond [`MAX_SERIES_KEYS`].
    pub omitted: usize,
    pub skipped: usize,
}

/// A window start as a date-time; out of chrono's range is an error, not
/// a silently wrong axis.
fn instant(ctx: Ctx<'_>, ms: i64) -> Result<DateTime<Utc>, Error> {
    DateTime::from_timestamp_millis(ms).ok_or_else(|| Error::TimeOutOfRange {
        job: ctx.job.to_owned(),
        ms,
    })
}

pub fn series(ctx: Ctx<'_>, field: &str, results: &[&BatchResult]) -> Result<SeriesData, Error> {
    let mut by_key: BTreeMap<&[String], BTreeMap<i64, Amount>> = BTreeMap::new();
    let mut skipped = 0;
    for r in results {
        match read(ctx, r, field)? {
            Reading::Absent => {}
            Reading::NonFinite => skipped += 1,
            Reading::Number(v) => {
                let point = by_key
                    .entry(&r.key)
                    .or_default()
                    .entry(r.window.start)
                    .or_insert(Amount::ZERO);
                *point += v;
            }
        }
    }
    let mut lines = Vec::with_capacity(by_key.len());
    for (key, points) in by_key {
        let mut total = Amount::ZERO;
        let mut drawn = Vec::with_capacity(points.len());
        for (start, v) in points {
            total += v;
            drawn.push((instant(ctx, start)?, v));
        }
        lines.push(Line {
            label: key_label(key),
            total,
            points: drawn,
        });
    }
    lines.sort_by(|a, b| a.total.cmp_desc(&b.total));
    let omitted = lines.len().saturating_sub(MAX_SERIES_KEYS);
    lines.truncate(MAX_SERIES_KEYS);
    let mut starts: Vec<DateTime<Utc>> = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.0))
        .collect();
    starts.sort();
    starts.dedup();
    let whole_days = starts
        .iter()
        .all(|t| t.num_seconds_from_midnight() == 0 && t.timestamp_subsec_nanos() == 0);
    Ok(SeriesData {
        lines,
        starts,
        whole_days,
        omitted,
        skipped,
    })
}

/// One bin of a histogram.
#[derive(Debug, Clone, PartialEq)]
pub struct Bin {
    pub lower: f64,
    /// The lower edge as the field name spells it (`bin:22.5` → `22.5`).
    pub edge: String,
    pub count: Amount,
}

/// One key's histogram.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramPanel {
    pub label: String,
    pub width: f64,
    /// Ascending by lower edge.
    pub bins: Vec<Bin>,
    pub total: Amount,
}

/// A histogram chart: a panel per key, the largest counts first.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramData {
    pub panels: Vec<HistogramPanel>,
    /// Keys beyond [`MAX_PANELS`].
    pub omitted: usize,
    pub skipped: usize,
}

/// A key's bins and width while its windows are read.
#[derive(Default)]
struct BinsAcc {
    width: Option<f64>,
    bins: Vec<Bin>,
}

pub fn histogram(ctx: Ctx<'_>, results: &[&BatchResult]) -> Result<HistogramData, Error> {
    let mut by_key: BTreeMap<&[String], BinsAcc> = BTreeMap::new();
    let mut skipped = 0;
    for r in results {
        let label = || key_label(&r.key);
        let acc = by_key.entry(&r.key).or_default();
        for field in &r.fields {
            if field.name == BIN_WIDTH {
                let width = match number(ctx, r, BIN_WIDTH, &field.value)? {
                    Reading::Number(w) if w.as_f64() > 0.0 => w.as_f64(),
                    _ => return Err(bad_width(ctx, label(), "is not a positive number")),
                };
                // Bins of different widths would be summed as if alike.
                match acc.width {
                    Some(seen) if seen != width => {
                        return Err(bad_width(
                            ctx,
                            label(),
                            &format!("differs between windows ({seen} and {width})"),
                        ))
                    }
                    _ => acc.width = Some(width),
                }
                continue;
            }
            let Some(edge) = field.name.strip_prefix(BIN_PREFIX) else {
                continue;
            };
            let lower = match edge.trim().parse::<f64>() {
                Ok(lower) if lower.is_finite() => lower,
                _ => {
                    return Err(Error::BadBin {
                        job: ctx.job.to_owned(),
                        chart: ctx.chart.to_owned(),
                        field: field.name.clone(),
                        key: label(),
                    })
                }
            };
            match number(ctx, r, &field.name, &field.value)? {
                Reading::Absent => {}
                Reading::NonFinite => skipped += 1,
                Reading::Number(count) => acc.bins.push(Bin {
                    lower,
                    edge: edge.to_owned(),
                    count,
                }),
            }
        }
    }
    let mut panels = Vec::new();
    for (key, acc) in by_key {
        if acc.bins.is_empty() {
            continue;
        }
        let Some(width) = acc.width else {
            return Err(bad_width(ctx, key_label(key), "is missing"));
        };
        let mut bins = acc.bins;
        // Stable: of equal edges, the first spelling seen names the bin.
        bins.sort_by(|a, b| a.lower.total_cmp(&b.lower));
        let mut merged: Vec<Bin> = Vec::with_capacity(bins.len());
        for bin in bins {
            match merged.last_mut() {
                Some(last) if last.lower == bin.lower => last.count += bin.count,
                _ => merged.push(bin),
            }
        }
        let total = merged.iter().fold(Amount::ZERO, |s, b| s + b.count);
        panels.push(HistogramPanel {
            label: key_label(key),
            width,
            bins: merged,
            total,
        });
    }
    panels.sort_by(|a, b| a.total.cmp_desc(&b.total));
    let omitted = panels.len().saturating_sub(MAX_PANELS);
    panels.truncate(MAX_PANELS);
    Ok(HistogramData {
        panels,
        omitted,
        skipped,
    })
}

fn bad_width(ctx: Ctx<'_>, key: String, detail: &str) -> Error {
    Error::BadBinWidth {
        job: ctx.job.to_owned(),
        chart: ctx.chart.to_owned(),
        key,
        detail: detail.to_owned(),
    }
}

/// One key's hour-of-day profile.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfilePanel {
    pub label: String,
    /// `h00`…`h23` summed over the key's windows.
    pub hours: [Amount; 24],
    pub total: Amount,
    /// The first hour with the largest count, if above 0: highlighted.
    pub peak: Option<usize>,
}

/// A profile chart: a panel per key, the largest totals first.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileData {
    pub panels: Vec<ProfilePanel>,
    /// Keys beyond [`MAX_PANELS`].
    pub omitted: usize,
    pub skipped: usize,
}

/// `h00`…`h23`.
pub fn hour_field(hour: usize) -> String {
    format!("h{hour:02}")
}

pub fn profile(ctx: Ctx<'_>, results: &[&BatchResult]) -> Result<ProfileData, Error> {
    let names: Vec<String> = (0..24).map(hour_field).collect();
    // A key is drawn once any of its windows has an hour field.
    let mut by_key: BTreeMap<&[String], [Amount; 24]> = BTreeMap::new();
    let mut skipped = 0;
    for r in results {
        for (hour, name) in names.iter().enumerate() {
            match read(ctx, r, name)? {
                Reading::Absent => {}
                Reading::NonFinite => skipped += 1,
                Reading::Number(v) => {
                    let hours = by_key.entry(&r.key).or_insert([Amount::ZERO; 24]);
                    hours[hour] += v;
                }
            }
        }
    }
    let mut panels: Vec<ProfilePanel> = by_key
        .into_iter()
        .map(|(key, hours)| {
            let total = hours.iter().fold(Amount::ZERO, |s, h| s + *h);
            let mut peak = 0;
            for (hour, v) in hours.iter().enumerate() {
                if v.as_f64() > hours[peak].as_f64() {
                    peak = hour;
                }
            }
            ProfilePanel {
                label: key_label(key),
                hours,
                total,
                peak: (hours[peak].as_f64() > 0.0).then_some(peak),
            }
        })
        .collect();
    panels.sort_by(|a, b| a.total.cmp_desc(&b.total));
    let omitted = panels.len().saturating_sub(MAX_PANELS);
    panels.truncate(MAX_PANELS);
    Ok(ProfileData {
        panels,
        omitted,
        skipped,
    })
}

/// A chart's data, by kind.
#[derive(Debug, Clone, PartialEq)]
pub enum ChartData {
    Bars(BarsData),
    Series(SeriesData),
    Histogram(HistogramData),
    Profile(ProfileData),
}

impl ChartData {
    /// Nothing to draw: the report says so instead of drawing a frame.
    pub fn is_empty(&self) -> bool {
        match self {
            ChartData::Bars(d) => d.bars.is_empty(),
            ChartData::Series(d) => d.lines.is_empty(),
            ChartData::Histogram(d) => d.panels.is_empty(),
            ChartData::Profile(d) => d.panels.is_empty(),
        }
    }

    /// Non-finite values left out.
    pub fn skipped(&self) -> usize {
        match self {
            ChartData::Bars(d) => d.skipped,
            ChartData::Series(d) => d.skipped,
            ChartData::Histogram(d) => d.skipped,
            ChartData::Profile(d) => d.skipped,
        }
    }
}

/// The data of `spec` from `results` (those of its window).
pub fn chart_data(
    ctx: Ctx<'_>,
    spec: &ChartSpec,
    results: &[&BatchResult],
) -> Result<ChartData, Error> {
    let field = || {
        spec.field.as_deref().ok_or_else(|| Error::MissingField {
            job: ctx.job.to_owned(),
            chart: ctx.chart.to_owned(),
            kind: kind_name(spec.kind),
        })
    };
    Ok(match spec.kind {
        ChartKind::Bars => ChartData::Bars(bars(ctx, field()?, results)?),
        ChartKind::Series => ChartData::Series(series(ctx, field()?, results)?),
        ChartKind::Histogram => ChartData::Histogram(histogram(ctx, results)?),
        ChartKind::Profile => ChartData::Profile(profile(ctx, results)?),
    })
}

/// The manifest's name of a chart kind.
pub fn kind_name(kind: ChartKind) -> &'static str {
    match kind {
        ChartKind::Bars => "bars",
        ChartKind::Series => "series",
        ChartKind::Histogram => "histogram",
        ChartKind::Profile => "profile",
    }
}
