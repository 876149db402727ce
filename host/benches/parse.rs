//! Parse benchmark: rows/s of `RowParser` on 1 000 000 generated BTS rows,
//! with the fast timestamp path and with chrono's parser, and the cost of
//! one timestamp on each path. Prints figures; never passes or fails on
//! time.
//!
//! `cargo bench -p sluice-host --bench parse`
//!
//! The chrono path is measured through the same manifest with the event
//! time format spelled `%F %T UTC`: it means exactly what
//! `%Y-%m-%d %H:%M:%S UTC` means, but is not the literal the fast path
//! recognises, so every timestamp goes through chrono.

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use sluice_host::generate::bts::{write_bts, BtsConfig};
use sluice_host::manifest::{InputSpec, Manifest};
use sluice_host::parse::{RowParser, TimestampFormat, BTS_TIME_FORMAT};

const ROWS: u64 = 1_000_000;

/// Best of `runs` timings of `f`.
fn best(runs: u32, mut f: impl FnMut()) -> Duration {
    (0..runs)
        .map(|_| {
            let started = Instant::now();
            f();
            started.elapsed()
        })
        .min()
        .unwrap_or_default()
}

fn per_sec(n: u64, t: Duration) -> f64 {
    n as f64 / t.as_secs_f64()
}

fn ns_each(n: u64, t: Duration) -> f64 {
    t.as_nanos() as f64 / n as f64
}

fn parse_all(spec: &InputSpec, data: &[u8]) -> (u64, u64) {
    let Ok(mut parser) = RowParser::new(spec) else {
        panic!("parser for the BTS input");
    };
    let (mut good, mut bad) = (0u64, 0u64);
    for row in parser.parse_message(data, "bench") {
        match black_box(row) {
            Ok(_) => good += 1,
            Err(_) => bad += 1,
        }
    }
    (good, bad)
}

fn main() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/bts-analytics/sluice.toml");
    let manifest = match Manifest::from_path(&path) {
        Ok(m) => m,
        Err(e) => panic!("{e}"),
    };
    let fast = manifest.input.clone();
    let mut slow = manifest.input.clone();
    for c in &mut slow.columns {
        if c.format.as_deref() == Some(BTS_TIME_FORMAT) {
            c.format = Some("%F %T UTC".to_owned());
        }
    }

    let config = BtsConfig {
        seed: 1,
        stations: 100,
        events: ROWS,
        ..BtsConfig::default()
    };
    let mut data = Vec::with_capacity(80 * ROWS as usize);
    let started = Instant::now();
    let summary = match write_bts(&config, &mut data) {
        Ok(s) => s,
        Err(e) => panic!("generating: {e}"),
    };
    let gen_time = started.elapsed();
    println!(
        "generated {} BTS rows ({} keys, {:.1} MB) in {:.2?}: {:.2} M rows/s",
        summary.lines,
        summary.keys,
        data.len() as f64 / 1e6,
        gen_time,
        per_sec(ROWS, gen_time) / 1e6
    );

    let (good, bad) = parse_all(&fast, &data);
    assert_eq!((good, bad), (ROWS, 0), "every generated row parses");
    let t_fast = best(3, || {
        black_box(parse_all(&fast, &data));
    });
    let t_slow = best(3, || {
        black_box(parse_all(&slow, &data));
    });
    println!(
        "parse rows, fast timestamp path:   {:>6.2} M rows/s ({:.0} ns/row, {:.0} MB/s)",
        per_sec(ROWS, t_fast) / 1e6,
        ns_each(ROWS, t_fast),
        data.len() as f64 / t_fast.as_secs_f64() / 1e6
    );
    println!(
        "parse rows, chrono timestamp path: {:>6.2} M rows/s ({:.0} ns/row)",
        per_sec(ROWS, t_slow) / 1e6,
        ns_each(ROWS, t_slow)
    );
    println!(
        "  rows/s ratio fast/chrono: {:.2}x",
        t_slow.as_secs_f64() / t_fast.as_secs_f64()
    );

    // Timestamps alone: the 4th field of every line.
    let stamps: Vec<&[u8]> = data
        .split(|&b| b == b'\n')
        .filter_map(|line| line.split(|&b| b == b',').nth(3))
        .collect();
    let format = match TimestampFormat::new(BTS_TIME_FORMAT) {
        Ok(f) => f,
        Err(e) => panic!("{e}"),
    };
    let n = stamps.len() as u64;
    let mut sum = 0i64;
    let t_ts_fast = best(5, || {
        for s in &stamps {
            sum = sum.wrapping_add(format.parse(black_box(s)).unwrap_or(0));
        }
    });
    let t_ts_chrono = best(3, || {
        for s in &stamps {
            sum = sum.wrapping_add(format.parse_with_chrono(black_box(s)).unwrap_or(0));
        }
    });
    black_box(sum);
    println!(
        "timestamp, fast path:   {:>6.1} ns each",
        ns_each(n, t_ts_fast)
    );
    println!(
        "timestamp, chrono path: {:>6.1} ns each (pre-parsed items)",
        ns_each(n, t_ts_chrono)
    );
    println!(
        "  timestamp ratio chrono/fast: {:.1}x",
        t_ts_chrono.as_secs_f64() / t_ts_fast.as_secs_f64()
    );
}
