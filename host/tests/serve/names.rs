//! Names are checked once, strictly, at every entry point: hostile tenant
//! names (`.`, `..`, `/`, NUL, `%2e%2e`, look-alike letters, upper case,
//! 10 000 characters) get a clear 400 (or error) from every admin call,
//! the CLI and `sluice run`, and nothing is written or deleted outside: a
//! healthy tenant's deployed module and checkpoints stay, and it keeps
//! running.

use std::path::Path;

use crate::amqp::{self, unique};
use crate::common;
use crate::host::{files_under, Data, Served, OPERATOR};

/// The hostile names, as raw bytes for a request path.
fn hostile() -> Vec<(String, Vec<u8>)> {
    let long = "a".repeat(10_000);
    let mut names: Vec<(String, Vec<u8>)> = vec![
        (".".into(), b".".to_vec()),
        ("..".into(), b"..".to_vec()),
        ("%2e%2e".into(), b"%2e%2e".to_vec()),
        ("%252e%252e".into(), b"%252e%252e".to_vec()),
        ("a/b".into(), b"a/b".to_vec()),
        ("..%2fbts".into(), b"..%2fbts".to_vec()),
        ("NUL".into(), b"a%00b".to_vec()),
        ("upper".into(), b"BTS".to_vec()),
        ("dot".into(), b"bts.v2".to_vec()),
        ("empty".into(), b"".to_vec()),
        ("long".into(), long.into_bytes()),
    ];
    // Look-alikes of `bts`: fullwidth and Cyrillic letters, percent-encoded.
    for lookalike in ["\u{ff42}ts", "bt\u{0455}", "\u{0432}ts"] {
        let encoded: String = lookalike.bytes().map(|b| format!("%{b:02X}")).collect();
        names.push((lookalike.into(), encoded.into_bytes()));
    }
    names
}

/// Every file under `dir` (relative), sorted.
fn files(dir: &Path) -> Vec<String> {
    files_under(dir).into_iter().map(|(name, _)| name).collect()
}

#[test]
fn hostile_names_are_refused_at_every_entry_point_and_nothing_outside_is_touched() {
    let _broker = amqp::shared();
    let dir = tempfile::tempdir().expect("tempdir");
    let queue = unique("serve.names");
    let exchange = format!("{queue}.out");
    let manifest = amqp::manifest(dir.path(), &queue, &exchange);
    let text = std::fs::read_to_string(&manifest).expect("manifest");
    let module = std::fs::read(common::component("bts_analytics")).expect("module");
    let data = Data::bts(dir.path(), &["--events", "2000"]);
    let served = Served::start(dir.path(), &["bts"], &[]);
    let (status, body) = served.deploy("bts", &text, &module);
    assert_eq!(status, 200, "{body}");
    amqp::publish(&manifest, &data.path, 50);
    served.wait_records("bts", data.rows);
    let state = dir.path().join("state");
    // A marker beside the state directory: what `..` would reach.
    std::fs::write(dir.path().join("outside.txt"), "keep").expect("marker");
    // The first checkpoint comes within the interval after the rows.
    let started = std::time::Instant::now();
    while !files(&state)
        .iter()
        .any(|f| f.starts_with("tenants/bts/checkpoints/"))
    {
        assert!(started.elapsed() < std::time::Duration::from_secs(30));
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let before_state = files(&state);
    assert!(
        before_state
            .iter()
            .any(|f| f == "tenants/bts/deployed/module.wasm")
            && before_state
                .iter()
                .any(|f| f.starts_with("tenants/bts/checkpoints/")),
        "{before_state:?}"
    );

    // The name is refused before the body is read: a small one will do.
    let upload = sluice_host::client::admin::multipart("b-7", text.as_bytes(), b"\0asm");
    for (label, raw) in hostile() {
        let mut path = b"/v1/tenants/".to_vec();
        path.extend_from_slice(&raw);
        let calls: Vec<(&str, Vec<u8>, &[u8])> = vec![
            ("GET", path.clone(), b""),
            ("DELETE", path.clone(), b""),
            ("PUT", path.clone(), &upload),
            ("POST", [path.as_slice(), b"/pause"].concat(), b""),
            ("POST", [path.as_slice(), b"/resume"].concat(), b""),
        ];
        for (method, p, body) in calls {
            let (status, answer) =
                served.raw(method, &p, "multipart/form-data; boundary=b-7", body);
            // `a/b/pause` has no route at all; everything else names the
            // bad name.
            let clear = status == 400 && answer.contains("tenant name")
                || status == 404 && label == "a/b" && method == "POST";
            assert!(clear, "{method} {label}: {status} {answer}");
        }
        // The manifest's own tenant name, under a good path.
        if label != "empty" && label != "NUL" {
            let name = if label.is_ascii() {
                String::from_utf8_lossy(&raw).into_owned()
            } else {
                label.clone()
            };
            let bad = text.replace("tenant = \"bts\"", &format!("tenant = {name:?}"));
            let (status, answer) = served.deploy("bts", &bad, &module);
            assert!(
                status == 400 && answer.to_string().contains("tenant name"),
                "manifest tenant {label}: {status} {answer}"
            );
        }
    }
    // The CLI refuses before sending anything.
    for bad in ["..", ".", "a/b", "BTS"] {
        for args in [
            vec!["undeploy", bad],
            vec!["pause", bad],
            vec!["resume", bad],
        ] {
            let out = served.cli(&args, OPERATOR);
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                !out.status.success() && err.contains("tenant name"),
                "sluice {args:?}: {err}"
            );
        }
    }
    // `sluice run` with a manifest whose tenant, window or job name is bad.
    for (what, from, to) in [
        ("tenant", "tenant = \"bts\"", "tenant = \"..\""),
        ("window", "name = \"minute\"", "name = \"../minute\""),
        ("window", "name = \"minute\"", "name = \"Minute\""),
    ] {
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, text.replacen(from, to, 1)).expect("manifest");
        let out = common::sluice()
            .arg("run")
            .arg(&path)
            .arg("--input")
            .arg(&data.path)
            .arg("--output")
            .arg(dir.path().join("out.jsonl"))
            .output()
            .expect("sluice run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(&format!("{what} name")),
            "sluice run with {to}: {err}"
        );
    }

    assert!(!dir.path().join("out.jsonl").exists());
    // Nothing outside was touched; the healthy tenant's files are all there
    // (checkpoints move on: compare the deployed files and that some
    // checkpoint is still there), and it still runs.
    assert_eq!(
        std::fs::read_to_string(dir.path().join("outside.txt")).ok(),
        Some("keep".into())
    );
    let after = files(&state);
    assert!(
        after.iter().all(|f| f.starts_with("tenants/bts/")),
        "{after:?}"
    );
    assert!(
        after
            .iter()
            .any(|f| f == "tenants/bts/deployed/module.wasm")
            && after
                .iter()
                .any(|f| f == "tenants/bts/deployed/manifest.toml")
            && after
                .iter()
                .any(|f| f.starts_with("tenants/bts/checkpoints/")),
        "{after:?}"
    );
    let entries: Vec<String> = std::fs::read_dir(dir.path())
        .expect("dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        entries
            .iter()
            .all(|e| !e.contains("deployed") && !e.contains("checkpoints")),
        "{entries:?}"
    );
    assert_eq!(served.tenant("bts")["state"], "running");
    amqp::publish(&manifest, &data.path, 50);
    served.wait_records("bts", 2 * data.rows);
    served.stop();
    let rt = amqp::runtime();
    let (_conn, channel) = rt.block_on(amqp::connect());
    rt.block_on(amqp::delete(&channel, &[&queue, &format!("{queue}.dead")]));
}
