//! `sluice serve` integration tests: the real `sluice` binary serving real
//! compiled components against a real RabbitMQ (`scripts/services.sh start
//! rabbitmq`; `SLUICE_AMQP_URL` overrides the address), driven through its
//! admin API and the `sluice deploy/list/pause/resume/undeploy` commands.
//! Each test has its own host process, state directory, queues and
//! exchanges. `/metrics` is checked with the Python `prometheus_client`
//! parser (`SLUICE_PYTHON`, installed by `scripts/test.sh`).

#[path = "../broker/amqp.rs"]
#[allow(dead_code)]
mod amqp;
#[path = "../pipeline/common.rs"]
#[allow(dead_code)]
mod common;
mod host;

mod api;
mod batch;
mod browser;
mod claims;
mod console;
mod control;
mod grafana;
mod hardening;
mod isolation;
mod metrics;
mod names;
mod redeploy;
mod tenants;
