//! The smaller serve items of issue 18: a changed `workers` in host.toml
//! no longer fails existing tenants at restart; a tenant never answers 404
//! while it is redeployed; a deploy whose client disconnected before it
//! was applied is cancelled; an upload with two `module` (or `manifest`)
//! parts is refused; a tenant built for an older contract waits for its
//! rebuild with its state kept.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::amqp::{self, unique};
use crate::common;
use crate::host::{collected, files_under, Data, Served, OPERATOR};

#[test]
fn a_tenant_restarted_with_another_worker_count_keeps_its_state_and_its_results() {
    let _broker = amqp::shared();
    let dir = tempfile::tempdir().expect("tempdir");
    let queue = unique("serve.workers");
    let exchange = format!("{queue}.out");
    let manifest = amqp::manifest(dir.path(), &queue, &exchange);
    let data = Data::bts(dir.path(), &["--events", "4000"]);
    let [first, second] = data.halves(dir.path());
    let rt = amqp::runtime();
    let (_conn, channel) = rt.block_on(amqp::connect());
    let collector = rt.block_on(amqp::collector(&channel, &exchange));

    let served = Served::start(dir.path(), &[], &[&manifest]);
    amqp::publish(&manifest, &first.path, 40);
    served.wait_records("bts", first.rows);
    served.stop();
    // The host now has 3 workers per tenant; the tenant's checkpoint was
    // taken with 2.
    let config = dir.path().join("host.toml");
    let host_toml = std::fs::read_to_string(&config)
        .expect("host.toml")
        .replace("workers = 2", "workers = 3");
    std::fs::write(&config, host_toml).expect("host.toml");
    let served = Served::start_with(config);
    assert_eq!(served.tenant("bts")["state"], "running");
    amqp::publish(&manifest, &second.path, 40);
    served.wait_records("bts", data.rows);
    let (status, body) = served.delete("/v1/tenants/bts", Some(OPERATOR));
    assert_eq!(status, 200, "{body}");
    let log = served.stop();
    assert!(
        log.contains("keeping the worker count of the tenant's checkpoint"),
        "{log}"
    );
    let got = collected(&rt, &channel, &collector);
    assert_eq!(got, amqp::embedded_lines(&manifest, &data.path));
    rt.block_on(amqp::delete(
        &channel,
        &[&queue, &collector, &format!("{queue}.dead")],
    ));
}

/// The BTS tenant's queue, exchange, manifest (path and text) and module,
/// deployed through the API by the tests below.
struct ApiTenant {
    queue: String,
    exchange: String,
    manifest: std::path::PathBuf,
    text: String,
    module: Vec<u8>,
}

impl ApiTenant {
    fn new(dir: &std::path::Path, name: &str) -> ApiTenant {
        let queue = unique(name);
        let exchange = format!("{queue}.out");
        let manifest = amqp::manifest(dir, &queue, &exchange);
        let text = std::fs::read_to_string(&manifest).expect("manifest");
        let module = std::fs::read(common::component("bts_analytics")).expect("module");
        ApiTenant {
            queue,
            exchange,
            manifest,
            text,
            module,
        }
    }
}

/// `bytes` with every `from` replaced by `to`, of the same length.
fn with_replaced(bytes: &[u8], from: &str, to: &str) -> Vec<u8> {
    let (from, to) = (from.as_bytes(), to.as_bytes());
    assert_eq!(from.len(), to.len());
    let mut out = bytes.to_vec();
    let mut at = 0;
    while let Some(i) = out[at..].windows(from.len()).position(|w| w == from) {
        out[at + i..at + i + from.len()].copy_from_slice(to);
        at += i + from.len();
    }
    assert!(at > 0, "nothing replaced");
    out
}

#[test]
fn a_tenant_built_for_an_older_contract_waits_with_its_state_for_its_rebuild() {
    let _broker = amqp::shared();
    let dir = tempfile::tempdir().expect("tempdir");
    let bts = ApiTenant::new(dir.path(), "serve.contract");
    let data = Data::bts(dir.path(), &["--events", "4000"]);
    let [first, second] = data.halves(dir.path());
    let rt = amqp::runtime();
    let (_conn, channel) = rt.block_on(amqp::connect());
    let collector = rt.block_on(amqp::collector(&channel, &bts.exchange));

    let served = Served::start(dir.path(), &[], &[]);
    let (status, body) = served.deploy("bts", &bts.text, &bts.module);
    assert_eq!(status, 200, "{body}");
    amqp::publish(&bts.manifest, &first.path, 40);
    served.wait_records("bts", first.rows);
    served.stop();
    // The host was upgraded under a tenant built with the previous SDK:
    // the same component naming contract 0.3.0.
    let tenant_dir = dir.path().join("state").join("tenants").join("bts");
    let deployed = tenant_dir.join("deployed").join("module.wasm");
    let contract = format!("@{}", sluice_core::data::CONTRACT);
    let old = with_replaced(&bts.module, &contract, "@0.3.0");
    std::fs::write(&deployed, &old).expect("the old module");
    let state_before = files_under(&tenant_dir);

    let served = Served::start_with(dir.path().join("host.toml"));
    let (status, _) = served.get("/v1/tenants/bts", Some(OPERATOR));
    assert_eq!(status, 404, "a refused tenant does not run");
    // Its input waits in the queue meanwhile, its state on disk.
    amqp::publish(&bts.manifest, &second.path, 40);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        files_under(&tenant_dir),
        state_before,
        "its state untouched"
    );
    let (status, body) = served.deploy("bts", &bts.text, &bts.module);
    assert_eq!(status, 200, "{body}");
    served.wait_records("bts", data.rows);
    let (status, body) = served.delete("/v1/tenants/bts", Some(OPERATOR));
    assert_eq!(status, 200, "{body}");
    let log = served.stop();
    assert!(
        log.contains("was built for the sluice contract 0.3.0, but this host runs")
            && log.contains("rebuild the tenant"),
        "{log}"
    );
    // Resumed from its checkpoint: exactly the uninterrupted run's lines.
    let got = collected(&rt, &channel, &collector);
    assert_eq!(got, amqp::embedded_lines(&bts.manifest, &data.path));
    rt.block_on(amqp::delete(
        &channel,
        &[&bts.queue, &collector, &format!("{}.dead", bts.queue)],
    ));
}

#[test]
fn a_tenant_answers_throughout_its_redeploys() {
    let _broker = amqp::shared();
    let dir = tempfile::tempdir().expect("tempdir");
    let bts = ApiTenant::new(dir.path(), "serve.swap");
    let data = Data::bts(dir.path(), &["--events", "20000"]);
    let served = Arc::new(Served::start(dir.path(), &[], &[]));
    let (status, body) = served.deploy("bts", &bts.text, &bts.module);
    assert_eq!(status, 200, "{body}");
    amqp::publish(&bts.manifest, &data.path, 20);

    // Look at the tenant as fast as possible while it is redeployed.
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (served, done) = (Arc::clone(&served), Arc::clone(&done));
        std::thread::spawn(move || {
            let mut statuses = std::collections::BTreeMap::new();
            while !done.load(Ordering::Acquire) {
                let (status, _) = served.get("/v1/tenants/bts", Some(OPERATOR));
                *statuses.entry(status).or_insert(0u32) += 1;
            }
            statuses
        })
    };
    for _ in 0..3 {
        let (status, body) = served.deploy("bts", &bts.text, &bts.module);
        assert!(status == 200 || status == 202, "{status} {body}");
        // 202: the old version still drains; the swap completes on its
        // own (a deploy meanwhile would be refused with 409).
        let started = Instant::now();
        while served.tenant("bts").get("operation").is_some() {
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "the swap never completed"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    done.store(true, Ordering::Release);
    let statuses = watcher.join().expect("watcher");
    eprintln!("GET statuses during the redeploys: {statuses:?}");
    assert_eq!(
        statuses.keys().copied().collect::<Vec<u16>>(),
        vec![200],
        "{statuses:?}"
    );
    assert!(statuses[&200] > 10, "{statuses:?}");
    drop(served);
    let rt = amqp::runtime();
    let (_conn, channel) = rt.block_on(amqp::connect());
    rt.block_on(amqp::delete(
        &channel,
        &[&bts.queue, &format!("{}.dead", bts.queue)],
    ));
}

#[test]
fn a_deploy_whose_client_left_before_it_was_applied_is_cancelled() {
    let _broker = amqp::shared();
    let dir = tempfile::tempdir().expect("tempdir");
    let queue = unique("serve.late");
    let manifest = amqp::manifest(dir.path(), &queue, &format!("{queue}.out"));
    let text = std::fs::read_to_string(&manifest)
        .expect("manifest")
        .replace("tenant = \"bts\"", "tenant = \"late\"");
    let module = std::fs::read(common::component("bts_analytics")).expect("module");
    // `deploy-delay:late` holds the deploy 3 s before its commit point.
    let served = Served::start_extra_env(
        dir.path(),
        &[],
        &[],
        "",
        &[("SLUICE_FAILPOINT", "deploy-delay:late")],
    );
    let body = sluice_host::client::admin::multipart("b-9", text.as_bytes(), &module);
    let mut s = std::net::TcpStream::connect(served.addr()).expect("connect");
    write!(
        s,
        "PUT /v1/tenants/late HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {OPERATOR}\r\n\
         Content-Type: multipart/form-data; boundary=b-9\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .expect("head");
    s.write_all(&body).expect("body");
    // The client gives up after a second, as a timed-out client does.
    std::thread::sleep(Duration::from_secs(1));
    drop(s);
    let started = Instant::now();
    loop {
        if served.stderr().contains("deploy cancelled") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no cancellation:\n{}",
            served.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(1));
    let (status, _) = served.get("/v1/tenants/late", Some(OPERATOR));
    assert_eq!(status, 404);
    assert!(!dir.path().join("state/tenants/late").exists());
    // A client that waits gets its deploy.
    let (status, view) = served.deploy("late", &text, &module);
    assert_eq!(status, 200, "{view}");
    served.stop();
    let rt = amqp::runtime();
    let (_conn, channel) = rt.block_on(amqp::connect());
    rt.block_on(amqp::delete(&channel, &[&queue, &format!("{queue}.dead")]));
}

#[test]
fn an_upload_with_a_part_twice_is_refused() {
    let _broker = amqp::shared();
    let dir = tempfile::tempdir().expect("tempdir");
    let queue = unique("serve.twice");
    let manifest = amqp::manifest(dir.path(), &queue, &format!("{queue}.out"));
    let text = std::fs::read_to_string(&manifest).expect("manifest");
    let module = std::fs::read(common::component("bts_analytics")).expect("module");
    let served = Served::start(dir.path(), &[], &[]);
    let part = |name: &str, bytes: &[u8]| {
        let mut p = format!(
            "--b-3\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"x\"\r\n\r\n"
        )
        .into_bytes();
        p.extend_from_slice(bytes);
        p.extend_from_slice(b"\r\n");
        p
    };
    for (twice, parts) in [
        (
            "module",
            [
                part("manifest", text.as_bytes()),
                part("module", &module),
                part("module", b"\0asm-not-really"),
            ],
        ),
        (
            "manifest",
            [
                part("manifest", text.as_bytes()),
                part("manifest", text.as_bytes()),
                part("module", &module),
            ],
        ),
    ] {
        let mut body = parts.concat();
        body.extend_from_slice(b"--b-3--\r\n");
        let (status, answer) = served.put(
            "bts",
            Some(OPERATOR),
            "multipart/form-data; boundary=b-3",
            &body,
        );
        assert_eq!(status, 400, "{answer}");
        assert!(
            answer
                .to_string()
                .contains(&format!("got two `{twice}` parts")),
            "{answer}"
        );
    }
    let (status, _) = served.get("/v1/tenants/bts", Some(OPERATOR));
    assert_eq!(status, 404);
    served.stop();
}
