//! The operator console: a small hand-written page (`index.html`,
//! `console.js`, `console.css`) compiled into the binary and served by the
//! admin listener at `/`. No framework, no CDN, nothing fetched from
//! another origin: the page calls the admin JSON API with the token the
//! operator types (kept in `sessionStorage`, or taken once from the URL
//! fragment `#token=…`, which no browser sends to the server), so it can
//! do exactly what the token may — the API enforces it, the page follows.
//!
//! Everything a tenant controls (names, params, field names, dead-letter
//! rows, log lines) reaches the DOM through `textContent` and
//! `setAttribute` only — never `innerHTML` — and the Content-Security-Policy
//! below forbids inline scripts, `eval` and every other origin, so a
//! payload in a log line stays text even if a future change slipped.

use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// No inline script or style, nothing from another origin, not framed.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'none'; \
     base-uri 'none'; frame-ancestors 'none'";

const INDEX: &str = include_str!("index.html");
const SCRIPT: &str = include_str!("console.js");
const STYLE: &str = include_str!("console.css");

/// The console's routes (no token: the files are the same for everyone).
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            "/console.js",
            get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route(
            "/console.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}
