//! The API's errors: `{"error": {"kind", "message"}}` with the status each kind maps to.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::engine::EngineError;
use crate::gate::TokenError;

/// An error the API answers with: its status, a stable kind and a message for people (never a
/// token; the gate's messages hold none).
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A stable name: a token kind of the gate, `bad_request`, `not_found`, `conflict`, ...
    pub kind: String,
    /// What went wrong.
    pub message: String,
    /// Compile errors, for a blueprint that does not compile (422).
    pub errors: Option<serde_json::Value>,
}

impl ApiError {
    /// An error of `kind` with `status`.
    pub fn new(status: StatusCode, kind: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError { status, kind: kind.into(), message: message.into(), errors: None }
    }

    /// 400: the request is not what the route takes; `message` names the route and the field.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 409: a run or task in the wrong state for the request.
    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, "conflict", message)
    }

    /// 503: the engine has stopped (the server is shutting down).
    pub fn unavailable() -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "the server is shutting down")
    }

    /// A refused token: 401 for a token that is not good (malformed, forged, expired, unknown,
    /// revoked, used up), 403 for a good token not allowed the request.
    pub fn token(error: &TokenError) -> ApiError {
        ApiError::refusal(error.kind(), error.to_string())
    }

    /// An engine refusal: the token's, a missing run or task (404), a settled or idle one (409).
    pub fn engine(error: &EngineError) -> ApiError {
        ApiError::refusal(error.kind(), error.to_string())
    }

    /// A refusal by its engine kind ([`EngineError::kind`], the gate's token kinds among them),
    /// with the status and the API kind that kind answers: one table for every route.
    pub fn refusal(kind: &str, message: impl Into<String>) -> ApiError {
        let (status, kind) = match kind {
            "malformed" | "bad_signature" | "expired" | "unknown_token" | "revoked" | "uses_exhausted" => {
                (StatusCode::UNAUTHORIZED, kind)
            }
            "role_violation" | "task_mismatch" | "depth_exceeded" => (StatusCode::FORBIDDEN, kind),
            "no_such_task" | "no_such_run" | "no_such_output" | "no_route" => (StatusCode::NOT_FOUND, "not_found"),
            "settled" | "not_running" => (StatusCode::CONFLICT, "conflict"),
            "not_waiting" => (StatusCode::CONFLICT, "not_waiting"),
            other => (StatusCode::BAD_REQUEST, other),
        };
        ApiError::new(status, kind, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = json!({ "kind": self.kind, "message": self.message });
        if let Some(errors) = self.errors {
            error["errors"] = errors;
        }
        (self.status, Json(json!({ "error": error }))).into_response()
    }
}
