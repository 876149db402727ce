//! The admin HTTP API of `sluice serve` (axum, HTTP/1, loopback by
//! default) and `/metrics`.
//!
//! | method and path | who | what |
//! |---|---|---|
//! | `GET /healthz` | anyone | the process answers |
//! | `GET /readyz` | anyone | 200 while the control plane answers and is not shutting down (a failed tenant shows in `/v1/tenants`, not here) |
//! | `GET /metrics` | operator | OpenMetrics text |
//! | `GET /v1/tenants` | operator: all; tenant: its own | list |
//! | `GET /v1/tenants/{t}` | operator, tenant `t` | one tenant |
//! | `PUT /v1/tenants/{t}` | operator | deploy or redeploy: `multipart/form-data` with exactly one `manifest` part (TOML) and one `module` part (`.wasm`); 200 once the new version runs, 202 when the old one is still draining after `deploy_wait` (the swap completes on its own) |
//! | `DELETE /v1/tenants/{t}` | operator | undeploy |
//! | `POST /v1/tenants/{t}/pause`, `/resume` | operator, tenant `t` | pause / resume the consumer |
//! | `GET /v1/tenants/{t}/logs?after=N&limit=M` | operator, tenant `t` | the tenant's log book: its guest's log lines and stdout, its failed calls, the host's notes about it; entries numbered above `N` (default 0), at most `M` (default and most 1000) |
//! | `GET /v1/tenants/{t}/history` | operator, tenant `t` | the last 15 minutes at 10 s: events/s, lag, records, traps, dead-lettered rows (in memory; empty after a restart) |
//! | `GET /v1/tenants/{t}/dead-letters` | operator, tenant `t` | the last 50 dead letters, newest first (in memory; the broker's `<queue>.dead` is the record) |
//! | `GET /v1/tenants/{t}/manifest` | operator, tenant `t` | the running version's manifest: columns, key, windows, alerts, params, limits |
//! | `GET /`, `/console.js`, `/console.css` | anyone | the operator console (`console/`): static files compiled in, which call the routes above with the token the operator types |
//!
//! `{t}` is a tenant name (`[a-z0-9][a-z0-9_-]*`, at most 63 bytes),
//! checked before anything else: anything else is a 400.
//!
//! The token is checked before anything is read from a request body, so an
//! unauthenticated upload costs nothing; connections, head and body read
//! times are bounded before that (`server.rs`). Deploy and undeploy stop
//! and start pipelines (a checkpoint barrier, a module compile): they run
//! on the blocking pool.

pub mod auth;
pub mod console;
pub mod error;
pub mod server;

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};

use crate::manifest::TenantName;
use crate::metrics::prometheus::{names, HostMetrics};
use crate::serve::{Deployed, Host};
use auth::{Caller, Need};
use error::ApiError;

/// What the handlers share.
pub struct AdminState {
    pub host: Arc<Host>,
    pub metrics: Arc<HostMetrics>,
}

/// The API's routes.
pub fn router(state: Arc<AdminState>) -> Router {
    let max_upload = state.host.config().max_upload;
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/tenants", get(list))
        .route(
            "/v1/tenants/{tenant}",
            put(deploy)
                .layer(DefaultBodyLimit::max(max_upload))
                .get(get_one)
                .delete(undeploy),
        )
        .route("/v1/tenants/{tenant}/pause", post(pause))
        .route("/v1/tenants/{tenant}/resume", post(resume))
        .route("/v1/tenants/{tenant}/logs", get(logs))
        .route("/v1/tenants/{tenant}/history", get(history))
        .route("/v1/tenants/{tenant}/dead-letters", get(dead_letters))
        .route("/v1/tenants/{tenant}/manifest", get(manifest))
        .merge(console::routes())
        .fallback(fallback)
        .with_state(state)
}

type AppState = State<Arc<AdminState>>;

/// A tenant name from a path: 400 unless it is one.
fn tenant_name(raw: &str) -> Result<TenantName, ApiError> {
    TenantName::parse(raw).map_err(|e| ApiError::BadRequest(e.to_string()))
}

/// Under `/v1/tenants/`, a path no route takes has a bad tenant name in
/// it (`a/b`, an empty one): 400 says so; elsewhere 404.
async fn fallback(uri: axum::http::Uri) -> ApiError {
    match uri.path().strip_prefix("/v1/tenants/") {
        Some(rest) => match tenant_name(rest) {
            Err(e) => e,
            Ok(_) => ApiError::NotFoundRoute,
        },
        None => ApiError::NotFoundRoute,
    }
}

async fn readyz(State(s): AppState) -> Response {
    let host = Arc::clone(&s.host);
    let ready = tokio::task::spawn_blocking(move || host.ready())
        .await
        .unwrap_or(false);
    if ready {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response()
    }
}

async fn metrics(State(s): AppState, headers: HeaderMap) -> Result<Response, ApiError> {
    let caller = auth::caller(&headers, s.host.config())?;
    auth::allow(&caller, Need::Operator)?;
    let text = s
        .metrics
        .encode()
        .map_err(|e| ApiError::Internal(format!("encoding the metrics: {e}")))?;
    Ok(([(header::CONTENT_TYPE, names::CONTENT_TYPE)], text).into_response())
}

async fn list(State(s): AppState, headers: HeaderMap) -> Result<Response, ApiError> {
    let caller = auth::caller(&headers, s.host.config())?;
    let mut tenants = s.host.list();
    if let Caller::Tenant(own) = &caller {
        tenants.retain(|t| &t.tenant == own);
    }
    Ok(Json(tenants).into_response())
}

async fn get_one(
    State(s): AppState,
    Path(tenant): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let tenant = tenant_name(&tenant)?;
    let caller = auth::caller(&headers, s.host.config())?;
    auth::allow(&caller, Need::Tenant(&tenant))?;
    let view = s
        .host
        .get(&tenant)
        .ok_or_else(|| crate::serve::Error::NotFound(tenant.to_string()))?;
    Ok(Json(view).into_response())
}

/// `t`, checked, once the caller may see it.
fn readable(s: &AdminState, tenant: &str, headers: &HeaderMap) -> Result<TenantName, ApiError> {
    let tenant = tenant_name(tenant)?;
    let caller = auth::caller(headers, s.host.config())?;
    auth::allow(&caller, Need::Tenant(&tenant))?;
    Ok(tenant)
}

fn not_found(tenant: &TenantName) -> ApiError {
    crate::serve::Error::NotFound(tenant.to_string()).into()
}

async fn history(
    State(s): AppState,
    Path(tenant): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let tenant = readable(&s, &tenant, &headers)?;
    let view = s.host.history(&tenant).ok_or_else(|| not_found(&tenant))?;
    Ok(Json(view).into_response())
}

async fn dead_letters(
    State(s): AppState,
    Path(tenant): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let tenant = readable(&s, &tenant, &headers)?;
    let letters = s
        .host
        .dead_letters(&tenant)
        .ok_or_else(|| not_found(&tenant))?;
    Ok(Json(serde_json::json!({ "letters": letters })).into_response())
}

async fn manifest(
    State(s): AppState,
    Path(tenant): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let tenant = readable(&s, &tenant, &headers)?;
    let view = s.host.manifest(&tenant).ok_or_else(|| not_found(&tenant))?;
    Ok(Json(view).into_response())
}

/// `?after=N&limit=M` of a log read.
#[derive(Debug, serde::Deserialize)]
struct LogQuery {
    #[serde(default)]
    after: u64,
    limit: Option<usize>,
}

/// Entries per log read at most.
const MAX_LOG_PAGE: usize = 1000;

async fn logs(
    State(s): AppState,
    Path(tenant): Path<String>,
    query: Result<Query<LogQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let tenant = tenant_name(&tenant)?;
    let caller = auth::caller(&headers, s.host.config())?;
    auth::allow(&caller, Need::Tenant(&tenant))?;
    let Query(query) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let limit = query.limit.unwrap_or(MAX_LOG_PAGE).min(MAX_LOG_PAGE);
    let page = s
        .host
        .logs(&tenant, query.after, limit)
        .ok_or_else(|| crate::serve::Error::NotFound(tenant.to_string()))?;
    Ok(Json(page).into_response())
}

async fn pause(
    State(s): AppState,
    Path(tenant): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let tenant = tenant_name(&tenant)?;
    let caller = auth::caller(&headers, s.host.config())?;
    auth::allow(&caller, Need::Tenant(&tenant))?;
    let by = match &caller {
        Caller::Operator => "paused by the operator",
        Caller::Tenant(_) => "paused by the tenant",
    };
    let host = Arc::clone(&s.host);
    let view = tokio::task::spawn_blocking(move || host.pause(&tenant, by))
        .await
        .map_err(|e| ApiError::Internal(format!("pause task: {e}")))??;
    Ok(Json(view).into_response())
}

async fn resume(
    State(s): AppState,
    Path(tenant): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let tenant = tenant_name(&tenant)?;
    let caller = auth::caller(&headers, s.host.config())?;
    auth::allow(&caller, Need::Tenant(&tenant))?;
    Ok(Json(s.host.resume(&tenant)?).into_response())
}

async fn undeploy(
    State(s): AppState,
    Path(tenant): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let tenant = tenant_name(&tenant)?;
    let caller = auth::caller(&headers, s.host.config())?;
    auth::allow(&caller, Need::Operator)?;
    let host = Arc::clone(&s.host);
    let view = tokio::task::spawn_blocking(move || host.undeploy(&tenant))
        .await
        .map_err(|e| ApiError::Internal(format!("undeploy task: {e}")))??;
    Ok(Json(view).into_response())
}

async fn deploy(
    State(s): AppState,
    Path(tenant): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    let tenant = tenant_name(&tenant)?;
    let config = s.host.config();
    let limit = config.max_upload;
    // A declared length over the limit is refused before anything else,
    // the token included, and before the body is read (a client that sent
    // `Expect: 100-continue` then sends nothing).
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::TooLarge(limit));
    }
    let caller = auth::caller(request.headers(), config)?;
    auth::allow(&caller, Need::Operator)?;
    // A client that trickles its body is cut off (the connection's slot
    // and the upload buffer are not held for long).
    let body_timeout = config.admin.body_timeout;
    let upload = tokio::time::timeout(body_timeout, read_upload(request, limit))
        .await
        .map_err(|_| ApiError::Timeout(body_timeout))??;
    let host = Arc::clone(&s.host);
    // Set if this handler is dropped — hyper drops it when the client
    // disconnects — so a deploy not yet committed is cancelled.
    let gone = Gone::default();
    let flag = Arc::clone(&gone.0);
    let deployed = tokio::task::spawn_blocking(move || {
        host.deploy(&tenant, &upload.manifest, &upload.module, &flag)
    })
    .await
    .map_err(|e| ApiError::Internal(format!("deploy task: {e}")))??;
    drop(gone.disarm());
    Ok(match deployed {
        Deployed::Done(view) => (StatusCode::OK, Json(view)).into_response(),
        Deployed::Pending(view) => (StatusCode::ACCEPTED, Json(view)).into_response(),
    })
}

/// Says "the client is gone" when dropped before [`Gone::disarm`].
#[derive(Default)]
struct Gone(Arc<std::sync::atomic::AtomicBool>, bool);

impl Gone {
    fn disarm(mut self) -> Self {
        self.1 = true;
        self
    }
}

impl Drop for Gone {
    fn drop(&mut self) {
        if !self.1 {
            self.0.store(true, std::sync::atomic::Ordering::Release);
        }
    }
}

struct Upload {
    manifest: String,
    module: Vec<u8>,
}

const UPLOAD_SHAPE: &str =
    "expected multipart/form-data with a `manifest` part (TOML) and a `module` part (.wasm)";

/// The two parts of a deploy: 400 for anything else, 413 past the limit.
async fn read_upload(request: Request, limit: usize) -> Result<Upload, ApiError> {
    let mut multipart = Multipart::from_request(request, &())
        .await
        .map_err(|e| ApiError::BadRequest(format!("{UPLOAD_SHAPE}: {}", e.body_text())))?;
    let too_large_or_bad = |e: axum::extract::multipart::MultipartError| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge(limit)
        } else {
            ApiError::BadRequest(format!("{UPLOAD_SHAPE}: {}", e.body_text()))
        }
    };
    let (mut manifest, mut module) = (None, None);
    // A part given twice is refused — after the rest of the body is read
    // (bounded by the limit), so the client gets the answer rather than a
    // broken pipe.
    let mut twice = None;
    while let Some(field) = multipart.next_field().await.map_err(too_large_or_bad)? {
        let name = field.name().map(str::to_owned);
        let bytes = field.bytes().await.map_err(too_large_or_bad)?;
        match name.as_deref() {
            Some(part @ ("manifest" | "module"))
                if (part == "manifest" && manifest.is_some())
                    || (part == "module" && module.is_some()) =>
            {
                twice.get_or_insert(if part == "manifest" {
                    "manifest"
                } else {
                    "module"
                });
            }
            Some("manifest") => {
                let text = String::from_utf8(bytes.to_vec()).map_err(|_| {
                    ApiError::BadRequest("the `manifest` part is not UTF-8 text".into())
                })?;
                manifest = Some(text);
            }
            Some("module") => module = Some(bytes.to_vec()),
            other => {
                return Err(ApiError::BadRequest(format!(
                    "{UPLOAD_SHAPE}; got a part named {:?}",
                    other.unwrap_or("")
                )))
            }
        }
    }
    if let Some(part) = twice {
        return Err(ApiError::BadRequest(format!(
            "{UPLOAD_SHAPE}; got two `{part}` parts"
        )));
    }
    match (manifest, module) {
        (Some(manifest), Some(module)) => Ok(Upload { manifest, module }),
        (None, _) => Err(ApiError::BadRequest(format!(
            "{UPLOAD_SHAPE}: no `manifest` part"
        ))),
        (_, None) => Err(ApiError::BadRequest(format!(
            "{UPLOAD_SHAPE}: no `module` part"
        ))),
    }
}

/// Serves the API on `listener` until `shutdown` completes; requests in
/// flight get a few seconds to finish (see `server.rs`).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AdminState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = state.host.config().admin;
    server::serve(listener, router(state), limits, shutdown).await
}
