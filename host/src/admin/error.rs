//! The API's errors as HTTP answers: a status and `{"error": "..."}`.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::serve;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("missing bearer token")]
    Unauthorized,
    #[error("forbidden")]
    Forbidden,
    #[error("{0}")]
    BadRequest(String),
    #[error("upload larger than the limit of {0} bytes")]
    TooLarge(usize),
    #[error("the request body did not arrive within {}", crate::manifest::format_duration(*.0))]
    Timeout(std::time::Duration),
    #[error("no such route")]
    NotFoundRoute,
    #[error(transparent)]
    Host(#[from] serve::Error),
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden => StatusCode::FORBIDDEN,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::NotFoundRoute => StatusCode::NOT_FOUND,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Host(e) => match e {
                serve::Error::Manifest(_) | serve::Error::TenantMismatch { .. } => {
                    StatusCode::BAD_REQUEST
                }
                serve::Error::Module(_)
                | serve::Error::Mismatch(_)
                | serve::Error::OverCeiling { .. } => StatusCode::UNPROCESSABLE_ENTITY,
                serve::Error::NotFound(_) => StatusCode::NOT_FOUND,
                // Nobody is listening; the status is for the log.
                serve::Error::Cancelled(_) => StatusCode::REQUEST_TIMEOUT,
                serve::Error::Conflict { .. } => StatusCode::CONFLICT,
                serve::Error::Broker { .. } => StatusCode::SERVICE_UNAVAILABLE,
                serve::Error::State { .. }
                | serve::Error::Io { .. }
                | serve::Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "admin API request failed");
        }
        let body = Json(json!({ "error": self.to_string() }));
        match self {
            ApiError::Unauthorized => {
                (status, [(header::WWW_AUTHENTICATE, "Bearer")], body).into_response()
            }
            _ => (status, body).into_response(),
        }
    }
}
