//! Test-side broker helpers: names, a lapin connection, a durable
//! collector queue bound to an exchange, draining queues, running the host
//! and `sluice publish`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use lapin::options::{BasicGetOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection, ConnectionProperties};

use crate::common::{self, sluice};

pub fn url() -> String {
    std::env::var("SLUICE_AMQP_URL").unwrap_or_else(|_| "amqp://127.0.0.1:5672/%2f".into())
}

/// The broker restart test takes this for writing; every other test for
/// reading, so none runs while the broker is down.
static BROKER: RwLock<()> = RwLock::new(());

pub fn shared() -> RwLockReadGuard<'static, ()> {
    BROKER.read().unwrap_or_else(|e| e.into_inner())
}

pub fn exclusive() -> RwLockWriteGuard<'static, ()> {
    BROKER.write().unwrap_or_else(|e| e.into_inner())
}

/// A name no other test (or earlier run) uses.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "test.{prefix}.{}.{nanos}.{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

pub async fn connect() -> (Connection, Channel) {
    let conn = Connection::connect(&url(), ConnectionProperties::default())
        .await
        .unwrap_or_else(|e| {
            panic!(
                "RabbitMQ is not reachable at {} ({e}); start it with `scripts/services.sh start rabbitmq`",
                url()
            )
        });
    let channel = conn.create_channel().await.expect("channel");
    (conn, channel)
}

/// A message as a consumer sees it.
#[derive(Debug, Clone)]
pub struct Got {
    pub routing_key: String,
    pub message_id: Option<String>,
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

impl Got {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Declares a durable queue bound to `exchange` with `#` (after declaring
/// the exchange as the host does): it keeps results across a broker
/// restart, unlike an exclusive queue.
pub async fn collector(channel: &Channel, exchange: &str) -> String {
    sluice_host::amqp::topology::declare_output(channel, exchange)
        .await
        .expect("declaring the output exchange");
    let queue = format!("{exchange}.collector");
    channel
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions::durable(),
            FieldTable::default(),
        )
        .await
        .expect("declaring the collector");
    channel
        .queue_bind(
            queue.as_str().into(),
            exchange.into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("binding the collector");
    queue
}

/// Every message in `queue` now, taken one by one with `basic.get`: its
/// "empty" means the queue holds nothing more, where a push consumer
/// cannot tell a pause on a loaded machine from the end (callers drain
/// once the producer is done).
pub async fn drain(channel: &Channel, queue: &str) -> Vec<Got> {
    let mut out = Vec::new();
    while let Some(got) = channel
        .basic_get(queue.into(), BasicGetOptions { no_ack: true })
        .await
        .expect("basic.get")
    {
        let d = got.delivery;
        out.push(Got {
            routing_key: d.routing_key.as_str().to_owned(),
            message_id: d
                .properties
                .message_id()
                .as_ref()
                .map(|s| s.as_str().to_owned()),
            headers: headers(d.properties.headers().as_ref()),
            body: d.data,
        });
    }
    out
}

fn headers(table: Option<&FieldTable>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if let Some(table) = table {
        for (k, v) in table.inner() {
            let v = match v {
                AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
                AMQPValue::ShortString(s) => s.as_str().to_owned(),
                AMQPValue::LongLongInt(n) => n.to_string(),
                other => format!("{other:?}"),
            };
            out.insert(k.as_str().to_owned(), v);
        }
    }
    out
}

/// Messages waiting in `queue` (declared as the host declares the input
/// queue, so the declaration matches).
pub async fn ready(channel: &Channel, queue: &str) -> u32 {
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("passive declare")
        .message_count()
}

pub async fn delete(channel: &Channel, queues: &[&str]) {
    for q in queues {
        let _ = channel
            .queue_delete((*q).into(), QueueDeleteOptions::default())
            .await;
    }
}

/// A BTS manifest whose input queue and output exchange are `queue` and
/// `exchange`, with the example's windows and alerts.
pub fn manifest(dir: &Path, queue: &str, exchange: &str) -> PathBuf {
    let path = common::bts_manifest(dir, "max_out_of_orderness = \"5s\"\n");
    let text = std::fs::read_to_string(&path)
        .expect("reading the manifest")
        .replace("queue = \"bts.readings\"", &format!("queue = {queue:?}"))
        .replace(
            "exchange = \"bts.results\"",
            &format!("exchange = {exchange:?}"),
        );
    std::fs::write(&path, text).expect("writing the manifest");
    path
}

/// `sluice publish` of a file; panics with stderr on failure.
pub fn publish(manifest: &Path, file: &Path, lines_per_message: usize) -> String {
    let out = sluice()
        .args(["publish", "--amqp", &url(), "--manifest"])
        .arg(manifest)
        .arg(file)
        .args(["--lines-per-message", &lines_per_message.to_string()])
        .output()
        .expect("running sluice publish");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "sluice publish failed: {stderr}");
    stderr
}

/// `sluice run --amqp --until-idle` with extra arguments.
pub fn run_host(manifest: &Path, until_idle: &str, extra: &[&str]) -> Output {
    sluice()
        .arg("run")
        .arg(manifest)
        .args(["--amqp", &url(), "--until-idle", until_idle, "--quiet"])
        .args(extra)
        .output()
        .expect("running sluice run --amqp")
}

/// The embedded run's result lines for the same manifest and file.
pub fn embedded_lines(manifest: &Path, input: &Path) -> Vec<String> {
    let mut lines = common::run(manifest, input, 2).lines;
    lines.sort();
    lines
}

/// A figure from stderr such as `sluice run: 123 messages consumed, …`.
pub fn figure(stderr: &str, label: &str) -> u64 {
    for line in stderr.lines() {
        let line = line.trim_start_matches("sluice run: ");
        for part in line.split(", ") {
            if let Some(n) = part.strip_suffix(label).and_then(|n| n.trim().parse().ok()) {
                return n;
            }
        }
    }
    panic!("no `{label}` figure in: {stderr}")
}

/// Closes every connection on the broker (`rabbitmqctl
/// close_all_connections`): a network cut as the clients see it.
pub fn cut_connections() {
    let out = std::process::Command::new("rabbitmqctl")
        .args(["close_all_connections", "sluice test: connection cut"])
        .output()
        .expect("running rabbitmqctl");
    assert!(
        out.status.success(),
        "rabbitmqctl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `sluice tail --type alert --count N` started before the host runs over
/// `input` (published 100 lines a message): it prints exactly `alerts`.
pub fn tail_prints_the_alerts(manifest: &Path, input: &Path, alerts: &[&String], until_idle: &str) {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let mut tail = sluice()
        .args(["tail", "--amqp", &url(), "--manifest"])
        .arg(manifest)
        .args(["--type", "alert", "--count", &alerts.len().to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning sluice tail");
    // Wait until its queue is bound.
    let mut err = BufReader::new(tail.stderr.take().expect("stderr"));
    let mut line = String::new();
    err.read_line(&mut line).expect("tail's first line");
    assert!(line.contains("listening on"), "{line}");
    publish(manifest, input, 100);
    let run = run_host(manifest, until_idle, &[]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let out = tail.wait_with_output().expect("tail ends after --count");
    assert!(out.status.success());
    let mut printed: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    printed.sort();
    let mut want: Vec<String> = alerts.iter().map(|a| (*a).clone()).collect();
    want.sort();
    assert_eq!(
        printed, want,
        "tail --type alert printed exactly the alerts"
    );
}
