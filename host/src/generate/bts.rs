//! Realistic, deterministic BTS sensor data in the data set's exact CSV
//! format (`docs/design.md`, section 2), since the original data set
//! cannot be shipped:
//!
//! ```text
//! 1161114001,121,308,2017-02-18 18:28:05 UTC,231,240,false,
//! ```
//!
//! - Each station has 4–6 data points (grid voltage ≈ 220–240 V, battery
//!   voltage ≈ 48–54 V, room and cabinet temperature, humidity, rectifier
//!   current, fuel level, mains frequency), each with 1–3 alarm ids; a key is
//!   (station, data point, alarm). About 40% of keys carry the data set's
//!   "no threshold" default 999999.
//! - Each key reports every few seconds to a minute (per data-point kind,
//!   with jitter; never closer than 4 s), values follow a mean-reverting
//!   random walk with rare one-row noise spikes; `isActive` is true while a
//!   real threshold is breached and for runs of rows besides (alarms that
//!   switch on and off).
//! - Rows come out in event-time order, except that `out_of_order` of them
//!   are held back by 1–3 s of event time: a row never appears after a row
//!   more than [`OUT_OF_ORDER_BOUND`] later than itself, so a manifest with
//!   `max_out_of_orderness` ≥ 3s sees no late row.
//! - `dirty` of the lines (exactly `round(events × dirty)`, at random
//!   positions) are bad rows, cycling through every [`DirtyKind`].
//! - `ramp` keys (with a real upper threshold) climb steadily to their
//!   threshold, reaching it about two thirds of the way through their rows,
//!   so the BTS module's predicted-breach alert fires for them.
//!
//! The same config gives the same bytes on every run and machine.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::io::{self, BufWriter, Write};
use std::time::Duration;

use super::rng::Rng;

/// The most a row is held back: it may appear after rows whose event time
/// is at most this much later than its own.
pub const OUT_OF_ORDER_BOUND: Duration = Duration::from_secs(3);

/// The data set's "no threshold" value of `valueThreshold`.
pub const NO_THRESHOLD: f64 = 999_999.0;

/// The BTS CSV header (written only with `header`).
pub const HEADER: &str =
    "station_id,datapoint_id,alarm_id,event_time,value,valueThreshold,isActive,storedtime";

/// 2017-02-18 18:28:05 UTC, the first event time of the original data set.
pub const DEFAULT_START_MS: i64 = 1_487_442_485_000;

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct BtsConfig {
    pub seed: u64,
    pub stations: u32,
    /// Lines to write (good and dirty; the header is not counted).
    pub events: u64,
    /// Event time of the first readings, ms since the Unix epoch (UTC);
    /// whole seconds are used.
    pub start_ms: i64,
    /// Fraction (0–1) of rows held back by up to [`OUT_OF_ORDER_BOUND`].
    pub out_of_order: f64,
    /// Fraction (0–1) of lines that are bad rows.
    pub dirty: f64,
    /// Keys whose value climbs to their threshold.
    pub ramp: u32,
    /// Write the CSV header line first.
    pub header: bool,
}

impl Default for BtsConfig {
    fn default() -> Self {
        BtsConfig {
            seed: 1,
            stations: 10,
            events: 100_000,
            start_ms: DEFAULT_START_MS,
            out_of_order: 0.0,
            dirty: 0.0,
            ramp: 0,
            header: false,
        }
    }
}

impl BtsConfig {
    fn check(&self) -> io::Result<()> {
        let invalid = |m: String| Err(io::Error::new(io::ErrorKind::InvalidInput, m));
        if self.stations == 0 {
            return invalid("stations must be at least 1".into());
        }
        for (name, f) in [("out_of_order", self.out_of_order), ("dirty", self.dirty)] {
            if !(0.0..=1.0).contains(&f) {
                return invalid(format!(
                    "{name} must be a fraction between 0 and 1 (got {f})"
                ));
            }
        }
        Ok(())
    }
}

/// Kinds of bad rows, each one of the ways a row fails to parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DirtyKind {
    /// `value` is text such as `FalseData`.
    BadFloat,
    /// `value` is `NaN`.
    NotANumber,
    /// `value` is `inf` or `-inf`.
    Infinite,
    /// `isActive` is not true/false.
    BadBool,
    /// `event_time` is not a valid time in the BTS format.
    BadTime,
    /// The row stops after 1–5 fields.
    MissingFields,
    /// `,,,,,,,`.
    AllEmpty,
    /// An empty line.
    EmptyLine,
    /// `station_id` is empty.
    EmptyKey,
}

impl DirtyKind {
    pub const ALL: [DirtyKind; 9] = [
        DirtyKind::BadFloat,
        DirtyKind::NotANumber,
        DirtyKind::Infinite,
        DirtyKind::BadBool,
        DirtyKind::BadTime,
        DirtyKind::MissingFields,
        DirtyKind::AllEmpty,
        DirtyKind::EmptyLine,
        DirtyKind::EmptyKey,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DirtyKind::BadFloat => "bad-float",
            DirtyKind::NotANumber => "nan",
            DirtyKind::Infinite => "infinite",
            DirtyKind::BadBool => "bad-bool",
            DirtyKind::BadTime => "bad-time",
            DirtyKind::MissingFields => "missing-fields",
            DirtyKind::AllEmpty => "all-empty",
            DirtyKind::EmptyLine => "empty-line",
            DirtyKind::EmptyKey => "empty-key",
        }
    }
}

/// One written line, as told to the observer of [`write_bts_with`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GenLine {
    /// 1-based line number in the output (the header, if any, is line 1).
    pub line: u64,
    /// Event time of the reading the line was made from.
    pub time: i64,
    /// Set when the line is a bad row.
    pub dirty: Option<DirtyKind>,
    /// How much earlier than the latest event time written before it
    /// (0 when in order), ms.
    pub late_ms: i64,
}

/// What was written.
#[derive(Debug, Clone, PartialEq)]
pub struct GenSummary {
    /// Lines written, not counting the header.
    pub lines: u64,
    pub good: u64,
    pub dirty: u64,
    pub dirty_by_kind: BTreeMap<DirtyKind, u64>,
    /// Lines written after a line with a later event time.
    pub out_of_order: u64,
    /// The largest such lateness, ms (≤ [`OUT_OF_ORDER_BOUND`]).
    pub max_lateness_ms: i64,
    /// Keys (station, data point, alarm) in the data set.
    pub keys: u64,
    /// Keys that ramp toward their threshold.
    pub ramp_keys: Vec<Vec<String>>,
    /// Earliest and latest event time, ms.
    pub first_time_ms: i64,
    pub last_time_ms: i64,
    /// Bytes written, header included.
    pub bytes: u64,
}

/// Writes BTS CSV per `config` to `out`.
pub fn write_bts(config: &BtsConfig, out: impl Write) -> io::Result<GenSummary> {
    write_bts_with(config, out, &mut |_| {})
}

/// [`write_bts`], telling `observer` about every line (progress, tests).
pub fn write_bts_with(
    config: &BtsConfig,
    out: impl Write,
    observer: &mut dyn FnMut(&GenLine),
) -> io::Result<GenSummary> {
    config.check()?;
    // Separate streams for the readings, their order and the dirt, so that
    // `out_of_order` and `dirty` do not change the readings themselves: the
    // good rows of a dirty run are rows of the clean run with the same seed.
    let mut rng = Rng::new(config.seed);
    let mut order_rng = Rng::new(config.seed ^ 0x6f72_6465_7200_0000);
    let dirty_rng = Rng::new(config.seed ^ 0x6469_7274_7900_0000);
    let mut sensors = build_sensors(config, &mut rng);
    let ramp_keys = choose_ramps(config, &mut sensors, &mut rng);
    let mut emitter = Emitter::new(config, out, observer, dirty_rng)?;
    let mut schedule: BinaryHeap<Reverse<(i64, usize)>> = sensors
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let phase = rng.below(s.period_s) as i64 * 1000;
            Reverse((config.start_ms / 1000 * 1000 + phase, i))
        })
        .collect();
    let mut held: Vec<(i64, Reading)> = Vec::new();
    for _ in 0..config.events {
        let Some(Reverse((time, i))) = schedule.pop() else {
            break;
        };
        let sensor = &mut sensors[i];
        let reading = sensor.next(i, time, &mut rng);
        let gap = (sensor.period_s + rng.below(3)) as i64 - 1;
        schedule.push(Reverse((time + gap * 1000, i)));

        // Release held rows once a row later than their deadline arrives.
        let mut k = 0;
        while k < held.len() {
            if held[k].0 < reading.time {
                let (_, r) = held.remove(k);
                emitter.emit(&r, &sensors)?;
            } else {
                k += 1;
            }
        }
        if config.out_of_order > 0.0 && order_rng.chance(config.out_of_order) {
            let delay = (1 + order_rng.below(OUT_OF_ORDER_BOUND.as_secs())) as i64 * 1000;
            held.push((reading.time + delay, reading));
        } else {
            emitter.emit(&reading, &sensors)?;
        }
    }
    for (_, r) in std::mem::take(&mut held) {
        emitter.emit(&r, &sensors)?;
    }
    let mut summary = emitter.finish()?;
    summary.keys = sensors.len() as u64;
    summary.ramp_keys = ramp_keys;
    tracing::debug!(?summary, "generated BTS data");
    Ok(summary)
}

/// Parses `--start`: `2017-02-18 18:28:05`, optionally followed by ` UTC`.
pub fn parse_start(text: &str) -> Result<i64, String> {
    let trimmed = text.trim();
    let bare = trimmed.strip_suffix("UTC").unwrap_or(trimmed).trim_end();
    chrono::NaiveDateTime::parse_from_str(bare, "%Y-%m-%d %H:%M:%S")
        .map(|t| t.and_utc().timestamp_millis())
        .map_err(|e| format!("start `{text}` is not `YYYY-MM-DD HH:MM:SS` (UTC): {e}"))
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Side {
    /// The alarm fires at or above the threshold.
    High,
    /// The alarm fires at or below the threshold.
    Low,
}

/// One kind of data point: its typical range and reporting period.
struct Kind {
    id: u32,
    mean: f64,
    /// Spread of per-key means around `mean`.
    spread: f64,
    /// Random-walk noise per reading.
    sigma: f64,
    min: f64,
    max: f64,
    decimals: i32,
    period_s: u64,
    alarms: &'static [(u32, Side, f64)],
}

const KINDS: [Kind; 8] = [
    // Grid (mains) voltage.
    Kind {
        id: 121,
        mean: 230.0,
        spread: 4.0,
        sigma: 1.5,
        min: 200.0,
        max: 260.0,
        decimals: 0,
        period_s: 10,
        alarms: &[
            (308, Side::High, 240.0),
            (309, Side::Low, 200.0),
            (310, Side::High, 250.0),
        ],
    },
    // DC battery voltage.
    Kind {
        id: 141,
        mean: 52.0,
        spread: 1.2,
        sigma: 0.15,
        min: 44.0,
        max: 58.0,
        decimals: 1,
        period_s: 15,
        alarms: &[(312, Side::Low, 47.0), (313, Side::High, 56.5)],
    },
    // Room temperature.
    Kind {
        id: 143,
        mean: 27.0,
        spread: 3.0,
        sigma: 0.3,
        min: 10.0,
        max: 50.0,
        decimals: 1,
        period_s: 30,
        alarms: &[(314, Side::High, 35.0), (315, Side::High, 40.0)],
    },
    // Cabinet temperature.
    Kind {
        id: 144,
        mean: 31.0,
        spread: 3.0,
        sigma: 0.3,
        min: 10.0,
        max: 60.0,
        decimals: 1,
        period_s: 30,
        alarms: &[(316, Side::High, 45.0)],
    },
    // Relative humidity.
    Kind {
        id: 145,
        mean: 65.0,
        spread: 10.0,
        sigma: 1.0,
        min: 20.0,
        max: 100.0,
        decimals: 0,
        period_s: 60,
        alarms: &[(317, Side::High, 90.0)],
    },
    // Rectifier load current.
    Kind {
        id: 115,
        mean: 35.0,
        spread: 10.0,
        sigma: 1.0,
        min: 0.0,
        max: 100.0,
        decimals: 1,
        period_s: 10,
        alarms: &[(318, Side::High, 80.0)],
    },
    // Generator fuel level.
    Kind {
        id: 160,
        mean: 70.0,
        spread: 15.0,
        sigma: 0.5,
        min: 0.0,
        max: 100.0,
        decimals: 0,
        period_s: 60,
        alarms: &[(320, Side::Low, 15.0)],
    },
    // Mains frequency.
    Kind {
        id: 150,
        mean: 50.0,
        spread: 0.05,
        sigma: 0.03,
        min: 49.0,
        max: 51.0,
        decimals: 2,
        period_s: 5,
        alarms: &[(330, Side::High, 50.5), (331, Side::Low, 49.5)],
    },
];

/// A value climbing linearly to the threshold.
#[derive(Debug, Clone)]
struct Ramp {
    from: f64,
    step: f64,
    done: u64,
}

/// One key's generator state.
#[derive(Debug, Clone)]
struct Sensor {
    /// `station,datapoint,alarm,` — the start of every line.
    prefix: String,
    parts: Vec<String>,
    side: Side,
    threshold: f64,
    /// `threshold` is a real limit (not [`NO_THRESHOLD`]).
    limited: bool,
    catalogue_threshold: f64,
    mean: f64,
    value: f64,
    sigma: f64,
    min: f64,
    max: f64,
    scale: f64,
    period_s: u64,
    active_run: bool,
    ramp: Option<Ramp>,
}

/// One reading, before it is written as a line.
#[derive(Debug, Clone, Copy)]
struct Reading {
    sensor: usize,
    time: i64,
    value: f64,
    active: bool,
}

impl Sensor {
    fn next(&mut self, index: usize, time: i64, rng: &mut Rng) -> Reading {
        let value = match &mut self.ramp {
            Some(ramp) => {
                ramp.done += 1;
                let line = ramp.from + ramp.step * ramp.done as f64;
                let plateau = self.threshold + 3.0 * ramp.step.abs();
                line.min(plateau) + rng.normal() * ramp.step.abs() * 0.3
            }
            None => {
                // Mean-reverting walk, with a rare one-reading spike.
                self.value += 0.1 * (self.mean - self.value) + self.sigma * rng.normal();
                self.value = self.value.clamp(self.min, self.max);
                if rng.chance(0.001) {
                    self.value * rng.range(1.25, 1.6)
                } else {
                    self.value
                }
            }
        };
        let value = (value * self.scale).round() / self.scale;
        let breached = self.limited
            && match self.side {
                Side::High => value >= self.threshold,
                Side::Low => value <= self.threshold,
            };
        // Alarms that switch on for runs of about a dozen readings.
        self.active_run = if self.active_run {
            !rng.chance(0.08)
        } else {
            rng.chance(0.004)
        };
        Reading {
            sensor: index,
            time,
            value,
            active: breached || self.active_run,
        }
    }
}

fn build_sensors(config: &BtsConfig, rng: &mut Rng) -> Vec<Sensor> {
    let mut sensors = Vec::new();
    for s in 0..config.stations {
        let station = format!("{}", 1_161_114_001u64 + u64::from(s) * 37);
        let mut kinds: Vec<usize> = (0..KINDS.len()).collect();
        rng.shuffle(&mut kinds);
        let mut chosen: Vec<usize> = kinds[..4 + rng.below(3) as usize].to_vec();
        chosen.sort_by_key(|&k| KINDS[k].id);
        for k in chosen {
            let kind = &KINDS[k];
            let alarms = 1 + rng.below(kind.alarms.len().min(3) as u64) as usize;
            let mean = kind.mean + rng.range(-kind.spread, kind.spread);
            let period_s = kind.period_s + rng.below(kind.period_s / 2 + 1);
            for &(alarm, side, threshold) in &kind.alarms[..alarms] {
                let limited = !rng.chance(0.4);
                let parts = vec![station.clone(), kind.id.to_string(), alarm.to_string()];
                sensors.push(Sensor {
                    prefix: format!("{},{},{},", parts[0], parts[1], parts[2]),
                    parts,
                    side,
                    threshold: if limited { threshold } else { NO_THRESHOLD },
                    limited,
                    catalogue_threshold: threshold,
                    mean,
                    value: mean,
                    sigma: kind.sigma,
                    min: kind.min,
                    max: kind.max,
                    scale: 10f64.powi(kind.decimals),
                    period_s,
                    active_run: false,
                    ramp: None,
                });
            }
        }
    }
    sensors
}

/// Picks `config.ramp` keys with an upper threshold and sets them climbing
/// so they reach it after about two thirds of their expected readings.
fn choose_ramps(config: &BtsConfig, sensors: &mut [Sensor], rng: &mut Rng) -> Vec<Vec<String>> {
    let rate: f64 = sensors.iter().map(|s| 1.0 / s.period_s as f64).sum();
    let mut candidates: Vec<usize> = (0..sensors.len())
        .filter(|&i| sensors[i].side == Side::High)
        .collect();
    rng.shuffle(&mut candidates);
    candidates.truncate(config.ramp as usize);
    candidates.sort_unstable();
    let mut keys = Vec::new();
    for i in candidates {
        let s = &mut sensors[i];
        let expected = config.events as f64 * (1.0 / s.period_s as f64) / rate;
        let rows = (expected * 2.0 / 3.0).max(20.0);
        s.threshold = s.catalogue_threshold;
        s.limited = true;
        s.ramp = Some(Ramp {
            from: s.mean,
            step: (s.threshold - s.mean) / rows,
            done: 0,
        });
        keys.push(s.parts.clone());
    }
    keys
}

/// Writes lines: picks the dirty ones, formats, counts.
struct Emitter<'o, W: Write> {
    out: BufWriter<W>,
    observer: &'o mut dyn FnMut(&GenLine),
    rng: Rng,
    line: Vec<u8>,
    line_no: u64,
    /// Lines still to write, and how many of them must be dirty.
    remaining: u64,
    remaining_dirty: u64,
    kind_offset: usize,
    max_time: i64,
    summary: GenSummary,
}

impl<'o, W: Write> Emitter<'o, W> {
    fn new(
        config: &BtsConfig,
        out: W,
        observer: &'o mut dyn FnMut(&GenLine),
        mut rng: Rng,
    ) -> io::Result<Self> {
        let mut out = BufWriter::with_capacity(1 << 16, out);
        let mut bytes = 0;
        let mut line_no = 0;
        if config.header {
            out.write_all(HEADER.as_bytes())?;
            out.write_all(b"\n")?;
            bytes = HEADER.len() as u64 + 1;
            line_no = 1;
        }
        let kind_offset = rng.below(DirtyKind::ALL.len() as u64) as usize;
        Ok(Emitter {
            out,
            observer,
            rng,
            line: Vec::with_capacity(128),
            line_no,
            remaining: config.events,
            remaining_dirty: (config.events as f64 * config.dirty).round() as u64,
            kind_offset,
            max_time: i64::MIN,
            summary: GenSummary {
                lines: 0,
                good: 0,
                dirty: 0,
                dirty_by_kind: BTreeMap::new(),
                out_of_order: 0,
                max_lateness_ms: 0,
                keys: 0,
                ramp_keys: Vec::new(),
                first_time_ms: i64::MAX,
                last_time_ms: i64::MIN,
                bytes,
            },
        })
    }

    fn emit(&mut self, r: &Reading, sensors: &[Sensor]) -> io::Result<()> {
        let sensor = &sensors[r.sensor];
        // Selection sampling: exactly `remaining_dirty` of the remaining
        // lines are dirty, at uniformly random positions.
        let dirty =
            if self.remaining_dirty > 0 && self.rng.below(self.remaining) < self.remaining_dirty {
                self.remaining_dirty -= 1;
                let kind = DirtyKind::ALL
                    [(self.kind_offset + self.summary.dirty as usize) % DirtyKind::ALL.len()];
                Some(kind)
            } else {
                None
            };
        self.remaining = self.remaining.saturating_sub(1);
        self.line.clear();
        write_line(&mut self.line, sensor, r, dirty, &mut self.rng);
        self.out.write_all(&self.line)?;

        let s = &mut self.summary;
        s.bytes += self.line.len() as u64;
        s.lines += 1;
        match dirty {
            Some(kind) => {
                s.dirty += 1;
                *s.dirty_by_kind.entry(kind).or_default() += 1;
            }
            None => s.good += 1,
        }
        let late_ms = if r.time < self.max_time {
            s.out_of_order += 1;
            s.max_lateness_ms = s.max_lateness_ms.max(self.max_time - r.time);
            self.max_time - r.time
        } else {
            self.max_time = r.time;
            0
        };
        s.first_time_ms = s.first_time_ms.min(r.time);
        s.last_time_ms = s.last_time_ms.max(r.time);
        self.line_no += 1;
        (self.observer)(&GenLine {
            line: self.line_no,
            time: r.time,
            dirty,
            late_ms,
        });
        Ok(())
    }

    fn finish(mut self) -> io::Result<GenSummary> {
        self.out.flush()?;
        let mut s = self.summary;
        if s.lines == 0 {
            s.first_time_ms = 0;
            s.last_time_ms = 0;
        }
        Ok(s)
    }
}

/// Formats one line (with its `\n`), good or dirty.
fn write_line(out: &mut Vec<u8>, s: &Sensor, r: &Reading, dirty: Option<DirtyKind>, rng: &mut Rng) {
    use std::io::Write as _;
    let time = format_time(r.time);
    let time = time.as_slice();
    let active: &[u8] = if r.active { b"true" } else { b"false" };
    // Fields in order; dirty kinds replace or drop some.
    let value = format!("{}", r.value);
    let threshold = format!("{}", s.threshold);
    let prefix = s.prefix.as_bytes();
    let pick = |rng: &mut Rng, options: &[&'static str]| -> &'static str {
        options[rng.below(options.len() as u64) as usize]
    };
    match dirty {
        None => {
            out.extend_from_slice(prefix);
            out.extend_from_slice(time);
            let _ = write!(out, ",{value},{threshold},");
            out.extend_from_slice(active);
            out.extend_from_slice(b",");
        }
        Some(DirtyKind::BadFloat) => {
            let junk = pick(rng, &["FalseData", "n/a", "12.5.1", "--", "2x3"]);
            out.extend_from_slice(prefix);
            out.extend_from_slice(time);
            let _ = write!(out, ",{junk},{threshold},");
            out.extend_from_slice(active);
            out.extend_from_slice(b",");
        }
        Some(DirtyKind::NotANumber) => {
            out.extend_from_slice(prefix);
            out.extend_from_slice(time);
            let _ = write!(out, ",NaN,{threshold},");
            out.extend_from_slice(active);
            out.extend_from_slice(b",");
        }
        Some(DirtyKind::Infinite) => {
            let inf = pick(rng, &["inf", "-inf", "infinity"]);
            out.extend_from_slice(prefix);
            out.extend_from_slice(time);
            let _ = write!(out, ",{inf},{threshold},");
            out.extend_from_slice(active);
            out.extend_from_slice(b",");
        }
        Some(DirtyKind::BadBool) => {
            let b = pick(rng, &["yes", "1", "maybe", "T", "active"]);
            out.extend_from_slice(prefix);
            out.extend_from_slice(time);
            let _ = write!(out, ",{value},{threshold},{b},");
        }
        Some(DirtyKind::BadTime) => {
            // Kept close to real so only the time fails.
            let bad = match rng.below(4) {
                0 => String::from_utf8_lossy(time)
                    .replacen(" UTC", "Z", 1)
                    .replacen(' ', "T", 1),
                1 => "2017-02-30 18:28:05 UTC".to_owned(),
                2 => String::from_utf8_lossy(&time[..19]).replacen(':', ";", 2),
                _ => "18/02/2017 18:28:05".to_owned(),
            };
            out.extend_from_slice(prefix);
            let _ = write!(out, "{bad},{value},{threshold},");
            out.extend_from_slice(active);
            out.extend_from_slice(b",");
        }
        Some(DirtyKind::MissingFields) => {
            let mut full = Vec::with_capacity(96);
            full.extend_from_slice(prefix);
            full.extend_from_slice(time);
            let _ = write!(full, ",{value},{threshold},");
            let keep = 1 + rng.below(5) as usize; // 1..=5 of the 8 fields
            let cut = full
                .iter()
                .enumerate()
                .filter(|&(_, &b)| b == b',')
                .nth(keep - 1)
                .map_or(full.len(), |(i, _)| i);
            out.extend_from_slice(&full[..cut]);
        }
        Some(DirtyKind::AllEmpty) => out.extend_from_slice(b",,,,,,,"),
        Some(DirtyKind::EmptyLine) => {}
        Some(DirtyKind::EmptyKey) => {
            // The prefix without its station: `,datapoint,alarm,`.
            let station_len = s.parts.first().map_or(0, String::len);
            out.extend_from_slice(&prefix[station_len..]);
            out.extend_from_slice(time);
            let _ = write!(out, ",{value},{threshold},");
            out.extend_from_slice(active);
            out.extend_from_slice(b",");
        }
    }
    out.push(b'\n');
}

/// `2017-02-18 18:28:05 UTC` for ms since the epoch (the data set's
/// format), without chrono's formatter in the hot loop.
pub fn format_time(ms: i64) -> [u8; 23] {
    let secs = ms.div_euclid(1000);
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    let mut out = *b"0000-00-00 00:00:00 UTC";
    let mut put = |at: usize, width: usize, mut v: i64| {
        for i in (0..width).rev() {
            out[at + i] = b'0' + (v.rem_euclid(10)) as u8;
            v /= 10;
        }
    };
    put(0, 4, y);
    put(5, 2, m);
    put(8, 2, d);
    put(11, 2, sod / 3600);
    put(14, 2, sod / 60 % 60);
    put(17, 2, sod % 60);
    out
}

/// Proleptic Gregorian date of a day count since 1970-01-01 (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}
