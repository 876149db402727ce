use crate::batch::{BatchResult, ChartKind, ChartSpec, JobRange, ReportJob};
use crate::data::{DataField, Value};
use crate::sink::OwnedWindow;

use super::colours::{self, Colour};
use super::data::{self, Amount, Ctx};
use super::{render, Error};

const DAY: i64 = 86_400_000;
/// 2024-03-01 00:00 UTC.
const T0: i64 = 1_709_251_200_000;

fn result(window: &str, start: i64, key: &[&str], fields: Vec<(&str, Value)>) -> BatchResult {
    BatchResult {
        tenant: "acme".into(),
        job: "daily".into(),
        range: JobRange {
            from: T0,
            to: T0 + 7 * DAY,
        },
        window: OwnedWindow {
            name: window.into(),
            start,
            end: start + DAY,
        },
        key_names: vec!["station".into()],
        key: key.iter().map(|k| (*k).to_owned()).collect(),
        fields: fields
            .into_iter()
            .map(|(name, value)| DataField {
                name: name.into(),
                value,
            })
            .collect(),
    }
}

fn spec(kind: ChartKind, field: Option<&str>, title: &str) -> ChartSpec {
    ChartSpec {
        window: "day".into(),
        kind,
        field: field.map(Into::into),
        title: title.into(),
        unit: "rows".into(),
    }
}

fn job(name: &str, charts: Vec<ChartSpec>, results: Vec<BatchResult>) -> ReportJob {
    ReportJob {
        name: name.into(),
        range: JobRange {
            from: T0,
            to: T0 + 7 * DAY,
        },
        charts,
        results,
    }
}

fn ctx() -> Ctx<'static> {
    Ctx {
        job: "daily",
        chart: "test",
    }
}

/// `fill="#RRGGBB"` as plotters' SVG backend writes a filled shape.
fn fill(c: Colour) -> String {
    format!("fill=\"#{:02X}{:02X}{:02X}\"", c.r, c.g, c.b)
}

/// The SVG element of the chart `data-chart` names; panics when it is not
/// there exactly once.
fn svg_of<'a>(html: &'a str, data_chart: &str) -> &'a str {
    let needle = format!("data-chart=\"{data_chart}\"");
    assert_eq!(html.matches(&needle).count(), 1, "{needle} in\n{html}");
    let at = html.find(&needle).expect("counted above");
    let start = html[..at].rfind("<svg ").expect("attribute of an <svg>");
    let end = at + html[at..].find("</svg>").expect("closed svg");
    &html[start..end]
}

fn int(i: i64) -> Value {
    Value::Int(i)
}

#[test]
fn every_chart_svg_once_and_data_text_escaped() {
    let evil = "<script>alert(1)</script>";
    let results = vec![
        result("day", T0, &[evil], vec![("rows", int(5))]),
        result("day", T0, &["b&b"], vec![("rows", int(3))]),
        result(
            "day",
            T0,
            &["s1"],
            vec![("h07", int(4)), ("bin_width", Value::Float(2.5))],
        ),
    ];
    let jobs = vec![
        job(
            "daily",
            vec![
                spec(ChartKind::Bars, Some("rows"), "Rows <per> station"),
                spec(ChartKind::Series, Some("rows"), "Rows over time"),
                spec(ChartKind::Profile, None, "Profile"),
            ],
            results.clone(),
        ),
        job(
            "weekly\"x",
            vec![spec(ChartKind::Bars, Some("rows"), "Weekly")],
            results,
        ),
    ];
    let html = render("acme <corp>", &jobs).expect("renders");

    assert!(
        !html.to_lowercase().contains("<script"),
        "unescaped script tag"
    );
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(html.contains("b&amp;b"));
    assert!(html.contains("acme &lt;corp&gt;"));
    assert!(html.contains("Rows &lt;per&gt; station"));
    assert!(!html.contains("<per>"));

    for chart in ["daily/0", "daily/1", "daily/2", "weekly&quot;x/0"] {
        let svg = svg_of(&html, chart);
        assert!(svg.contains("viewBox"), "{chart}: not plotters' root");
    }
    assert!(html.contains("id=\"chart-weekly_x-0\""));
    assert_eq!(html.matches("<svg ").count(), 4);
    assert_eq!(html.matches("</svg>").count(), 4);
    for tag in ["section", "figure", "table", "tr", "p", "h3"] {
        assert_eq!(
            html.matches(&format!("<{tag}>")).count() + html.matches(&format!("<{tag} ")).count(),
            html.matches(&format!("</{tag}>")).count(),
            "<{tag}> unbalanced"
        );
    }
    // No external resource: the file stands alone.
    for external in ["<link", "<script", "src=", "href=", "@import", "url("] {
        assert!(!html.contains(external), "{external}");
    }
}

#[test]
fn bars_sorted_descending_capped_and_largest_highlighted() {
    let mut results = Vec::new();
    // 40 keys with sums 0..40 over two windows each; key k sums to k.
    for k in 0..40i64 {
        let key = format!("k{k:02}");
        results.push(result("day", T0, &[&key], vec![("rows", int(k / 2))]));
        results.push(result(
            "day",
            T0 + DAY,
            &[&key],
            vec![("rows", int(k - k / 2))],
        ));
    }
    let refs: Vec<&BatchResult> = results.iter().collect();
    let bars = data::bars(ctx(), "rows", &refs).expect("numbers");
    assert_eq!(bars.bars.len(), data::MAX_BARS);
    assert_eq!(bars.omitted, 10);
    // The 10 smallest (0..10) are left out.
    assert_eq!(bars.omitted_sum, Amount::Int((0..10).sum()));
    let values: Vec<i128> = bars
        .bars
        .iter()
        .map(|b| match b.value {
            Amount::Int(i) => i,
            Amount::Float(f) => panic!("int sum became float {f}"),
        })
        .collect();
    assert_eq!(values, (10..40).rev().collect::<Vec<i128>>());
    assert_eq!(bars.bars[0].label, "k39");
    assert_eq!(bars.bars[0].windows, 2);

    let jobs = vec![job(
        "daily",
        vec![spec(ChartKind::Bars, Some("rows"), "Rows")],
        results,
    )];
    let html = render("acme", &jobs).expect("renders");
    let svg = svg_of(&html, "daily/0");
    assert_eq!(svg.matches(&fill(colours::HIGHLIGHT)).count(), 1);
    assert_eq!(svg.matches(&fill(colours::accent(0))).count(), 29);
    // The table lists them in the same order, the largest marked.
    let k39 = html.find(">k39<").expect("k39 in table");
    let k38 = html.find(">k38<").expect("k38 in table");
    assert!(k39 < k38);
    assert!(html.contains("<tr class=\"hl\"><td>1</td><td class=\"key\">k39</td><td>39</td>"));
    assert!(!html.contains(">k09<"), "an omitted key is drawn");
    assert!(html.contains("10 more not shown (together 45)"));
}

#[test]
fn histogram_bins_summed_across_windows() {
    let w = || ("bin_width", Value::Float(2.5));
    let results = vec![
        result(
            "day",
            T0,
            &["a"],
            vec![
                w(),
                ("bin:20", int(2)),
                ("bin:22.5", int(3)),
                ("count", int(5)),
            ],
        ),
        result(
            "day",
            T0 + DAY,
            &["a"],
            vec![w(), ("bin:22.5", int(4)), ("bin:25", int(1))],
        ),
        result("day", T0, &["b"], vec![w(), ("bin:20", int(1))]),
        // Another window's bins are not this chart's.
        result("hour", T0, &["a"], vec![w(), ("bin:20", int(100))]),
    ];
    let refs = data::chart_results(&spec(ChartKind::Histogram, None, "h"), &results);
    let hist = data::histogram(ctx(), &refs).expect("bins");
    assert_eq!(hist.panels.len(), 2);
    let a = &hist.panels[0];
    assert_eq!(a.label, "a");
    assert_eq!(a.width, 2.5);
    let bins: Vec<(f64, &str, Amount)> = a
        .bins
        .iter()
        .map(|b| (b.lower, b.edge.as_str(), b.count))
        .collect();
    assert_eq!(
        bins,
        vec![
            (20.0, "20", Amount::Int(2)),
            (22.5, "22.5", Amount::Int(7)),
            (25.0, "25", Amount::Int(1)),
        ]
    );
    assert_eq!(a.total, Amount::Int(10));
    assert_eq!(hist.panels[1].total, Amount::Int(1));

    let jobs = vec![job(
        "daily",
        vec![spec(ChartKind::Histogram, None, "Values")],
        results,
    )];
    let html = render("acme", &jobs).expect("renders");
    let svg = svg_of(&html, "daily/0");
    // a: 3 bins, b: 1 bin, all in the chart's accent.
    assert_eq!(svg.matches(&fill(colours::accent(0))).count(), 4);
    assert!(html.contains("<tr><td class=\"key\">22.5</td><td>7</td><td>0</td></tr>"));
}

#[test]
fn histogram_bin_width_must_agree_and_exist() {
    let results = [
        result(
            "day",
            T0,
            &["a"],
            vec![("bin_width", Value::Float(2.5)), ("bin:0", int(1))],
        ),
        result(
            "day",
            T0 + DAY,
            &["a"],
            vec![("bin_width", int(5)), ("bin:0", int(1))],
        ),
    ];
    let refs: Vec<&BatchResult> = results.iter().collect();
    assert!(matches!(
        data::histogram(ctx(), &refs),
        Err(Error::BadBinWidth { .. })
    ));
    let missing = [result("day", T0, &["a"], vec![("bin:0", int(1))])];
    let refs: Vec<&BatchResult> = missing.iter().collect();
    assert!(matches!(
        data::histogram(ctx(), &refs),
        Err(Error::BadBinWidth { .. })
    ));
    let bad_edge = [result(
        "day",
        T0,
        &["a"],
        vec![("bin_width", int(1)), ("bin:low", int(1))],
    )];
    let refs: Vec<&BatchResult> = bad_edge.iter().collect();
    assert!(matches!(
        data::histogram(ctx(), &refs),
        Err(Error::BadBin { .. })
    ));
}

#[test]
fn profile_hours_summed_and_peak_highlighted() {
    let results = vec![
        result(
            "day",
            T0,
            &["s1"],
            vec![("h03", int(5)), ("h17", int(4)), ("active", int(9))],
        ),
        result(
            "day",
            T0 + DAY,
            &["s1"],
            vec![("h17", int(2)), ("h03", int(0))],
        ),
        result("day", T0, &["s2"], vec![("h00", int(1))]),
        result("day", T0, &["s3"], vec![("h05", int(0))]),
    ];
    let refs: Vec<&BatchResult> = results.iter().collect();
    let profile = data::profile(ctx(), &refs).expect("hours");
    let s1 = &profile.panels[0];
    assert_eq!(s1.label, "s1");
    assert_eq!(s1.hours[3], Amount::Int(5));
    assert_eq!(s1.hours[17], Amount::Int(6));
    assert_eq!(s1.peak, Some(17));
    assert_eq!(s1.total, Amount::Int(11));
    assert_eq!(profile.panels[1].peak, Some(0));
    // All zero: nothing to highlight.
    assert_eq!(profile.panels[2].peak, None);

    let jobs = vec![job(
        "daily",
        vec![spec(ChartKind::Profile, None, "Hours")],
        results,
    )];
    let html = render("acme", &jobs).expect("renders");
    let svg = svg_of(&html, "daily/0");
    // One peak in s1 and one in s2; 24 bars per panel.
    assert_eq!(svg.matches(&fill(colours::HIGHLIGHT)).count(), 2);
    assert_eq!(svg.matches(&fill(colours::accent(0))).count(), 3 * 24 - 2);
    assert!(html.contains("<td class=\"hl\">6</td>"));
    assert!(html.contains("<td>11</td><td>17</td></tr>"));
}

#[test]
fn chart_without_data_says_so() {
    let results = vec![result("day", T0, &["a"], vec![("rows", int(1))])];
    let mut other_window = spec(ChartKind::Bars, Some("rows"), "Hourly rows");
    other_window.window = "hour".into();
    let jobs = vec![
        job(
            "daily",
            vec![
                spec(ChartKind::Bars, Some("missing"), "No such field"),
                other_window,
                spec(ChartKind::Histogram, None, "No bins"),
                spec(ChartKind::Bars, Some("rows"), "Drawn"),
            ],
            results,
        ),
        job("empty", vec![], vec![]),
    ];
    let html = render("acme", &jobs).expect("renders");
    assert!(html
        .contains("No data: none of the 1 results of window &quot;day&quot; has the field &quot;missing&quot;."));
    assert!(html.contains("No data: the job produced no results for window &quot;hour&quot;."));
    assert!(html.contains("has &quot;bin:&lt;lower edge&gt;&quot; fields"));
    assert!(html.contains("This job has no charts."));
    assert_eq!(html.matches("<svg ").count(), 1);
    for absent in ["daily/0", "daily/1", "daily/2"] {
        assert!(!html.contains(&format!("data-chart=\"{absent}\"")));
    }
    // The drawn chart is still the report's 4th: its accent says so.
    let svg = svg_of(&html, "daily/3");
    assert_eq!(svg.matches(&fill(colours::HIGHLIGHT)).count(), 1);
}

#[test]
fn series_keeps_the_largest_keys_with_a_legend() {
    let mut results = Vec::new();
    for k in 0..10i64 {
        for day in 0..3 {
            results.push(result(
                "day",
                T0 + day * DAY,
                &[&format!("st{k}")],
                vec![("active", int(k * 10 + day))],
            ));
        }
    }
    let refs: Vec<&BatchResult> = results.iter().collect();
    let series = data::series(ctx(), "active", &refs).expect("numbers");
    assert_eq!(series.lines.len(), data::MAX_SERIES_KEYS);
    assert_eq!(series.omitted, 2);
    assert_eq!(series.lines[0].label, "st9");
    assert_eq!(series.lines[0].total, Amount::Int(90 + 91 + 92));
    assert_eq!(series.starts.len(), 3);
    assert!(series.whole_days);

    let jobs = vec![job(
        "daily",
        vec![spec(ChartKind::Series, Some("active"), "Active")],
        results,
    )];
    let html = render("acme", &jobs).expect("renders");
    let svg = svg_of(&html, "daily/0");
    for rank in 0..8 {
        let c = colours::series_line(0, rank);
        // Three points and the legend's marker.
        assert_eq!(svg.matches(&fill(c)).count(), 4, "line {rank}");
    }
    assert!(svg.contains("\nst9\n</text>"), "legend in {svg}");
    assert!(!svg.contains("\nst1\n</text>"), "an omitted key is drawn");
    assert!(svg.contains("2024-03-02"), "date ticks");
    assert!(html.contains("<tr><td class=\"key\">2024-03-02</td><td>91</td>"));
}

#[test]
fn a_text_value_is_a_typed_error() {
    let results = vec![result(
        "day",
        T0,
        &["a"],
        vec![("rows", Value::Text("many".into()))],
    )];
    let jobs = vec![job(
        "daily",
        vec![spec(ChartKind::Bars, Some("rows"), "Rows")],
        results,
    )];
    match render("acme", &jobs) {
        Err(Error::NotNumeric { field, found, .. }) => {
            assert_eq!(field, "rows");
            assert_eq!(found, "text");
        }
        other => panic!("expected NotNumeric, got {other:?}"),
    }
    let no_field = vec![job(
        "daily",
        vec![spec(ChartKind::Series, None, "x")],
        vec![],
    )];
    assert!(matches!(
        render("acme", &no_field),
        Err(Error::MissingField { .. })
    ));
}

#[test]
fn non_finite_values_are_left_out_and_noted() {
    let results = vec![
        result("day", T0, &["a"], vec![("rows", Value::Float(f64::NAN))]),
        result("day", T0 + DAY, &["a"], vec![("rows", Value::Float(1.5))]),
    ];
    let jobs = vec![job(
        "daily",
        vec![spec(ChartKind::Bars, Some("rows"), "Rows")],
        results,
    )];
    let html = render("acme", &jobs).expect("renders");
    assert!(html.contains("1 non-finite value (NaN or infinite) left out."));
    assert!(html.contains("<td>1.5</td><td>1</td>"));
}

#[test]
fn range_in_utc_dates() {
    assert_eq!(
        super::format_range(JobRange {
            from: T0,
            to: T0 + 7 * DAY + 3_600_000,
        }),
        "2024-03-01 → 2024-03-08 01:00 UTC (end exclusive)"
    );
}

/// The CLI turns report errors into `anyhow` errors, which need these.
#[test]
fn error_is_send_sync_static() {
    fn check<E: std::error::Error + Send + Sync + 'static>() {}
    check::<Error>();
}
