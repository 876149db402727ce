//! Partitioned tenants over several `sluice serve` hosts (issue 9): real
//! `sluice serve` processes on loopback (their own admin ports and state
//! directories), one RabbitMQ (`scripts/services.sh start rabbitmq`, with
//! the consistent-hash exchange plugin), one Cassandra (results,
//! checkpoints and partition ownership), the real BTS component.
//!
//! Results are compared as the rows Cassandra holds (`sluice query`), with
//! the tenant name taken out: several hosts = one host = the embedded run
//! of the same file; a SIGKILLed host's partitions move and the results
//! stay exact; a host joining and one leaving gracefully change nothing.
//! The tests run one at a time (each starts up to four hosts on two
//! cores).

#[path = "../broker/amqp.rs"]
#[allow(dead_code)]
mod amqp;
#[path = "../serve/browser.rs"]
mod browser;
#[path = "../pipeline/common.rs"]
#[allow(dead_code)]
mod common;
#[path = "../serve/host.rs"]
#[allow(dead_code)]
mod host;

mod exact;
mod failover;
mod fixture;
