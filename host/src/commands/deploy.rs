//! `sluice deploy`: uploads a manifest and the module it names to a
//! running host.

use std::path::PathBuf;

use sluice_host::client::admin::AdminClient;

use super::args::AdminArgs;

#[derive(clap::Args)]
pub struct Args {
    manifest: PathBuf,
    #[command(flatten)]
    admin: AdminArgs,
}

pub fn deploy(Args { manifest, admin }: Args) -> anyhow::Result<()> {
    let client = AdminClient::new(&admin.admin, admin.token)?;
    let view = client.deploy(&manifest)?;
    eprintln!(
        "sluice deploy: tenant `{}` running module {}",
        view["tenant"].as_str().unwrap_or("?"),
        view["module"]["sha256"].as_str().unwrap_or("?")
    );
    Ok(())
}
