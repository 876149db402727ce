//! The admin API cannot be starved without a token: 2 000 half-sent
//! requests on loopback leave the host's open file descriptors bounded by
//! the connection cap, an authenticated request still answers promptly,
//! the half-sent connections are closed after the header timeout, a body
//! that never arrives gets 408, and a healthy tenant's checkpoints and
//! results are unharmed. (With no cap and no timeout, 19 990 such
//! requests once exhausted the descriptors and broke checkpoints.)

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::amqp::{self, unique};
use crate::host::{collected, Data, Served, OPERATOR};

const HALF_SENT: usize = 2000;
const CAP: usize = 64;

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn half_sent_requests_cannot_exhaust_the_host_and_are_closed_after_the_timeout() {
    let _broker = amqp::shared();
    let dir = tempfile::tempdir().expect("tempdir");
    let queue = unique("serve.slowloris");
    let exchange = format!("{queue}.out");
    let manifest = amqp::manifest(dir.path(), &queue, &exchange);
    let data = Data::bts(dir.path(), &["--events", "3000"]);
    let rt = amqp::runtime();
    let (_conn, channel) = rt.block_on(amqp::connect());
    let collector = rt.block_on(amqp::collector(&channel, &exchange));
    let served = Served::start_extra(
        dir.path(),
        &["bts"],
        &[&manifest],
        &format!(
            "admin_max_connections = {CAP}\nadmin_header_timeout = \"3s\"\n\
             admin_body_timeout = \"3s\"\n"
        ),
    );
    let pid = served.pid();
    let fds_before = open_fds(pid);

    // 2 000 connections, each a request head cut short.
    let mut half: Vec<TcpStream> = Vec::with_capacity(HALF_SENT);
    for i in 0..HALF_SENT {
        match TcpStream::connect(served.addr()) {
            Ok(mut s) => {
                let _ = write!(s, "PUT /v1/tenants/bts{i} HTTP/1.1\r\nHost: x\r\nContent-");
                half.push(s);
            }
            Err(e) => panic!("connection {i}: {e}"),
        }
    }
    amqp::publish(&manifest, &data.path, 40);
    // An authenticated request gets through at once, flood or not.
    let started = Instant::now();
    let (status, view) = served.get("/v1/tenants/bts", Some(OPERATOR));
    let took = started.elapsed();
    assert_eq!(status, 200, "{view}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    eprintln!("authenticated GET beside {HALF_SENT} half-sent requests: {took:?}");
    let fds = open_fds(pid);
    eprintln!("host fds: {fds_before} before, {fds} with the flood");
    assert!(
        fds <= fds_before + CAP + 16,
        "{fds} open descriptors (cap {CAP}, {fds_before} before)"
    );

    // A head that is complete but a body that never comes: 408.
    let mut slow = TcpStream::connect(served.addr()).expect("connect");
    slow.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    write!(
        slow,
        "PUT /v1/tenants/bts HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {OPERATOR}\r\n\
         Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 100000\r\n\r\n--b\r\n"
    )
    .expect("write");
    let mut answer = String::new();
    let _ = slow.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");

    // Every half-sent connection is closed by now (evicted or timed out):
    // reading gives end-of-file or a reset, never a wait.
    std::thread::sleep(Duration::from_secs(4));
    let mut open = 0;
    for s in &mut half {
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        let mut buf = [0u8; 512];
        match s.read(&mut buf) {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                open += 1
            }
            Err(_) => {}
        }
    }
    assert_eq!(open, 0, "{open} half-sent connections still open");
    drop(half);

    // The healthy tenant: all read, checkpoints fine, results exact.
    served.wait_records("bts", data.rows);
    let (status, body) = served.delete("/v1/tenants/bts", Some(OPERATOR));
    assert_eq!(status, 200, "{body}");
    let peak = peak_rss_kib(pid);
    eprintln!("host peak RSS: {} MiB", peak / 1024);
    assert!(peak < 1024 * 1024, "peak RSS {peak} KiB");
    let log = served.stop();
    assert!(!log.contains("Too many open files"), "{log}");
    assert!(!log.contains("checkpoint failed"), "{log}");
    let got = collected(&rt, &channel, &collector);
    assert_eq!(got, amqp::embedded_lines(&manifest, &data.path));
    rt.block_on(amqp::delete(
        &channel,
        &[&queue, &collector, &format!("{queue}.dead")],
    ));
}
