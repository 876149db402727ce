//! `sluice batch --cassandra` end to end: the stream stores its events
//! (`sluice run --cassandra`), every BTS batch job over the stored events
//! equals the same job over the CSV file, results land in `batch_results`
//! and reruns over the same range add no row.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use sluice_host::batch::JobRange;
use sluice_host::cassandra::batch_results::BatchResultStore;
use sluice_host::cassandra::CassandraConfig;

use crate::common::{self, gen_bts, node, sluice};

const JOBS: [&str; 5] = [
    "station_rates",
    "temperature_histogram",
    "alarms_per_day",
    "breaches_by_alarm",
    "alarm_hours",
];
const FROM: &str = "2017-02-18 21:30:00";
const TO: &str = "2017-02-19 01:30:00";

/// The example batch manifest with its own tenant name.
fn manifest(dir: &Path, tenant: &str) -> PathBuf {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/bts-batch/sluice.toml");
    let module = common::component("bts_batch");
    let text = std::fs::read_to_string(example)
        .expect("reading the example")
        .replace("tenant = \"bts\"", &format!("tenant = {tenant:?}"))
        .replace(
            "module = \"../../target/components/bts_batch.wasm\"",
            &format!("module = {:?}", module.display().to_string()),
        );
    let path = dir.join("bts-batch.toml");
    std::fs::write(&path, text).expect("writing the manifest");
    path
}

/// `sluice batch` of `job`; the printed results, sorted.
fn batch(manifest: &Path, job: &str, from: &str, extra: &[&str]) -> Vec<String> {
    let out = sluice()
        .arg("batch")
        .arg(manifest)
        .args([
            "--job", job, "--from", from, "--to", TO, "--quiet", "--output", "-",
        ])
        .args(extra)
        .output()
        .expect("running sluice batch");
    common::sorted_stdout(&out, &format!("sluice batch --job {job} {extra:?}"))
}

fn store(ks: &str, rt: &tokio::runtime::Runtime) -> BatchResultStore {
    let config = CassandraConfig {
        keyspace: ks.to_owned(),
        ..CassandraConfig::new(vec![node()])
    };
    rt.block_on(BatchResultStore::connect(&config, rt.handle().clone()))
        .expect("connecting the batch result store")
}

#[test]
fn jobs_over_stored_events_equal_jobs_over_the_file_and_reruns_add_no_rows() {
    let _node = common::shared();
    let dir = tempfile::tempdir().expect("tempdir");
    let ks = common::keyspace("batch_jobs");
    let tenant = "bts_batch_jobs";
    let manifest = manifest(dir.path(), tenant);
    let input = gen_bts(
        dir.path(),
        "bts.csv",
        &[
            "--seed",
            "5",
            "--stations",
            "5",
            "--events",
            "40000",
            "--dirty",
            "0.01",
            "--out-of-order",
            "0.05",
            "--start",
            "2017-02-18 21:00:00",
        ],
    );
    // The stream stores every parsed row in `events`.
    common::run(&manifest, &input, &ks, "stream", &[]);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let results = store(&ks, &rt);
    let at = |t: &str| sluice_host::batch::parse_instant(t).expect("a time");
    let range = JobRange {
        from: at(FROM),
        to: at(TO),
    };
    for job in JOBS {
        let from_file = batch(
            &manifest,
            job,
            FROM,
            &["--input", input.to_str().expect("utf-8")],
        );
        assert!(!from_file.is_empty(), "{job} has results");
        let stored_args = ["--cassandra", &node(), "--keyspace", &ks];
        let from_store = batch(&manifest, job, FROM, &stored_args);
        assert_eq!(
            from_store, from_file,
            "{job}: the stored events give the file's results"
        );
        let rows = results.count(tenant, job).expect("counting rows");
        assert_eq!(rows, from_file.len() as u64, "{job}: one row per result");
        let again = batch(&manifest, job, FROM, &stored_args);
        assert_eq!(again, from_file, "{job}: a rerun computes the same");
        assert_eq!(
            results.count(tenant, job).expect("counting rows"),
            rows,
            "{job}: a rerun over the same range adds no row"
        );
        // What is stored reads back as what was printed.
        let mut read: Vec<String> = results
            .read(tenant, job, Some(range))
            .expect("reading the results")
            .iter()
            .map(|r| {
                let mut line = Vec::new();
                r.write_line(&mut line);
                String::from_utf8(line)
                    .expect("utf-8")
                    .trim_end()
                    .to_owned()
            })
            .collect();
        read.sort();
        assert_eq!(
            read, from_file,
            "{job}: batch_results holds the printed results"
        );
        let runs = results.runs(tenant, job).expect("reading the runs");
        assert_eq!(
            runs.len(),
            1,
            "{job}: one run per range and scope: {runs:?}"
        );
        assert_eq!(runs[0].range, range);
        assert_eq!(runs[0].results, rows);
        assert_eq!(runs[0].trigger, "cli");
    }
    // A second range is a second set of rows.
    let day = batch(
        &manifest,
        "station_rates",
        "2017-02-18 22:00:00",
        &["--cassandra", &node(), "--keyspace", &ks],
    );
    let ranges: BTreeSet<JobRange> = results
        .ranges(tenant, "station_rates")
        .expect("ranges")
        .into_iter()
        .collect();
    assert_eq!(ranges.len(), 2, "{ranges:?}");
    assert_eq!(
        results.count(tenant, "station_rates").expect("count"),
        2 * day.len() as u64
    );
    common::drop_keyspace(&ks);
}
