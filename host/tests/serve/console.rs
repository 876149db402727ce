//! The operator console in headless Chromium (`console.py`, Playwright
//! driving `/usr/bin/chromium`) against a real `sluice serve` with two
//! tenants on a real RabbitMQ: the page shows what `sluice list --json`
//! shows, a tenant's token sees its own tenant only, pausing from the page
//! pauses the tenant (`/metrics` agrees), a refused deploy shows its error,
//! a deploy and an undeploy (confirmed) from the page take effect, and
//! tenant-controlled text — a log line, dead-lettered rows, a param —
//! carrying `<script>`/`onerror=` stays text.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::amqp::{self, unique};
use crate::browser::browse;
use crate::common;
use crate::host::{bts_as, tenant_token, Data, Served, OPERATOR};
use crate::metrics;

/// What the `xss` tenant's guest logs at `init` (its `say` param).
const SAY: &str = r#"<script>window.__xss="log"</script><img src=x onerror="window.__xss=2">"#;
/// The first field of the `xss` tenant's bad rows (a dead letter's `raw`).
const ROW: &str = "<img src=x onerror=window.__xss=3>";

/// The `hostile` guest in normal mode as tenant `xss`, logging [`SAY`].
fn xss_manifest(dir: &Path, queue: &str, exchange: &str) -> PathBuf {
    let sub = dir.join("xss");
    std::fs::create_dir_all(&sub).expect("dir");
    let rest = format!(
        "[[windows]]\nname = \"ten\"\nkind = \"tumbling\"\nsize = \"10s\"\naggregate = \"count\"\n\n\
         [params]\nmode = \"normal\"\nsay = '{SAY}'\n"
    );
    let path = common::manifest(&sub, "hostile", "", &rest);
    let text = std::fs::read_to_string(&path)
        .expect("manifest")
        .replace("tenant = \"bts\"", "tenant = \"xss\"")
        .replace("queue = \"bts.readings\"", &format!("queue = {queue:?}"))
        .replace(
            "exchange = \"bts.results\"",
            &format!("exchange = {exchange:?}"),
        );
    std::fs::write(&path, text).expect("writing the manifest");
    path
}

/// Good BTS-shaped rows and rows whose station is [`ROW`] and whose time
/// does not parse (dead letters carrying the payload).
fn xss_rows(dir: &Path) -> Data {
    let mut text = String::new();
    for i in 0..40 {
        text.push_str(&format!(
            "s{},1,1,2017-02-18 18:00:{:02} UTC,1.5,100,false,\n",
            i % 4,
            i % 60
        ));
    }
    for _ in 0..3 {
        text.push_str(&format!("{ROW},1,1,not a time,1.5,100,false,\n"));
    }
    let path = dir.join("xss.csv");
    std::fs::write(&path, text).expect("writing rows");
    Data::of(path)
}

/// A figure as the page prints it (`1,234`).
fn figure(text: &Value) -> u64 {
    text.as_str()
        .unwrap_or("")
        .replace(',', "")
        .parse()
        .unwrap_or_else(|_| panic!("not a number: {text}"))
}

/// `GET path` without a token: the response head and body.
fn raw_get(served: &Served, path: &str) -> (String, String) {
    let mut s = std::net::TcpStream::connect(served.addr()).expect("connecting");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        served.addr()
    )
    .expect("writing");
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (head.to_ascii_lowercase(), body.to_owned())
}

#[test]
fn the_console_shows_what_the_api_shows_to_each_token_and_keeps_tenant_text_as_text() {
    let _broker = amqp::shared();
    let dir = tempfile::tempdir().expect("tempdir");
    let (aq, xq) = (unique("console.stations"), unique("console.xss"));
    let (ax, xx) = (format!("{aq}.out"), format!("{xq}.out"));
    let stations = dir.path().join("stations.toml");
    std::fs::write(&stations, bts_as(dir.path(), "stations", &aq, &ax)).expect("manifest");
    let xss = xss_manifest(dir.path(), &xq, &xx);
    // `ghost` has a token and no tenant: its console is an empty list.
    let served = Served::start(
        dir.path(),
        &["stations", "xss", "ghost"],
        &[&stations, &xss],
    );

    // The page and its files: compiled in, under the CSP, no token needed.
    for path in ["/", "/console.js", "/console.css"] {
        let (head, body) = raw_get(&served, path);
        assert!(head.starts_with("http/1.1 200"), "{path}: {head}");
        assert!(
            head.contains("content-security-policy: default-src 'none'; script-src 'self';"),
            "{path}: {head}"
        );
        assert!(head.contains("frame-ancestors 'none'"), "{path}: {head}");
        assert!(head.contains("x-content-type-options: nosniff"), "{path}");
        assert!(!body.is_empty());
    }
    let (_, index) = raw_get(&served, "/");
    assert!(
        !index.contains("<script>") && !index.contains("style="),
        "no inline script or style: {index}"
    );
    let (_, script) = raw_get(&served, "/console.js");
    assert!(
        !script.contains("innerHTML"),
        "the console writes text only"
    );

    let data = Data::bts(dir.path(), &["--events", "3000", "--dirty", "0.02"]);
    amqp::publish(&stations, &data.path, 25);
    let rows = xss_rows(dir.path());
    amqp::publish(&xss, &rows.path, 5);
    served.wait_records("stations", data.rows);
    served.wait_records("xss", rows.rows);

    // The history: the API's, the tenant's own only.
    let (status, history) = served.get("/v1/tenants/stations/history", Some(OPERATOR));
    assert_eq!(status, 200, "{history}");
    assert_eq!(history["resolution_secs"], 10);
    assert_eq!(history["span_secs"], 900);
    assert!(
        !history["samples"].as_array().expect("samples").is_empty(),
        "{history}"
    );
    let (status, _) = served.get("/v1/tenants/stations/history", Some(&tenant_token("xss")));
    assert_eq!(status, 403);

    // The xss tenant's payload rows are dead letters the host kept.
    let started = Instant::now();
    loop {
        let (_, letters) = served.get("/v1/tenants/xss/dead-letters", Some(OPERATOR));
        let n = letters["letters"].as_array().map_or(0, Vec::len);
        if n >= 3 {
            assert!(letters.to_string().contains("onerror"), "{letters}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the xss tenant's dead letters: {letters}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // The operator signs in with the form: both tenants, with the counts
    // `sluice list --json` gives, and a sparkline each.
    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console.png");
    let page = browse(json!({
        "action": "sign-in", "url": served.url, "token": OPERATOR,
        "sparklines": 2, "screenshot": shot,
    }));
    let out = served.cli(&["list", "--json"], OPERATOR);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: Value = serde_json::from_slice(&out.stdout).expect("list --json");
    let listed = listed.as_array().expect("a list");
    let shown = page["rows"].as_array().expect("rows");
    assert_eq!(shown.len(), 2, "{page}");
    assert_eq!(listed.len(), 2);
    for (row, api) in shown.iter().zip(listed) {
        assert_eq!(row["tenant"], api["tenant"], "{page}");
        let c = &api["counters"];
        assert_eq!(figure(&row["records_in"]), c["records_in"], "{row} {api}");
        assert_eq!(figure(&row["bad"]), c["deserialization_errors"], "{row}");
        assert_eq!(figure(&row["late"]), c["late_dropped"], "{row}");
        assert_eq!(figure(&row["poisoned"]), c["poisoned"], "{row}");
        assert_eq!(figure(&row["traps"]), c["guest_traps"], "{row}");
        assert!(
            row["state"].as_str().unwrap_or("").starts_with("running"),
            "{row}"
        );
        assert_eq!(row["sparkline_points"], 1, "{row}");
    }
    assert!(
        figure(&shown[0]["bad"]) > 0,
        "--dirty made bad rows: {page}"
    );
    assert_eq!(page["session_token"], OPERATOR);
    assert_eq!(
        page["local_storage"], 0,
        "the token is not kept beyond the tab"
    );
    assert!(shot.exists());

    // A tenant's token from the URL fragment: its own tenant only, and the
    // token gone from the address bar; another tenant's page is refused.
    let own = tenant_token("stations");
    let page = browse(json!({
        "action": "fragment", "url": served.url, "token": own, "other": "xss",
    }));
    let names: Vec<&Value> = page["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| &r["tenant"])
        .collect();
    assert_eq!(names, [&json!("stations")], "{page}");
    assert!(
        !page["href"].as_str().unwrap_or("token").contains("token"),
        "{page}"
    );
    assert_eq!(page["session_token"], json!(own));
    assert!(
        page["other"].as_str().unwrap_or("").contains("forbidden"),
        "{page}"
    );
    // A token whose tenant is not deployed: the empty list, in words.
    let page = browse(json!({
        "action": "fragment", "url": served.url, "token": tenant_token("ghost"),
    }));
    assert_eq!(page["rows"], json!([]), "{page}");
    assert!(
        page["empty"][0]
            .as_str()
            .unwrap_or("")
            .contains("No tenants are deployed"),
        "{page}"
    );

    // Pausing from the page (with the tenant's own token) pauses it.
    let page = browse(json!({
        "action": "pause", "url": served.url, "token": own, "tenant": "stations",
    }));
    assert_eq!(page["before"], "running", "{page}");
    assert_eq!(page["after"], "paused", "{page}");
    assert_eq!(page["resume_enabled"], true, "{page}");
    let (status, text) = served.get("/metrics", Some(OPERATOR));
    assert_eq!(status, 200);
    let text = text.as_str().expect("metrics text");
    assert_eq!(metrics::state_of(text, "stations"), "paused");
    assert_eq!(metrics::state_of(text, "xss"), "running");
    assert_eq!(
        metrics::parse(text).get(&("sluice_tenant_paused".into(), "stations".into())),
        Some(&1.0)
    );

    // A deploy the host refuses (a window naming a function the module
    // lacks): the page shows the API's reason; the running version stays.
    let refused = dir.path().join("refused.toml");
    std::fs::write(
        &refused,
        std::fs::read_to_string(&stations)
            .expect("manifest")
            .replacen(
                "aggregate = \"stats\"",
                "aggregate = \"no_such_function\"",
                1,
            ),
    )
    .expect("writing");
    let page = browse(json!({
        "action": "deploy", "url": served.url, "token": OPERATOR, "tenant": "stations",
        "manifest": refused, "module": common::component("bts_analytics"),
    }));
    let result = page["result"].as_str().unwrap_or("");
    assert_eq!(page["class"], "error", "{page}");
    assert!(result.starts_with("Refused (422)"), "{page}");
    assert!(result.contains("no_such_function"), "{page}");
    assert_eq!(served.tenant("stations")["state"], "paused");

    // A new tenant deployed from the tenants page, then undeployed from
    // its own page (after a cancelled first try).
    let fq = unique("console.fresh");
    let fresh = dir.path().join("fresh.toml");
    std::fs::write(
        &fresh,
        bts_as(dir.path(), "fresh", &fq, &format!("{fq}.out")),
    )
    .expect("manifest");
    let page = browse(json!({
        "action": "deploy-new", "url": served.url, "token": OPERATOR, "tenant": "fresh",
        "manifest": fresh, "module": common::component("bts_analytics"),
    }));
    assert_eq!(page["class"], "ok", "{page}");
    assert!(
        page["result"]
            .as_str()
            .unwrap_or("")
            .starts_with("Deployed fresh: bts-analytics"),
        "{page}"
    );
    assert_eq!(served.tenant("fresh")["state"], "running");
    let page = browse(json!({
        "action": "undeploy", "url": served.url, "token": OPERATOR, "tenant": "fresh",
    }));
    assert!(
        page["asked"]
            .as_str()
            .unwrap_or("")
            .contains("Undeploy fresh?"),
        "{page}"
    );
    assert_eq!(page["cancelled_hidden"], true, "{page}");
    let names: Vec<&Value> = page["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| &r["tenant"])
        .collect();
    assert_eq!(names, [&json!("stations"), &json!("xss")], "{page}");
    assert_eq!(served.get("/v1/tenants/fresh", Some(OPERATOR)).0, 404);

    // The xss tenant's log line, dead-lettered rows and param are text.
    let detail = dir.path().join("console-tenant.png");
    let page = browse(json!({
        "action": "xss", "url": served.url, "token": OPERATOR, "tenant": "xss",
        "screenshot": detail,
    }));
    assert_eq!(page["injected"], 0, "{page}");
    assert_eq!(page["xss_flag"], Value::Null, "{page}");
    let has = |field: &str, needle: &str| {
        page[field]
            .as_array()
            .into_iter()
            .flatten()
            .any(|v| v.as_str().unwrap_or("").contains(needle))
    };
    assert!(has("log", SAY), "the log line as text: {page}");
    assert!(has("letters", ROW), "the rows as text: {page}");
    assert!(has("params", SAY), "the param as text: {page}");
    let kept = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-tenant.png");
    std::fs::copy(&detail, &kept).expect("keeping the screenshot");

    served.stop();
}
