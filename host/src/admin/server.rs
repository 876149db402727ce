//! The admin API's accept loop, in place of `axum::serve` (which sets no
//! header timeout and no connection cap): what a client that has not
//! authenticated yet — it has not even sent a request head — can cost the
//! host is bounded:
//! - **time**: a connection must deliver a complete request head within
//!   `header_timeout` of being accepted, or it is closed (hyper's own
//!   header read timeout as well, for a head that trickles in); a deploy's
//!   body must arrive within `body_timeout` (408, see `mod.rs`);
//! - **connections**: at most `max_connections` open; an accept past it
//!   closes the oldest connection that has not delivered a request head
//!   (the one that cost least so far) — or, when every one is busy with a
//!   real request, the new one. A client that floods the listener only
//!   evicts its own half-open connections, and an authenticated request
//!   gets a slot at once;
//! - **size**: a request head over `max_header_bytes` is refused by hyper
//!   (431); bodies are limited per route before authentication (mod.rs);
//! - one request per connection (no keep-alive): an idle connection never
//!   holds a slot;
//! - accept errors (file descriptors exhausted) are retried after a pause,
//!   never a busy loop.
//!
//! On shutdown, connections without a request are closed at once, those
//! with one get up to [`DRAIN`] to finish.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::{TowerToHyperService, TowerToHyperServiceFuture};
use tokio::sync::Notify;

use crate::serve::config::AdminLimits;

/// How long shutdown waits for requests in flight.
const DRAIN: Duration = Duration::from_secs(5);

/// The open connections, oldest first.
#[derive(Default)]
struct Conns {
    next: u64,
    open: BTreeMap<u64, Conn>,
}

struct Conn {
    /// A complete request head has arrived.
    headed: Arc<AtomicBool>,
    /// Closes the connection (eviction, shutdown).
    close: Arc<Notify>,
}

/// Removes a connection from the table when its task ends.
struct Leave(Arc<Mutex<Conns>>, u64);

impl Drop for Leave {
    fn drop(&mut self) {
        lock(&self.0).open.remove(&self.1);
    }
}

fn lock(c: &Mutex<Conns>) -> std::sync::MutexGuard<'_, Conns> {
    c.lock().unwrap_or_else(|e| e.into_inner())
}

/// The router as hyper's service, marking the connection's request head
/// as arrived when hyper hands the request over.
#[derive(Clone)]
struct Marked {
    inner: TowerToHyperService<Router>,
    headed: Arc<AtomicBool>,
}

impl hyper::service::Service<hyper::Request<Incoming>> for Marked {
    type Response = axum::response::Response;
    type Error = Infallible;
    type Future = TowerToHyperServiceFuture<Router, hyper::Request<Incoming>>;

    fn call(&self, req: hyper::Request<Incoming>) -> Self::Future {
        self.headed.store(true, Ordering::Release);
        self.inner.call(req)
    }
}

/// Serves `app` on `listener` under `limits` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: AdminLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let conns = Arc::new(Mutex::new(Conns::default()));
    let stopping = Arc::new(Notify::new());
    let stop_flag = Arc::new(AtomicBool::new(false));
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // EMFILE and friends: the connections in flight close in
                // time (they are bounded); try again after a pause.
                tracing::warn!(error = %e, "admin API: accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some((id, headed, close)) = admit(&conns, limits.max_connections) else {
            tracing::warn!("admin API: every connection is busy with a request; refusing one");
            drop(stream);
            continue;
        };
        let leave = Leave(Arc::clone(&conns), id);
        let service = Marked {
            inner: TowerToHyperService::new(app.clone()),
            headed: Arc::clone(&headed),
        };
        let stopping = Arc::clone(&stopping);
        let stop_flag = Arc::clone(&stop_flag);
        tokio::spawn(async move {
            let _leave = leave;
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .max_buf_size(limits.max_header_bytes.max(8192))
                .keep_alive(false);
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            let head_deadline = tokio::time::sleep(limits.header_timeout);
            tokio::pin!(head_deadline);
            let mut head_checked = false;
            let mut draining = false;
            loop {
                tokio::select! {
                    _ = conn.as_mut() => break,
                    () = &mut head_deadline, if !head_checked => {
                        if !headed.load(Ordering::Acquire) {
                            break;
                        }
                        head_checked = true;
                    }
                    () = close.notified() => break,
                    () = stopping.notified(), if !draining => {
                        if !headed.load(Ordering::Acquire) {
                            break;
                        }
                        conn.as_mut().graceful_shutdown();
                        draining = true;
                    }
                }
                if stop_flag.load(Ordering::Acquire) && !draining {
                    if !headed.load(Ordering::Acquire) {
                        break;
                    }
                    conn.as_mut().graceful_shutdown();
                    draining = true;
                }
            }
        });
    }
    // Stop: no more accepts; idle connections close, busy ones drain.
    drop(listener);
    stop_flag.store(true, Ordering::Release);
    stopping.notify_waiters();
    let started = tokio::time::Instant::now();
    while !lock(&conns).open.is_empty() && started.elapsed() < DRAIN {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let left: Vec<Arc<Notify>> = lock(&conns)
        .open
        .values()
        .map(|c| Arc::clone(&c.close))
        .collect();
    for close in left {
        close.notify_one();
    }
    Ok(())
}

/// A slot for a new connection: when the table is full, the oldest
/// connection without a request head is closed to make room; `None` when
/// every open connection is busy with a request.
fn admit(conns: &Mutex<Conns>, max: usize) -> Option<(u64, Arc<AtomicBool>, Arc<Notify>)> {
    let mut c = lock(conns);
    if c.open.len() >= max {
        let oldest_idle = c
            .open
            .iter()
            .find(|(_, conn)| !conn.headed.load(Ordering::Acquire))
            .map(|(id, _)| *id)?;
        if let Some(evicted) = c.open.remove(&oldest_idle) {
            evicted.close.notify_one();
        }
    }
    let id = c.next;
    c.next += 1;
    let headed = Arc::new(AtomicBool::new(false));
    let close = Arc::new(Notify::new());
    c.open.insert(
        id,
        Conn {
            headed: Arc::clone(&headed),
            close: Arc::clone(&close),
        },
    );
    Some((id, headed, close))
}
