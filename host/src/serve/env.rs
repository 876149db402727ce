//! What every run of a `sluice serve` host shares — the broker, the
//! tables, the state database, the metrics — and the pieces of a run that
//! a single tenant run (`tenant.rs`) and a partition (`partition.rs`)
//! build alike from it. Its own module so those two import it rather than
//! each other.

use std::sync::Arc;
use std::time::Duration;

use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;

use crate::amqp::sink::AmqpSink;
use crate::manifest::Manifest;
use crate::metrics::prometheus::{CheckpointMetrics, LatencyMetrics};
use crate::runner::{self, Checkpoints};
use crate::sink::{MessageSink, TableSink};
use crate::state::{Checkpoint, CheckpointStore};

use super::batch::BatchEnv;
use super::dead_letters::{DeadLetterBook, Tap};

/// What every run of the host shares.
#[derive(Clone)]
pub struct RunEnv {
    pub amqp: String,
    pub tables: Option<Arc<dyn TableSink>>,
    /// Where triggered batch jobs read and write (with Cassandra).
    pub batch: Option<BatchEnv>,
    pub runtime: tokio::runtime::Handle,
    pub workers: usize,
    pub prefetch: u16,
    pub checkpoint_interval: Duration,
    pub checkpoint_metrics: CheckpointMetrics,
    pub latency_metrics: LatencyMetrics,
    /// Where partitioned tenants keep checkpoints and ownership (with
    /// Cassandra).
    pub state_db: Option<StateDb>,
    /// This host in partition ownership records and logs.
    pub host_name: String,
    /// Each tenant's last dead letters (the console's tenant page).
    pub dead_letters: DeadLetterBooks,
}

/// The tenants' dead-letter books, by tenant: one per tenant across its
/// runs and partitions, dropped at undeploy.
#[derive(Clone, Default)]
pub struct DeadLetterBooks(
    Arc<std::sync::Mutex<std::collections::BTreeMap<String, Arc<DeadLetterBook>>>>,
);

impl DeadLetterBooks {
    /// The tenant's book (made on first use).
    pub fn book(&self, tenant: &str) -> Arc<DeadLetterBook> {
        let mut books = self.0.lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(books.entry(tenant.to_owned()).or_default())
    }

    pub fn remove(&self, tenant: &str) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(tenant);
    }
}

impl RunEnv {
    /// The tenant's results and dead letters to its exchange and
    /// `<queue>.dead` (a partitioned input's too: `queue` is its base).
    pub fn result_sink(&self, manifest: &Manifest) -> crate::amqp::Result<AmqpSink> {
        self.runtime.block_on(AmqpSink::connect(
            runner::result_sink(self.amqp.clone(), manifest),
            self.runtime.clone(),
        ))
    }

    /// `sink` keeping a copy of the tenant's last dead letters.
    pub fn tapped(&self, tenant: &str, sink: AmqpSink) -> Arc<dyn MessageSink> {
        Arc::new(Tap {
            inner: Arc::new(sink),
            book: self.dead_letters.book(tenant),
        })
    }

    /// Checkpoints of a broker-fed run into `store`, resuming `restore`.
    pub fn checkpoints(
        &self,
        store: Arc<dyn CheckpointStore>,
        restore: Option<Checkpoint>,
    ) -> Checkpoints {
        Checkpoints {
            store,
            interval: self.checkpoint_interval,
            every_rows: None,
            prefetch: Some(self.prefetch),
            restore,
        }
    }
}

/// Where partitions keep their checkpoints and ownership.
#[derive(Clone)]
pub struct StateDb {
    pub session: Arc<Session>,
    pub keyspace: String,
    /// The standby partitions' owner read, prepared on first use.
    pub owner_read: Arc<tokio::sync::OnceCell<PreparedStatement>>,
}
