//! Cassandra benchmark (needs a node: `scripts/services.sh start
//! cassandra`). Prints figures; never passes or fails on time.
//!
//! 1. Rows/s written by the sink (`CassandraSink`, two threads writing
//!    batches as two shard workers do) against a minimal `scylla` loop
//!    writing the same rows with the same prepared statement and the same
//!    concurrency, in the same run.
//! 2. End-to-end events/s of `sluice run --cassandra` with raw-event
//!    storage on and off (and without Cassandra, for reference).
//! 3. Cassandra's start time in `scripts/services.sh` (a restart; skipped
//!    with `SLUICE_BENCH_NO_RESTART=1`).
//! 4. (Before 3, over the raw events 2 stored.) Rows/s of the batch jobs'
//!    scan of stored events (`cassandra::events_scan`, rendered as CSV and
//!    read to the end) at parallelism 1, 2 and 4, against the driver
//!    alone reading the same rows (one paged `WHERE tenant = ? ALLOW
//!    FILTERING` read, decoded, nothing rendered).
//!
//! 5. (After 4.) Batch jobs of `examples/bts-batch` end to end over the
//!    same stored events (scan, parse, aggregate in the component) as
//!    rows/s and as a share of the driver alone; the same jobs over the
//!    CSV file.
//!
//! `cargo bench -p sluice-host --bench cassandra` (`SLUICE_BENCH_ROWS`:
//! result rows for 1, default 200 000; `SLUICE_BENCH_EVENTS`: input rows
//! for 2, default 100 000; `SLUICE_TEST_CASSANDRA`: the node, default
//! 127.0.0.1:9042).

#[path = "../sandbox/tests/sandbox/common.rs"]
#[allow(dead_code)]
mod common;

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use futures_util::{StreamExt, TryStreamExt};
use scylla::statement::batch::{Batch, BatchStatement, BatchType};
use scylla::statement::unprepared::Statement;
use sluice_host::batch::stored::EventSource;
use sluice_host::batch::{JobRange, JobRun};
use sluice_host::cassandra::events_scan::{self, EventScan};
use sluice_host::cassandra::rows::{Grouper, Rows, Table};
use sluice_host::cassandra::{CassandraConfig, CassandraSink};
use sluice_host::data::{DataField, Value};
use sluice_host::ingress::Input;
use sluice_host::manifest::Manifest;
use sluice_host::parse::Key;
use sluice_host::pipeline;
use sluice_host::sandbox::{SandboxConfig, SandboxEngine};
use sluice_host::sink::LineSink;
use sluice_host::sink::{Data, EventBatch, OutputType, Record, Rendered, TableSink, WindowRef};

const CONCURRENCY: usize = 64;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let node =
        std::env::var("SLUICE_TEST_CASSANDRA").unwrap_or_else(|_| "127.0.0.1:9042".to_owned());
    let rows = env_u64("SLUICE_BENCH_ROWS", 200_000) as usize;
    let events = env_u64("SLUICE_BENCH_EVENTS", 100_000);
    let keyspace = format!("sluice_bench_{}", std::process::id());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let sink = Arc::new(
        rt.block_on(CassandraSink::connect(
            CassandraConfig {
                keyspace: keyspace.clone(),
                max_concurrency: CONCURRENCY,
                ..CassandraConfig::new(vec![node.clone()])
            },
            rt.handle().clone(),
        ))
        .unwrap_or_else(|e| {
            panic!("{e}: is Cassandra running? `scripts/services.sh start cassandra`")
        }),
    );

    // 1. The same Windowed Analytic rows: 60 keys × minute windows sliding
    // by 5 s, five fields each (as the BTS tenant makes them).
    let key_names: Vec<String> = ["station_id", "datapoint_id", "alarm_id"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let keys: Vec<Key> = (0..60)
        .map(|i| Key::from_parts([format!("11611140{i:02}"), "121".into(), "309".into()]))
        .collect::<Result<_, _>>()
        .expect("keys");
    let fields = |i: usize| {
        vec![
            DataField {
                name: "mean".into(),
                value: Value::Float(240.5 + i as f64),
            },
            DataField {
                name: "max".into(),
                value: Value::Float(241.0),
            },
            DataField {
                name: "min".into(),
                value: Value::Float(240.0),
            },
            DataField {
                name: "counter".into(),
                value: Value::Int(10),
            },
            DataField {
                name: "alarms".into(),
                value: Value::Int(i as i64 % 3),
            },
        ]
    };
    let batches: Vec<Rendered> = (0..rows)
        .collect::<Vec<_>>()
        .chunks(8192)
        .map(|chunk| {
            let mut r = Rendered::new(false, true);
            for &i in chunk {
                let start = 1_487_442_480_000 + (i / keys.len()) as i64 * 5_000;
                let data = fields(i);
                r.push_record(&Record {
                    tenant: "bench",
                    ty: OutputType::WindowedAnalytic,
                    window: Some(WindowRef {
                        name: "minute",
                        start,
                        end: start + 60_000,
                    }),
                    key_names: &key_names,
                    key: Some(&keys[i % keys.len()]),
                    data: Data::Fields(&data),
                    update: 0,
                    replaces: &[],
                });
            }
            r
        })
        .collect();
    let empty = Rendered::new(false, true);
    let no_events = EventBatch {
        tenant: "bench",
        key_names: &key_names,
        columns: &[],
        events: &[],
    };
    let prepared = sink
        .insert(Table::WindowedAnalytics)
        .expect("prepared")
        .clone();
    let session = Arc::clone(sink.session());

    println!(
        "1. {rows} Windowed Analytic rows (60 keys, 5 fields), concurrency {CONCURRENCY}, keyspace {keyspace}"
    );
    for round in 1..=3 {
        // The sink: two threads, as two shard workers.
        let started = Instant::now();
        std::thread::scope(|s| {
            for part in batches.chunks(batches.len().div_ceil(2)) {
                let sink = Arc::clone(&sink);
                let (empty, no_events) = (&empty, &no_events);
                s.spawn(move || {
                    for b in part {
                        sink.write(b, empty, no_events).expect("sink write");
                    }
                });
            }
        });
        let sink_rate = rows as f64 / started.elapsed().as_secs_f64();

        // The minimal loop: the same rows, one execute each, CONCURRENCY
        // in flight.
        let mut grouper = Grouper::new(1);
        for b in &batches {
            for r in b.typed_results() {
                grouper.result(r);
            }
        }
        let groups: Vec<_> = grouper
            .finish()
            .into_iter()
            .filter_map(|r| match r.rows {
                Rows::Window(rows) => Some(rows),
                _ => None,
            })
            .collect();
        let flat: Vec<_> = groups.iter().flatten().collect();
        let started = Instant::now();
        rt.block_on(async {
            let mut stream = futures_util::stream::iter(flat.iter())
                .map(|row| session.execute_unpaged(&prepared, row))
                .buffer_unordered(CONCURRENCY);
            while let Some(r) = stream.next().await {
                r.expect("loop write");
            }
        });
        let loop_rate = rows as f64 / started.elapsed().as_secs_f64();

        // The same loop sending the sink's partition groups as unlogged
        // batches: what the sink's own work (grouping, conversion,
        // budgets, retries) costs on top of the driver.
        let started = Instant::now();
        rt.block_on(async {
            let mut stream = futures_util::stream::iter(groups.iter())
                .map(|rows| {
                    let batch = Batch::new_with_statements(
                        BatchType::Unlogged,
                        vec![BatchStatement::PreparedStatement(prepared.clone()); rows.len()],
                    );
                    let session = &session;
                    async move { session.batch(&batch, rows).await }
                })
                .buffer_unordered(CONCURRENCY);
            while let Some(r) = stream.next().await {
                r.expect("batch loop write");
            }
        });
        let batch_rate = rows as f64 / started.elapsed().as_secs_f64();
        println!(
            "   round {round}: sink {sink_rate:>7.0} rows/s | minimal loop, one execute a row: \
             {loop_rate:>7.0} rows/s (sink {:.0} %) | minimal loop, the same unlogged batches: \
             {batch_rate:>7.0} rows/s (sink {:.0} %)",
            100.0 * sink_rate / loop_rate,
            100.0 * sink_rate / batch_rate
        );
    }
    println!("   sink counters: {:?}", sink.stats());

    // 2. End to end.
    let _ = common::component("bts_analytics");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ has a parent")
        .to_path_buf();
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in.csv");
    let sluice = env!("CARGO_BIN_EXE_sluice");
    let gen = Command::new(sluice)
        .args([
            "gen-bts",
            "--events",
            &events.to_string(),
            "--out-of-order",
            "0.05",
        ])
        .args(["--dirty", "0.001", "--ramp", "3", "-o"])
        .arg(&input)
        .output()
        .expect("gen-bts");
    assert!(gen.status.success());
    let manifest = root.join("examples/bts-analytics/sluice.toml");
    println!("2. sluice run over {events} generated BTS rows, examples/bts-analytics/sluice.toml");
    for (label, extra) in [
        ("no Cassandra (output to a file)", vec![]),
        (
            "--cassandra, raw events stored",
            vec!["--cassandra", &node, "--keyspace", &keyspace],
        ),
        (
            "--cassandra --no-store-events",
            vec![
                "--cassandra",
                &node,
                "--keyspace",
                &keyspace,
                "--no-store-events",
            ],
        ),
    ] {
        let out = Command::new(sluice)
            .arg("run")
            .arg(&manifest)
            .arg("--input")
            .arg(&input)
            .arg("--output")
            .arg(dir.path().join("out.jsonl"))
            .arg("--quiet")
            .args(&extra)
            .output()
            .expect("sluice run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "sluice run failed: {stderr}");
        let rate = stderr
            .lines()
            .find(|l| l.ends_with("events/s"))
            .and_then(|l| l.rsplit(", ").next())
            .unwrap_or("?");
        let stored = stderr
            .lines()
            .find(|l| l.contains("Cassandra ("))
            .map_or(String::new(), |l| {
                format!("  [{}]", l.trim_start_matches("sluice run: "))
            });
        println!("   {label:<34} {rate}{stored}");
    }

    // 4. The batch jobs' scan over the raw events stored by 2.
    let tenant_manifest = Manifest::from_path(&manifest).expect("the example manifest");
    let tenant = tenant_manifest.tenant.clone();
    let spec = tenant_manifest.input;
    println!("4. events_scan of tenant `{tenant}`'s stored events (CSV rendered, read to the end)");
    for parallelism in [1, 2, 4] {
        let started = Instant::now();
        let (input, handle) = events_scan::start(
            Arc::clone(&session),
            rt.handle().clone(),
            EventScan {
                keyspace: keyspace.clone(),
                tenant: tenant.clone(),
                range: JobRange {
                    from: 0,
                    to: i64::MAX,
                },
                scope: Vec::new(),
                columns: spec.columns.clone(),
                delimiter: spec.delimiter,
                parallelism,
            },
            None,
        )
        .expect("starting the scan");
        let Input::Bytes { mut reader, .. } = input else {
            panic!("a scan is a byte stream");
        };
        let bytes = std::io::copy(&mut reader, &mut std::io::sink()).expect("the scan ends");
        let secs = started.elapsed().as_secs_f64();
        let stats = handle.stats();
        println!(
            "   parallelism {parallelism}: {} rows in {} partitions ({} listed), {secs:.2} s, \
             {:>7.0} rows/s, {:.1} MB/s of CSV",
            stats.rows,
            stats.partitions,
            stats.listed,
            stats.rows as f64 / secs,
            bytes as f64 / secs / 1e6
        );
    }
    let started = Instant::now();
    let driver_rows = rt.block_on(async {
        let statement = Statement::new(format!(
            "SELECT event_time, source, line, ints, floats, texts, bools, times \
             FROM {keyspace}.events WHERE tenant = ? ALLOW FILTERING"
        ))
        .with_page_size(events_scan::PAGE_SIZE);
        let mut rows = session
            .query_iter(statement, (tenant.as_str(),))
            .await
            .expect("a paged read")
            .rows_stream::<events_scan::StoredEvent>()
            .expect("typed rows");
        let mut n = 0u64;
        while rows.try_next().await.expect("a page").is_some() {
            n += 1;
        }
        n
    });
    let secs = started.elapsed().as_secs_f64();
    println!(
        "   the driver alone, one paged read: {driver_rows} rows, {secs:.2} s, {:>7.0} rows/s",
        driver_rows as f64 / secs
    );

    // 5. Batch jobs end to end over the same stored events: scan, parse,
    // aggregate in the bts-batch component (one worker, as `sluice serve`
    // runs triggered jobs, and all cores), against the driver alone (4);
    // and the same jobs over the CSV file.
    let driver_rate = driver_rows as f64 / secs;
    let batch_manifest = Manifest::from_path(&root.join("examples/bts-batch/sluice.toml"))
        .expect("the batch example manifest");
    common::component("bts_batch");
    let engine = SandboxEngine::new(SandboxConfig::default()).expect("engine");
    let module = engine
        .load_file(&batch_manifest.tenant, &batch_manifest.module)
        .expect("the bts-batch component");
    let source = EventSource {
        session: Arc::clone(&session),
        runtime: rt.handle().clone(),
        keyspace: keyspace.clone(),
        parallelism: 4,
    };
    let everything = JobRange {
        from: 0,
        to: 4_102_444_800_000,
    };
    println!("5. batch jobs of examples/bts-batch over the stored events (scan parallelism 4)");
    for job in ["station_rates", "alarms_per_day", "alarm_hours"] {
        for workers in [1, 2] {
            let run = JobRun::new(&batch_manifest, job, everything, Vec::new()).expect("job");
            let options = pipeline::Options {
                workers,
                ..pipeline::Options::default()
            };
            let started = Instant::now();
            let scan = source.input(&run, None).expect("scan");
            let outcome = run
                .run(&module, scan, false, LineSink::discard("dead"), &options)
                .expect("the job runs");
            let took = started.elapsed().as_secs_f64();
            let rate = outcome.rows_used() as f64 / took;
            println!(
                "   {job:<15} {workers} worker(s): {} rows, {} results, {took:.2} s, {rate:>7.0} rows/s \
                 = {:.0} % of the driver alone",
                outcome.rows_used(),
                outcome.results.len(),
                100.0 * rate / driver_rate
            );
            let started = Instant::now();
            let file = std::fs::File::open(&input).expect("the CSV file");
            let outcome = run
                .run(
                    &module,
                    Input::bytes(Box::new(file), "bench.csv"),
                    false,
                    LineSink::discard("dead"),
                    &options,
                )
                .expect("the job runs over the file");
            let took = started.elapsed().as_secs_f64();
            println!(
                "   {job:<15} {workers} worker(s) over the CSV file: {} rows, {took:.2} s, {:>9.0} rows/s",
                outcome.rows_used(),
                outcome.rows_used() as f64 / took
            );
        }
    }

    // Drop the keyspace before a restart (its files would slow it).
    let _ = rt.block_on(session.query_unpaged(format!("DROP KEYSPACE IF EXISTS {keyspace}"), &[]));
    drop(sink);
    drop(session);

    // 3. Start time.
    if std::env::var("SLUICE_BENCH_NO_RESTART").is_ok() {
        println!("3. Cassandra start time: skipped (SLUICE_BENCH_NO_RESTART)");
        return;
    }
    let script = root.join("scripts/services.sh");
    let out = Command::new("bash")
        .arg(&script)
        .args(["restart", "cassandra"])
        .output()
        .expect("services.sh restart cassandra");
    let log = String::from_utf8_lossy(&out.stderr);
    let line = |what: &str| {
        log.lines()
            .find(|l| l.contains(what))
            .unwrap_or("?")
            .trim_start_matches("services: ")
            .to_owned()
    };
    println!(
        "3. scripts/services.sh restart cassandra: {}; {}",
        line("stopped in"),
        line("started in")
    );
}
