//! Broker benchmark (needs RabbitMQ: `scripts/services.sh start rabbitmq`).
//!
//! For 1 and 100 lines per message, on the same broker in the same run:
//! - **host**: generated BTS rows pre-published to a queue, then the host
//!   (AMQP ingress → pipeline with the Wasm BTS tenant → AMQP sink) drains
//!   it, publishing every result with confirms to an exchange with a bound
//!   durable queue, acking after the confirms;
//! - **bare**: a plain lapin consumer over the same messages that publishes
//!   as many result messages of the same average size, with confirms, and
//!   acks after them — no parsing, no windows, no tenant;
//!
//! each with `[output] messages` per result and packed (the bare consumer
//! then publishes as many messages as the packed host did).
//!
//! The ratio host/bare says what sluice costs on top of the broker's own
//! work. Then the end-to-end latency (publish of the row that moves the
//! watermark past a window's end → that window's result received) at half
//! of the host's maximum rate with one row per message.
//!
//! `cargo bench -p sluice-host --bench broker` (`SLUICE_BENCH_ROWS`: rows
//! for one line per message, default 20 000; 100 lines per message use 5×).
//! Prints figures; never passes or fails on time.

#[path = "support/amqp.rs"]
mod amqp;
#[path = "../sandbox/tests/sandbox/common.rs"]
#[allow(dead_code)]
mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use amqp::{bind_sink_queue, delete, prepublish, url};
use futures_lite::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use sluice_host::amqp::ingress::{AmqpIngress, AmqpIngressConfig};
use sluice_host::amqp::sink::{AmqpSink, AmqpSinkConfig};
use sluice_host::amqp::topology;
use sluice_host::generate::bts::{self, BtsConfig};
use sluice_host::ingress::Input;
use sluice_host::manifest::{Manifest, OutputMessages};
use sluice_host::pipeline::Options;
use sluice_host::sandbox::{SandboxConfig, SandboxEngine, TenantModule};
use sluice_host::sink::{LineSink, Sinks};

const PREFETCH: u16 = 1000;
const IDLE: Duration = Duration::from_millis(500);

fn main() {
    let rows: u64 = std::env::var("SLUICE_BENCH_ROWS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000);
    let _ = common::component("bts_analytics");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ has a parent")
        .to_path_buf();
    let manifest = Manifest::from_path(&root.join("examples/bts-analytics/sluice.toml"))
        .expect("the example manifest");
    let engine = SandboxEngine::new(SandboxConfig {
        pool_instances: 16,
        ..SandboxConfig::default()
    })
    .expect("engine");
    let module = engine
        .load_file(&manifest.tenant, &manifest.module)
        .expect("loading the BTS module");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (_conn, channel) = rt.block_on(async {
        let conn = Connection::connect(&url(), ConnectionProperties::default())
            .await
            .unwrap_or_else(|e| {
                panic!("RabbitMQ unreachable ({e}): scripts/services.sh start rabbitmq")
            });
        let ch = conn.create_channel().await.expect("channel");
        (conn, ch)
    });
    let workers = std::thread::available_parallelism().map_or(1, usize::from);
    println!("broker benchmark: BTS tenant (Wasm), {workers} workers, prefetch {PREFETCH}, persistent messages with confirms both ways");

    let mut host_max_rows_per_sec = 0.0f64;
    for lines in [1usize, 100] {
        let n = if lines == 1 { rows } else { rows * 5 };
        let data = generate(n, 0.05);
        let (outputs, out_bytes) = embedded(&manifest, &module, &data, workers);
        let messages = n.div_ceil(lines as u64);
        let mut per_result_rate = 0.0;
        for mode in [OutputMessages::PerResult, OutputMessages::Packed] {
            let tag = format!("{}.{lines}.{}", std::process::id(), mode.name());
            let (hq, hx) = (format!("bench.host.{tag}"), format!("bench.host.{tag}.out"));
            let sinkq = rt.block_on(bind_sink_queue(&channel, &hx));
            rt.block_on(prepublish(&hq, &data, lines));
            let started = Instant::now();
            let report = host_run(&rt, &manifest, &module, &hq, &hx, workers, None, mode);
            let host = started.elapsed().saturating_sub(IDLE);
            assert_eq!(
                report, outputs,
                "the host published what the embedded run produced"
            );
            // What the host published: the bare consumer publishes as many
            // messages of the same average size.
            let published = rt.block_on(queue_depth(&channel, &sinkq));
            let size = (out_bytes / published.max(1)) as usize;

            let (bq, bx) = (format!("bench.bare.{tag}"), format!("bench.bare.{tag}.out"));
            let bare_sinkq = rt.block_on(bind_sink_queue(&channel, &bx));
            rt.block_on(prepublish(&bq, &data, lines));
            let bare = rt.block_on(bare_consumer(&bq, &bx, messages, published, size));

            let rate = |d: Duration, x: u64| x as f64 / d.as_secs_f64();
            println!(
                "{lines:>3} line(s)/message, {} results, {n} rows, {messages} messages in, {outputs} results in {published} messages of ≈{size} B:\n\
                 \x20   host: {:>9.0} msgs/s {:>9.0} rows/s {:>9.0} results/s ({:.2} s)\n\
                 \x20   bare: {:>9.0} msgs/s {:>9.0} rows/s {:>9.0} results/s ({:.2} s)\n\
                 \x20   host/bare: {:.2}",
                mode.name(),
                rate(host, messages),
                rate(host, n),
                rate(host, outputs),
                host.as_secs_f64(),
                rate(bare, messages),
                rate(bare, n),
                rate(bare, outputs),
                bare.as_secs_f64(),
                bare.as_secs_f64() / host.as_secs_f64(),
            );
            match mode {
                OutputMessages::PerResult => {
                    per_result_rate = rate(host, n);
                    if lines == 1 {
                        host_max_rows_per_sec = rate(host, n);
                    }
                }
                OutputMessages::Packed => println!(
                    "    packed/per-result rows/s: {:.2}",
                    rate(host, n) / per_result_rate
                ),
            }
            rt.block_on(delete(
                &channel,
                &[
                    &hq,
                    &format!("{hq}.dead"),
                    &sinkq,
                    &bq,
                    &format!("{bq}.dead"),
                    &bare_sinkq,
                ],
            ));
        }
    }

    // Latency at half the host's maximum rate, one row per message, rows in
    // event-time order so each window's trigger row is known.
    let half = host_max_rows_per_sec / 2.0;
    let n = (half * 10.0).clamp(1000.0, 50_000.0) as u64;
    let data = generate(n, 0.0);
    let times = row_times(&manifest, &data);
    let tag = format!("{}.latency", std::process::id());
    let (q, x) = (format!("bench.lat.{tag}"), format!("bench.lat.{tag}.out"));
    let results = rt.block_on(bind_sink_queue(&channel, &x));
    rt.block_on(async {
        topology::declare_input(&channel, &q)
            .await
            .expect("declare input");
    });
    let receiver = rt.spawn(receive_windows(results.clone()));
    let sender = rt.spawn(paced_publish(q.clone(), data.clone(), half));
    host_run(
        &rt,
        &manifest,
        &module,
        &q,
        &x,
        workers,
        Some(Duration::from_secs(2)),
        OutputMessages::PerResult,
    );
    let sent = rt.block_on(sender).expect("publisher");
    let received = rt.block_on(receiver).expect("receiver");
    let lag = i64::try_from(manifest.input.max_out_of_orderness.as_millis()).unwrap_or(0);
    let mut latencies: Vec<Duration> = received
        .iter()
        .filter_map(|(end, at)| {
            // The first row whose time − max_out_of_orderness reaches the end.
            let trigger = times.partition_point(|t| t - lag < *end);
            sent.get(trigger).map(|s| at.saturating_duration_since(*s))
        })
        .collect();
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize];
    if latencies.is_empty() {
        println!("latency: no windowed result received");
    } else {
        println!(
            "latency at {half:.0} rows/s (half the host's maximum), 1 row/message, {} windowed results: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            latencies.len(),
            pct(0.5).as_secs_f64() * 1e3,
            pct(0.99).as_secs_f64() * 1e3,
            latencies[latencies.len() - 1].as_secs_f64() * 1e3,
        );
    }
    rt.block_on(delete(&channel, &[&q, &format!("{q}.dead"), &results]));
}

fn generate(events: u64, out_of_order: f64) -> Vec<u8> {
    let mut data = Vec::new();
    bts::write_bts(
        &BtsConfig {
            events,
            stations: 4,
            out_of_order,
            ramp: 2,
            ..BtsConfig::default()
        },
        &mut data,
    )
    .expect("generating");
    data
}

/// Event times of the rows, in file order (ms).
fn row_times(manifest: &Manifest, data: &[u8]) -> Vec<i64> {
    let mut parser = sluice_host::parse::RowParser::new(&manifest.input).expect("parser");
    parser
        .read_file(data, "bench")
        .filter_map(|r| match r {
            Ok(Ok(row)) => Some(row.time),
            _ => None,
        })
        .collect()
}

/// The embedded run's result count and bytes (the bare consumer's load).
fn embedded(manifest: &Manifest, module: &TenantModule, data: &[u8], workers: usize) -> (u64, u64) {
    let counted = Arc::new(std::sync::atomic::AtomicU64::new(0));
    struct Count(Arc<std::sync::atomic::AtomicU64>);
    impl std::io::Write for Count {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0
                .fetch_add(b.len() as u64, std::sync::atomic::Ordering::Relaxed);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let sinks = Sinks::lines(
        LineSink::new("output", Box::new(Count(Arc::clone(&counted)))),
        LineSink::discard("dead-letter"),
    );
    let input = Input::bytes(Box::new(std::io::Cursor::new(data.to_vec())), "bench");
    let report = sluice_host::runner::run(
        manifest,
        module,
        input,
        &sinks,
        &Options {
            workers,
            ..Options::default()
        },
    )
    .expect("embedded run");
    let bytes = counted.load(std::sync::atomic::Ordering::Relaxed);
    // Lines carry a newline the messages do not.
    (report.summary.outputs, bytes - report.summary.outputs)
}

/// Runs the host over `queue` until it is idle; returns its output count.
#[allow(clippy::too_many_arguments)]
fn host_run(
    rt: &tokio::runtime::Runtime,
    manifest: &Manifest,
    module: &TenantModule,
    queue: &str,
    exchange: &str,
    workers: usize,
    idle: Option<Duration>,
    messages: OutputMessages,
) -> u64 {
    let handle = rt.handle().clone();
    let sink = rt
        .block_on(AmqpSink::connect(
            AmqpSinkConfig {
                url: url(),
                exchange: exchange.to_owned(),
                dead_letter_exchange: Some(topology::dead_letter_name(queue)),
                give_up: Duration::from_secs(30),
                messages,
            },
            handle.clone(),
        ))
        .expect("sink");
    let (input, ingress) = rt
        .block_on(AmqpIngress::start(
            AmqpIngressConfig {
                url: url(),
                queue: queue.to_owned(),
                prefetch: PREFETCH,
                until_idle: Some(idle.unwrap_or(IDLE)),
                max_message_bytes: AmqpIngressConfig::DEFAULT_MAX_MESSAGE_BYTES,
                give_up: Duration::from_secs(30),
                skip: Vec::new(),
                commit_acks: false,
                partitioned: None,
                await_activation: false,
                reconnect: true,
            },
            handle,
        ))
        .expect("ingress");
    let mut sinks = Sinks::lines(
        LineSink::discard("output"),
        LineSink::discard("dead-letter"),
    );
    sinks.messages = Some(Arc::new(sink));
    let report = sluice_host::runner::run(
        manifest,
        module,
        input,
        &sinks,
        &Options {
            workers,
            ..Options::default()
        },
    )
    .expect("host run");
    ingress.finish().expect("acks");
    report.summary.outputs
}

/// Messages waiting in `queue`.
async fn queue_depth(channel: &lapin::Channel, queue: &str) -> u64 {
    let declared = channel
        .queue_declare(
            queue.into(),
            lapin::options::QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("queue");
    u64::from(declared.message_count())
}

/// Consumes `messages`, publishes `results` messages of `size` bytes in
/// proportion, with confirms, and acks (multiple) after the confirms.
async fn bare_consumer(
    queue: &str,
    exchange: &str,
    messages: u64,
    results: u64,
    size: usize,
) -> Duration {
    let conn = Connection::connect(&url(), ConnectionProperties::default())
        .await
        .expect("connect");
    let out_conn = Connection::connect(&url(), ConnectionProperties::default())
        .await
        .expect("connect");
    let ch = conn.create_channel().await.expect("channel");
    let out = out_conn.create_channel().await.expect("channel");
    out.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    ch.basic_qos(PREFETCH, BasicQosOptions::default())
        .await
        .expect("qos");
    let mut consumer = ch
        .basic_consume(
            queue.into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let body = vec![b'x'; size];
    let per_message = results as f64 / messages as f64;
    let (mut owed, mut seen, mut unacked, mut sent) = (0.0f64, 0u64, 0u64, 0u64);
    let mut confirms = Vec::new();
    let started = Instant::now();
    while seen < messages {
        let d = consumer.next().await.expect("stream").expect("delivery");
        seen += 1;
        unacked += 1;
        owed += per_message;
        while owed >= 1.0 || (seen == messages && sent < results) {
            owed -= 1.0;
            sent += 1;
            let props = BasicProperties::default()
                .with_delivery_mode(2)
                .with_message_id(format!("{sent}").into());
            confirms.push(
                out.basic_publish(
                    exchange.into(),
                    "windowed-analytic.a.b.c".into(),
                    BasicPublishOptions::default(),
                    &body,
                    props,
                )
                .await
                .expect("publish"),
            );
        }
        if confirms.len() >= 1024 || unacked >= u64::from(PREFETCH / 2) || seen == messages {
            for c in confirms.drain(..) {
                c.await.expect("confirm");
            }
            d.acker
                .ack(BasicAckOptions { multiple: true })
                .await
                .expect("ack");
            unacked = 0;
        }
    }
    started.elapsed()
}

/// Publishes one row per message at `rate` rows/s; returns each row's
/// send instant.
async fn paced_publish(queue: String, data: Vec<u8>, rate: f64) -> Vec<Instant> {
    let conn = Connection::connect(&url(), ConnectionProperties::default())
        .await
        .expect("connect");
    let ch = conn.create_channel().await.expect("channel");
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    let started = Instant::now();
    let mut sent = Vec::new();
    let mut confirms = Vec::new();
    for (i, line) in data.split_inclusive(|b| *b == b'\n').enumerate() {
        let due = started + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(due.into()).await;
        sent.push(Instant::now());
        confirms.push(
            ch.basic_publish(
                "".into(),
                queue.as_str().into(),
                BasicPublishOptions::default(),
                line,
                BasicProperties::default()
                    .with_delivery_mode(2)
                    .with_message_id(format!("lat:{i}").into()),
            )
            .await
            .expect("publish"),
        );
    }
    for c in confirms {
        c.await.expect("confirm");
    }
    sent
}

/// Receives results until quiet; returns (window end, receive instant) of
/// the windowed analytics.
async fn receive_windows(queue: String) -> Vec<(i64, Instant)> {
    let conn = Connection::connect(&url(), ConnectionProperties::default())
        .await
        .expect("connect");
    let ch = conn.create_channel().await.expect("channel");
    let mut consumer = ch
        .basic_consume(
            queue.as_str().into(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let mut out = Vec::new();
    let mut quiet = Duration::from_secs(30);
    while let Ok(Some(Ok(d))) = tokio::time::timeout(quiet, consumer.next()).await {
        let at = Instant::now();
        quiet = Duration::from_secs(3);
        if d.routing_key.as_str().starts_with("windowed-analytic.") {
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&d.data) {
                if let Some(end) = v["window"]["end"].as_i64() {
                    out.push((end, at));
                }
            }
        }
    }
    out
}
