//! A `sluice serve` process for one test: its `host.toml`, its state
//! directory, the address it reports, HTTP calls to its admin API, and the
//! admin commands of the `sluice` binary pointed at it.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::amqp;
use crate::common::sluice;

pub const OPERATOR: &str = "operator-token-for-the-tests-01";
/// Largest deploy the test hosts accept.
pub const MAX_UPLOAD: usize = 8 << 20;

/// The token of `tenant` in every test host.
pub fn tenant_token(tenant: &str) -> String {
    format!("tenant-token-of-{tenant}-for-the-tests")
}

pub struct Served {
    child: Option<Child>,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    stderr: Arc<Mutex<Vec<String>>>,
    agent: ureq::Agent,
}

impl Served {
    /// Starts a host whose state is under `dir`, with tokens for `tokens`
    /// (tenant names) and `manifests` started with it.
    pub fn start(dir: &Path, tokens: &[&str], manifests: &[&Path]) -> Served {
        Served::start_extra(dir, tokens, manifests, "")
    }

    /// [`Served::start`] with `extra` top-level `host.toml` lines (e.g.
    /// `cassandra = "…"`).
    pub fn start_extra(dir: &Path, tokens: &[&str], manifests: &[&Path], extra: &str) -> Served {
        Served::start_extra_env(dir, tokens, manifests, extra, &[])
    }

    /// [`Served::start_extra`] with extra environment (fail points).
    pub fn start_extra_env(
        dir: &Path,
        tokens: &[&str],
        manifests: &[&Path],
        extra: &str,
        env: &[(&str, &str)],
    ) -> Served {
        let mut text = format!(
            "listen = \"127.0.0.1:0\"\noperator_token = {OPERATOR:?}\namqp = {:?}\n\
             state_dir = \"state\"\nworkers = 2\ncheckpoint_interval = \"200ms\"\n\
             max_upload = \"{}MiB\"\nmax_traps_per_minute = 5\n{extra}\n\n[tenant_tokens]\n",
            amqp::url(),
            MAX_UPLOAD >> 20,
        );
        for t in tokens {
            text.push_str(&format!("{t:?} = {:?}\n", tenant_token(t)));
        }
        for m in manifests {
            text.push_str(&format!(
                "\n[[tenants]]\nmanifest = {:?}\n",
                m.display().to_string()
            ));
        }
        let config = dir.join("host.toml");
        std::fs::write(&config, text).expect("writing host.toml");
        Served::start_with_env(config, env)
    }

    /// Starts (or restarts) a host on an existing `host.toml`.
    pub fn start_with(config: PathBuf) -> Served {
        Served::start_with_env(config, &[])
    }

    /// [`Served::start_with`] with extra environment (fail points).
    pub fn start_with_env(config: PathBuf, env: &[(&str, &str)]) -> Served {
        let mut child = sluice()
            .args(["serve", "--config"])
            .arg(&config)
            .env("SLUICE_LOG", "warn,sluice_host=info")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting sluice serve");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let pipe = child.stderr.take().expect("piped stderr");
            let stderr = Arc::clone(&stderr);
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    if let Some(rest) = line.split("admin API on ").nth(1) {
                        let url = rest.split(',').next().unwrap_or("").to_owned();
                        let _ = tx.send(url);
                    }
                    stderr.lock().unwrap_or_else(|e| e.into_inner()).push(line);
                }
            });
        }
        let url = match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "sluice serve did not start:\n{}",
                    stderr.lock().unwrap_or_else(|e| e.into_inner()).join("\n")
                );
            }
        };
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(300)))
            .build()
            .into();
        Served {
            child: Some(child),
            url,
            stderr,
            agent,
        }
    }

    pub fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .join("\n")
    }

    fn answer(
        &self,
        response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> (u16, Value) {
        let mut response = response.unwrap_or_else(|e| panic!("admin API call failed: {e}"));
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap_or_default();
        let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, json)
    }

    fn auth(token: Option<&str>) -> Option<String> {
        token.map(|t| format!("Bearer {t}"))
    }

    pub fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let mut req = self.agent.get(format!("{}{path}", self.url));
        if let Some(a) = Served::auth(token) {
            req = req.header("Authorization", &a);
        }
        self.answer(req.call())
    }

    pub fn post(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let mut req = self.agent.post(format!("{}{path}", self.url));
        if let Some(a) = Served::auth(token) {
            req = req.header("Authorization", &a);
        }
        self.answer(req.send_empty())
    }

    pub fn delete(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let mut req = self.agent.delete(format!("{}{path}", self.url));
        if let Some(a) = Served::auth(token) {
            req = req.header("Authorization", &a);
        }
        self.answer(req.call())
    }

    /// `PUT /v1/tenants/{tenant}` with this body and content type.
    pub fn put(
        &self,
        tenant: &str,
        token: Option<&str>,
        content_type: &str,
        body: &[u8],
    ) -> (u16, Value) {
        let mut req = self
            .agent
            .put(format!("{}/v1/tenants/{tenant}", self.url))
            .header("Content-Type", content_type);
        if let Some(a) = Served::auth(token) {
            req = req.header("Authorization", &a);
        }
        self.answer(req.send(body))
    }

    /// A deploy of `manifest` text and `module` bytes as the CLI sends it.
    pub fn deploy(&self, tenant: &str, manifest: &str, module: &[u8]) -> (u16, Value) {
        let body =
            sluice_host::client::admin::multipart("test-boundary-7", manifest.as_bytes(), module);
        self.put(
            tenant,
            Some(OPERATOR),
            "multipart/form-data; boundary=test-boundary-7",
            &body,
        )
    }

    /// A raw request with `Expect: 100-continue` declaring `length` bytes
    /// and sending none unless told to continue: the status line back.
    pub fn put_declared(&self, tenant: &str, length: usize) -> String {
        let addr = self.addr();
        let mut s = std::net::TcpStream::connect(addr).expect("connecting to the host");
        s.set_read_timeout(Some(Duration::from_secs(60)))
            .expect("timeout");
        write!(
            s,
            "PUT /v1/tenants/{tenant} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {OPERATOR}\r\n\
             Content-Type: multipart/form-data; boundary=x\r\nContent-Length: {length}\r\n\
             Expect: 100-continue\r\nConnection: close\r\n\r\n"
        )
        .expect("writing the request");
        let mut text = String::new();
        let _ = s.read_to_string(&mut text);
        text.lines().next().unwrap_or("").to_owned()
    }

    /// The host process's id.
    #[allow(dead_code)]
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// `host:port` of the admin API.
    pub fn addr(&self) -> &str {
        self.url.trim_start_matches("http://")
    }

    /// A raw HTTP/1.1 request (the path sent as is: no client
    /// normalises or re-encodes it), with the operator's token: the status
    /// code and the body back.
    #[allow(dead_code)]
    pub fn raw(&self, method: &str, path: &[u8], content_type: &str, body: &[u8]) -> (u16, String) {
        let mut s = std::net::TcpStream::connect(self.addr()).expect("connecting to the host");
        s.set_read_timeout(Some(Duration::from_secs(120)))
            .expect("timeout");
        let mut request = format!("{method} ").into_bytes();
        request.extend_from_slice(path);
        request.extend_from_slice(
            format!(
                " HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {OPERATOR}\r\n\
                 Content-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                self.addr(),
                body.len()
            )
            .as_bytes(),
        );
        request.extend_from_slice(body);
        // The host may answer (and close) before it has read a body it
        // refuses: a failed write still has an answer to read.
        let _ = s.write_all(&request);
        let mut text = Vec::new();
        let _ = s.read_to_end(&mut text);
        let text = String::from_utf8_lossy(&text).into_owned();
        let status = text
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
        (status, body)
    }

    /// One tenant as the operator sees it.
    pub fn tenant(&self, tenant: &str) -> Value {
        let (status, view) = self.get(&format!("/v1/tenants/{tenant}"), Some(OPERATOR));
        assert_eq!(status, 200, "GET tenant {tenant}: {view}");
        view
    }

    /// Waits until `tenant` has read `rows` records (panics after 3 min,
    /// with the host's log: this is a hang, not a slow run).
    pub fn wait_records(&self, tenant: &str, rows: u64) {
        let started = Instant::now();
        loop {
            let view = self.tenant(tenant);
            let n = view["counters"]["records_in"].as_u64().unwrap_or(0);
            if n == rows {
                return;
            }
            assert!(
                n <= rows,
                "tenant {tenant} read {n} records, more than the {rows} published"
            );
            assert!(
                started.elapsed() < Duration::from_secs(180),
                "tenant {tenant} read {n} of {rows} records: {view}\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `sluice ARGS --admin URL` with `SLUICE_TOKEN` = `token`.
    pub fn cli(&self, args: &[&str], token: &str) -> Output {
        sluice()
            .args(args)
            .args(["--admin", &self.url])
            .env("SLUICE_TOKEN", token)
            .output()
            .expect("running the sluice admin command")
    }

    /// SIGTERM, then waits for a clean exit; returns the log.
    pub fn stop(mut self) -> String {
        let Some(mut child) = self.child.take() else {
            return self.stderr();
        };
        let pid = i32::try_from(child.id()).expect("pid fits");
        // SAFETY: `pid` is our own child, still unreaped.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let status = child.wait().expect("waiting for sluice serve");
        // Let the reader thread take the last lines.
        std::thread::sleep(Duration::from_millis(100));
        let log = self.stderr();
        assert!(
            status.success(),
            "sluice serve exited with {status}:\n{log}"
        );
        log
    }
}

impl Served {
    /// SIGKILL: no checkpoint, no handover, unacked messages go back to
    /// the broker when the connections drop. (For the cluster tests, which
    /// share this file.)
    #[allow(dead_code)]
    pub fn kill(mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A manifest's text with its queue and exchange made unique.
pub fn with_names(manifest: &Path, queue: &str, exchange: &str) -> String {
    let text = std::fs::read_to_string(manifest).expect("reading the manifest");
    let mut out = String::new();
    for line in text.lines() {
        if line.trim_start().starts_with("queue =") {
            out.push_str(&format!("queue = {queue:?}\n"));
        } else if line.trim_start().starts_with("exchange =") {
            out.push_str(&format!("exchange = {exchange:?}\n"));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Everything in `collector`, as text, sorted: what compares with
/// `amqp::embedded_lines`.
pub fn collected(
    rt: &tokio::runtime::Runtime,
    channel: &lapin::Channel,
    collector: &str,
) -> Vec<String> {
    let mut got: Vec<String> = rt
        .block_on(amqp::drain(channel, collector))
        .iter()
        .map(|m| m.text())
        .collect();
    got.sort();
    got
}

/// An input file and its number of rows (lines): what a test publishes
/// and then waits for the tenant to have read.
pub struct Data {
    pub path: PathBuf,
    pub rows: u64,
}

impl Data {
    /// `bts.csv` in `dir` from `sluice gen-bts ARGS`.
    pub fn bts(dir: &Path, args: &[&str]) -> Data {
        Data::of(crate::common::gen_bts(dir, "bts.csv", args))
    }

    /// An existing file.
    pub fn of(path: PathBuf) -> Data {
        let rows = rows_of(&path);
        Data { path, rows }
    }

    /// The file cut at its middle row into `first.csv` and `second.csv`
    /// in `dir`: published one after the other, they are the whole file.
    pub fn halves(&self, dir: &Path) -> [Data; 2] {
        let text = std::fs::read_to_string(&self.path).expect("reading the input");
        let lines: Vec<&str> = text.lines().collect();
        let (a, b) = lines.split_at(lines.len() / 2);
        [("first.csv", a), ("second.csv", b)].map(|(name, part)| {
            let path = dir.join(name);
            std::fs::write(&path, part.join("\n") + "\n").expect("writing half of the input");
            Data {
                path,
                rows: part.len() as u64,
            }
        })
    }
}

/// The rows (lines) of an input file.
pub fn rows_of(file: &Path) -> u64 {
    std::fs::read_to_string(file)
        .expect("reading the input")
        .lines()
        .count() as u64
}

/// The BTS manifest's text as tenant `name` on its own queue and exchange
/// (its file under `dir/name`).
pub fn bts_as(dir: &Path, name: &str, queue: &str, exchange: &str) -> String {
    let sub = dir.join(name);
    std::fs::create_dir_all(&sub).expect("dir");
    let path = amqp::manifest(&sub, queue, exchange);
    std::fs::read_to_string(path)
        .expect("manifest")
        .replace("tenant = \"bts\"", &format!("tenant = {name:?}"))
}

/// The Cassandra node of the tests that need one.
pub fn cassandra() -> String {
    std::env::var("SLUICE_TEST_CASSANDRA").unwrap_or_else(|_| "127.0.0.1:9042".to_owned())
}

/// Every file under `dir`: its path relative to `dir` and its length,
/// sorted (what a test compares to show a directory untouched).
pub fn files_under(dir: &Path) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(rel) = p.strip_prefix(dir) {
                let len = e.metadata().map_or(0, |m| m.len());
                out.push((rel.display().to_string(), len));
            }
        }
    }
    out.sort();
    out
}
