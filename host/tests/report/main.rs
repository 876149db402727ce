//! The batch report in a real browser: synthetic jobs with known data are
//! rendered, headless Chromium (`/usr/bin/chromium`, which
//! `scripts/test.sh` installs) takes a screenshot of the file, and the
//! decoded pixels must show every chart drawn with its data — each chart's
//! colour (`report::colours`, by its place in the report) covering at
//! least the area its bars or lines must take, the highlight colour
//! present, and the chart without data drawing nothing.
//!
//! The screenshot and the HTML stay in `$CARGO_TARGET_TMPDIR` (the path is
//! printed) for a person to look at.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sluice_host::batch::{BatchResult, ChartKind, ChartSpec, JobRange, ReportJob};
use sluice_host::data::{DataField, Value};
use sluice_host::report::{self, colours, colours::Colour};
use sluice_host::sink::OwnedWindow;

const CHROMIUM: &str = "/usr/bin/chromium";
const WIDTH: u32 = 1200;
/// A screenshot that takes longer has hung (the network is closed here).
const CHROMIUM_TIMEOUT: Duration = Duration::from_secs(120);
/// Channel tolerance when matching a colour: filled shapes are painted
/// exactly; this only absorbs rounding in the browser's compositor.
const TOLERANCE: i32 = 2;

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;
/// 2024-03-01 00:00 UTC.
const T0: i64 = 1_709_251_200_000;
const DAYS: i64 = 14;

fn range() -> JobRange {
    JobRange {
        from: T0,
        to: T0 + DAYS * DAY,
    }
}

fn result(
    window: &str,
    start: i64,
    end: i64,
    key: &str,
    fields: Vec<(String, Value)>,
) -> BatchResult {
    BatchResult {
        tenant: "bts-operator".into(),
        job: String::new(),
        range: range(),
        window: OwnedWindow {
            name: window.into(),
            start,
            end,
        },
        key_names: vec!["station".into()],
        key: vec![key.to_owned()],
        fields: fields
            .into_iter()
            .map(|(name, value)| DataField { name, value })
            .collect(),
    }
}

fn chart(window: &str, kind: ChartKind, field: Option<&str>, title: &str, unit: &str) -> ChartSpec {
    ChartSpec {
        window: window.into(),
        kind,
        field: field.map(Into::into),
        title: title.into(),
        unit: unit.into(),
    }
}

/// Station names, one with markup that must show as text.
fn station(i: usize) -> String {
    if i == 7 {
        "<b>BTS-007</b>".to_owned()
    } else {
        format!("BTS-{i:03}")
    }
}

/// The daily job: bars, series, histogram, profile and a chart without
/// data (its field is in no result), as the BTS module's output looks.
fn daily() -> ReportJob {
    let mut results = Vec::new();
    for s in 0..12 {
        // rows of the whole range: 12 bars, the smallest 45 % of the largest.
        results.push(result(
            "range",
            T0,
            T0 + DAYS * DAY,
            &station(s),
            vec![("rows".into(), Value::Int(1000 + 120 * s as i64))],
        ));
    }
    for s in 0..5 {
        for d in 0..DAYS {
            let start = T0 + d * DAY;
            let active = 3 + (s as i64 * 2) + (d * (s as i64 + 1)) % 7;
            let mut fields = vec![("active".into(), Value::Int(active))];
            // Hours: every station peaks at a known hour.
            for h in 0..24 {
                let v = if h == 6 + 3 * s { 9 } else { (h % 5) as i64 };
                fields.push((format!("h{h:02}"), Value::Int(v)));
            }
            // Histogram bins, split over the days: summed per station.
            fields.push(("bin_width".into(), Value::Float(2.5)));
            fields.push(("count".into(), Value::Int(10)));
            // A bell-ish shape per station, shifted by one bin per station.
            const SHAPE: [i64; 10] = [1, 2, 5, 9, 12, 10, 6, 3, 1, 1];
            for b in 0..10 {
                let edge = 20.0 + 2.5 * b as f64;
                let count = SHAPE[(b + s) % 10] + d % 2;
                fields.push((format!("bin:{edge}"), Value::Int(count)));
            }
            results.push(result("day", start, start + DAY, &station(s), fields));
        }
    }
    for r in &mut results {
        r.job = "bts-daily".into();
    }
    ReportJob {
        name: "bts-daily".into(),
        range: range(),
        charts: vec![
            chart(
                "range",
                ChartKind::Bars,
                Some("rows"),
                "Records per station",
                "rows",
            ),
            chart(
                "day",
                ChartKind::Series,
                Some("active"),
                "Active alarms per day",
                "alarms",
            ),
            chart("day", ChartKind::Histogram, None, "Signal strength", "dBm"),
            chart(
                "day",
                ChartKind::Profile,
                None,
                "Alarms by hour of day",
                "alarms",
            ),
            chart(
                "day",
                ChartKind::Bars,
                Some("breaches"),
                "Threshold breaches",
                "breaches",
            ),
        ],
        results,
    }
}

/// A second job, so charts of two jobs share the page.
fn weekly() -> ReportJob {
    let types = ["power", "link-down", "temperature", "door"];
    let results = types
        .iter()
        .zip([40i64, 25, 31, 12])
        .flat_map(|(ty, n)| {
            (0..2).map(move |w| {
                let start = T0 + w * 7 * DAY;
                let mut r = result(
                    "week",
                    start,
                    start + 7 * DAY,
                    ty,
                    vec![("breaches".into(), Value::Int(n + w))],
                );
                r.key_names = vec!["alarm_type".into()];
                r.job = "bts-weekly".into();
                r
            })
        })
        .collect();
    ReportJob {
        name: "bts-weekly".into(),
        range: range(),
        charts: vec![chart(
            "week",
            ChartKind::Bars,
            Some("breaches"),
            "Breaches per alarm type",
            "breaches",
        )],
        results,
    }
}

/// The page height that holds every chart: the charts' own heights (from
/// their SVG roots) plus a generous allowance per section for headings,
/// tables (at most 18em tall) and notes.
fn page_height(html: &str) -> u32 {
    let charts: u32 = html
        .split("<svg id=")
        .skip(1)
        .filter_map(|svg| {
            let at = svg.find(" height=\"")? + " height=\"".len();
            svg[at..].split('"').next()?.parse::<u32>().ok()
        })
        .sum();
    let sections = html.matches("<section class=\"chart\"").count() as u32;
    400 + charts + 450 * sections
}

/// Runs Chromium on `html` and returns the screenshot's path.
fn screenshot(html: &Path, png: &Path, height: u32) -> PathBuf {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} not found: the report test needs headless Chromium \
         (Debian package `chromium`; scripts/test.sh installs it: \
         apt-get install -y chromium)"
    );
    let profile = tempfile::tempdir().expect("temp dir for the browser profile");
    let _ = std::fs::remove_file(png);
    let mut child = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--window-size={WIDTH},{height}"))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", html.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chromium");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for chromium") {
            break status;
        }
        if started.elapsed() > CHROMIUM_TIMEOUT {
            let _ = child.kill();
            let out = child.wait_with_output().expect("chromium output");
            panic!(
                "chromium took more than {CHROMIUM_TIMEOUT:?}; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = child.wait_with_output().expect("chromium output");
    assert!(
        status.success() && png.exists(),
        "chromium failed ({status}), no screenshot at {}; stderr:\n{}",
        png.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    png.to_owned()
}

/// An RGB screenshot.
struct Image {
    width: u32,
    height: u32,
    /// Bytes per pixel: 3 (RGB) or 4 (RGBA).
    channels: usize,
    pixels: Vec<u8>,
}

fn decode(path: &Path) -> Image {
    let file = std::io::BufReader::new(std::fs::File::open(path).expect("open screenshot"));
    let mut decoder = png::Decoder::new(file);
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().expect("PNG header");
    let mut pixels = vec![0; reader.output_buffer_size().expect("PNG size fits memory")];
    let info = reader.next_frame(&mut pixels).expect("PNG frame");
    pixels.truncate(info.buffer_size());
    let channels = match info.color_type {
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        other => panic!("unexpected screenshot colour type {other:?}"),
    };
    Image {
        width: info.width,
        height: info.height,
        channels,
        pixels,
    }
}

impl Image {
    /// Pixels of colour `c` (within [`TOLERANCE`]).
    fn count(&self, c: Colour) -> usize {
        self.pixels
            .chunks_exact(self.channels)
            .filter(|p| {
                (i32::from(p[0]) - i32::from(c.r)).abs() <= TOLERANCE
                    && (i32::from(p[1]) - i32::from(c.g)).abs() <= TOLERANCE
                    && (i32::from(p[2]) - i32::from(c.b)).abs() <= TOLERANCE
            })
            .count()
    }

    /// The lowest row that is not white: the page's content must end above
    /// the screenshot's bottom, or a chart may have been cut off.
    fn last_content_row(&self) -> u32 {
        let row = self.width as usize * self.channels;
        (0..self.height)
            .rev()
            .find(|&y| {
                let start = y as usize * row;
                self.pixels[start..start + row]
                    .chunks_exact(self.channels)
                    .any(|p| p[0] < 250 || p[1] < 250 || p[2] < 250)
            })
            .unwrap_or(0)
    }
}

#[test]
fn every_chart_is_drawn_with_its_data_in_chromium() {
    let jobs = vec![daily(), weekly()];
    let html = report::render("bts-operator", &jobs).expect("render the report");

    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(&dir).expect("target tmp dir");
    let html_path = dir.join("report.html");
    let png_path = dir.join("report.png");
    std::fs::write(&html_path, &html).expect("write the report");
    let height = page_height(&html);
    screenshot(&html_path, &png_path, height);
    // Straight to stderr, past the test harness's capture: a person running
    // the suite sees where the picture is even when the test passes.
    let _ = writeln!(
        std::io::stderr(),
        "report: {}\nscreenshot: {}",
        html_path.display(),
        png_path.display()
    );

    let image = decode(&png_path);
    assert_eq!((image.width, image.height), (WIDTH, height));
    assert!(
        image.last_content_row() + 100 < height,
        "the page reaches the screenshot's bottom: charts may be cut off"
    );

    // Ordinals: bts-daily 0 bars, 1 series, 2 histogram, 3 profile,
    // 4 bars without data; bts-weekly 5 bars. Each minimum is well under
    // what the data must cover (e.g. 11 accent bars ≥ 45 % of ~800 px
    // by 18 px ≈ 70 000 px), and well over what an empty frame, axis or
    // legend swatch could paint by accident.
    let expected = [
        ("bars, 11 accent bars", colours::accent(0), 30_000),
        ("series, largest line", colours::accent(1), 600),
        ("histogram, 5 panels of 10 bins", colours::accent(2), 10_000),
        ("profile, 5 panels of 23 bars", colours::accent(3), 5_000),
        ("weekly bars, 3 accent bars", colours::accent(5), 8_000),
        (
            "the largest bars and peak hours",
            colours::HIGHLIGHT,
            15_000,
        ),
    ];
    let mut failures = Vec::new();
    for (what, colour, min) in expected {
        let n = image.count(colour);
        println!("{what}: {} covers {n} px (at least {min})", colour.hex());
        if n < min {
            failures.push(format!("{what}: {} covers {n} px < {min}", colour.hex()));
        }
    }
    for rank in 1..5 {
        let colour = colours::series_line(1, rank);
        let n = image.count(colour);
        println!("series line {rank}: {} covers {n} px", colour.hex());
        if n < 600 {
            failures.push(format!(
                "series line {rank}: {} covers {n} px < 600",
                colour.hex()
            ));
        }
    }
    // The chart without data draws nothing (it says so in words).
    let n = image.count(colours::accent(4));
    if n > 0 {
        failures.push(format!("the chart without data painted {n} px"));
    }
    assert!(
        failures.is_empty(),
        "{} (screenshot: {})",
        failures.join("; "),
        png_path.display()
    );
    assert!(html.contains("No data: none of the"));
}
