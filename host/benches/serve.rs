//! Operator-plane benchmark (needs RabbitMQ: `scripts/services.sh start
//! rabbitmq`): one `serve::Host` in this process, real components, real
//! queues. Prints, in one run:
//! - **isolation**: the healthy BTS tenant's throughput draining N
//!   pre-published rows alone, then the same beside each hostile tenant
//!   (`SLUICE_BENCH_HOSTILE`, a comma list; default every attack of issue
//!   18 that a tenant can mount at run time: the `hostile` guest's `loop`,
//!   `sleep`, `memory`, `bigname`, `alert-flood` and `huge-error` modes on
//!   a queue where every window has one poison row, and `hoard`, the
//!   `hoarder` guest keeping 900 KiB of alert state per key; and, as the
//!   control, `normal`: the same guest behaving, what any second tenant
//!   costs) with auto-pause at 10 traps a minute, and beside `loop` with
//!   auto-pause off (the worst case: nothing stops it); alone and beside
//!   alternate for `SLUICE_BENCH_ROUNDS` rounds (default 3), each figure
//!   taken once the process is quiet again, and the medians are printed;
//! - **trapping redeploy**: a trapping tenant with a backlog redeployed —
//!   how long the call takes, and a neighbour's deploy meanwhile;
//! - **deploy → first output**: from the deploy call to the first result
//!   message on the tenant's exchange, rows already waiting;
//! - **swap pause**: rows published at a steady rate, the same module
//!   redeployed mid-stream; the longest gap between result messages around
//!   the redeploy against the longest gap of the same stretch without one;
//! - **output modes**: the BTS tenant draining the rows with one message
//!   per result (the default) and with `[output] messages = "packed"`,
//!   publish → `serve` → output exchange, alternating for the rounds (the
//!   broker bench compares each mode with a bare lapin consumer).
//!
//! `cargo bench -p sluice-host --bench serve` (`SLUICE_BENCH_ROWS`, default
//! 60 000; `SLUICE_BENCH_ONLY=outputs` for the last section alone).
//! Figures only; never passes or fails on time.

#[path = "support/amqp.rs"]
mod amqp;
#[path = "../sandbox/tests/sandbox/common.rs"]
#[allow(dead_code)]
mod common;
#[path = "../tests/pipeline/common.rs"]
#[allow(dead_code)]
mod fixtures;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use amqp::{bind_sink_queue, delete, prepublish, url};
use futures_lite::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties};
use sluice_host::generate::bts::{self, BtsConfig};
use sluice_host::manifest::TenantName;
use sluice_host::metrics::prometheus::{HostMetrics, TenantFigures, TenantSource};
use sluice_host::sandbox::{SandboxConfig, SandboxEngine, TrapBackoff};
use sluice_host::serve::config::HostConfig;
use sluice_host::serve::{Deployed, Host, Storage};

/// `/metrics` is not scraped here.
struct NoScrape;

impl TenantSource for NoScrape {
    fn figures(&self) -> Vec<TenantFigures> {
        Vec::new()
    }
}

struct Bench {
    rt: tokio::runtime::Runtime,
    channel: Channel,
    _conn: Connection,
    healthy_manifest: String,
    healthy_wasm: Vec<u8>,
    hostile_wasm: Vec<u8>,
    hoarder_wasm: Vec<u8>,
    tag: String,
}

fn main() {
    // The host's logs, when asked for (`SLUICE_LOG=info`): what a swap or
    // a hostile tenant did while a figure was taken.
    if let Ok(filter) = std::env::var("SLUICE_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .init();
    }
    let rows: u64 = std::env::var("SLUICE_BENCH_ROWS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60_000);
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ has a parent")
        .to_path_buf();
    let healthy_wasm = std::fs::read(common::component("bts_analytics")).expect("bts component");
    let hostile_wasm = std::fs::read(common::component("hostile")).expect("hostile component");
    let hoarder_wasm = std::fs::read(common::component("hoarder")).expect("hoarder component");
    let healthy_manifest = std::fs::read_to_string(root.join("examples/bts-analytics/sluice.toml"))
        .expect("the example manifest");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (conn, channel) = rt.block_on(async {
        let conn = Connection::connect(&url(), ConnectionProperties::default())
            .await
            .unwrap_or_else(|e| {
                panic!("RabbitMQ unreachable ({e}): scripts/services.sh start rabbitmq")
            });
        let ch = conn.create_channel().await.expect("channel");
        (conn, ch)
    });
    let bench = Bench {
        rt,
        channel,
        _conn: conn,
        healthy_manifest,
        healthy_wasm,
        hostile_wasm,
        hoarder_wasm,
        tag: std::process::id().to_string(),
    };
    let data = generate(rows);
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    println!("serve benchmark: {rows} BTS rows (100 per message), {cores} cores, workers per tenant = cores, checkpoints every 1 s");

    // Alone and beside alternate (this machine varies ±25 % from run to
    // run); each beside figure is against the alone run of its round, and
    // the medians are what to quote.
    let rounds: usize = std::env::var("SLUICE_BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3)
        .max(1);
    let modes: Vec<String> = std::env::var("SLUICE_BENCH_HOSTILE")
        .unwrap_or_else(|_| "normal,loop,sleep,memory,bigname,alert-flood,huge-error,hoard".into())
        .split(',')
        .map(|m| m.trim().to_owned())
        .filter(|m| !m.is_empty())
        .collect();
    // (mode, auto-pause limit): every mode with auto-pause at its default,
    // and `loop` once more with it off.
    let mut beside: Vec<(String, u64)> = modes.iter().map(|m| (m.clone(), 10)).collect();
    if modes.iter().any(|m| m == "loop") {
        beside.push(("loop".into(), 0));
    }
    if std::env::var("SLUICE_BENCH_ONLY").as_deref() == Ok("outputs") {
        bench.output_modes(&data, rounds);
        return;
    }
    let mut shares: Vec<Vec<f64>> = vec![Vec::new(); beside.len()];
    println!("isolation (healthy tenant draining {rows} rows), {rounds} rounds:");
    for round in 1..=rounds {
        let alone = bench.healthy_rate(&format!("alone{round}"), &data, None);
        println!("    round {round}: alone {alone:>8.0} rows/s");
        for ((mode, limit), share) in beside.iter().zip(&mut shares) {
            let rate = bench.healthy_rate(
                &format!("{mode}{limit}.{round}"),
                &data,
                Some((mode, *limit)),
            );
            println!(
                "    round {round}: beside `{mode}`, auto-pause {}: {rate:>8.0} rows/s = {:.0} %",
                pause_label(*limit),
                rate / alone * 100.0
            );
            share.push(rate / alone);
        }
    }
    println!("    median share of alone ({rounds} rounds):");
    for ((mode, limit), share) in beside.iter().zip(&mut shares) {
        println!(
            "        beside `{mode}`, auto-pause {}: {:.0} %",
            pause_label(*limit),
            median(share) * 100.0
        );
    }
    bench.trapping_redeploy();
    bench.deploy_to_first_output(&data);
    bench.swap_pause(&data);
    bench.output_modes(&data, rounds);
}

/// Waits (at most 120 s) until this process uses under 5 % of a core:
/// a host shut down after a figure may have left a hostile tenant's run
/// draining its delivered poison (a real `sluice serve` exits there), and
/// the next figure must not be taken beside it.
fn quiesce() {
    fn cpu() -> Duration {
        // SAFETY: getrusage only writes the struct it is given.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
        let time = |t: libc::timeval| {
            Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
        };
        time(usage.ru_utime) + time(usage.ru_stime)
    }
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(120) {
        let before = cpu();
        std::thread::sleep(Duration::from_millis(500));
        if cpu().saturating_sub(before) < Duration::from_millis(25) {
            return;
        }
    }
    println!("    (the process did not go quiet within 120 s)");
}

fn pause_label(limit: u64) -> String {
    if limit == 0 {
        "off".into()
    } else {
        format!("{limit}/min")
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Rows of the generated BTS data set, 4 stations.
fn generate(events: u64) -> Vec<u8> {
    let mut data = Vec::new();
    bts::write_bts(
        &BtsConfig {
            events,
            stations: 4,
            out_of_order: 0.05,
            ramp: 2,
            ..BtsConfig::default()
        },
        &mut data,
    )
    .expect("generating");
    data
}

/// The hostile guest in `mode`, triggered by value 666: the BTS columns,
/// a tumbling window and alerts (queue and exchange names are filled in).
fn hostile_manifest(mode: &str) -> String {
    format!(
        "tenant = \"hostile\"\nmodule = \"hostile.wasm\"\n\n[input]\n{}{}mode = {mode:?}\npoison = \"666\"\n\n[output]\nexchange = \"bts.results\"\n",
        fixtures::BTS_COLUMNS,
        r#"
[[windows]]
name = "ten"
kind = "tumbling"
size = "10s"
aggregate = "count"

[alerts]
function = "alerts"

[params]
"#
    )
}

/// Rows for the hostile tenant, 10 per message: five keys, each 10 s
/// window of each key holds 13 rows (what triggers the guest's
/// `aggregate-finish` modes), the last of them poison (what triggers
/// `aggregate-add` and `alerts`).
fn poison(messages: usize) -> Vec<u8> {
    let mut text = String::new();
    for i in 0..messages * 10 {
        let (window, in_window) = (i / 65, i % 65);
        let (key, nth) = (in_window % 5, in_window / 5);
        let value = if nth == 12 { 666.0 } else { 1.5 };
        // In time order (a late poison row would be dropped unseen).
        let second = window * 10 + nth * 10 / 13;
        text.push_str(&format!(
            "s{key},1,1,2017-02-18 {:02}:{:02}:{:02} UTC,{value},100,false,\n",
            10 + second / 3600,
            (second / 60) % 60,
            second % 60
        ));
    }
    text.into_bytes()
}

/// The `hoarder` guest keeping 900 KiB of alert state per key (point 6).
fn hoarder_manifest() -> String {
    r#"tenant = "hostile"
module = "hoarder.wasm"

[input]
queue = "bts.readings"
columns = [
  { name = "k", type = "text" },
  { name = "t", type = "timestamp", format = "%Y-%m-%d %H:%M:%S UTC" },
  { name = "v", type = "float" },
]
key = ["k"]
event_time = "t"

[[windows]]
name = "minute"
kind = "tumbling"
size = "60s"
aggregate = "count"

[alerts]
function = "hoard"

[params]
hoard_kib = "900"

[limits]
memory = "128MiB"
max_output = "16MiB"

[output]
exchange = "bts.results"
"#
    .to_owned()
}

/// Rows for the hoarder: a new key every row, 10 per message.
fn hoard(messages: usize) -> Vec<u8> {
    let mut text = String::new();
    for i in 0..messages * 10 {
        text.push_str(&format!(
            "hoard-{i},2017-02-18 10:{:02}:{:02} UTC,1.5\n",
            (i / 60) % 60,
            i % 60
        ));
    }
    text.into_bytes()
}

fn name(tenant: &str) -> TenantName {
    TenantName::parse(tenant).expect("tenant name")
}

/// Deploys and waits for the swap (a 202 completes on its own).
fn deploy(
    host: &Arc<Host>,
    tenant: &str,
    manifest: &str,
    wasm: &[u8],
) -> sluice_host::serve::Result<sluice_host::serve::TenantView> {
    let tenant = name(tenant);
    match host.deploy(&tenant, manifest, wasm, &AtomicBool::new(false))? {
        Deployed::Done(view) => Ok(view),
        Deployed::Pending(_) => loop {
            std::thread::sleep(Duration::from_millis(50));
            if let Some(view) = host.get(&tenant).filter(|v| v.operation.is_none()) {
                return Ok(view);
            }
        },
    }
}

/// A host of its own, its state in a temp dir, auto-pause at `max_traps`.
struct Served {
    host: Arc<Host>,
    stop: Arc<AtomicBool>,
    watcher: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Served {
    fn start(bench: &Bench, max_traps: u64) -> Served {
        Served::start_with(bench, max_traps, 1000)
    }

    /// `prefetch`: messages a tenant's consumer holds unacked (its acks
    /// wait for a checkpoint, which waits for the results' confirms).
    fn start_with(bench: &Bench, max_traps: u64, prefetch: u16) -> Served {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = format!(
            "listen = \"127.0.0.1:0\"\noperator_token = \"bench-operator-token\"\namqp = {:?}\nstate_dir = {:?}\ncheckpoint_interval = \"1s\"\nmax_traps_per_minute = {max_traps}\nprefetch = {prefetch}\n",
            url(),
            dir.path().join("state").display().to_string(),
        );
        let path = dir.path().join("host.toml");
        std::fs::write(&path, &text).expect("host.toml");
        let config = HostConfig::from_path(&path).expect("host config");
        let engine = SandboxEngine::new(SandboxConfig {
            pool_instances: 32,
            trap_backoff: Some(TrapBackoff::SERVE),
            ..SandboxConfig::default()
        })
        .expect("engine");
        let metrics = HostMetrics::new(Arc::new(NoScrape));
        let host = Arc::new(Host::new(
            config,
            engine,
            Storage::default(),
            bench.rt.handle().clone(),
            metrics.checkpoints.clone(),
            metrics.latency.clone(),
        ));
        let stop = Arc::new(AtomicBool::new(false));
        let watcher = {
            let (host, stop) = (Arc::clone(&host), Arc::clone(&stop));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    host.watch();
                    std::thread::sleep(Duration::from_secs(1));
                }
            })
        };
        Served {
            host,
            stop,
            watcher: Some(watcher),
            _dir: dir,
        }
    }

    fn records_in(&self, tenant: &str) -> u64 {
        self.host
            .get(&name(tenant))
            .map_or(0, |v| v.counters.records_in)
    }

    fn wait_records(&self, tenant: &str, rows: u64) {
        let started = Instant::now();
        while self.records_in(tenant) < rows {
            assert!(
                started.elapsed() < Duration::from_secs(600),
                "{tenant} read {} of {rows} rows",
                self.records_in(tenant)
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(w) = self.watcher.take() {
            let _ = w.join();
        }
        self.host.shutdown();
    }
}

impl Bench {
    /// Names of a fresh queue and its output exchange.
    fn names(&self, what: &str) -> (String, String) {
        let q = format!("bench.serve.{}.{what}", self.tag);
        let x = format!("{q}.out");
        (q, x)
    }

    fn manifest(&self, template: &str, queue: &str, exchange: &str) -> String {
        template
            .replace("queue = \"bts.readings\"", &format!("queue = {queue:?}"))
            .replace(
                "exchange = \"bts.results\"",
                &format!("exchange = {exchange:?}"),
            )
    }

    /// Deploys the BTS tenant on queue `q`, results to `x` (in packed
    /// messages when `packed`).
    fn deploy_healthy(&self, served: &Served, q: &str, x: &str, packed: bool) {
        let mut manifest = self.manifest(&self.healthy_manifest, q, x);
        if packed {
            manifest = manifest.replacen("[output]\n", "[output]\nmessages = \"packed\"\n", 1);
            assert!(manifest.contains("messages = \"packed\""), "{manifest}");
        }
        deploy(&served.host, "bts", &manifest, &self.healthy_wasm)
            .expect("deploying the BTS tenant");
    }

    /// The healthy tenant's rows/s with each output mode, alternating.
    /// With a prefetch of 100 messages (10 000 rows) the consumer cannot run
    /// ahead of the results' confirms by more than that, so rows in per
    /// second is the rate through to the output exchange.
    fn output_modes(&self, data: &[u8], rounds: usize) {
        println!("output modes (the BTS tenant alone draining the rows, prefetch 100 messages), {rounds} rounds:");
        let (mut per_result, mut packed) = (Vec::new(), Vec::new());
        for round in 1..=rounds {
            let one = self.drain_rate(&format!("per-result{round}"), data, None, Some(false));
            let many = self.drain_rate(&format!("packed{round}"), data, None, Some(true));
            println!(
                "    round {round}: per-result {one:>8.0} rows/s, packed {many:>8.0} rows/s = {:.1}x",
                many / one
            );
            per_result.push(one);
            packed.push(many);
        }
        let (one, many) = (median(&mut per_result), median(&mut packed));
        println!(
            "    median: per-result {one:.0} rows/s, packed {many:.0} rows/s = {:.1}x",
            many / one
        );
    }

    /// The hostile tenant's manifest, component and input for `mode`.
    fn hostile(&self, mode: &str) -> (String, &[u8], Vec<u8>) {
        if mode == "hoard" {
            (hoarder_manifest(), &self.hoarder_wasm, hoard(60))
        } else {
            // Enough poison to keep trapping through a figure under the
            // backoff, little enough that what is left when the host shuts
            // down drains in seconds (a stopping run drains at full speed).
            (hostile_manifest(mode), &self.hostile_wasm, poison(60))
        }
    }

    /// Rows/s of the healthy tenant draining `data`, alone (`hostile` =
    /// `None`) or beside a hostile tenant (mode, auto-pause limit).
    fn healthy_rate(&self, what: &str, data: &[u8], hostile: Option<(&str, u64)>) -> f64 {
        self.drain_rate(what, data, hostile, None)
    }

    /// [`Self::healthy_rate`]; for the output modes (`packed`: `Some`), its
    /// results in packed messages or not, a prefetch of 100.
    fn drain_rate(
        &self,
        what: &str,
        data: &[u8],
        hostile: Option<(&str, u64)>,
        packed: Option<bool>,
    ) -> f64 {
        quiesce();
        let prefetch = if packed.is_some() { 100 } else { 1000 };
        let served = Served::start_with(self, hostile.map_or(10, |h| h.1), prefetch);
        let (q, x) = self.names(what);
        let (hq, hx) = self.names(&format!("{what}.hostile"));
        let sink = self.rt.block_on(bind_sink_queue(&self.channel, &x));
        self.rt.block_on(prepublish(&q, data, 100));
        let mut drop_queues = vec![q.clone(), format!("{q}.dead"), sink];
        if let Some((mode, _)) = hostile {
            let (manifest, wasm, input) = self.hostile(mode);
            let hsink = self.rt.block_on(bind_sink_queue(&self.channel, &hx));
            self.rt.block_on(prepublish(&hq, &input, 10));
            deploy(
                &served.host,
                "hostile",
                &self.manifest(&manifest, &hq, &hx),
                wasm,
            )
            .expect("deploying the hostile tenant");
            // Let it get going (and, with auto-pause, trap) first.
            std::thread::sleep(Duration::from_secs(1));
            drop_queues.extend([hq.clone(), format!("{hq}.dead"), hsink]);
        }
        let rows = data.iter().filter(|b| **b == b'\n').count() as u64;
        let started = Instant::now();
        self.deploy_healthy(&served, &q, &x, packed == Some(true));
        served.wait_records("bts", rows);
        let took = started.elapsed();
        if hostile.is_some() {
            let view = served.host.get(&name("hostile")).expect("hostile tenant");
            println!(
                "    ({what}: hostile tenant {:?}, {} traps{})",
                view.state,
                view.counters.guest_traps,
                view.reason.map(|r| format!(", {r}")).unwrap_or_default()
            );
        }
        drop(served);
        let names: Vec<&str> = drop_queues.iter().map(String::as_str).collect();
        self.rt.block_on(delete(&self.channel, &names));
        rows as f64 / took.as_secs_f64()
    }

    /// A trapping tenant with a delivered backlog of poison, redeployed:
    /// how long the deploy call takes (the old version drains its backlog
    /// without any lock others need; past `deploy_wait` the call answers
    /// "pending"), and how long a neighbour's deploy takes meanwhile.
    fn trapping_redeploy(&self) {
        let served = Served::start(self, 0);
        let (hq, hx) = self.names("redeploy.hostile");
        let (q, x) = self.names("redeploy.neighbour");
        let hsink = self.rt.block_on(bind_sink_queue(&self.channel, &hx));
        let sink = self.rt.block_on(bind_sink_queue(&self.channel, &x));
        self.rt.block_on(prepublish(&hq, &poison(2_000), 10));
        let hostile = self.manifest(&hostile_manifest("loop"), &hq, &hx);
        deploy(&served.host, "hostile", &hostile, &self.hostile_wasm)
            .expect("deploying the hostile tenant");
        std::thread::sleep(Duration::from_secs(2));
        let started = Instant::now();
        let answer = served
            .host
            .deploy(
                &name("hostile"),
                &hostile,
                &self.hostile_wasm,
                &AtomicBool::new(false),
            )
            .expect("redeploying the hostile tenant");
        let took = started.elapsed();
        let neighbour_from = Instant::now();
        self.deploy_healthy(&served, &q, &x, false);
        let neighbour = neighbour_from.elapsed();
        println!(
            "redeploy of a trapping tenant with a backlog: the call answered in {:.0} ms ({}); \
             a neighbour's deploy meanwhile {:.0} ms",
            took.as_secs_f64() * 1e3,
            match answer {
                Deployed::Done(_) => "done",
                Deployed::Pending(_) => "pending: the old version still drains",
            },
            neighbour.as_secs_f64() * 1e3
        );
        drop(served);
        self.rt.block_on(delete(
            &self.channel,
            &[
                &hq,
                &format!("{hq}.dead"),
                &hsink,
                &q,
                &format!("{q}.dead"),
                &sink,
            ],
        ));
    }

    fn deploy_to_first_output(&self, data: &[u8]) {
        let served = Served::start(self, 10);
        let (q, x) = self.names("first");
        let sink = self.rt.block_on(bind_sink_queue(&self.channel, &x));
        self.rt
            .block_on(prepublish(&q, &data[..data.len().min(200_000)], 100));
        let arrivals = Arc::new(Mutex::new(Vec::new()));
        let receiver = self.rt.spawn(receive(sink.clone(), Arc::clone(&arrivals)));
        let started = Instant::now();
        self.deploy_healthy(&served, &q, &x, false);
        let deployed = started.elapsed();
        let first = loop {
            if let Some(at) = arrivals.lock().ok().and_then(|a| a.first().copied()) {
                break at;
            }
            assert!(started.elapsed() < Duration::from_secs(60), "no output");
            std::thread::sleep(Duration::from_millis(1));
        };
        println!(
            "deploy → first output: {:.0} ms (the deploy call {:.0} ms: load, compile, check, start)",
            first.duration_since(started).as_secs_f64() * 1e3,
            deployed.as_secs_f64() * 1e3
        );
        receiver.abort();
        drop(served);
        self.rt
            .block_on(delete(&self.channel, &[&q, &format!("{q}.dead"), &sink]));
    }

    /// Publishes at a steady rate; redeploys the same module in the middle.
    fn swap_pause(&self, data: &[u8]) {
        let served = Served::start(self, 10);
        let (q, x) = self.names("swap");
        let sink = self.rt.block_on(bind_sink_queue(&self.channel, &x));
        let manifest = self.manifest(&self.healthy_manifest, &q, &x);
        deploy(&served.host, "bts", &manifest, &self.healthy_wasm).expect("deploying");
        let arrivals = Arc::new(Mutex::new(Vec::new()));
        let receiver = self.rt.spawn(receive(sink.clone(), Arc::clone(&arrivals)));
        // 12 s of publishing at 4 000 rows/s, 20 rows a message.
        let rate = 4_000.0;
        let rows = (rate * 12.0) as usize;
        let slice: Vec<u8> = data
            .split_inclusive(|b| *b == b'\n')
            .take(rows)
            .flatten()
            .copied()
            .collect();
        let publisher = {
            let q = q.clone();
            self.rt
                .spawn(async move { amqp::publish(&q, &slice, 20, Some(rate)).await })
        };
        std::thread::sleep(Duration::from_secs(4));
        let calm_from = Instant::now();
        std::thread::sleep(Duration::from_secs(3));
        let swap_from = Instant::now();
        deploy(&served.host, "bts", &manifest, &self.healthy_wasm).expect("redeploying");
        let swap_took = swap_from.elapsed();
        self.rt.block_on(publisher).expect("publisher");
        std::thread::sleep(Duration::from_secs(2));
        receiver.abort();
        let arrivals = arrivals.lock().map(|a| a.clone()).unwrap_or_default();
        let gap = |from: Instant, to: Instant| {
            let inside: Vec<Instant> = arrivals
                .iter()
                .copied()
                .filter(|t| *t >= from && *t <= to)
                .collect();
            inside
                .windows(2)
                .map(|w| w[1].duration_since(w[0]))
                .max()
                .unwrap_or(to.duration_since(from))
        };
        let calm = gap(calm_from, calm_from + Duration::from_secs(3));
        let swap = gap(swap_from, swap_from + Duration::from_secs(3));
        println!(
            "swap pause: longest gap between results {:.0} ms around a redeploy (the call took {:.0} ms) vs {:.0} ms in 3 s without one; {} results",
            swap.as_secs_f64() * 1e3,
            swap_took.as_secs_f64() * 1e3,
            calm.as_secs_f64() * 1e3,
            arrivals.len()
        );
        drop(served);
        self.rt
            .block_on(delete(&self.channel, &[&q, &format!("{q}.dead"), &sink]));
    }
}

/// Records the arrival time of every message on `queue`.
async fn receive(queue: String, arrivals: Arc<Mutex<Vec<Instant>>>) {
    let conn = Connection::connect(&url(), ConnectionProperties::default())
        .await
        .expect("connect");
    let ch = conn.create_channel().await.expect("channel");
    let mut consumer = ch
        .basic_consume(
            queue.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    while let Some(Ok(d)) = consumer.next().await {
        if let Ok(mut a) = arrivals.lock() {
            a.push(Instant::now());
        }
        let _ = d.ack(BasicAckOptions::default()).await;
    }
}
