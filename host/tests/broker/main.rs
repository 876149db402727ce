//! Broker integration tests: the real `sluice` binary against a real
//! RabbitMQ (`scripts/services.sh start rabbitmq`; `SLUICE_AMQP_URL`
//! overrides the address) with the real compiled BTS component. Each test
//! uses queues and exchanges of its own; the broker-restart test excludes
//! the others while it runs. The crash test also stores to Cassandra
//! (`scripts/services.sh start cassandra`) and compares the tables.

mod amqp;
#[path = "../cassandra/common.rs"]
#[allow(dead_code, unused_imports, clippy::duplicate_mod)]
mod cassandra;
#[path = "../pipeline/common.rs"]
#[allow(dead_code)]
mod common;

mod checkpoint;
mod faults;
mod flow;
mod packed;
