//! The broker restarted in the middle of a run: the host reconnects by
//! itself, finishes, and no result is missing; a result seen twice carries
//! the same message id and the same content.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::amqp::{self, figure};
use crate::common::{self, sluice};

fn rabbitmqctl(args: &[&str]) {
    let out = Command::new("rabbitmqctl")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running rabbitmqctl {args:?}: {e}"));
    assert!(
        out.status.success(),
        "rabbitmqctl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_host_rides_out_a_broker_restart() {
    let _guard = amqp::exclusive();
    let dir = tempfile::tempdir().expect("tempdir");
    let (queue, exchange) = (amqp::unique("restart"), amqp::unique("restart-out"));
    let manifest = amqp::manifest(dir.path(), &queue, &exchange);
    let input = common::gen_bts(
        dir.path(),
        "bts.csv",
        &[
            "--events",
            "24000",
            "--stations",
            "4",
            "--dirty",
            "0.01",
            "--out-of-order",
            "0.05",
        ],
    );
    let embedded = amqp::embedded_lines(&manifest, &input);

    let rt = amqp::runtime();
    let collector = {
        let (conn, channel) = rt.block_on(amqp::connect());
        let q = rt.block_on(amqp::collector(&channel, &exchange));
        drop(channel);
        drop(conn);
        q
    };
    amqp::publish(&manifest, &input, 2);

    // A small prefetch keeps the run going long enough to be interrupted.
    let host = sluice()
        .arg("run")
        .arg(&manifest)
        .args([
            "--amqp",
            &amqp::url(),
            "--until-idle",
            "3",
            "--quiet",
            "--prefetch",
            "50",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning the host");
    // Interrupt once it is visibly mid-run: part of the input consumed.
    let started = Instant::now();
    loop {
        let left = rt.block_on(async {
            let (_c, ch) = amqp::connect().await;
            amqp::ready(&ch, &queue).await
        });
        if left < 9_000 {
            assert!(
                left > 0,
                "the host finished before the broker could be stopped; give it more input"
            );
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the host does not consume"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    rabbitmqctl(&["stop_app"]);
    std::thread::sleep(Duration::from_secs(3));
    rabbitmqctl(&["start_app"]);
    rabbitmqctl(&["await_startup"]);

    let out = host.wait_with_output().expect("host exit");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the host failed: {stderr}");
    eprintln!("{stderr}");
    assert!(figure(&stderr, "reconnects") >= 1, "{stderr}");

    let (_conn, channel) = rt.block_on(amqp::connect());
    let got = rt.block_on(amqp::drain(&channel, &collector));
    assert_eq!(
        rt.block_on(amqp::ready(&channel, &queue)),
        0,
        "every input message was acked"
    );
    // No output missing.
    let seen: BTreeSet<String> = got.iter().map(|g| g.text()).collect();
    let missing: Vec<&String> = embedded.iter().filter(|l| !seen.contains(*l)).collect();
    assert!(
        missing.is_empty(),
        "{} results missing, e.g. {:?}",
        missing.len(),
        missing.first()
    );
    // Duplicates (a batch published again after the reconnect) carry the
    // same id and the same content; nothing else was published.
    let mut by_id: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for g in &got {
        by_id
            .entry(g.message_id.clone().expect("message id"))
            .or_default()
            .insert(g.text());
    }
    assert!(
        by_id.values().all(|bodies| bodies.len() == 1),
        "one content per message id"
    );
    assert_eq!(
        by_id.len(),
        embedded.len(),
        "distinct results: exactly the embedded run's"
    );
    let dead = format!("{queue}.dead");
    rt.block_on(amqp::delete(&channel, &[&queue, &dead, &collector]));
}
