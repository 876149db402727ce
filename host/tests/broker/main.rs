//! Broker integration tests: the real `sluice` binary against a real
//! RabbitMQ (`scripts/services.sh start rabbitmq`; `SLUICE_AMQP_URL`
//! overrides the address) with the real compiled BTS component. Each test
//! uses queues and exchanges of its own; the broker-restart test excludes
//! the others while it runs.

mod amqp;
#[path = "../pipeline/common.rs"]
#[allow(dead_code)]
mod common;

mod checkpoint;
mod faults;
mod flow;
