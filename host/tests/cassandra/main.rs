//! Cassandra integration tests: `sluice run --cassandra` and `sluice query`
//! (the real binary, the real BTS component) against a real Cassandra node,
//! read back also with a standard client (the DataStax Python driver).
//!
//! Needs Cassandra on `SLUICE_TEST_CASSANDRA` (default 127.0.0.1:9042:
//! `scripts/services.sh start cassandra`) and the Python driver in
//! `SLUICE_PYTHON` (default /var/cache/sluice/venv/bin/python;
//! `scripts/test.sh` installs it). `batch` covers batch jobs: the scan of
//! stored events and the results store. Each test writes to a keyspace of
//! its own, so tests run in parallel — except the outage test, which stops
//! the node and so runs alone (it takes the shared lock exclusively).

mod batch;
mod batch_jobs;
mod broker;
mod checkpoints;
mod common;
mod outage;
mod sessions;
mod store;
