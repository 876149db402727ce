//! The charts, drawn with plotters' SVG backend into a string the page
//! inlines. Only what [`data`](super::data) computed is drawn; colours come
//! from [`colours`](super::colours). Text is written as SVG `<text>` and
//! drawn by the browser; plotters' layout only estimates its size (no font
//! feature), hence the generous label areas.

use chrono::{DateTime, Duration, Utc};
use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::colours::{self, Colour};
use super::data::{format_float, BarsData, HistogramData, ProfileData, SeriesData, MAX_PANELS};

/// A drawing error of the SVG backend (writing into a string: layout
/// problems only, in practice).
pub type DrawError = DrawingAreaErrorKind<std::io::Error>;
type Drawn = Result<String, DrawError>;

/// Width of every chart, px: fits the page's 1140 px column unscaled, so
/// bars keep crisp edges and exact colours.
pub const WIDTH: u32 = 1100;
/// A panel of a histogram or profile (three per row).
const PANEL: (u32, u32) = (WIDTH / 3, 260);
/// Height of the chart title band.
const TITLE_BAND: u32 = 40;
/// Longest key label drawn in full; the table has every label in full.
const LABEL_CHARS: usize = 32;
const FONT: &str = "sans-serif";
// plotters writes font sizes divided by 1.24 (its em estimate): 24 → 19 px.
const TITLE_SIZE: u32 = 24;
const DESC_SIZE: u32 = 17;
const LABEL_SIZE: u32 = 15;
const PANEL_TITLE_SIZE: u32 = 17;
const PANEL_DESC_SIZE: u32 = 15;
const PANEL_LABEL_SIZE: u32 = 13;

/// What every chart is labelled with.
pub struct Frame<'a> {
    pub title: &'a str,
    /// The drawn field's axis description, with its unit.
    pub value_desc: &'a str,
    /// The key column names, for the axis that lists keys.
    pub key_desc: &'a str,
    /// The unit of the drawn values (histogram: of the binned values).
    pub unit: &'a str,
    /// The chart's place in the report: picks its colours.
    pub ordinal: usize,
}

fn style(c: Colour) -> RGBColor {
    c.plotters()
}

/// A label cut to [`LABEL_CHARS`], so one long key cannot squeeze a chart.
fn short(label: &str) -> String {
    if label.chars().count() <= LABEL_CHARS {
        label.to_owned()
    } else {
        let mut s: String = label.chars().take(LABEL_CHARS - 1).collect();
        s.push('…');
        s
    }
}

/// An axis range holding 0 and every value, with headroom above (and below,
/// for negatives) so the largest bar does not touch the frame.
fn value_range(values: impl Iterator<Item = f64>) -> std::ops::Range<f64> {
    let (mut lo, mut hi) = (0.0f64, 0.0f64);
    for v in values {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if hi - lo <= 0.0 {
        return 0.0..1.0;
    }
    let pad = (hi - lo) * 0.06;
    (if lo < 0.0 { lo - pad } else { lo })..(if hi > 0.0 { hi + pad } else { hi })
}

fn tick(v: &f64) -> String {
    format_float(*v)
}

/// One bar per key, horizontal (long key labels stay readable), largest on
/// top and highlighted.
pub fn bars(data: &BarsData, frame: &Frame<'_>) -> Drawn {
    let n = data.bars.len();
    let labels: Vec<String> = data.bars.iter().map(|b| short(&b.label)).collect();
    let longest = labels.iter().map(|l| l.chars().count()).max().unwrap_or(0);
    let label_area = (longest as u32 * 8 + 20).clamp(60, 300);
    let height = TITLE_BAND + 80 + 26 * n as u32;
    let accent = colours::accent(frame.ordinal);

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE)?;
        let area = root.titled(frame.title, (FONT, TITLE_SIZE))?;
        let x_range = value_range(data.bars.iter().map(|b| b.value.as_f64()));
        let mut chart = ChartBuilder::on(&area)
            .margin(10)
            .margin_right(30)
            .x_label_area_size(48)
            .y_label_area_size(label_area)
            // An i32 range is inclusive as discrete coordinates: 0..n-1 is n
            // segments.
            .build_cartesian_2d(x_range, (0..n as i32 - 1).into_segmented())?;
        // Rank r is drawn at y = n - 1 - r: the largest on top.
        let label_of = |v: &SegmentValue<i32>| match v {
            SegmentValue::CenterOf(y) => usize::try_from(*y)
                .ok()
                .and_then(|y| n.checked_sub(y + 1))
                .and_then(|rank| labels.get(rank))
                .cloned()
                .unwrap_or_default(),
            _ => String::new(),
        };
        chart
            .configure_mesh()
            .disable_y_mesh()
            .max_light_lines(0)
            .y_labels(n.max(1))
            .y_label_formatter(&label_of)
            .x_label_formatter(&tick)
            .x_desc(frame.value_desc)
            .y_desc(frame.key_desc)
            .axis_desc_style((FONT, DESC_SIZE))
            .label_style((FONT, LABEL_SIZE))
            .draw()?;
        chart.draw_series(data.bars.iter().enumerate().map(|(rank, bar)| {
            let y = (n - 1 - rank) as i32;
            let colour = if rank == 0 {
                colours::HIGHLIGHT
            } else {
                accent
            };
            let mut rect = Rectangle::new(
                [
                    (0.0, SegmentValue::Exact(y)),
                    (bar.value.as_f64(), SegmentValue::Exact(y + 1)),
                ],
                style(colour).filled(),
            );
            rect.set_margin(4, 4, 0, 0);
            rect
        }))?;
        root.present()?;
    }
    Ok(svg)
}

/// The drawn value over time, a line with points per key and a legend to
/// the right of the plot (never over the data).
pub fn series(data: &SeriesData, frame: &Frame<'_>) -> Drawn {
    const LEGEND: u32 = 240;
    const HEIGHT: u32 = 440;
    let (Some(&first), Some(&last)) = (data.starts.first(), data.starts.last()) else {
        return Ok(String::new());
    };
    // A lone start gets a day either side; otherwise 2 % of the span, so
    // the outermost points are not cut by the frame.
    let pad = if first == last {
        Duration::days(1)
    } else {
        (last - first) / 50
    };
    let x0 = first.checked_sub_signed(pad).unwrap_or(first);
    let x1 = last.checked_add_signed(pad).unwrap_or(last);
    let ticks = date_ticks(first, last, 8);
    let y_range = value_range(
        data.lines
            .iter()
            .flat_map(|l| l.points.iter().map(|p| p.1.as_f64())),
    );
    let date_format = if data.whole_days {
        "%Y-%m-%d"
    } else {
        "%m-%d %H:%M"
    };
    let date_label = |d: &DateTime<Utc>| d.format(date_format).to_string();

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE)?;
        let area = root.titled(frame.title, (FONT, TITLE_SIZE))?;
        let (plot, legend) = area.split_horizontally(WIDTH - LEGEND);
        let mut chart = ChartBuilder::on(&plot)
            .margin(10)
            .margin_right(24)
            .x_label_area_size(48)
            .y_label_area_size(72)
            .build_cartesian_2d(RangedDateTime::from(x0..x1).with_key_points(ticks), y_range)?;
        chart
            .configure_mesh()
            .max_light_lines(0)
            .x_labels(8)
            .y_labels(8)
            .x_label_formatter(&date_label)
            .y_label_formatter(&tick)
            .x_desc("window start (UTC)")
            .y_desc(frame.value_desc)
            .axis_desc_style((FONT, DESC_SIZE))
            .label_style((FONT, LABEL_SIZE))
            .draw()?;
        for (rank, line) in data.lines.iter().enumerate() {
            let colour = style(colours::series_line(frame.ordinal, rank));
            chart.draw_series(
                LineSeries::new(
                    line.points.iter().map(|(t, v)| (*t, v.as_f64())),
                    colour.filled().stroke_width(2),
                )
                .point_size(4),
            )?;
        }

        legend.draw(&Text::new(
            frame.key_desc.to_owned(),
            (8, 14),
            (FONT, DESC_SIZE).into_font().style(FontStyle::Bold),
        ))?;
        for (rank, line) in data.lines.iter().enumerate() {
            let y = 46 + 26 * rank as i32;
            let colour = style(colours::series_line(frame.ordinal, rank));
            legend.draw(&PathElement::new(
                vec![(8, y), (40, y)],
                colour.stroke_width(2),
            ))?;
            legend.draw(&Circle::new((24, y), 4, colour.filled()))?;
            legend.draw(&Text::new(
                short(&line.label),
                (48, y),
                (FONT, LABEL_SIZE)
                    .into_font()
                    .color(&BLACK)
                    .pos(Pos::new(HPos::Left, VPos::Center)),
            ))?;
        }
        root.present()?;
    }
    Ok(svg)
}

/// Date ticks from `first` (a window start, so ticks fall on windows) at
/// the smallest round step that needs at most `max` ticks up to `last`.
/// plotters' own date axis jumps from daily to weekly ticks, which leaves
/// two labels on a fortnight.
fn date_ticks(first: DateTime<Utc>, last: DateTime<Utc>, max: usize) -> Vec<DateTime<Utc>> {
    const MINUTES: [i64; 19] = [
        1, 5, 10, 15, 30, 60, 120, 180, 360, 720, // up to 12 hours
        1440, 2880, 4320, 10_080, 20_160, // 1, 2, 3 days, 1, 2 weeks
        43_200, 129_600, 259_200, 525_600, // ~1, 3, 6 months, a year
    ];
    let span = (last - first).num_minutes().max(0);
    let max = max.max(2) as i64;
    let step = MINUTES
        .iter()
        .copied()
        .find(|step| span / step < max)
        .unwrap_or_else(|| span / (max - 1) + 1);
    let mut ticks = Vec::new();
    let mut t = first;
    while t <= last && ticks.len() <= max as usize {
        ticks.push(t);
        match t.checked_add_signed(Duration::minutes(step)) {
            Some(next) => t = next,
            None => break,
        }
    }
    ticks
}

/// Rows and columns of `n` small charts, three to a row.
fn grid(n: usize) -> (usize, usize) {
    let cols = n.clamp(1, 3);
    (n.div_ceil(cols).max(1), cols)
}

/// One small chart per key: bins as adjacent bars, on a value axis shared
/// by all panels (so shapes compare), each panel with its own count axis.
pub fn histogram(data: &HistogramData, frame: &Frame<'_>) -> Drawn {
    let n = data.panels.len().min(MAX_PANELS);
    let (rows, cols) = grid(n);
    let size = (PANEL.0 * cols as u32, TITLE_BAND + PANEL.1 * rows as u32);
    let accent = style(colours::accent(frame.ordinal));
    let lo = data
        .panels
        .iter()
        .flat_map(|p| p.bins.iter().map(|b| b.lower))
        .fold(f64::INFINITY, f64::min);
    let hi = data
        .panels
        .iter()
        .flat_map(|p| p.bins.iter().map(move |b| b.lower + p.width))
        .fold(f64::NEG_INFINITY, f64::max);
    let x_range = if lo.is_finite() && hi > lo {
        lo..hi
    } else {
        0.0..1.0
    };
    let x_desc = if frame.unit.is_empty() {
        "value".to_owned()
    } else {
        format!("value ({})", frame.unit)
    };

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE)?;
        let area = root.titled(frame.title, (FONT, TITLE_SIZE))?;
        for (panel, cell) in data.panels.iter().zip(area.split_evenly((rows, cols))) {
            let y_range = value_range(panel.bins.iter().map(|b| b.count.as_f64()));
            let mut chart = ChartBuilder::on(&cell)
                .caption(short(&panel.label), (FONT, PANEL_TITLE_SIZE))
                .margin(8)
                .margin_right(16)
                .x_label_area_size(40)
                .y_label_area_size(56)
                .build_cartesian_2d(x_range.clone(), y_range)?;
            chart
                .configure_mesh()
                .max_light_lines(0)
                .x_labels(6)
                .y_labels(6)
                .x_label_formatter(&tick)
                .y_label_formatter(&tick)
                .x_desc(x_desc.as_str())
                .y_desc("count")
                .axis_desc_style((FONT, PANEL_DESC_SIZE))
                .label_style((FONT, PANEL_LABEL_SIZE))
                .draw()?;
            chart.draw_series(panel.bins.iter().map(|bin| {
                let mut rect = Rectangle::new(
                    [
                        (bin.lower, 0.0),
                        (bin.lower + panel.width, bin.count.as_f64()),
                    ],
                    accent.filled(),
                );
                rect.set_margin(0, 0, 1, 1);
                rect
            }))?;
        }
        root.present()?;
    }
    Ok(svg)
}

/// One small chart per key: 24 hourly bars, the peak highlighted.
pub fn profile(data: &ProfileData, frame: &Frame<'_>) -> Drawn {
    let n = data.panels.len().min(MAX_PANELS);
    let (rows, cols) = grid(n);
    let size = (PANEL.0 * cols as u32, TITLE_BAND + PANEL.1 * rows as u32);
    let accent = style(colours::accent(frame.ordinal));
    let highlight = style(colours::HIGHLIGHT);
    let y_desc = if frame.unit.is_empty() {
        "count"
    } else {
        frame.unit
    };
    let hour_label = |v: &SegmentValue<u32>| match v {
        SegmentValue::CenterOf(h) if *h < 24 => format!("{h:02}"),
        _ => String::new(),
    };

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE)?;
        let area = root.titled(frame.title, (FONT, TITLE_SIZE))?;
        for (panel, cell) in data.panels.iter().zip(area.split_evenly((rows, cols))) {
            let y_range = value_range(panel.hours.iter().map(|h| h.as_f64()));
            let mut chart = ChartBuilder::on(&cell)
                .caption(short(&panel.label), (FONT, PANEL_TITLE_SIZE))
                .margin(8)
                .margin_right(16)
                .x_label_area_size(40)
                .y_label_area_size(56)
                // Inclusive as discrete coordinates: 24 segments; a tick
                // every 3 hours.
                .build_cartesian_2d(
                    (0u32..23)
                        .with_key_points((0..24).step_by(3).collect())
                        .into_segmented(),
                    y_range,
                )?;
            chart
                .configure_mesh()
                .disable_x_mesh()
                .max_light_lines(0)
                .x_labels(8)
                .y_labels(6)
                .x_label_formatter(&hour_label)
                .y_label_formatter(&tick)
                .x_desc("hour of day (UTC)")
                .y_desc(y_desc)
                .axis_desc_style((FONT, PANEL_DESC_SIZE))
                .label_style((FONT, PANEL_LABEL_SIZE))
                .draw()?;
            chart.draw_series(panel.hours.iter().zip(0u32..).map(|(v, hour)| {
                let colour = if panel.peak == Some(hour as usize) {
                    highlight
                } else {
                    accent
                };
                let mut rect = Rectangle::new(
                    [
                        (SegmentValue::Exact(hour), 0.0),
                        (SegmentValue::Exact(hour + 1), v.as_f64()),
                    ],
                    colour.filled(),
                );
                rect.set_margin(0, 0, 2, 2);
                rect
            }))?;
        }
        root.present()?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(ms).expect("in range")
    }

    #[test]
    fn date_ticks_take_the_smallest_round_step() {
        const DAY: i64 = 86_400_000;
        let first = at(1_709_251_200_000);
        let ticks = date_ticks(first, at(1_709_251_200_000 + 13 * DAY), 8);
        assert_eq!(ticks.len(), 7);
        assert_eq!(ticks[1] - ticks[0], Duration::days(2));
        assert_eq!(ticks[0], first);

        let hourly = date_ticks(first, at(1_709_251_200_000 + 23 * DAY / 24), 8);
        assert_eq!(hourly[1] - hourly[0], Duration::hours(3));
        assert_eq!(hourly.len(), 8);

        assert_eq!(date_ticks(first, first, 8), vec![first]);
    }

    #[test]
    fn long_labels_are_cut() {
        assert_eq!(short("BTS-001"), "BTS-001");
        let cut = short(&"x".repeat(50));
        assert_eq!(cut.chars().count(), LABEL_CHARS);
        assert!(cut.ends_with('…'));
    }
}
