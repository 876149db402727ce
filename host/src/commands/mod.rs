//! One module per subcommand of `sluice`: its arguments (`Args`, flattened
//! into `main.rs`'s `Command`) and the function that runs it. Argument
//! groups several subcommands share are in `args`; the little setup they
//! share (runtime, tenant loading, output files) in `common`; the
//! progress line in `progress`.

pub mod args;
pub mod common;
pub mod progress;

pub mod batch;
pub mod build;
pub mod deploy;
pub mod gen_bts;
pub mod inspect;
pub mod list;
pub mod logs;
pub mod new;
pub mod pause;
pub mod publish;
pub mod query;
pub mod resume;
pub mod run;
pub mod serve;
pub mod tail;
pub mod test;
pub mod undeploy;
