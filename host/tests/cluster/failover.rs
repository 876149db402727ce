//! Hosts going away — SIGKILLed, stopped gracefully while another joins,
//! or cut from the broker, also just as a handover acks — move their
//! partitions and change no stored result.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::exact::assert_same_rows;
use crate::fixture::{self, owned_counts, owned_records, published, Tenant};
use crate::host::Served;

const ROWS: u64 = 16_000;
/// Rows/s published: the run lasts about 16 s, so hosts come and go
/// while every partition still receives events.
const RATE: u32 = 1_000;

fn readings(dir: &std::path::Path) -> std::path::PathBuf {
    fixture::readings(dir, ROWS, 23, &[])
}

/// Waits until at least `rows` records were read.
fn wait_until_read(tenant: &Tenant, hosts: &[&Served], rows: u64) {
    let started = Instant::now();
    loop {
        let views: Vec<_> = hosts.iter().map(|h| tenant.view(h)).collect();
        if owned_records(&views) >= rows {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "fewer than {rows} records read: {views:#?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The partitions `host` owns now, with the ownership generation it
/// claimed each with.
fn owned_by(tenant: &Tenant, host: &Served) -> BTreeMap<u64, i64> {
    tenant.view(host)["partitions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["state"] == "active")
        .filter_map(|p| Some((p["partition"].as_u64()?, p["generation"].as_i64()?)))
        .collect()
}

/// Asserts that another host claimed each of `left` (partition →
/// generation of the host that left) after it: a later generation.
fn assert_taken_over(tenant: &Tenant, hosts: &[&Served], left: &BTreeMap<u64, i64>) {
    for (partition, generation) in left {
        let later = hosts.iter().any(|h| {
            tenant.view(h)["partitions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|p| {
                    p["partition"].as_u64() == Some(*partition)
                        && p["generation"].as_i64().is_some_and(|g| g > *generation)
                })
        });
        assert!(
            later,
            "no remaining host took partition {partition} over after generation {generation}"
        );
    }
}

/// The exactness checks every scenario ends with: the last Global
/// Analytic counter of every key is its good rows (nothing lost, nothing
/// counted twice), and every stored row is the embedded run's.
fn assert_exact(tenant: &Tenant, file: &std::path::Path) {
    let stored = tenant.stored();
    assert_eq!(
        fixture::last_global_counters(&stored),
        fixture::good_rows_per_key(file),
        "last Global Analytic counter per key against the file's good rows per key"
    );
    assert_same_rows(
        &stored,
        &fixture::embedded_rows(tenant, file),
        "stored rows against the embedded run",
    );
}

#[test]
fn a_killed_hosts_partitions_move_to_the_others_and_results_stay_exact() {
    let _one = fixture::one_at_a_time();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = readings(dir.path());
    let tenant = Tenant::new(dir.path(), "kill");
    let mut hosts: Vec<Served> = (0..3).map(|n| tenant.host(n)).collect();
    let publisher = tenant.publish(&file, Some(RATE));

    // Kill a host that owns partitions, once they have spread a little.
    let started = Instant::now();
    let victim = loop {
        let refs: Vec<&Served> = hosts.iter().collect();
        wait_until_read(&tenant, &refs, ROWS / 3);
        let views: Vec<_> = refs.iter().map(|h| tenant.view(h)).collect();
        let counts = owned_counts(&views);
        if counts.iter().filter(|n| **n > 0).count() >= 2
            || started.elapsed() > Duration::from_secs(8)
        {
            let most = (0..counts.len()).max_by_key(|i| counts[*i]).unwrap_or(0);
            break most;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let moved = owned_by(&tenant, &hosts[victim]);
    assert!(!moved.is_empty(), "the host to kill owns no partition");
    hosts.remove(victim).kill();

    published(publisher);
    let refs: Vec<&Served> = hosts.iter().collect();
    tenant.wait_read(&refs, ROWS);
    assert_taken_over(&tenant, &refs, &moved);
    tenant.finish(&refs);
    assert_exact(&tenant, &file);
}

#[test]
fn a_host_joining_and_one_stopping_gracefully_keep_results_exact() {
    let _one = fixture::one_at_a_time();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = readings(dir.path());
    let tenant = Tenant::new(dir.path(), "join");
    let mut hosts: Vec<Served> = (0..3).map(|n| tenant.host(n)).collect();
    let publisher = tenant.publish(&file, Some(RATE));

    {
        let refs: Vec<&Served> = hosts.iter().collect();
        wait_until_read(&tenant, &refs, ROWS / 4);
    }
    hosts.push(tenant.host(3));
    {
        let refs: Vec<&Served> = hosts.iter().collect();
        wait_until_read(&tenant, &refs, ROWS / 2);
    }
    // SIGTERM: the host checkpoints its partitions, acks, and lets go.
    let leaving = hosts.remove(0);
    let handed = owned_by(&tenant, &leaving);
    let log = leaving.stop();
    assert!(
        log.contains("suspended"),
        "the stopped host did not suspend its tenant:\n{log}"
    );

    published(publisher);
    let refs: Vec<&Served> = hosts.iter().collect();
    tenant.wait_read(&refs, ROWS);
    assert_taken_over(&tenant, &refs, &handed);
    tenant.finish(&refs);
    assert_exact(&tenant, &file);
}

#[test]
fn connections_cut_mid_run_lose_every_partition_and_results_stay_exact() {
    let _one = fixture::one_at_a_time();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = readings(dir.path());
    let tenant = Tenant::new(dir.path(), "cut");
    // Published before the hosts start: the cut below closes every
    // connection on the broker, a publisher's too.
    published(tenant.publish(&file, None));
    let hosts: Vec<Served> = (0..2).map(|n| tenant.host(n)).collect();
    let refs: Vec<&Served> = hosts.iter().collect();
    wait_until_read(&tenant, &refs, ROWS / 4);
    crate::amqp::cut_connections();
    tenant.wait_read(&refs, ROWS);
    let losses: u64 = refs
        .iter()
        .flat_map(|h| {
            tenant.view(h)["partitions"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .map(|p| p["losses"].as_u64().unwrap_or(0))
        .sum();
    assert!(losses > 0, "no partition noticed its lost connection");
    tenant.finish(&refs);
    assert_exact(&tenant, &file);
}

#[test]
fn handovers_whose_last_acks_are_lost_keep_results_exact() {
    let _one = fixture::one_at_a_time();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = readings(dir.path());
    let tenant = Tenant::new(dir.path(), "lostacks");
    // The first host owns every partition, then hands half of them to the
    // second; each handover's connection goes just before its last acks,
    // so those messages come back to the new owner, which must recognise
    // them from the checkpoint (a checkpoint marked acked would make it
    // apply them a second time).
    let first = tenant.host_with_env(0, &[("SLUICE_FAILPOINT", "final-acks-lost")]);
    let publisher = tenant.publish(&file, Some(RATE));
    wait_until_read(&tenant, &[&first], ROWS / 4);
    let second = tenant.host(1);
    let started = Instant::now();
    while owned_by(&tenant, &second).is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the first host handed nothing over:\n{}",
            first.stderr()
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    published(publisher);
    let refs = [&first, &second];
    tenant.wait_read(&refs, ROWS);
    assert!(
        first.stderr().contains("the last acks were not committed"),
        "no handover lost its acks:\n{}",
        first.stderr()
    );
    tenant.finish(&refs);
    assert_exact(&tenant, &file);
}
