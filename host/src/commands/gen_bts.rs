//! `sluice gen-bts`: realistic BTS sensor CSV, deterministic from a seed.

use std::path::PathBuf;

use anyhow::Context;
use sluice_host::generate::bts::{self, BtsConfig};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long, default_value_t = 10)]
    stations: u32,
    /// Lines to write (good and dirty; not counting a header).
    #[arg(long, default_value_t = 100_000)]
    events: u64,
    /// First event time, UTC.
    #[arg(long, default_value = "2017-02-18 18:28:05")]
    start: String,
    /// Fraction of rows held back by 1–3 s of event time (never more:
    /// `max_out_of_orderness = "3s"` or more sees no late row).
    #[arg(long, default_value_t = 0.0)]
    out_of_order: f64,
    /// Fraction of lines that are bad rows of every kind.
    #[arg(long, default_value_t = 0.0)]
    dirty: f64,
    /// Keys whose value climbs to their threshold (predicted-breach).
    #[arg(long, default_value_t = 0)]
    ramp: u32,
    /// Write the CSV header line first.
    #[arg(long)]
    header: bool,
    /// Write here (with a progress bar) instead of stdout.
    #[arg(long, short)]
    output: Option<PathBuf>,
}

pub fn gen_bts(
    Args {
        seed,
        stations,
        events,
        start,
        out_of_order,
        dirty,
        ramp,
        header,
        output,
    }: Args,
) -> anyhow::Result<()> {
    let config = BtsConfig {
        seed,
        stations,
        events,
        start_ms: bts::parse_start(&start).map_err(anyhow::Error::msg)?,
        out_of_order,
        dirty,
        ramp,
        header,
    };
    write(&config, output.as_deref())
}

fn write(config: &BtsConfig, output: Option<&std::path::Path>) -> anyhow::Result<()> {
    let summary = match output {
        Some(path) => {
            let file = std::fs::File::create(path)
                .with_context(|| format!("creating {}", path.display()))?;
            let bar = indicatif::ProgressBar::new(config.events).with_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:40} {pos}/{len} rows, {per_sec}, eta {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            let summary = bts::write_bts_with(config, file, &mut |line| {
                if line.line % 8192 == 0 {
                    bar.set_position(line.line);
                }
            })
            .with_context(|| format!("writing {}", path.display()))?;
            bar.finish_and_clear();
            summary
        }
        None => match bts::write_bts(config, std::io::stdout().lock()) {
            Ok(summary) => summary,
            // `sluice gen-bts | head` is not an error.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
            Err(e) => return Err(e).context("writing to stdout"),
        },
    };
    eprintln!(
        "{} lines ({} good, {} dirty), {} keys, {} out of order (max {} ms late), \
         {} ramp keys, event time {} .. {}, {} bytes",
        summary.lines,
        summary.good,
        summary.dirty,
        summary.keys,
        summary.out_of_order,
        summary.max_lateness_ms,
        summary.ramp_keys.len(),
        String::from_utf8_lossy(&bts::format_time(summary.first_time_ms)),
        String::from_utf8_lossy(&bts::format_time(summary.last_time_ms)),
        summary.bytes,
    );
    Ok(())
}
