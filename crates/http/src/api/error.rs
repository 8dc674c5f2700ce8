//! Errors as RabbitMQ's management API answers them: a status code and
//! `{"error": ..., "reason": ...}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

/// What a handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// An authentication refusal already rendered (401 with the challenge, or 403).
    #[error("refused")]
    Refused(Response),
    /// 403: the caller's tags or permissions do not allow this.
    #[error("access refused")]
    Forbidden,
    /// 404 `{"error":"Object Not Found","reason":"Not Found"}`.
    #[error("not found")]
    NotFound,
    /// 400 with the reason.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// 405 (e.g. a write on a read-only path).
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 503: this node cannot answer now (e.g. not serving the vhosts, no metadata leader).
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// 500 with the reason (logged).
    #[error("internal: {0}")]
    Internal(String),
    /// 409: the object's state forbids the change (e.g. deleting a group with members).
    #[error("conflict: {0}")]
    Conflict(String),
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: String,
    pub reason: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, error, reason) = match self {
            ApiError::Refused(resp) => return resp,
            ApiError::Forbidden => (
                StatusCode::FORBIDDEN,
                "not_authorised".to_string(),
                "Access refused.".to_string(),
            ),
            ApiError::NotFound => (
                StatusCode::NOT_FOUND,
                "Object Not Found".to_string(),
                "Not Found".to_string(),
            ),
            ApiError::BadRequest(r) => (StatusCode::BAD_REQUEST, "bad_request".to_string(), r),
            ApiError::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed".to_string(),
                "Method Not Allowed".to_string(),
            ),
            ApiError::Unavailable(r) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable".to_string(),
                r,
            ),
            ApiError::Conflict(r) => (StatusCode::CONFLICT, "conflict".to_string(), r),
            ApiError::Internal(r) => {
                tracing::error!(reason = %r, "management API request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal_error".to_string(),
                    r,
                )
            }
        };
        (status, Json(ErrorBody { error, reason })).into_response()
    }
}
