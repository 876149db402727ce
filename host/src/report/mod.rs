//! The HTML report of batch jobs (`sluice batch … --report out.html`): one
//! self-contained file — inline CSS and SVG, no script, no external
//! resource — so it can be mailed, archived or opened offline as it is.
//!
//! Per job and per chart (`[[batch.charts]]`, see [`ChartKind`]) a section
//! with the chart's title, the job's name and range, the chart drawn with
//! plotters ([`draw`]) and a table of the exact numbers it draws, so the
//! report is useful without the picture (and readable by a screen reader).
//! A chart without data says so instead of drawing an empty frame.
//!
//! Every text that comes from data (tenant, job, key values, titles, field
//! names) is HTML-escaped here; plotters escapes what it writes into SVG.
//! Each chart's SVG root carries `id="chart-<job>-<n>"` and
//! `data-chart="<job>/<n>"` (n = the chart's index in its job) so tests and
//! readers can find it, and its colours follow [`colours`], by the chart's
//! position in the report.

pub mod colours;
pub mod data;
pub mod draw;

#[cfg(test)]
mod tests;

use chrono::{DateTime, Timelike, Utc};

use crate::batch::{ChartKind, ChartSpec, JobRange, ReportJob};

use data::{Amount, ChartData, Ctx};

/// Why a report could not be rendered: the results do not fit what a chart
/// reads (the module and the manifest disagree), or drawing failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("job {job:?}, chart {chart:?}: a {kind} chart needs a `field` to draw")]
    MissingField {
        job: String,
        chart: String,
        kind: &'static str,
    },
    #[error(
        "job {job:?}, chart {chart:?}: field {field:?} of key {key:?} is {found}, not a number"
    )]
    NotNumeric {
        job: String,
        chart: String,
        field: String,
        key: String,
        found: &'static str,
    },
    #[error("job {job:?}, chart {chart:?}: field {field:?} of key {key:?}: the bin's lower edge is not a finite number")]
    BadBin {
        job: String,
        chart: String,
        field: String,
        key: String,
    },
    #[error("job {job:?}, chart {chart:?}: bin_width of key {key:?} {detail}")]
    BadBinWidth {
        job: String,
        chart: String,
        key: String,
        detail: String,
    },
    #[error("job {job:?}: window start {ms} ms is outside the dates a chart can show")]
    TimeOutOfRange { job: String, ms: i64 },
    #[error("job {job:?}, chart {chart:?}: drawing failed: {source}")]
    Draw {
        job: String,
        chart: String,
        #[source]
        source: draw::DrawError,
    },
    #[error("job {job:?}, chart {chart:?}: the SVG backend wrote no <svg> root")]
    NoSvgRoot { job: String, chart: String },
}

/// The report of `tenant`'s `jobs`, as one HTML document.
pub fn render(tenant: &str, jobs: &[ReportJob]) -> Result<String, Error> {
    let mut html = String::with_capacity(64 * 1024);
    html.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    html.push_str(&format!(
        "<title>sluice batch report: {}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        escape(tenant)
    ));
    html.push_str(&format!(
        "<h1>Batch report: {}</h1>\n<p class=\"meta\">{} {}; times and dates in UTC.</p>\n",
        escape(tenant),
        jobs.len(),
        if jobs.len() == 1 { "job" } else { "jobs" },
    ));
    let mut ordinal = 0;
    for job in jobs {
        html.push_str(&format!(
            "<section class=\"job\">\n<h2>Job {}</h2>\n<p class=\"meta\">{} · {} results</p>\n",
            escape(&job.name),
            escape(&format_range(job.range)),
            job.results.len(),
        ));
        if job.charts.is_empty() {
            html.push_str("<p class=\"empty\">This job has no charts.</p>\n");
        }
        for (index, spec) in job.charts.iter().enumerate() {
            chart_section(&mut html, job, index, spec, ordinal)?;
            ordinal += 1;
        }
        html.push_str("</section>\n");
    }
    html.push_str("</body>\n</html>\n");
    Ok(html)
}

/// The section of one chart: heading, where its numbers come from, the
/// chart (or why there is none), the table and notes.
fn chart_section(
    html: &mut String,
    job: &ReportJob,
    index: usize,
    spec: &ChartSpec,
    ordinal: usize,
) -> Result<(), Error> {
    let title = chart_title(spec);
    let ctx = Ctx {
        job: &job.name,
        chart: &title,
    };
    let results = data::chart_results(spec, &job.results);
    let chart = data::chart_data(ctx, spec, &results)?;
    let kind = data::kind_name(spec.kind);
    let key_desc = data::key_header(&results);
    let value_desc = value_desc(spec);

    html.push_str(&format!(
        "<section class=\"chart\" data-kind=\"{kind}\">\n<h3>{}</h3>\n<p class=\"meta\">job <b>{}</b> · {} · window <code>{}</code> · {kind}{}</p>\n",
        escape(&title),
        escape(&job.name),
        escape(&format_range(job.range)),
        escape(&spec.window),
        match (&spec.field, spec.kind) {
            (Some(field), ChartKind::Bars | ChartKind::Series) =>
                format!(" of <code>{}</code>", escape(field)),
            _ => String::new(),
        },
    ));
    if chart.is_empty() {
        html.push_str(&format!(
            "<p class=\"empty\">No data: {}.</p>\n</section>\n",
            escape(&empty_reason(spec, results.len()))
        ));
        return Ok(());
    }

    let frame = draw::Frame {
        title: &title,
        value_desc: &value_desc,
        key_desc: &key_desc,
        unit: &spec.unit,
        ordinal,
    };
    let drawn = match &chart {
        ChartData::Bars(d) => draw::bars(d, &frame),
        ChartData::Series(d) => draw::series(d, &frame),
        ChartData::Histogram(d) => draw::histogram(d, &frame),
        ChartData::Profile(d) => draw::profile(d, &frame),
    }
    .map_err(|source| Error::Draw {
        job: job.name.clone(),
        chart: title.clone(),
        source,
    })?;
    // The root's own attributes name the chart, so it can be found in the
    // page without relying on the order of sections.
    let Some(rest) = drawn.strip_prefix("<svg ") else {
        return Err(Error::NoSvgRoot {
            job: job.name.clone(),
            chart: title,
        });
    };
    html.push_str(&format!(
        "<figure>\n<svg id=\"{}\" data-chart=\"{}\" role=\"img\" aria-label=\"{}\" {rest}</figure>\n",
        chart_id(&job.name, index),
        escape(&format!("{}/{index}", job.name)),
        escape(&title),
    ));
    html.push_str("<div class=\"numbers\">\n");
    html.push_str(&table(&chart, &key_desc, &value_desc, spec));
    html.push_str("</div>\n");
    for note in notes(&chart) {
        html.push_str(&format!("<p class=\"note\">{}</p>\n", escape(&note)));
    }
    html.push_str("</section>\n");
    Ok(())
}

/// The SVG root's `id`: the job name reduced to characters safe in an id
/// and a CSS selector, and the chart's index in the job.
pub fn chart_id(job: &str, index: usize) -> String {
    let slug: String = job
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("chart-{slug}-{index}")
}

/// The title a chart shows: the manifest's, else what it draws.
fn chart_title(spec: &ChartSpec) -> String {
    if !spec.title.trim().is_empty() {
        return spec.title.clone();
    }
    let kind = data::kind_name(spec.kind);
    match (&spec.field, spec.kind) {
        (Some(field), ChartKind::Bars | ChartKind::Series) => {
            format!("{field} per key ({kind}, window {})", spec.window)
        }
        _ => format!("{kind} (window {})", spec.window),
    }
}

/// The drawn value's axis description: the field with its unit.
fn value_desc(spec: &ChartSpec) -> String {
    let name = match spec.kind {
        ChartKind::Bars | ChartKind::Series => spec.field.as_deref().unwrap_or("value"),
        ChartKind::Histogram | ChartKind::Profile => "count",
    };
    if spec.unit.is_empty() {
        name.to_owned()
    } else {
        format!("{name} ({})", spec.unit)
    }
}

/// What the chart looked for and did not find, in plain words.
fn empty_reason(spec: &ChartSpec, results: usize) -> String {
    let what = match spec.kind {
        ChartKind::Bars | ChartKind::Series => format!(
            "the field \"{}\"",
            spec.field.as_deref().unwrap_or_default()
        ),
        ChartKind::Histogram => format!("\"{}<lower edge>\" fields", data::BIN_PREFIX),
        ChartKind::Profile => "hour fields h00…h23".to_owned(),
    };
    if results == 0 {
        format!("the job produced no results for window \"{}\"", spec.window)
    } else {
        format!(
            "none of the {results} results of window \"{}\" has {what}",
            spec.window
        )
    }
}

/// What a table does not show: keys beyond the chart's limit, values that
/// could not be drawn.
fn notes(chart: &ChartData) -> Vec<String> {
    let mut notes = Vec::new();
    let (omitted, limit) = match chart {
        ChartData::Bars(d) => (d.omitted, data::MAX_BARS),
        ChartData::Series(d) => (d.omitted, data::MAX_SERIES_KEYS),
        ChartData::Histogram(d) => (d.omitted, data::MAX_PANELS),
        ChartData::Profile(d) => (d.omitted, data::MAX_PANELS),
    };
    if omitted > 0 {
        let mut note = format!("Shows the {limit} largest keys; {omitted} more not shown");
        if let ChartData::Bars(d) = chart {
            note.push_str(&format!(" (together {})", d.omitted_sum));
        }
        note.push('.');
        notes.push(note);
    }
    let skipped = chart.skipped();
    if skipped > 0 {
        notes.push(format!(
            "{skipped} non-finite value{} (NaN or infinite) left out.",
            if skipped == 1 { "" } else { "s" }
        ));
    }
    notes
}

/// The numbers a chart draws, as an HTML table (escaped).
fn table(chart: &ChartData, key_desc: &str, value_desc: &str, spec: &ChartSpec) -> String {
    let mut t = String::from("<table>\n");
    match chart {
        ChartData::Bars(d) => {
            t.push_str(&format!(
                "<tr><th>#</th><th class=\"key\">{}</th><th>{}</th><th>windows</th></tr>\n",
                escape(key_desc),
                escape(value_desc)
            ));
            for (rank, bar) in d.bars.iter().enumerate() {
                t.push_str(&format!(
                    "<tr{}><td>{}</td><td class=\"key\">{}</td><td>{}</td><td>{}</td></tr>\n",
                    if rank == 0 { " class=\"hl\"" } else { "" },
                    rank + 1,
                    escape(&bar.label),
                    bar.value,
                    bar.windows
                ));
            }
        }
        ChartData::Series(d) => {
            t.push_str("<tr><th class=\"key\">window start</th>");
            for line in &d.lines {
                t.push_str(&format!("<th>{}</th>", escape(&line.label)));
            }
            t.push_str("</tr>\n");
            for start in &d.starts {
                t.push_str(&format!(
                    "<tr><td class=\"key\">{}</td>",
                    format_instant(*start)
                ));
                for line in &d.lines {
                    let cell = line
                        .points
                        .iter()
                        .find(|p| p.0 == *start)
                        .map_or_else(|| "–".to_owned(), |p| p.1.to_string());
                    t.push_str(&format!("<td>{cell}</td>"));
                }
                t.push_str("</tr>\n");
            }
            t.push_str("<tr class=\"total\"><td class=\"key\">total</td>");
            for line in &d.lines {
                t.push_str(&format!("<td>{}</td>", line.total));
            }
            t.push_str("</tr>\n");
        }
        ChartData::Histogram(d) => {
            let unit = if spec.unit.is_empty() {
                String::new()
            } else {
                format!(" ({})", escape(&spec.unit))
            };
            t.push_str(&format!("<tr><th class=\"key\">bin lower edge{unit}</th>"));
            for panel in &d.panels {
                t.push_str(&format!("<th>{}</th>", escape(&panel.label)));
            }
            t.push_str("</tr>\n");
            let mut edges: Vec<(f64, &str)> = d
                .panels
                .iter()
                .flat_map(|p| p.bins.iter().map(|b| (b.lower, b.edge.as_str())))
                .collect();
            edges.sort_by(|a, b| a.0.total_cmp(&b.0));
            edges.dedup_by(|a, b| a.0 == b.0);
            for (lower, edge) in edges {
                t.push_str(&format!("<tr><td class=\"key\">{}</td>", escape(edge)));
                for panel in &d.panels {
                    let count = panel
                        .bins
                        .iter()
                        .find(|b| b.lower == lower)
                        .map_or(Amount::ZERO, |b| b.count);
                    t.push_str(&format!("<td>{count}</td>"));
                }
                t.push_str("</tr>\n");
            }
            t.push_str("<tr class=\"total\"><td class=\"key\">bin width</td>");
            for panel in &d.panels {
                t.push_str(&format!("<td>{}</td>", data::format_float(panel.width)));
            }
            t.push_str("</tr>\n<tr class=\"total\"><td class=\"key\">total</td>");
            for panel in &d.panels {
                t.push_str(&format!("<td>{}</td>", panel.total));
            }
            t.push_str("</tr>\n");
        }
        ChartData::Profile(d) => {
            t.push_str(&format!("<tr><th class=\"key\">{}</th>", escape(key_desc)));
            for hour in 0..24 {
                t.push_str(&format!("<th>{hour:02}</th>"));
            }
            t.push_str("<th>total</th><th>peak hour</th></tr>\n");
            for panel in &d.panels {
                t.push_str(&format!(
                    "<tr><td class=\"key\">{}</td>",
                    escape(&panel.label)
                ));
                for (hour, v) in panel.hours.iter().enumerate() {
                    let class = if panel.peak == Some(hour) {
                        " class=\"hl\""
                    } else {
                        ""
                    };
                    t.push_str(&format!("<td{class}>{v}</td>"));
                }
                let peak = panel
                    .peak
                    .map_or_else(|| "–".to_owned(), |h| format!("{h:02}"));
                t.push_str(&format!("<td>{}</td><td>{peak}</td></tr>\n", panel.total));
            }
        }
    }
    t.push_str("</table>\n");
    t
}

/// An instant for people: the date, with the time when not midnight.
fn format_instant(t: DateTime<Utc>) -> String {
    if t.num_seconds_from_midnight() == 0 && t.timestamp_subsec_nanos() == 0 {
        t.format("%Y-%m-%d").to_string()
    } else {
        t.format("%Y-%m-%d %H:%M").to_string()
    }
}

/// A job's `[from, to)`, in UTC dates.
pub fn format_range(range: JobRange) -> String {
    let at = |ms: i64| {
        DateTime::from_timestamp_millis(ms).map_or_else(|| format!("{ms} ms"), format_instant)
    };
    format!("{} → {} UTC (end exclusive)", at(range.from), at(range.to))
}

/// `s` safe as HTML text and as a quoted attribute value.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The page's only style sheet. Tables scroll inside a bounded box, so a
/// long series does not push the next chart pages away; the highlight row
/// tint is far from every chart colour.
const STYLE: &str = "
body { font-family: sans-serif; color: #222; margin: 24px; max-width: 1140px; }
h1 { font-size: 1.6em; margin-bottom: .2em; }
h2 { border-bottom: 1px solid #ccc; padding-bottom: 4px; margin-top: 2em; }
h3 { margin-bottom: .2em; }
.meta { color: #555; font-size: .9em; margin: .2em 0 .8em; }
section.chart { margin: 1.5em 0 2.5em; }
figure { margin: 0; }
figure svg { display: block; max-width: 100%; height: auto; }
.numbers { max-height: 18em; overflow: auto; margin-top: .6em; border: 1px solid #ddd; display: inline-block; max-width: 100%; }
table { border-collapse: collapse; font-size: .85em; }
th, td { padding: 2px 8px; text-align: right; border-bottom: 1px solid #eee; white-space: nowrap; }
th { background: #f2f2f2; position: sticky; top: 0; }
th.key, td.key { text-align: left; }
tr.hl td, td.hl { font-weight: bold; background: #fdf1e4; }
tr.total td { border-top: 1px solid #bbb; font-weight: bold; }
.empty { padding: 1em; border: 1px dashed #bbb; color: #444; background: #fafafa; }
.note { color: #555; font-size: .85em; }
";
