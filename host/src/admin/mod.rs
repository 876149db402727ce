//! The admin HTTP API of `sluice serve` (axum, HTTP/1, loopback by
//! default) and `/metrics`.
//!
//! | method and path | who | what |
//! |---|---|---|
//! | `GET /healthz` | anyone | the process answers |
//! | `GET /readyz` | anyone | 200 when every tenant's run is going, else 503 |
//! | `GET /metrics` | operator | OpenMetrics text |
//! | `GET /v1/tenants` | operator: all; tenant: its own | list |
//! | `GET /v1/tenants/{t}` | operator, tenant `t` | one tenant |
//! | `PUT /v1/tenants/{t}` | operator | deploy or redeploy: `multipart/form-data` with parts `manifest` (TOML) and `module` (`.wasm`) |
//! | `DELETE /v1/tenants/{t}` | operator | undeploy |
//! | `POST /v1/tenants/{t}/pause`, `/resume` | operator, tenant `t` | pause / resume the consumer |
//!
//! The token is checked before anything is read from a request body, so an
//! unauthenticated upload costs nothing. Deploy and undeploy stop and start
//! pipelines (a checkpoint barrier, a module compile): they run on the
//! blocking pool.

pub mod auth;
pub mod error;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Path, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};

use crate::metrics::prometheus::{names, HostMetrics};
use crate::serve::Host;
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
        .with_state(state)
}

type AppState = State<Arc<AdminState>>;

async fn readyz(State(s): AppState) -> Response {
    if s.host.ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "a tenant's run has failed\n",
        )
            .into_response()
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
    let caller = auth::caller(&headers, s.host.config())?;
    auth::allow(&caller, Need::Tenant(&tenant))?;
    let view = s
        .host
        .get(&tenant)
        .ok_or_else(|| crate::serve::Error::NotFound(tenant.clone()))?;
    Ok(Json(view).into_response())
}

async fn pause(
    State(s): AppState,
    Path(tenant): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
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
    let caller = auth::caller(&headers, s.host.config())?;
    auth::allow(&caller, Need::Tenant(&tenant))?;
    Ok(Json(s.host.resume(&tenant)?).into_response())
}

async fn undeploy(
    State(s): AppState,
    Path(tenant): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
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
    let config = s.host.config();
    let caller = auth::caller(request.headers(), config)?;
    auth::allow(&caller, Need::Operator)?;
    let limit = config.max_upload;
    // A declared length over the limit is refused before the body is read
    // (a client that sent `Expect: 100-continue` then sends nothing).
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::TooLarge(limit));
    }
    let upload = read_upload(request, limit).await?;
    let host = Arc::clone(&s.host);
    let view =
        tokio::task::spawn_blocking(move || host.deploy(&tenant, &upload.manifest, &upload.module))
            .await
            .map_err(|e| ApiError::Internal(format!("deploy task: {e}")))??;
    Ok((StatusCode::OK, Json(view)).into_response())
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
    while let Some(field) = multipart.next_field().await.map_err(too_large_or_bad)? {
        match field.name() {
            Some("manifest") => {
                let bytes = field.bytes().await.map_err(too_large_or_bad)?;
                let text = String::from_utf8(bytes.to_vec()).map_err(|_| {
                    ApiError::BadRequest("the `manifest` part is not UTF-8 text".into())
                })?;
                manifest = Some(text);
            }
            Some("module") => {
                module = Some(field.bytes().await.map_err(too_large_or_bad)?.to_vec());
            }
            other => {
                return Err(ApiError::BadRequest(format!(
                    "{UPLOAD_SHAPE}; got a part named {:?}",
                    other.unwrap_or("")
                )))
            }
        }
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
/// flight are finished first.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AdminState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}
