//! `sluice pause`: a running host stops consuming a tenant's queue.

use sluice_host::client::admin::AdminClient;

use super::args::AdminArgs;

#[derive(clap::Args)]
pub struct Args {
    tenant: String,
    #[command(flatten)]
    admin: AdminArgs,
}

pub fn pause(Args { tenant, admin }: Args) -> anyhow::Result<()> {
    let client = AdminClient::new(&admin.admin, admin.token)?;
    client.control(&tenant, "pause")?;
    eprintln!("sluice pause: tenant `{tenant}` paused");
    Ok(())
}
