//! The control plane never waits on a tenant's data path: with one
//! tenant's worker stuck in a guest call for good (the test-only fail
//! point `guest-call-hangs:stuck`, a call no deadline can end), the
//! watchdog fails that tenant with the reason, and another tenant's
//! deploy, pause and resume, `/readyz`, the stuck tenant's undeploy and
//! SIGTERM all answer within bounded time while the healthy neighbours'
//! results stay exactly their embedded runs'.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::amqp::{self, unique};
use crate::common;
use crate::host::{self, bts_as, collected, Data, Served, OPERATOR};

/// What "bounded, not hung" means here (a hang used to be 60 s and more).
const BOUND: Duration = Duration::from_secs(20);

/// Runs `f`, asserts it took less than [`BOUND`], returns its result.
fn timed<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let out = f();
    let took = started.elapsed();
    assert!(took < BOUND, "{what} took {took:?}");
    eprintln!("{what}: {took:?}");
    out
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).expect("writing a manifest");
    path
}

/// Waits (bounded) until the watchdog has failed `tenant`.
fn wait_stuck(served: &Served, tenant: &str) -> Value {
    let started = Instant::now();
    loop {
        let view = served.tenant(tenant);
        if view["state"] == "failed" {
            return view;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the watchdog did not fail the stuck tenant: {view}\n{}",
            served.stderr()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_stuck_worker_fails_only_its_tenant_and_the_control_plane_answers_in_bounded_time() {
    let _broker = amqp::shared();
    let dir = tempfile::tempdir().expect("tempdir");
    let (bq, sq, oq, s2q) = (
        unique("serve.ctl.bts"),
        unique("serve.ctl.stuck"),
        unique("serve.ctl.other"),
        unique("serve.ctl.stuck2"),
    );
    let (bx, sx, ox, s2x) = (
        format!("{bq}.out"),
        format!("{sq}.out"),
        format!("{oq}.out"),
        format!("{s2q}.out"),
    );
    let healthy = amqp::manifest(dir.path(), &bq, &bx);
    let stuck = write(dir.path(), "stuck", &bts_as(dir.path(), "stuck", &sq, &sx));
    let other_text = bts_as(dir.path(), "other", &oq, &ox);
    let other = write(dir.path(), "other", &other_text);
    let data = Data::bts(dir.path(), &["--events", "3000"]);
    let rt = amqp::runtime();
    let (_conn, channel) = rt.block_on(amqp::connect());
    let bc = rt.block_on(amqp::collector(&channel, &bx));
    let oc = rt.block_on(amqp::collector(&channel, &ox));
    let served = Served::start_extra_env(
        dir.path(),
        &["bts"],
        &[&healthy, &stuck],
        "stuck_after = \"2s\"\nshutdown_timeout = \"5s\"\n",
        &[("SLUICE_FAILPOINT", "guest-call-hangs:stuck")],
    );

    // The stuck tenant's first guest call never returns.
    amqp::publish(&stuck, &data.path, 40);
    let view = wait_stuck(&served, "stuck");
    let reason = view["reason"].as_str().unwrap_or("");
    assert!(
        reason.starts_with("stuck: a guest call has been running for ")
            && reason.contains("past its budget of 50ms"),
        "{view}"
    );
    let (_, metrics) = served.get("/metrics", Some(OPERATOR));
    let metrics = metrics.as_str().unwrap_or("").to_owned();
    assert!(
        metrics.contains("sluice_tenant_running{tenant=\"stuck\"} 0")
            && metrics.contains("sluice_tenant_running{tenant=\"bts\"} 1"),
        "{metrics}"
    );
    // `/metrics` says why: stuck, not just not running.
    assert_eq!(crate::metrics::state_of(&metrics, "stuck"), "stuck");
    assert_eq!(crate::metrics::state_of(&metrics, "bts"), "running");
    // The shared host stays ready: one tenant's trouble is not its own.
    let (status, _) = timed("/readyz", || served.get("/readyz", None));
    assert_eq!(status, 200);

    // The neighbour works, and another tenant deploys, while one is stuck.
    amqp::publish(&healthy, &data.path, 40);
    let module = std::fs::read(common::component("bts_analytics")).expect("module");
    let (status, body) = timed("deploy of another tenant", || {
        served.deploy("other", &other_text, &module)
    });
    assert_eq!(status, 200, "{body}");
    amqp::publish(&other, &data.path, 40);
    let (status, body) = timed("pause", || {
        served.post("/v1/tenants/bts/pause", Some(OPERATOR))
    });
    assert_eq!(
        (status, body["state"].as_str()),
        (200, Some("paused")),
        "{body}"
    );
    let (status, body) = timed("resume", || {
        served.post("/v1/tenants/bts/resume", Some(OPERATOR))
    });
    assert_eq!(
        (status, body["state"].as_str()),
        (200, Some("running")),
        "{body}"
    );
    // A redeploy of the stuck tenant is refused (its state cannot be
    // taken over); its undeploy abandons the stuck run and removes it.
    let stuck_text = std::fs::read_to_string(&stuck).expect("manifest");
    let (status, body) = timed("redeploy of the stuck tenant", || {
        served.deploy("stuck", &stuck_text, &module)
    });
    assert_eq!(status, 409, "{body}");
    let (status, body) = timed("undeploy of the stuck tenant", || {
        served.delete("/v1/tenants/stuck", Some(OPERATOR))
    });
    assert_eq!(status, 200, "{body}");
    assert!(!dir.path().join("state/tenants/stuck").exists());
    let (status, _) = served.get("/v1/tenants/stuck", Some(OPERATOR));
    assert_eq!(status, 404);

    // The neighbours: everything read, results equal their embedded runs.
    served.wait_records("bts", data.rows);
    served.wait_records("other", data.rows);
    for (tenant, collector) in [("bts", &bc), ("other", &oc)] {
        let (status, body) = served.delete(&format!("/v1/tenants/{tenant}"), Some(OPERATOR));
        assert_eq!(status, 200, "{body}");
        let got = collected(&rt, &channel, collector);
        let manifest = if tenant == "bts" { &healthy } else { &other };
        let want = amqp::embedded_lines(manifest, &data.path);
        assert!(!want.is_empty());
        assert_eq!(got, want, "{tenant}: results differ from its embedded run");
    }

    // SIGTERM with a stuck tenant: the host stops in bounded time and
    // says which tenant it could not suspend.
    let stuck2 = host::with_names(&stuck, &s2q, &s2x);
    let (status, body) = served.deploy("stuck", &stuck2, &module);
    assert_eq!(status, 200, "{body}");
    let stuck2_path = write(dir.path(), "stuck2", &stuck2);
    amqp::publish(&stuck2_path, &data.path, 40);
    wait_stuck(&served, "stuck");
    let log = timed("SIGTERM", || served.stop());
    assert!(
        log.contains("tenant `stuck` could not be suspended: stuck: a guest call"),
        "{log}"
    );
    rt.block_on(amqp::delete(
        &channel,
        &[
            &bq,
            &sq,
            &oq,
            &s2q,
            &bc,
            &oc,
            &format!("{bq}.dead"),
            &format!("{sq}.dead"),
            &format!("{oq}.dead"),
            &format!("{s2q}.dead"),
        ],
    ));
}

/// A partitioned tenant (its partitions' checkpoints and ownership in
/// Cassandra) whose partitions' workers are stuck in guest calls for good:
/// it is reported like a stuck single run — failed with the watchdog's
/// reason, `stuck` in `/metrics` — and its undeploy and SIGTERM answer in
/// bounded time, since the control plane polls its partitions' threads
/// instead of joining them.
#[test]
fn a_stuck_partitioned_tenant_is_reported_and_its_undeploy_and_sigterm_stay_bounded() {
    let _broker = amqp::shared();
    let dir = tempfile::tempdir().expect("tempdir");
    // Unique: Cassandra keeps partitions' ownership and checkpoints by
    // tenant and queue across test runs.
    let name = unique("stuckp").replace(['.', '-'], "_");
    let queues: Vec<String> = (0..2).map(|i| unique(&format!("serve.ctl.p{i}"))).collect();
    let partitioned = |queue: &str| {
        bts_as(dir.path(), &name, queue, &format!("{queue}.out"))
            .replace("[input]\n", "[input]\npartitions = 2\n")
    };
    let data = Data::bts(dir.path(), &["--events", "600", "--stations", "6"]);
    let module = std::fs::read(common::component("bts_analytics")).expect("module");
    let hang = format!("guest-call-hangs:{name}");
    let served = Served::start_extra_env(
        dir.path(),
        &[],
        &[],
        &format!(
            "cassandra = {:?}\nstuck_after = \"2s\"\nshutdown_timeout = \"5s\"\n",
            host::cassandra()
        ),
        &[("SLUICE_FAILPOINT", hang.as_str())],
    );

    let text = partitioned(&queues[0]);
    let (status, body) = served.deploy(&name, &text, &module);
    assert_eq!(status, 200, "{body}");
    let path = write(dir.path(), "partitioned", &text);
    amqp::publish(&path, &data.path, 20);
    let view = wait_stuck(&served, &name);
    assert!(
        view["reason"]
            .as_str()
            .unwrap_or("")
            .starts_with("stuck: a guest call has been running for "),
        "{view}"
    );
    let (_, metrics) = served.get("/metrics", Some(OPERATOR));
    let metrics = metrics.as_str().unwrap_or("").to_owned();
    assert_eq!(crate::metrics::state_of(&metrics, &name), "stuck");
    let (status, _) = timed("/readyz beside a stuck partitioned tenant", || {
        served.get("/readyz", None)
    });
    assert_eq!(status, 200);
    let (status, body) = timed("redeploy of the stuck partitioned tenant", || {
        served.deploy(&name, &text, &module)
    });
    assert_eq!(status, 409, "{body}");
    // Undeploy abandons the stuck partitions (their thread is not joined).
    let (status, body) = timed("undeploy of the stuck partitioned tenant", || {
        served.delete(&format!("/v1/tenants/{name}"), Some(OPERATOR))
    });
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        served.get(&format!("/v1/tenants/{name}"), Some(OPERATOR)).0,
        404
    );

    // SIGTERM with a stuck partitioned tenant: bounded, and reported.
    let text = partitioned(&queues[1]);
    let (status, body) = served.deploy(&name, &text, &module);
    assert_eq!(status, 200, "{body}");
    let path = write(dir.path(), "partitioned2", &text);
    amqp::publish(&path, &data.path, 20);
    wait_stuck(&served, &name);
    let log = timed("SIGTERM beside a stuck partitioned tenant", || {
        served.stop()
    });
    assert!(
        log.contains(&format!(
            "tenant `{name}` could not be suspended: stuck: a guest call"
        )),
        "{log}"
    );
    let rt = amqp::runtime();
    let (_conn, channel) = rt.block_on(amqp::connect());
    let mut doomed = Vec::new();
    for q in &queues {
        doomed.extend((0..2).map(|p| format!("{q}.p{p}")));
        doomed.push(format!("{q}.dead"));
    }
    let doomed: Vec<&str> = doomed.iter().map(String::as_str).collect();
    rt.block_on(amqp::delete(&channel, &doomed));
}
