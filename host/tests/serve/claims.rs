//! A queue or exchange belongs to one tenant, also when several tenants
//! naming it are deployed at the same instant: the claim is checked and
//! taken in one step at the commit point, not when the run is in place.
//! The fail point `swap-delay:*` holds every committed deploy 1 s before
//! its run starts, so deploys that all pass their checks meet there.

use std::sync::{Arc, Barrier};
use std::time::Instant;

use serde_json::Value;

use crate::amqp::{self, unique};
use crate::common;
use crate::host::{bts_as, Served, OPERATOR};

/// Tenants deployed at once in each round.
const AT_ONCE: usize = 8;

/// Deploys every `(tenant, manifest)` at the same instant, each from its
/// own thread: their answers, in order.
fn deploy_at_once(served: &Arc<Served>, deploys: Vec<(String, String)>) -> Vec<(u16, Value)> {
    let module = Arc::new(std::fs::read(common::component("bts_analytics")).expect("module"));
    let barrier = Arc::new(Barrier::new(deploys.len()));
    let threads: Vec<_> = deploys
        .into_iter()
        .map(|(tenant, text)| {
            let (served, module, barrier) = (
                Arc::clone(served),
                Arc::clone(&module),
                Arc::clone(&barrier),
            );
            std::thread::spawn(move || {
                barrier.wait();
                served.deploy(&tenant, &text, &module)
            })
        })
        .collect();
    threads
        .into_iter()
        .map(|t| t.join().expect("a deploy thread"))
        .collect()
}

/// Exactly one of `answers` is 200; the others are 409 naming `what`.
/// Returns the winner's index.
fn one_winner(answers: &[(u16, Value)], what: &str) -> usize {
    let won: Vec<usize> = (0..answers.len())
        .filter(|i| answers[*i].0 == 200)
        .collect();
    assert_eq!(
        won.len(),
        1,
        "exactly one deploy may claim the {what}: {answers:#?}"
    );
    for (i, (status, body)) in answers.iter().enumerate() {
        if i == won[0] {
            continue;
        }
        assert_eq!(*status, 409, "{body}");
        let error = body["error"].as_str().unwrap_or("");
        assert!(
            error.contains(&format!("its {what} belongs to another tenant")),
            "{body}"
        );
    }
    won[0]
}

#[test]
fn tenants_deployed_at_once_with_the_same_queue_or_exchange_claim_it_once_and_release_it() {
    let _broker = amqp::shared();
    let dir = tempfile::tempdir().expect("tempdir");
    // A compiled-artifact cache: after the first compile every deploy
    // loads the module in milliseconds, so all of them reach their
    // commit point together.
    let served = Arc::new(Served::start_extra_env(
        dir.path(),
        &[],
        &[],
        "cache_dir = \"cache\"\n",
        &[("SLUICE_FAILPOINT", "swap-delay:*")],
    ));
    let module = std::fs::read(common::component("bts_analytics")).expect("module");
    let wq = unique("serve.claim.warm");
    let warm = bts_as(dir.path(), "warm", &wq, &format!("{wq}.out"));
    let (status, body) = served.deploy("warm", &warm, &module);
    assert_eq!(status, 200, "{body}");
    let (status, body) = served.delete("/v1/tenants/warm", Some(OPERATOR));
    assert_eq!(status, 200, "{body}");

    // Round 1: one input queue, each tenant its own exchange.
    let queue = unique("serve.claim.q");
    let mut queues = vec![wq.clone(), queue.clone()];
    let names: Vec<String> = (0..AT_ONCE).map(|i| format!("q{i}")).collect();
    let texts: Vec<String> = names
        .iter()
        .map(|n| bts_as(dir.path(), n, &queue, &format!("{queue}.{n}.out")))
        .collect();
    let started = Instant::now();
    let answers = deploy_at_once(
        &served,
        names.iter().cloned().zip(texts.iter().cloned()).collect(),
    );
    eprintln!(
        "{AT_ONCE} deploys with one queue answered within {:?}",
        started.elapsed()
    );
    let winner = one_winner(&answers, "input queue");
    // The losers left nothing behind: not listed, no state.
    for (i, name) in names.iter().enumerate() {
        let (status, _) = served.get(&format!("/v1/tenants/{name}"), Some(OPERATOR));
        let expected = if i == winner { 200 } else { 404 };
        assert_eq!(status, expected, "{name}");
        if i != winner {
            assert!(!dir.path().join("state/tenants").join(name).exists());
        }
    }

    // Round 2: one output exchange, each tenant its own queue.
    let exchange = unique("serve.claim.x");
    let xnames: Vec<String> = (0..AT_ONCE).map(|i| format!("x{i}")).collect();
    let deploys: Vec<(String, String)> = xnames
        .iter()
        .map(|n| {
            let q = format!("{exchange}.{n}.in");
            queues.push(q.clone());
            (n.clone(), bts_as(dir.path(), n, &q, &exchange))
        })
        .collect();
    let xwinner = one_winner(&deploy_at_once(&served, deploys), "output exchange");

    // A deploy that fails after its commit point (a partitioned input
    // needs Cassandra, which this host has not got) releases its claim.
    let pq = unique("serve.claim.p");
    let partitioned = bts_as(dir.path(), "part", &pq, &format!("{pq}.out"))
        .replace("[input]\n", "[input]\npartitions = 2\n");
    let (status, body) = served.deploy("part", &partitioned, &module);
    assert_eq!(status, 409, "{body}");
    assert!(body.to_string().contains("Cassandra"), "{body}");
    let (status, body) = served.deploy(
        "after",
        &bts_as(dir.path(), "after", &pq, &format!("{pq}.after")),
        &module,
    );
    assert_eq!(status, 200, "the failed deploy kept its claim: {body}");
    queues.push(pq.clone());

    // Undeployed, the winner's queue is free again: a loser claims it now.
    let (status, body) = served.delete(&format!("/v1/tenants/{}", names[winner]), Some(OPERATOR));
    assert_eq!(status, 200, "{body}");
    let loser = (winner + 1) % AT_ONCE;
    let (status, body) = served.deploy(&names[loser], &texts[loser], &module);
    assert_eq!(status, 200, "after the undeploy: {body}");
    assert_eq!(served.tenant(&names[loser])["queue"], queue.as_str());
    let listed = served.get("/v1/tenants", Some(OPERATOR)).1;
    let mut tenants: Vec<&str> = listed
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|t| t["tenant"].as_str())
        .collect();
    tenants.sort_unstable();
    let mut want = vec!["after", names[loser].as_str(), xnames[xwinner].as_str()];
    want.sort_unstable();
    assert_eq!(tenants, want);
    if let Ok(served) = Arc::try_unwrap(served) {
        served.stop();
    }
    let rt = amqp::runtime();
    let (_conn, channel) = rt.block_on(amqp::connect());
    let dead: Vec<String> = queues.iter().map(|q| format!("{q}.dead")).collect();
    let all: Vec<&str> = queues.iter().chain(&dead).map(String::as_str).collect();
    rt.block_on(amqp::delete(&channel, &all));
}
