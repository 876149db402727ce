//! Checkpoints in Cassandra (`CassandraStore`, `--checkpoint-store
//! cassandra`): chunked round trips, torn and corrupt checkpoints skipped
//! for the previous one, only the newest kept, acks recorded, and a run
//! aborted at every fail point that resumes to exactly the crash-free
//! output.

use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use sluice_host::cassandra::store::{CassandraStore, CassandraStoreOptions};
use sluice_host::cassandra::CassandraConfig;
use sluice_host::state::{
    Checkpoint, CheckpointStore, CoordinatorState, CounterState, InputPosition, Restored,
    ShardState,
};

use crate::common::{self, bts_manifest, gen_bts, keyspace, node, sluice};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// A store on the test node, in keyspace `ks` (created when missing).
fn store(
    rt: &tokio::runtime::Runtime,
    ks: &str,
    pipeline: &str,
    options: &CassandraStoreOptions,
) -> CassandraStore {
    let config = CassandraConfig {
        keyspace: ks.to_owned(),
        ..CassandraConfig::new(vec![node()])
    };
    rt.block_on(CassandraStore::connect(
        &config,
        rt.handle().clone(),
        "bts",
        pipeline,
        options,
    ))
    .expect("opening the checkpoint store")
}

fn small_chunks(keep: usize) -> CassandraStoreOptions {
    CassandraStoreOptions {
        keep,
        chunk_bytes: 4096,
        ..CassandraStoreOptions::default()
    }
}

/// A checkpoint whose shard state is `size` deterministic, incompressible
/// bytes (so it spans `size / chunk` chunks).
fn checkpoint(id: u64, size: usize) -> Checkpoint {
    let mut x = id.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let windows = (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    Checkpoint {
        id,
        tenant: "bts".into(),
        module_hash: "hash".into(),
        input: InputPosition::File {
            offset: id * 1000,
            line: id * 10,
        },
        output_bytes: Some(id * 77),
        dead_letter_bytes: Some(id),
        coordinator: CoordinatorState {
            wm: 1_000 * id as i64,
            max_time: Some(1_000 * id as i64 + 5),
            wm_at_last_record: 0,
            keyless: 0,
            keyless_metrics: vec![(Some(60_000), id)],
        },
        counters: CounterState {
            rows_in: id * 10,
            ..CounterState::default()
        },
        shards: vec![ShardState {
            windows,
            alert_states: Vec::new(),
        }],
        guards: Default::default(),
    }
}

/// Runs `f` with `tracing` lines of this thread captured; returns its
/// result and the captured text.
fn with_logs<T>(f: impl FnOnce() -> T) -> (T, String) {
    #[derive(Clone)]
    struct Captured(Arc<Mutex<Vec<u8>>>);
    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let captured = Captured(Arc::new(Mutex::new(Vec::new())));
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .finish();
    let value = tracing::subscriber::with_default(subscriber, f);
    let text =
        String::from_utf8_lossy(&captured.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned();
    (value, text)
}

fn latest_id(store: &CassandraStore) -> Option<u64> {
    store
        .latest()
        .expect("latest")
        .map(|restored| restored.checkpoint.id)
}

/// CQL on the store's session; the rows as `T`.
fn cql<T>(rt: &tokio::runtime::Runtime, store: &CassandraStore, text: &str) -> Vec<T>
where
    T: for<'f, 'm> scylla::deserialize::row::DeserializeRow<'f, 'm>,
{
    rt.block_on(async {
        let result = store
            .session()
            .query_unpaged(text, &[])
            .await
            .unwrap_or_else(|e| panic!("{text}: {e}"));
        if !result.is_rows() {
            return Vec::new();
        }
        result
            .into_rows_result()
            .expect("rows")
            .rows::<T>()
            .expect("typed rows")
            .collect::<Result<Vec<T>, _>>()
            .expect("rows decode")
    })
}

/// Writes the first `chunks` chunks of `checkpoint` as the store would,
/// but never its marker: a write torn by a crash.
fn write_torn(
    rt: &tokio::runtime::Runtime,
    store: &CassandraStore,
    ks: &str,
    pipeline: &str,
    checkpoint: &Checkpoint,
    chunks: usize,
) {
    let bytes = checkpoint.encode().expect("encode");
    let slot = store.slot(checkpoint.id);
    rt.block_on(async {
        for (n, data) in bytes.chunks(4096).take(chunks).enumerate() {
            store
                .session()
                .query_unpaged(
                    format!(
                        "INSERT INTO {ks}.checkpoint_chunks (tenant, pipeline, slot, chunk, id, data) \
                         VALUES ('bts', ?, ?, ?, ?, ?)"
                    ),
                    (pipeline, slot, n as i32, checkpoint.id as i64, data),
                )
                .await
                .expect("inserting a chunk");
        }
    });
}

#[test]
fn a_checkpoint_of_many_chunks_round_trips_and_its_ack_is_recorded() {
    let _node = common::shared();
    let ks = keyspace("ckpt_trip");
    let rt = runtime();
    let store = store(&rt, &ks, "trip", &small_chunks(3));
    assert_eq!(
        store.latest().expect("latest"),
        None,
        "a fresh store is empty"
    );

    let first = checkpoint(1, 200_000);
    let encoded = first.encode().expect("encode").len();
    store.write(&first).expect("write");
    let chunks: Vec<(i64,)> = cql(
        &rt,
        &store,
        &format!(
            "SELECT count(*) FROM {ks}.checkpoint_chunks WHERE tenant = 'bts' AND pipeline = 'trip' AND slot = {}",
            store.slot(1)
        ),
    );
    assert_eq!(
        chunks[0].0 as usize,
        encoded.div_ceil(4096),
        "one row per 4 KiB chunk of {encoded} bytes"
    );
    assert!(chunks[0].0 >= 40, "the checkpoint spans many chunks");
    assert_eq!(
        store.latest().expect("latest"),
        Some(Restored {
            checkpoint: first.clone(),
            acked: false
        }),
        "read back byte for byte, not yet acked"
    );

    store.mark_acked(1).expect("mark acked");
    let restored = store.latest().expect("latest").expect("one");
    assert!(restored.acked, "the ack is recorded");
    assert_eq!(restored.checkpoint, first);

    // A newer checkpoint is not acked by its predecessor's ack; a store
    // opened afresh (a restarted host) reads what this one wrote.
    let second = checkpoint(2, 30_000);
    store.write(&second).expect("write");
    let again = self::store(&rt, &ks, "trip", &small_chunks(3));
    let restored = again.latest().expect("latest").expect("one");
    assert_eq!(restored.checkpoint, second);
    assert!(!restored.acked, "checkpoint 2 is not acked yet");
    again.mark_acked(2).expect("mark acked");
    assert!(store.latest().expect("latest").expect("one").acked);
    // Another pipeline of the same tenant sees none of it.
    let other = self::store(&rt, &ks, "other", &small_chunks(3));
    assert_eq!(other.latest().expect("latest"), None);
    common::drop_keyspace(&ks);
}

#[test]
fn torn_and_corrupt_checkpoints_are_skipped_for_the_previous_one() {
    let _node = common::shared();
    let ks = keyspace("ckpt_torn");
    let rt = runtime();
    // Four slots: 1, 2, 3 written whole, 4 torn into a slot of its own.
    let store = store(&rt, &ks, "torn", &small_chunks(4));
    for id in 1..=3 {
        store.write(&checkpoint(id, 40_000)).expect("write");
    }
    assert_eq!(latest_id(&store), Some(3));

    // A crash after some of checkpoint 4's chunks, before its marker.
    write_torn(&rt, &store, &ks, "torn", &checkpoint(4, 40_000), 5);
    let (latest, logs) = with_logs(|| latest_id(&store));
    assert_eq!(
        latest,
        Some(3),
        "a checkpoint without its marker is not used"
    );
    assert!(
        logs.contains("checkpoint 4 was not completed"),
        "the torn write is logged: {logs}"
    );

    // A chunk of checkpoint 3 is lost.
    cql::<()>(
        &rt,
        &store,
        &format!(
            "DELETE FROM {ks}.checkpoint_chunks WHERE tenant = 'bts' AND pipeline = 'torn' AND slot = {} AND chunk = 2",
            store.slot(3)
        ),
    );
    let (latest, logs) = with_logs(|| latest_id(&store));
    assert_eq!(latest, Some(2), "checkpoint 3 lacks a chunk: 2 is used");
    assert!(
        logs.contains("chunk 2 of") && logs.contains("is missing"),
        "the missing chunk is logged: {logs}"
    );

    // A chunk of checkpoint 2 is corrupt (one byte flipped, same length).
    let slot = store.slot(2);
    let rows: Vec<(Vec<u8>,)> = cql(
        &rt,
        &store,
        &format!(
            "SELECT data FROM {ks}.checkpoint_chunks WHERE tenant = 'bts' AND pipeline = 'torn' AND slot = {slot} AND chunk = 1"
        ),
    );
    let mut data = rows[0].0.clone();
    data[100] ^= 0x40;
    rt.block_on(store.session().query_unpaged(
        format!(
            "UPDATE {ks}.checkpoint_chunks SET data = ? WHERE tenant = 'bts' AND pipeline = 'torn' AND slot = {slot} AND chunk = 1"
        ),
        (data,),
    ))
    .expect("corrupting a chunk");
    let (restored, logs) = with_logs(|| store.latest().expect("latest"));
    assert_eq!(
        restored.map(|r| r.checkpoint),
        Some(checkpoint(1, 40_000)),
        "checkpoint 2 is corrupt: 1 is restored, whole"
    );
    assert!(logs.contains("checksum mismatch"), "{logs}");

    // A torn write into an occupied slot (checkpoint 1's): its old marker
    // now names chunks of another checkpoint, which is detected.
    let overwriting = checkpoint(5, 40_000);
    assert_eq!(store.slot(5), store.slot(1));
    write_torn(&rt, &store, &ks, "torn", &overwriting, 2);
    let (latest, logs) = with_logs(|| latest_id(&store));
    assert_eq!(latest, None, "nothing usable is left");
    assert!(logs.contains("belongs to checkpoint 5"), "{logs}");

    // A complete write makes the store usable again.
    store.write(&checkpoint(4, 10_000)).expect("write");
    assert_eq!(
        store.latest().expect("latest").map(|r| r.checkpoint),
        Some(checkpoint(4, 10_000))
    );
    common::drop_keyspace(&ks);
}

#[test]
fn only_the_newest_three_are_kept_and_shrinking_ones_leave_no_stale_chunks() {
    let _node = common::shared();
    let ks = keyspace("ckpt_keep");
    let rt = runtime();
    let store = store(&rt, &ks, "keep", &small_chunks(3));
    let size = |id: u64| 80_000 - 9_000 * id as usize;
    for id in 1..=7 {
        store.write(&checkpoint(id, size(id))).expect("write");
    }
    let mut ids: Vec<(i64,)> = cql(
        &rt,
        &store,
        &format!("SELECT id FROM {ks}.checkpoints WHERE tenant = 'bts' AND pipeline = 'keep'"),
    );
    ids.sort_unstable();
    assert_eq!(ids, vec![(5,), (6,), (7,)], "only the newest 3 markers");
    let mut rows = 0;
    for slot in 0..3 {
        let n: Vec<(i64,)> = cql(
            &rt,
            &store,
            &format!(
                "SELECT count(*) FROM {ks}.checkpoint_chunks WHERE tenant = 'bts' AND pipeline = 'keep' AND slot = {slot}"
            ),
        );
        rows += n[0].0 as usize;
    }
    let expected: usize = (5..=7)
        .map(|id| {
            checkpoint(id, size(id))
                .encode()
                .expect("encode")
                .len()
                .div_ceil(4096)
        })
        .sum();
    assert_eq!(
        rows, expected,
        "exactly the chunks of checkpoints 5, 6 and 7 are stored"
    );
    assert_eq!(
        store.latest().expect("latest").map(|r| r.checkpoint),
        Some(checkpoint(7, size(7)))
    );
    common::drop_keyspace(&ks);
}

#[test]
fn the_store_options_and_the_cli_are_checked() {
    let _node = common::shared();
    let ks = keyspace("ckpt_cli");
    let rt = runtime();
    let config = CassandraConfig {
        keyspace: ks.clone(),
        ..CassandraConfig::new(vec![node()])
    };
    let too_big = CassandraStoreOptions {
        chunk_bytes: 32 << 20,
        ..CassandraStoreOptions::default()
    };
    let err = rt
        .block_on(CassandraStore::connect(
            &config,
            rt.handle().clone(),
            "bts",
            "p",
            &too_big,
        ))
        .expect_err("a 32 MiB chunk is refused");
    assert!(err.to_string().contains("commit-log segment"), "{err}");
    let err = rt
        .block_on(CassandraStore::connect(
            &config,
            rt.handle().clone(),
            "bts",
            "a\nb",
            &CassandraStoreOptions::default(),
        ))
        .expect_err("a name with a line break is refused");
    assert!(err.to_string().contains("invalid checkpoint name"), "{err}");
    common::drop_keyspace(&ks);

    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = bts_manifest(dir.path(), "");
    let run = |extra: &[&str]| {
        let out = sluice()
            .arg("run")
            .arg(&manifest)
            .args(["--input", "x.csv"])
            .args(extra)
            .env_remove("SLUICE_CASSANDRA")
            .output()
            .expect("sluice run");
        assert!(!out.status.success(), "{extra:?} should be refused");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = run(&["--checkpoint-store", "cassandra"]);
    assert!(err.contains("--cassandra <CASSANDRA>"), "{err}");
    let err = run(&[
        "--checkpoint-store",
        "cassandra",
        "--cassandra",
        "127.0.0.1:9042",
        "--checkpoint-dir",
        "ck",
    ]);
    assert!(err.contains("cannot be used with"), "{err}");
    let err = run(&["--checkpoint-name", "n"]);
    assert!(err.contains("--checkpoint-store"), "{err}");
    let err = run(&["--checkpoint-store", "disk"]);
    assert!(err.contains("possible values: cassandra"), "{err}");
}

/// `sluice run` with checkpoints in Cassandra, aborted at `failpoint`
/// (after `skip` passes) when given; its stderr and whether it succeeded.
fn run_with_checkpoints(
    manifest: &Path,
    input: &Path,
    ks: &str,
    dir: &Path,
    failpoint: Option<(&str, u32)>,
) -> (bool, String) {
    let mut cmd = sluice();
    cmd.arg("run")
        .arg(manifest)
        .arg("--input")
        .arg(input)
        .arg("--output")
        .arg(dir.join("out.jsonl"))
        .arg("--dead-letter")
        .arg(dir.join("dead.jsonl"))
        .args(["--cassandra", &node(), "--keyspace", ks])
        .args(["--checkpoint-store", "cassandra"])
        .args(["--workers", "2", "--quiet", "--checkpoint-interval", "50ms"])
        .args(["--checkpoint-rows", "4000"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .env("SLUICE_LOG", "warn");
    if let Some((point, skip)) = failpoint {
        cmd.env("SLUICE_FAILPOINT", point)
            .env("SLUICE_FAILPOINT_SKIP", skip.to_string());
    }
    let out = cmd.output().expect("running sluice run");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn sorted_lines(path: &Path) -> Vec<String> {
    let mut lines: Vec<String> = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
        .lines()
        .map(str::to_owned)
        .collect();
    lines.sort();
    lines
}

#[test]
fn a_run_aborted_at_each_fail_point_resumes_from_cassandra_exactly() {
    let _node = common::shared();
    let tmp = tempfile::tempdir().expect("tempdir");
    let manifest = bts_manifest(tmp.path(), "max_out_of_orderness = \"5s\"\n");
    let input = gen_bts(
        tmp.path(),
        "in.csv",
        &[
            "--events",
            "60000",
            "--stations",
            "6",
            "--dirty",
            "0.01",
            "--out-of-order",
            "0.05",
            "--ramp",
            "2",
        ],
    );
    let ks = keyspace("ckpt_e2e");
    // The crash-free run (no checkpoints) is the reference.
    let reference = common::run(&manifest, &input, &ks, "ref", &["--workers", "2"]);
    assert!(reference.lines.len() > 1000, "the input makes results");

    let dir = tmp.path().join("crash");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let mut stderrs = Vec::new();
    // Each run gets one checkpoint further than the one before.
    for (point, skip) in [
        ("after-checkpoint-write-before-rename", 1),
        ("after-output-before-checkpoint", 1),
        ("after-checkpoint-before-ack", 1),
    ] {
        let (ok, stderr) = run_with_checkpoints(&manifest, &input, &ks, &dir, Some((point, skip)));
        assert!(!ok, "{point}: the run did not abort: {stderr}");
        assert!(
            stderr.contains(&format!("fail point `{point}` reached")),
            "{stderr}"
        );
        stderrs.push(stderr);
    }
    let (ok, stderr) = run_with_checkpoints(&manifest, &input, &ks, &dir, None);
    assert!(ok, "a clean restart failed: {stderr}");
    stderrs.push(stderr);
    // The run after the abort between chunks and marker sees the torn
    // checkpoint and resumes from the one before it.
    assert!(
        stderrs[1].contains("was not completed (its marker was never written)"),
        "{}",
        stderrs[1]
    );
    let resumed = stderrs[1..]
        .iter()
        .filter(|s| s.contains("resuming from checkpoint"))
        .count();
    assert_eq!(resumed, 3, "every restart resumed from a checkpoint");

    let mut want = reference.lines.clone();
    want.sort();
    let got = sorted_lines(&dir.join("out.jsonl"));
    assert_eq!(
        got.len(),
        want.len(),
        "as many results as the crash-free run"
    );
    assert!(got == want, "the same results as the crash-free run");
    let mut want_dead: Vec<String> = reference.dead.iter().map(|v| v.to_string()).collect();
    want_dead.sort();
    let mut got_dead: Vec<String> = sorted_lines(&dir.join("dead.jsonl"))
        .iter()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .expect("JSON")
                .to_string()
        })
        .collect();
    got_dead.sort();
    assert_eq!(got_dead, want_dead, "the same dead letters");
    // Cassandra holds the crash-free run's rows (replays overwrote).
    common::assert_same_rows(
        "sluice query after the crashes",
        &common::query(&ks, &[]),
        &common::expected_rows(&reference.lines),
    );
    // The checkpoints are named after the input file by default.
    let rt = runtime();
    let store = store(&rt, &ks, "in.csv", &CassandraStoreOptions::default());
    assert!(
        store.latest().expect("latest").is_some(),
        "checkpoints under the input's file name"
    );
    common::drop_keyspace(&ks);
}
