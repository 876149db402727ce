//! Several hosts store exactly what one host and the embedded run do, and
//! a key's events reach one partition only.

use std::time::{Duration, Instant};

use crate::fixture::{self, owned_counts, published, Tenant, PARTITIONS};
use crate::host::Served;

const ROWS: u64 = 12_000;

/// Rows that differ between two sorted row lists (a few, for the message).
pub fn assert_same_rows(a: &[String], b: &[String], what: &str) {
    if a == b {
        return;
    }
    let only_a: Vec<&String> = a
        .iter()
        .filter(|r| b.binary_search(r).is_err())
        .take(3)
        .collect();
    let only_b: Vec<&String> = b
        .iter()
        .filter(|r| a.binary_search(r).is_err())
        .take(3)
        .collect();
    panic!(
        "{what}: {} rows against {}; only in the first: {only_a:#?}; only in the second: {only_b:#?}",
        a.len(),
        b.len()
    );
}

#[test]
fn three_hosts_store_what_one_host_and_the_embedded_run_store() {
    let _one = fixture::one_at_a_time();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = fixture::readings(dir.path(), ROWS, 11, &["--ramp", "3"]);

    // Three hosts, the file published while they run: the hosts share the
    // partitions out between them as it flows.
    let three = Tenant::new(dir.path(), "three");
    let hosts: Vec<Served> = (0..3).map(|n| three.host(n)).collect();
    let refs: Vec<&Served> = hosts.iter().collect();
    let publisher = three.publish(&file, Some(800));
    let mut most_owners = 0;
    // A standby partition names its owner as the ownership record does:
    // always one of the three hosts, and at some point another one.
    let pid = |p: u32| format!(" pid {p} ");
    let pids: Vec<String> = hosts.iter().map(|h| pid(h.pid())).collect();
    let mut standby_named_another = false;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(6) || most_owners < 3 {
        let views: Vec<_> = refs.iter().map(|h| three.view(h)).collect();
        let owners = owned_counts(&views).iter().filter(|n| **n > 0).count();
        most_owners = most_owners.max(owners);
        for (host, view) in refs.iter().zip(&views) {
            let partitions = view["partitions"].as_array().into_iter().flatten();
            for p in partitions.filter(|p| p["state"] == "standby") {
                let Some(owner) = p["owner"].as_str() else {
                    continue;
                };
                assert!(
                    pids.iter().any(|pid| owner.contains(pid.as_str())),
                    "a standby partition's owner is one of the hosts: {p}"
                );
                standby_named_another |= !owner.contains(&pid(host.pid()));
            }
        }
        if fixture::owned_records(&views) >= ROWS || started.elapsed() > Duration::from_secs(60) {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    published(publisher);
    three.wait_read(&refs, ROWS);
    assert!(
        standby_named_another,
        "no standby partition ever named the host that owns it"
    );
    assert_eq!(
        most_owners, 3,
        "the partitions never spread over the three hosts (the first host to consume \
         owns everything until it hands partitions over)"
    );
    three.finish(&refs);
    let stored_three = three.stored();
    drop(hosts);

    // One host, the whole file waiting in the queues when it starts.
    let one = Tenant::new(dir.path(), "one");
    let host = one.host(0);
    published(one.publish(&file, None));
    one.wait_read(&[&host], ROWS);
    let view = one.view(&host);
    let partitions = view["partitions"].as_array().expect("partitions");
    assert_eq!(partitions.len(), usize::from(PARTITIONS), "{view:#}");
    // Each partition ran once here, so its distinct keys are every key it
    // was sent: they add up to the file's keys only if no key reached two
    // partitions.
    let keys: u64 = partitions
        .iter()
        .map(|p| p["keys"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(
        keys,
        fixture::keys_of(&file).len() as u64,
        "distinct keys per partition do not add up to the file's keys: {view:#}"
    );
    assert!(
        partitions
            .iter()
            .all(|p| p["takeovers"] == 1 && p["state"] == "active"),
        "{view:#}"
    );
    // Each partition's owner is this host, by the name its ownership
    // records use, and the console shows it with the generation.
    let owner = partitions[0]["owner"]
        .as_str()
        .expect("an owner")
        .to_owned();
    assert!(owner.contains(&format!(" pid {} ", host.pid())), "{view:#}");
    assert!(partitions.iter().all(|p| p["owner"] == owner.as_str()));
    let page = crate::browser::browse(serde_json::json!({
        "action": "partitions", "url": host.url, "token": crate::host::OPERATOR,
    }));
    let rows = page["partitions"].as_array().expect("partition rows");
    assert_eq!(rows.len(), partitions.len(), "{page}");
    for (row, p) in rows.iter().zip(partitions) {
        assert_eq!(row[0], format!("↳ partition {}", p["partition"]), "{row}");
        assert_eq!(row[1], "owned here", "{row}");
        assert_eq!(row[2], owner.as_str(), "{row}");
        assert!(
            row[3]
                .as_str()
                .unwrap_or("")
                .starts_with(&format!("generation {},", p["generation"])),
            "{row} {p}"
        );
    }
    one.finish(&[&host]);
    let stored_one = one.stored();

    assert!(stored_one.len() > 1_000, "{} rows stored", stored_one.len());
    assert_same_rows(&stored_three, &stored_one, "three hosts against one host");
    assert_same_rows(
        &stored_one,
        &fixture::embedded_rows(&one, &file),
        "one host against the embedded run",
    );
}
