//! `sluice publish`: CSV lines to a tenant's input queue (the sensor
//! simulator).

use std::path::PathBuf;

use anyhow::Context;
use sluice_host::amqp::publish::{self as publisher, PublishConfig};
use sluice_host::amqp::topology;
use sluice_host::manifest::Manifest;

use super::common::runtime;

#[derive(clap::Args)]
pub struct Args {
    /// RabbitMQ URL.
    #[arg(long, env = "SLUICE_AMQP_URL")]
    amqp: String,
    /// The input queue (declared as the host declares it).
    #[arg(long, required_unless_present = "manifest")]
    queue: Option<String>,
    /// Take the queue from this manifest's `[input] queue`; with
    /// `[input] partitions`, publish to its partition exchange with
    /// each record's key as the routing key.
    #[arg(long)]
    manifest: Option<PathBuf>,
    /// CSV file, or `-` for stdin.
    file: String,
    /// Rows per second (default: as fast as the broker confirms).
    #[arg(long)]
    rate: Option<f64>,
    /// CSV lines per message.
    #[arg(long, default_value_t = 1)]
    lines_per_message: usize,
    /// Unconfirmed messages in flight.
    #[arg(long, default_value_t = 2000)]
    max_in_flight: usize,
}

pub fn publish(
    Args {
        amqp,
        queue,
        manifest,
        file,
        rate,
        lines_per_message,
        max_in_flight,
    }: Args,
) -> anyhow::Result<()> {
    let (queue, partitioned) = match (queue, manifest) {
        (Some(q), _) => (q, None),
        (None, Some(m)) => {
            let input = Manifest::from_path(&m)
                .context("loading the manifest")?
                .input;
            let partitioned = input.partitions.map(|count| {
                (
                    input.clone(),
                    topology::Partitioned {
                        base: input.queue.clone(),
                        count,
                    },
                )
            });
            (input.queue, partitioned)
        }
        (None, None) => anyhow::bail!("give --queue or --manifest"),
    };
    publish_file(
        PublishConfig {
            url: amqp,
            queue,
            source_name: if file == "-" {
                "stdin".to_owned()
            } else {
                file.clone()
            },
            rate,
            lines_per_message,
            max_in_flight,
            partitioned,
        },
        &file,
    )
}

fn publish_file(config: PublishConfig, file: &str) -> anyhow::Result<()> {
    let (input, total): (Box<dyn std::io::BufRead>, Option<u64>) = if file == "-" {
        (Box::new(std::io::stdin().lock()), None)
    } else {
        let f = std::fs::File::open(file).with_context(|| format!("opening {file}"))?;
        let len = f.metadata().ok().map(|m| m.len());
        (Box::new(std::io::BufReader::with_capacity(1 << 16, f)), len)
    };
    let bar = match total {
        Some(len) => indicatif::ProgressBar::new(len).with_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {bytes}/{total_bytes} {bytes_per_sec}, eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        ),
        None => indicatif::ProgressBar::new_spinner(),
    };
    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr_with_hz(4));
    let rt = runtime()?;
    let summary = rt
        .block_on(publisher::publish(
            &config,
            input,
            async {
                let _ = tokio::signal::ctrl_c().await;
            },
            |bytes| bar.set_position(bytes),
        ))
        .with_context(|| format!("publishing {file} to the queue {}", config.queue))?;
    bar.finish_and_clear();
    eprintln!(
        "sluice publish: {}{} messages, {} rows, {:.1} MB confirmed{} in {:.2} s: {:.0} msgs/s, {:.0} rows/s",
        if summary.interrupted { "interrupted; " } else { "" },
        summary.messages,
        summary.rows,
        summary.bytes as f64 / 1e6,
        if summary.nacked > 0 { format!(" ({} refused by the broker)", summary.nacked) } else { String::new() },
        summary.elapsed.as_secs_f64(),
        summary.messages_per_sec(),
        summary.rows_per_sec(),
    );
    if summary.nacked > 0 {
        anyhow::bail!("{} messages were refused by the broker", summary.nacked);
    }
    Ok(())
}
