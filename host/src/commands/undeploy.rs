//! `sluice undeploy`: stops a tenant on a running host for good.

use sluice_host::client::admin::AdminClient;

use super::args::AdminArgs;

#[derive(clap::Args)]
pub struct Args {
    tenant: String,
    #[command(flatten)]
    admin: AdminArgs,
}

pub fn undeploy(Args { tenant, admin }: Args) -> anyhow::Result<()> {
    let client = AdminClient::new(&admin.admin, admin.token)?;
    let view = client.undeploy(&tenant)?;
    eprintln!(
        "sluice undeploy: tenant `{tenant}` stopped after {} records in, {} outputs",
        view["counters"]["records_in"], view["counters"]["outputs"]
    );
    Ok(())
}
