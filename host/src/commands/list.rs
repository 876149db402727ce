//! `sluice list`: a running host's tenants (and partitions) as a table or
//! the API's JSON.

use sluice_host::client::admin::AdminClient;

use super::args::AdminArgs;

#[derive(clap::Args)]
pub struct Args {
    /// Print the API's JSON instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    admin: AdminArgs,
}

pub fn list(Args { json, admin }: Args) -> anyhow::Result<()> {
    let client = AdminClient::new(&admin.admin, admin.token)?;
    let tenants = client.list()?;
    if json {
        println!("{}", serde_json::to_string_pretty(&tenants)?);
    } else {
        print_list(&tenants);
    }
    Ok(())
}

/// `sluice list` as a table.
fn print_list(tenants: &serde_json::Value) {
    let rows = tenants.as_array().map(Vec::as_slice).unwrap_or(&[]);
    println!(
        "{:<20} {:<8} {:<14} {:>12} {:>8} {:>10} {:>7}  reason",
        "TENANT", "STATE", "MODULE", "RECORDS IN", "ERRORS", "OUTPUTS", "TRAPS"
    );
    for t in rows {
        let c = &t["counters"];
        let hash = t["module"]["sha256"].as_str().unwrap_or("");
        println!(
            "{:<20} {:<8} {:<14} {:>12} {:>8} {:>10} {:>7}  {}",
            t["tenant"].as_str().unwrap_or(""),
            t["state"].as_str().unwrap_or(""),
            hash.get(..12).unwrap_or(hash),
            c["records_in"].as_u64().unwrap_or(0),
            c["deserialization_errors"].as_u64().unwrap_or(0),
            c["outputs"].as_u64().unwrap_or(0),
            c["guest_traps"].as_u64().unwrap_or(0),
            t["reason"].as_str().unwrap_or(""),
        );
    }
    for t in rows {
        let Some(parts) = t["partitions"].as_array() else {
            continue;
        };
        let owned = parts.iter().filter(|p| p["state"] == "active").count();
        println!(
            "\n{}: this host runs {owned} of {} partitions",
            t["tenant"].as_str().unwrap_or(""),
            parts.len()
        );
        println!(
            "{:>4} {:<8} {:>5} {:>6} {:>5} {:<24} {:>6} {:>12}",
            "P", "STATE", "GEN", "LAG", "HOSTS", "WATERMARK", "KEYS", "RECORDS IN"
        );
        for p in parts {
            let watermark = p["watermark"]
                .as_i64()
                .and_then(chrono::DateTime::from_timestamp_millis)
                .map_or_else(
                    || "-".to_owned(),
                    |t| t.format("%Y-%m-%d %H:%M:%S").to_string(),
                );
            println!(
                "{:>4} {:<8} {:>5} {:>6} {:>5} {:<24} {:>6} {:>12}",
                p["partition"].as_u64().unwrap_or(0),
                p["state"].as_str().unwrap_or(""),
                p["generation"].as_i64().unwrap_or(0),
                p["lag"].as_u64().unwrap_or(0),
                p["hosts"].as_u64().unwrap_or(0),
                watermark,
                p["keys"].as_u64().unwrap_or(0),
                p["records_in"].as_u64().unwrap_or(0),
            );
        }
    }
}
