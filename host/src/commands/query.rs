//! `sluice query`: the results stored in Cassandra back as the JSON lines
//! `sluice run` prints.

use anyhow::Context;
use sluice_host::cassandra::{self, CassandraConfig, QueryFilter};
use sluice_host::sink::OutputType;

use super::args::{column_pairs, nodes};
use super::common::runtime;

#[derive(clap::Args)]
pub struct Args {
    /// Cassandra node(s), `HOST:PORT[,HOST:PORT…]`.
    #[arg(long, env = "SLUICE_CASSANDRA")]
    cassandra: String,
    #[arg(long, default_value = CassandraConfig::DEFAULT_KEYSPACE)]
    keyspace: String,
    /// The tenant.
    #[arg(long)]
    tenant: String,
    /// Only this result type.
    #[arg(long = "type", value_parser = super::args::output_type())]
    ty: Option<OutputType>,
    /// Only keys with these values: `column=value,column=value`.
    #[arg(long)]
    key: Option<String>,
}

pub fn query(
    Args {
        cassandra: list,
        keyspace,
        tenant,
        ty,
        key,
    }: Args,
) -> anyhow::Result<()> {
    let key = key.as_deref();
    let nodes = nodes(&list)?;
    let pairs = column_pairs(key, "--key")?;
    let filter = QueryFilter {
        tenant,
        ty,
        key: pairs,
    };
    let rt = runtime()?;
    let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
    let printed = rt.block_on(async {
        let session = cassandra::connect(&nodes).await?;
        cassandra::query(&session, &keyspace, &filter, &mut stdout).await
    });
    match printed {
        Ok(n) => {
            eprintln!("sluice query: {n} results");
            Ok(())
        }
        Err(e) => Err(e).with_context(|| format!("querying keyspace {keyspace} at {list}")),
    }
}
