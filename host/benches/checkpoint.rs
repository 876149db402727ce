//! Checkpoint benchmark: size and duration of one shard's checkpoint
//! (snapshot + encode + write/fsync/rename) and of its restore, for 1 k,
//! 100 k and 1 M keys with the customer's windows (sliding 60 s/5 s and
//! global 60 s) and the BTS aggregate run natively; then `sluice run`'s
//! pipeline over generated BTS rows of ≈100 k keys with checkpoints every
//! 1 s against checkpoints off, in the same run. Prints figures; never
//! passes or fails on time.
//!
//! For 1 k and 100 k keys the same checkpoint is also written to and
//! restored from the Cassandra store (1 MiB chunks, 4 in flight) when a
//! node answers on `SLUICE_TEST_CASSANDRA` (default 127.0.0.1:9042; the
//! part is skipped with a message otherwise), in a keyspace of its own
//! that is dropped at the end.
//!
//! `cargo bench -p sluice-host --bench checkpoint` (`SLUICE_BENCH_ROWS`:
//! rows of the end-to-end runs, default 1 000 000).

#[allow(dead_code)]
mod native;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bts_analytics::Bts;
use native::Native;
use sluice_host::cassandra::store::{CassandraStore, CassandraStoreOptions};
use sluice_host::cassandra::CassandraConfig;
use sluice_host::generate::bts::{self, BtsConfig};
use sluice_host::ingress::Input;
use sluice_host::manifest::Manifest;
use sluice_host::parse::{Key, OwnedValue, ParsedRow};
use sluice_host::pipeline::{self, CheckpointOptions, Options};
use sluice_host::sink::{LineSink, Sinks};
use sluice_host::state::local::LocalStore;
use sluice_host::state::{
    Checkpoint, CheckpointStore, CoordinatorState, CounterState, InputPosition, ShardState,
};
use sluice_host::window::{Emitted, ShardWindows};

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ has a parent")
        .to_path_buf();
    let manifest = Manifest::from_path(&root.join("examples/bts-analytics/sluice.toml"))
        .expect("the example manifest");
    let params = manifest.params_list();
    let schema = manifest.schema();
    let dir = tempfile::tempdir().expect("tempdir");

    let cassandra = cassandra_store();
    println!("one shard's checkpoint (sliding 60 s/5 s + global 60 s, BTS stats; 20 rows per key over 20 s):");
    for keys in [1_000usize, 100_000, 1_000_000] {
        let mut windows = ShardWindows::new(
            &manifest.windows,
            manifest.input.allowed_lateness,
            schema.clone(),
        )
        .expect("windows");
        let mut calls = Native::<Bts>::new(params.clone(), schema.clone());
        let mut max = i64::MIN;
        for second in 0..20i64 {
            let rows: Vec<(ParsedRow, i64)> = (0..keys)
                .map(|k| {
                    let time = 1_487_442_480_000 + second * 1_000 + (k % 1000) as i64;
                    let wm = max.saturating_sub(5_000);
                    max = max.max(time);
                    let station = format!("{}", 1_000_000_000 + k);
                    let row = ParsedRow {
                        key: Key::from_parts([station.as_str(), "121", "308"]).expect("key"),
                        time,
                        values: vec![
                            OwnedValue::Text(station.as_str().into()),
                            OwnedValue::Text("121".into()),
                            OwnedValue::Text("308".into()),
                            OwnedValue::Timestamp(time),
                            OwnedValue::Float(230.0 + (k % 7) as f64),
                            OwnedValue::Float(999_999.0),
                            OwnedValue::Bool(k % 3 == 0),
                            OwnedValue::Absent,
                        ],
                    };
                    (row, wm)
                })
                .collect();
            let mut emitted = Emitted::default();
            windows
                .push(
                    &rows,
                    &[],
                    max.saturating_sub(5_000),
                    &mut calls,
                    &mut emitted,
                )
                .expect("push");
        }
        let store = LocalStore::open(&dir.path().join(format!("k{keys}")), 3).expect("store");
        let started = Instant::now();
        let bytes = windows.snapshot().expect("snapshot");
        let snap = started.elapsed();
        let checkpoint = Checkpoint {
            id: 1,
            tenant: "bts".into(),
            module_hash: String::new(),
            input: InputPosition::File { offset: 0, line: 0 },
            output_bytes: None,
            dead_letter_bytes: None,
            coordinator: CoordinatorState {
                wm: max,
                max_time: Some(max),
                wm_at_last_record: max,
                keyless: 0,
                keyless_metrics: Vec::new(),
            },
            counters: CounterState::default(),
            shards: vec![ShardState {
                windows: bytes,
                alert_states: Vec::new(),
            }],
            guards: Default::default(),
        };
        let started = Instant::now();
        store.write(&checkpoint).expect("write");
        let write = started.elapsed();
        let size = checkpoint.shards[0].windows.len();
        let started = Instant::now();
        let restored = store.latest().expect("latest").expect("a checkpoint");
        let mut fresh = ShardWindows::new(
            &manifest.windows,
            manifest.input.allowed_lateness,
            schema.clone(),
        )
        .expect("windows");
        fresh
            .restore(&restored.checkpoint.shards[0].windows)
            .expect("restore");
        let restore = started.elapsed();
        println!(
            "  {keys:>9} keys, {:>8} open panes: {:>8.1} MB, snapshot {:>7.1} ms, encode+write+fsync+rename {:>7.1} ms, read+decode+restore {:>7.1} ms",
            windows.open_panes(),
            size as f64 / 1e6,
            snap.as_secs_f64() * 1e3,
            write.as_secs_f64() * 1e3,
            restore.as_secs_f64() * 1e3,
        );
        if let (Some((_, store, _)), true) = (&cassandra, keys <= 100_000) {
            let mut checkpoint = checkpoint;
            checkpoint.id = keys as u64;
            let encoded = checkpoint.encode().expect("encode").len();
            let started = Instant::now();
            store.write(&checkpoint).expect("write to Cassandra");
            let write = started.elapsed();
            let started = Instant::now();
            let restored = store.latest().expect("latest").expect("a checkpoint");
            let mut fresh = ShardWindows::new(
                &manifest.windows,
                manifest.input.allowed_lateness,
                schema.clone(),
            )
            .expect("windows");
            fresh
                .restore(&restored.checkpoint.shards[0].windows)
                .expect("restore");
            let restore = started.elapsed();
            assert_eq!(restored.checkpoint.id, checkpoint.id);
            println!(
                "  {keys:>9} keys, Cassandra store ({} chunks of 1 MiB): encode+write chunks+marker {:>7.1} ms, read+decode+restore {:>7.1} ms",
                encoded.div_ceil(CassandraStoreOptions::DEFAULT_CHUNK_BYTES),
                write.as_secs_f64() * 1e3,
                restore.as_secs_f64() * 1e3,
            );
        }
    }
    if let Some((rt, store, keyspace)) = cassandra {
        let drop = format!("DROP KEYSPACE IF EXISTS {keyspace}");
        let _ = rt.block_on(store.session().query_unpaged(drop, &[]));
    }

    let rows: u64 = std::env::var("SLUICE_BENCH_ROWS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let mut data = Vec::new();
    let summary = bts::write_bts(
        &BtsConfig {
            events: rows,
            stations: 16_700,
            out_of_order: 0.05,
            ..BtsConfig::default()
        },
        &mut data,
    )
    .expect("generating");
    let data: Arc<[u8]> = data.into();
    let workers = std::thread::available_parallelism().map_or(1, usize::from);
    println!(
        "pipeline, {} rows of {} keys, native BTS, {workers} workers:",
        summary.lines, summary.keys
    );
    let mut rates = Vec::new();
    for (label, every) in [
        ("checkpoints off", None),
        ("checkpoint every 1 s", Some(Duration::from_secs(1))),
        ("checkpoints off (again)", None),
    ] {
        let store_dir = dir.path().join(format!("e2e-{}", rates.len()));
        let checkpoint = every.map(|interval| CheckpointOptions {
            store: Arc::new(LocalStore::open(&store_dir, 3).expect("store")),
            interval,
            every_rows: None,
            every_messages: None,
            module_hash: String::new(),
            restore: None,
        });
        let sinks = Sinks::lines(
            LineSink::discard("output"),
            LineSink::discard("dead-letter"),
        );
        let input = Input::bytes(Box::new(std::io::Cursor::new(data.to_vec())), "bench");
        let report = pipeline::run_with(
            &manifest,
            input,
            &sinks,
            &Options {
                workers,
                checkpoint,
                ..Options::default()
            },
            |_| Ok(Native::<Bts>::new(params.clone(), schema.clone())),
        )
        .expect("run");
        let checkpoints = std::fs::read_dir(&store_dir).map_or(0, |d| d.count());
        println!(
            "  {label:<24} {:>9.0} events/s ({:.2} s){}",
            report.summary.events_per_sec(),
            report.summary.elapsed.as_secs_f64(),
            if every.is_some() {
                format!(", newest {checkpoints} checkpoints kept")
            } else {
                String::new()
            }
        );
        rates.push(report.summary.events_per_sec());
    }
    let off = (rates[0] + rates[2]) / 2.0;
    println!(
        "  cost of 1 s checkpoints: {:.1} % of throughput",
        (1.0 - rates[1] / off) * 100.0
    );
}

/// The Cassandra store in a keyspace of its own, or `None` (with a message)
/// when no node answers.
fn cassandra_store() -> Option<(tokio::runtime::Runtime, CassandraStore, String)> {
    let node =
        std::env::var("SLUICE_TEST_CASSANDRA").unwrap_or_else(|_| "127.0.0.1:9042".to_owned());
    let reachable = node
        .parse::<std::net::SocketAddr>()
        .ok()
        .is_some_and(|a| std::net::TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok());
    if !reachable {
        println!(
            "(Cassandra store skipped: no node at {node}; `scripts/services.sh start cassandra`)"
        );
        return None;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let keyspace = format!("sluice_bench_ckpt_{}", std::process::id());
    let config = CassandraConfig {
        keyspace: keyspace.clone(),
        ..CassandraConfig::new(vec![node.clone()])
    };
    match rt.block_on(CassandraStore::connect(
        &config,
        rt.handle().clone(),
        "bts",
        "bench",
        &CassandraStoreOptions::default(),
    )) {
        Ok(store) => Some((rt, store, keyspace)),
        Err(e) => {
            println!("(Cassandra store skipped: {e})");
            None
        }
    }
}
