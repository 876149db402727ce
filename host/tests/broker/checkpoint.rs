//! Exactly-once over the broker with checkpoints: the host killed at
//! seeded moments and aborted at fail points, restarted each time, leaves
//! on the output exchange exactly the crash-free results — one content
//! per message id, every result present — and an empty input queue; the
//! same with a publisher that sets no message ids, and with the broker
//! cutting every connection mid-run (no restart). With `--cassandra`, the
//! tables after the crashes equal a crash-free run's, row for row.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::amqp::{self, Got};
use crate::cassandra;
use crate::common::{self, sluice};

/// The host over the broker with checkpoints: in `dir/checkpoints`, unless
/// `extra` picks another store (`--checkpoint-store cassandra`).
fn spawn_host(manifest: &Path, dir: &Path, failpoint: Option<&str>, extra: &[&str]) -> Child {
    let mut cmd = sluice();
    cmd.arg("run")
        .arg(manifest)
        .args([
            "--amqp",
            &amqp::url(),
            "--until-idle",
            "2",
            "--quiet",
            "--workers",
            "2",
        ])
        .args(["--checkpoint-interval", "100ms", "--prefetch", "500"])
        .arg("--cache-dir")
        .arg(dir.join("cache"))
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if !extra.contains(&"--checkpoint-store") {
        cmd.arg("--checkpoint-dir").arg(dir.join("checkpoints"));
    }
    if let Some(point) = failpoint {
        cmd.env("SLUICE_FAILPOINT", point)
            .env("SLUICE_FAILPOINT_SKIP", "1");
    }
    cmd.spawn().expect("spawning the host")
}

/// xorshift delays, from a seed.
fn delay(state: &mut u64, lo: u64, hi: u64) -> Duration {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    Duration::from_millis(lo + *state % (hi - lo))
}

/// Where the input queue is: the test's runtime and channel, and its name.
struct Input<'a> {
    rt: &'a tokio::runtime::Runtime,
    channel: &'a lapin::Channel,
    queue: &'a str,
}

impl Input<'_> {
    fn ready(&self) -> u32 {
        self.rt.block_on(amqp::ready(self.channel, self.queue))
    }
}

/// Aborts the host at each fail point, then kills it once the input
/// queue's ready count falls to each of `kills` seeded levels — points in
/// the data, not in time, so the kills land however fast the machine is —
/// then lets it finish. Returns the number of kills that landed.
fn crash_until_done(
    manifest: &Path,
    dir: &Path,
    input: &Input<'_>,
    seed: u64,
    kills: usize,
    extra: &[&str],
) -> usize {
    for point in [
        "after-checkpoint-before-ack",
        "after-checkpoint-write-before-rename",
    ] {
        let out = spawn_host(manifest, dir, Some(point), extra)
            .wait_with_output()
            .expect("host");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{point}: did not abort: {stderr}");
    }
    let total = u64::from(input.ready());
    let mut state = seed;
    let mut levels: Vec<u64> = (0..kills)
        .map(|_| total * (1000 - delay(&mut state, 50, 900).as_millis() as u64) / 1000)
        .collect();
    levels.sort_unstable_by(|a, b| b.cmp(a));
    let mut landed = 0;
    for level in levels {
        let mut host = spawn_host(manifest, dir, None, extra);
        let started = std::time::Instant::now();
        let finished = loop {
            if host.try_wait().expect("try_wait").is_some() {
                break true;
            }
            let ready = u64::from(input.ready());
            if ready <= level {
                break false;
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "the input queue stays at {ready} ready, above {level}"
            );
            std::thread::sleep(Duration::from_millis(5));
        };
        if !finished {
            // A seeded few milliseconds more, so kills land mid-batch too.
            std::thread::sleep(delay(&mut state, 0, 30));
            host.kill().expect("SIGKILL");
        }
        let out = host.wait_with_output().expect("host");
        if finished || out.status.success() {
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            return landed;
        }
        landed += 1;
    }
    let out = spawn_host(manifest, dir, None, extra)
        .wait_with_output()
        .expect("host");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    landed
}

/// The results must be the crash-free run's, exactly.
fn assert_exact(got: &[Got], embedded: &[String]) {
    let mut by_id: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for g in got {
        by_id
            .entry(g.message_id.as_deref().expect("message id"))
            .or_default()
            .insert(g.text());
    }
    let conflicting: Vec<_> = by_id.iter().filter(|(_, b)| b.len() > 1).take(2).collect();
    assert!(
        conflicting.is_empty(),
        "a message id with two contents (an event counted twice?): {conflicting:?}"
    );
    let distinct: BTreeSet<String> = got.iter().map(Got::text).collect();
    let want: BTreeSet<String> = embedded.iter().cloned().collect();
    let missing = want.difference(&distinct).count();
    let extra: Vec<&String> = distinct.difference(&want).take(2).collect();
    assert!(
        missing == 0 && extra.is_empty(),
        "{missing} results missing, unexpected: {extra:?}"
    );
    assert_eq!(
        by_id.len(),
        embedded.len(),
        "distinct message ids = the crash-free results"
    );
}

#[test]
fn kills_and_fail_points_leave_exactly_the_crash_free_results() {
    let _guard = amqp::shared();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let (queue, exchange) = (amqp::unique("ck"), amqp::unique("ck-out"));
    let manifest = amqp::manifest(dir, &queue, &exchange);
    let input = common::gen_bts(
        dir,
        "bts.csv",
        &[
            "--events",
            "30000",
            "--stations",
            "4",
            "--dirty",
            "0.01",
            "--out-of-order",
            "0.05",
            "--ramp",
            "1",
        ],
    );
    let embedded = amqp::embedded_lines(&manifest, &input);
    let node = cassandra::node();
    let (ks, ks_ref) = (
        cassandra::keyspace("crash"),
        cassandra::keyspace("crash_ref"),
    );

    // The crash-free reference: the same file over the broker (the same
    // message ids, so the same raw-event positions) into a keyspace of its
    // own.
    let ref_dir = dir.join("reference");
    std::fs::create_dir_all(&ref_dir).expect("mkdir");
    let (ref_queue, ref_exchange) = (amqp::unique("ck-ref"), amqp::unique("ck-ref-out"));
    let ref_manifest = amqp::manifest(&ref_dir, &ref_queue, &ref_exchange);
    amqp::publish(&ref_manifest, &input, 5);
    let out = amqp::run_host(
        &ref_manifest,
        "2",
        &[
            "--workers",
            "2",
            "--cassandra",
            &node,
            "--keyspace",
            &ks_ref,
        ],
    );
    assert!(
        out.status.success(),
        "the crash-free run: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let rt = amqp::runtime();
    let (_conn, channel) = rt.block_on(amqp::connect());
    let collector = rt.block_on(amqp::collector(&channel, &exchange));
    amqp::publish(&manifest, &input, 5);
    let input = Input {
        rt: &rt,
        channel: &channel,
        queue: &queue,
    };
    // Results, raw events and the checkpoints all in Cassandra.
    let store = [
        "--cassandra",
        node.as_str(),
        "--keyspace",
        ks.as_str(),
        "--checkpoint-store",
        "cassandra",
    ];
    let kills = crash_until_done(&manifest, dir, &input, 0x0c0f_fee0_1234_5678, 12, &store);
    eprintln!("{kills} kills");
    assert!(
        kills >= 10,
        "only {kills} of 12 kills landed before the end"
    );
    let got = rt.block_on(amqp::drain(&channel, &collector));
    assert_eq!(
        rt.block_on(amqp::ready(&channel, &queue)),
        0,
        "the input was all acked"
    );
    assert_exact(&got, &embedded);

    // Every row of every table, every column: the last Global Analytic's
    // counter per key included, so an event counted twice shows.
    let rows = |ks: &str| {
        let mut rows = cassandra::python_read(ks, "rows");
        rows.sort();
        rows
    };
    let (crashed, reference) = (rows(&ks), rows(&ks_ref));
    eprintln!("{} Cassandra rows compared", reference.len());
    assert!(
        reference.iter().any(|r| r.starts_with("events "))
            && reference.iter().any(|r| r.starts_with("global_analytics ")),
        "the reference run stored events and global analytics"
    );
    cassandra::assert_same_rows("Cassandra after the crashes", &crashed, &reference);
    cassandra::drop_keyspace(&ks);
    cassandra::drop_keyspace(&ks_ref);
    let dead = format!("{queue}.dead");
    let ref_dead = format!("{ref_queue}.dead");
    rt.block_on(amqp::delete(
        &channel,
        &[&queue, &dead, &collector, &ref_queue, &ref_dead],
    ));
}

#[test]
fn a_publisher_without_message_ids_is_exact_across_kills() {
    let _guard = amqp::shared();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let (queue, exchange) = (amqp::unique("ck-noid"), amqp::unique("ck-noid-out"));
    let manifest = amqp::manifest(dir, &queue, &exchange);
    let input = common::gen_bts(
        dir,
        "bts.csv",
        &["--events", "4000", "--stations", "2", "--dirty", "0.01"],
    );
    // Identical readings: each must count once per copy.
    let mut text = std::fs::read_to_string(&input).expect("input");
    let repeat: String = text
        .lines()
        .skip(100)
        .take(40)
        .map(|l| format!("{l}\n"))
        .collect();
    text.push_str(&repeat);
    std::fs::write(&input, &text).expect("input");
    let embedded = amqp::embedded_lines(&manifest, &input);
    let rt = amqp::runtime();
    let (_conn, channel) = rt.block_on(amqp::connect());
    let collector = rt.block_on(amqp::collector(&channel, &exchange));
    let script = r#"
import sys, pika
url, queue, path = sys.argv[1:4]
conn = pika.BlockingConnection(pika.URLParameters(url))
ch = conn.channel()
ch.queue_declare(queue=queue, durable=True, arguments={"x-dead-letter-exchange": queue + ".dead"})
ch.confirm_delivery()
with open(path, "rb") as f:
    for line in f:
        ch.basic_publish(exchange="", routing_key=queue, body=line,
                         properties=pika.BasicProperties(delivery_mode=2))
conn.close()
"#;
    let python = std::env::var("SLUICE_PYTHON")
        .unwrap_or_else(|_| "/var/cache/sluice/venv/bin/python".into());
    let out = Command::new(&python)
        .args(["-c", script, &amqp::url(), &queue])
        .arg(&input)
        .output()
        .unwrap_or_else(|e| panic!("running {python}: {e}"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let input = Input {
        rt: &rt,
        channel: &channel,
        queue: &queue,
    };
    let kills = crash_until_done(&manifest, dir, &input, 0x1d1e_55aa_0000_0042, 6, &[]);
    assert!(kills >= 5, "only {kills} of 6 kills landed before the end");
    let got = rt.block_on(amqp::drain(&channel, &collector));
    assert_eq!(rt.block_on(amqp::ready(&channel, &queue)), 0);
    assert_exact(&got, &embedded);
    let dead = format!("{queue}.dead");
    rt.block_on(amqp::delete(&channel, &[&queue, &dead, &collector]));
}

#[test]
fn a_cut_broker_connection_is_exact_without_a_restart() {
    let _guard = amqp::exclusive();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let (queue, exchange) = (amqp::unique("ck-cut"), amqp::unique("ck-cut-out"));
    let manifest = amqp::manifest(dir, &queue, &exchange);
    let input = common::gen_bts(
        dir,
        "bts.csv",
        &["--events", "30000", "--stations", "4", "--dirty", "0.01"],
    );
    let embedded = amqp::embedded_lines(&manifest, &input);
    let rt = amqp::runtime();
    let collector = {
        let (_conn, channel) = rt.block_on(amqp::connect());
        rt.block_on(amqp::collector(&channel, &exchange))
    };
    amqp::publish(&manifest, &input, 2);
    let host = spawn_host(&manifest, dir, None, &[]);
    // Cut once the host is visibly mid-run.
    let started = std::time::Instant::now();
    loop {
        let left = rt.block_on(async {
            let (_c, ch) = amqp::connect().await;
            amqp::ready(&ch, &queue).await
        });
        if left < 11_000 {
            assert!(left > 0, "the host finished before the cut");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the host does not consume"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    amqp::cut_connections();
    let out = host.wait_with_output().expect("host");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(amqp::figure(&stderr, "reconnects") >= 1, "{stderr}");

    let (_conn, channel) = rt.block_on(amqp::connect());
    let got = rt.block_on(amqp::drain(&channel, &collector));
    assert_eq!(rt.block_on(amqp::ready(&channel, &queue)), 0);
    assert_exact(&got, &embedded);
    let dead = format!("{queue}.dead");
    rt.block_on(amqp::delete(&channel, &[&queue, &dead, &collector]));
}

#[test]
fn a_long_checkpoint_interval_neither_stalls_the_consumer_nor_holds_the_last_acks() {
    let _guard = amqp::shared();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let (queue, exchange) = (amqp::unique("ck-window"), amqp::unique("ck-window-out"));
    let manifest = amqp::manifest(dir, &queue, &exchange);
    let input = common::gen_bts(dir, "bts.csv", &["--events", "3000", "--stations", "2"]);
    let embedded = amqp::embedded_lines(&manifest, &input);
    let rt = amqp::runtime();
    let (_conn, channel) = rt.block_on(amqp::connect());
    let collector = rt.block_on(amqp::collector(&channel, &exchange));
    amqp::publish(&manifest, &input, 5);
    // An hour between timed checkpoints and 20 unacked messages at most:
    // only checkpoints taken as the window fills (or the input goes quiet)
    // let 600 messages through, and the last ones are acked (so the run
    // can end idle) only because a quiet input is checkpointed at once.
    let mut host = sluice()
        .arg("run")
        .arg(&manifest)
        .args(["--amqp", &amqp::url(), "--until-idle", "2", "--quiet"])
        .args(["--prefetch", "20", "--checkpoint-interval", "1h"])
        .arg("--checkpoint-dir")
        .arg(dir.join("checkpoints"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning the host");
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = host.try_wait().expect("try_wait") {
            break status;
        }
        if started.elapsed() > Duration::from_secs(180) {
            let _ = host.kill();
            panic!(
                "the host stalled: {} messages still ready",
                rt.block_on(amqp::ready(&channel, &queue))
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = host.wait_with_output().expect("host");
    assert!(status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let got = rt.block_on(amqp::drain(&channel, &collector));
    assert_eq!(rt.block_on(amqp::ready(&channel, &queue)), 0);
    assert_exact(&got, &embedded);
    let dead = format!("{queue}.dead");
    rt.block_on(amqp::delete(&channel, &[&queue, &dead, &collector]));
}
