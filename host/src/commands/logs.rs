//! `sluice logs`: a tenant's log book on a running host, one line per
//! entry; `--follow` polls for what follows until interrupted, saying how
//! many entries were evicted unread when it falls behind.

use std::time::Duration;

use anyhow::Context;
use sluice_host::client::admin::AdminClient;

use super::args::{parse_duration, AdminArgs};

#[derive(clap::Args)]
pub struct Args {
    tenant: String,
    /// Keep printing entries as they come.
    #[arg(long, short = 'f')]
    follow: bool,
    /// With `--follow`: how often to ask.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    interval: Duration,
    /// Print the entries as JSON lines (`seq`, `time`, `level`, `source`,
    /// `message`).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    admin: AdminArgs,
}

/// Entries asked for per request (the API's most).
const PAGE: usize = 1000;

pub fn logs(args: Args) -> anyhow::Result<()> {
    let client = AdminClient::new(&args.admin.admin, args.admin.token.clone())?;
    let mut after = 0;
    loop {
        let page = client.logs(&args.tenant, after, PAGE)?;
        let missed = page["missed"].as_u64().unwrap_or(0);
        if missed > 0 {
            eprintln!("sluice logs: {missed} entries were evicted before they were read");
        }
        let entries = page["entries"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        for entry in entries {
            if args.json {
                println!("{}", serde_json::to_string(entry).context("an entry")?);
            } else {
                println!("{}", line(entry));
            }
        }
        after = page["next"].as_u64().unwrap_or(after);
        if entries.len() == PAGE {
            continue; // more is waiting
        }
        if !args.follow {
            let limited = page["rate_limited"].as_u64().unwrap_or(0);
            if limited > 0 {
                eprintln!("sluice logs: {limited} guest lines were dropped by the rate limit");
            }
            return Ok(());
        }
        std::thread::sleep(args.interval);
    }
}

/// `2026-12-07T18:00:00.123Z WARN  trap   message`.
fn line(entry: &serde_json::Value) -> String {
    let time = entry["time"]
        .as_i64()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map_or_else(
            || "-".to_owned(),
            |t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        );
    format!(
        "{time} {:<5} {:<6} {}",
        entry["level"].as_str().unwrap_or("").to_uppercase(),
        entry["source"].as_str().unwrap_or(""),
        entry["message"].as_str().unwrap_or(""),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_reads_as_one_line() {
        let entry = serde_json::json!({
            "seq": 3, "time": 1_765_130_400_123_i64, "level": "warn",
            "source": "trap", "message": "tenant `a`: `alerts` trapped: boom",
        });
        assert_eq!(
            line(&entry),
            "2025-12-07T18:00:00.123Z WARN  trap   tenant `a`: `alerts` trapped: boom"
        );
    }
}
