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
        let status = match error {
            TokenError::RoleViolation { .. } | TokenError::TaskMismatch | TokenError::DepthExceeded { .. } => {
                StatusCode::FORBIDDEN
            }
            _ => StatusCode::UNAUTHORIZED,
        };
        ApiError::new(status, error.kind(), error.to_string())
    }

    /// An engine refusal: the token's, a missing run or task (404), a settled or idle one (409).
    pub fn engine(error: &EngineError) -> ApiError {
        match error {
            EngineError::Token(e) => ApiError::token(e),
            EngineError::NoSuchRun(_) | EngineError::NoSuchTask(_) | EngineError::NoSuchOutput(_) => {
                ApiError::not_found(error.to_string())
            }
            EngineError::Settled(_) | EngineError::NotRunning { .. } | EngineError::AttemptEnded { .. } => {
                ApiError::conflict(error.to_string())
            }
            EngineError::NotWaiting(_) => ApiError::new(StatusCode::CONFLICT, "not_waiting", error.to_string()),
            other => ApiError::new(StatusCode::BAD_REQUEST, other.kind(), other.to_string()),
        }
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
