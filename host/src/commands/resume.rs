//! `sluice resume`: a running host consumes a paused tenant's queue again.

use sluice_host::client::admin::AdminClient;

use super::args::AdminArgs;

#[derive(clap::Args)]
pub struct Args {
    tenant: String,
    #[command(flatten)]
    admin: AdminArgs,
}

pub fn resume(Args { tenant, admin }: Args) -> anyhow::Result<()> {
    let client = AdminClient::new(&admin.admin, admin.token)?;
    client.control(&tenant, "resume")?;
    eprintln!("sluice resume: tenant `{tenant}` consuming again");
    Ok(())
}
