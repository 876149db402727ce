//! The admin API's doors: tokens, and uploads that must not get in.

use serde_json::json;

use crate::amqp::{self, unique};
use crate::common;
use crate::host::{self, collected, tenant_token, Data, Served, OPERATOR};

#[test]
fn missing_unknown_and_other_tenants_tokens_are_refused_without_detail() {
    let _broker = amqp::shared();
    let dir = tempfile::tempdir().expect("tempdir");
    let queue = unique("serve.auth");
    let manifest = amqp::manifest(dir.path(), &queue, &format!("{queue}.out"));
    let served = Served::start(dir.path(), &["bts", "other"], &[&manifest]);
    let other = tenant_token("other");
    let own = tenant_token("bts");

    // No token, or not a bearer token: 401.
    for (path, token) in [
        ("/v1/tenants", None),
        ("/v1/tenants/bts", None),
        ("/metrics", None),
    ] {
        let (status, body) = served.get(path, token);
        assert_eq!(status, 401, "GET {path} without a token: {body}");
        assert_eq!(body, json!({"error": "missing bearer token"}));
    }
    let (status, _) = served.post("/v1/tenants/bts/pause", None);
    assert_eq!(status, 401);

    // A token that is nobody's, and another tenant's token: 403, and the
    // same answer either way (nothing tells which tenants exist).
    for token in ["not-a-token-of-anyone-at-all", other.as_str()] {
        for (status, body) in [
            served.get("/v1/tenants/bts", Some(token)),
            served.post("/v1/tenants/bts/pause", Some(token)),
            served.post("/v1/tenants/bts/resume", Some(token)),
            served.delete("/v1/tenants/bts", Some(token)),
            served.get("/v1/tenants/no-such-tenant", Some(token)),
            served.get("/metrics", Some(token)),
        ] {
            assert_eq!(status, 403, "token {token}: {body}");
            assert_eq!(body, json!({"error": "forbidden"}));
        }
        let (status, body) = served.put("bts", Some(token), "multipart/form-data; boundary=x", b"");
        assert_eq!(status, 403, "deploy with token {token}: {body}");
    }
    // Another tenant's list shows nothing of this one.
    let (status, list) = served.get("/v1/tenants", Some(&other));
    assert_eq!((status, list), (200, json!([])));

    // The tenant itself sees and controls its own tenant, not the operator's
    // endpoints; the pause did not happen for the refused callers.
    let (status, view) = served.get("/v1/tenants/bts", Some(&own));
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["state"], "running");
    let (status, list) = served.get("/v1/tenants", Some(&own));
    assert_eq!(status, 200);
    assert_eq!(list.as_array().map(Vec::len), Some(1));
    assert_eq!(served.get("/metrics", Some(&own)).0, 403);
    assert_eq!(served.delete("/v1/tenants/bts", Some(&own)).0, 403);
    let (status, view) = served.post("/v1/tenants/bts/pause", Some(&own));
    assert_eq!((status, &view["state"]), (200, &json!("paused")), "{view}");
    assert_eq!(view["reason"], "paused by the tenant");
    let (status, view) = served.post("/v1/tenants/bts/resume", Some(&own));
    assert_eq!((status, &view["state"]), (200, &json!("running")), "{view}");

    // Health needs no token.
    assert_eq!(served.get("/healthz", None).0, 200);
    assert_eq!(served.get("/readyz", None).0, 200);
    let log = served.stop();
    assert!(!log.contains(OPERATOR), "the log shows the operator token");
}

#[test]
fn malformed_oversized_and_invalid_uploads_are_refused_and_the_running_version_keeps_serving() {
    let _broker = amqp::shared();
    let dir = tempfile::tempdir().expect("tempdir");
    let queue = unique("serve.uploads");
    let exchange = format!("{queue}.out");
    let manifest = amqp::manifest(dir.path(), &queue, &exchange);
    let data = Data::bts(dir.path(), &["--events", "3000", "--dirty", "0.01"]);
    let rt = amqp::runtime();
    let (_conn, channel) = rt.block_on(amqp::connect());
    let collector = rt.block_on(amqp::collector(&channel, &exchange));

    let served = Served::start(dir.path(), &[], &[&manifest]);
    let before = served.tenant("bts");
    let text = host::with_names(&manifest, &queue, &exchange);
    let module = std::fs::read(common::component("bts_analytics")).expect("module");

    // Not multipart; a part missing; a stray part; a manifest that is not
    // TOML; a manifest for another tenant.
    let (status, body) = served.put("bts", Some(OPERATOR), "application/json", b"{}");
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or("")
            .contains("multipart/form-data"),
        "{body}"
    );
    let only_manifest = format!(
        "--b\r\nContent-Disposition: form-data; name=\"manifest\"\r\n\r\n{text}\r\n--b--\r\n"
    );
    let (status, body) = served.put(
        "bts",
        Some(OPERATOR),
        "multipart/form-data; boundary=b",
        only_manifest.as_bytes(),
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or("")
            .contains("no `module` part"),
        "{body}"
    );
    let (status, body) = served.deploy("bts", "tenant = [\"not\", \"a manifest\"", &module);
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or("")
            .starts_with("invalid manifest: manifest.toml:1"),
        "{body}"
    );
    let (status, body) = served.deploy(
        "bts",
        &text.replace("tenant = \"bts\"", "tenant = \"else\""),
        &module,
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap_or("").contains("not `bts`"),
        "{body}"
    );

    // Over the limit: refused from the declared length, before any byte of
    // the body is sent (the client asked `Expect: 100-continue`).
    let status_line = served.put_declared("bts", host::MAX_UPLOAD + 1);
    assert!(
        status_line.contains(" 413 "),
        "oversized upload: {status_line}"
    );
    // Not a byte of the body is needed to refuse it: the connection
    // answers at once, and the server is still there.
    assert_eq!(served.get("/healthz", None).0, 200);

    // Invalid modules: not Wasm; a component importing the filesystem; a
    // module without a function the manifest names.
    let (status, body) = served.deploy("bts", &text, b"definitely not wasm");
    assert_eq!(status, 422, "{body}");
    let fs = std::fs::read(common::component("fs_import")).expect("fs_import");
    let (status, body) = served.deploy("bts", &text, &fs);
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or("")
            .contains("wasi:filesystem"),
        "{body}"
    );
    let spike = std::fs::read(common::component("spike_filter")).expect("spike_filter");
    let (status, body) = served.deploy("bts", &text, &spike);
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"].as_str().unwrap_or("").contains("stats"),
        "{body}"
    );

    // The running version was never touched: same module, same deploy, and
    // it serves: all rows consumed, results equal to the embedded run's.
    let after = served.tenant("bts");
    assert_eq!(after["module"], before["module"]);
    assert_eq!(after["deployed_at"], before["deployed_at"]);
    assert_eq!(after["state"], "running");
    amqp::publish(&manifest, &data.path, 50);
    served.wait_records("bts", data.rows);
    let out = served.cli(&["undeploy", "bts"], OPERATOR);
    assert!(
        out.status.success(),
        "undeploy: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = collected(&rt, &channel, &collector);
    assert_eq!(got, amqp::embedded_lines(&manifest, &data.path));
    served.stop();
    rt.block_on(amqp::delete(
        &channel,
        &[&queue, &collector, &format!("{queue}.dead")],
    ));
}
