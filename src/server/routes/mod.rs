//! The route handlers, one file per group of routes, and what they share: the bearer token and
//! the trip to the desk.

pub mod blueprints;
pub mod events;
pub mod health;
pub mod operators;
pub mod runs;
pub mod web;
pub mod work;

use axum::Json;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

use super::ApiState;
use super::client::Client;
use super::desk::{Answer, Op};
use super::error::ApiError;
use crate::gate::TokenError;

/// The token of `Authorization: Bearer <token>`; a missing or other header is `malformed` (401).
pub fn bearer(headers: &HeaderMap) -> Result<String, ApiError> {
    let missing =
        || ApiError::token(&TokenError::Malformed("the request has no `Authorization: Bearer <token>` header".into()));
    let value = headers.get(header::AUTHORIZATION).ok_or_else(missing)?;
    let text = value.to_str().map_err(|_| missing())?;
    let token = text.strip_prefix("Bearer ").ok_or_else(missing)?.trim();
    if token.is_empty() {
        return Err(missing());
    }
    Ok(token.to_string())
}

/// The caller of a request: its bearer token, and the way to the desk.
pub fn client(state: &ApiState, headers: &HeaderMap) -> Result<Client, ApiError> {
    Ok(Client::new(state.calls.clone(), bearer(headers)?))
}

/// Sends `op` to the desk and waits for its answer.
pub async fn call(state: &ApiState, headers: &HeaderMap, op: Op) -> Result<Answer, ApiError> {
    client(state, headers)?.call(op).await
}

/// A desk answer as a response (the answers that are not streams or journal reads).
pub fn respond(answer: Answer) -> Response {
    match answer {
        Answer::Json(status, value) => (status, Json(value)).into_response(),
        Answer::NoContent => StatusCode::NO_CONTENT.into_response(),
        Answer::Journal { .. } | Answer::Feed { .. } | Answer::SignalJournal { .. } | Answer::Questions { .. } => {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "unexpected answer").into_response()
        }
    }
}

/// A JSON body, or a 400 naming the route and what is wrong with it.
pub fn json_body(route: &str, body: &[u8]) -> Result<serde_json::Value, ApiError> {
    if body.is_empty() {
        return Err(ApiError::bad_request(format!("{route}: the body is empty (expected a JSON object)")));
    }
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("{route}: the body is not JSON: {e}")))
}

/// A JSON object body with no fields but `fields`, or a 400 naming the route and the field.
pub fn object_body(
    route: &str,
    body: &[u8],
    fields: &[&str],
) -> Result<serde_json::Map<String, serde_json::Value>, ApiError> {
    let serde_json::Value::Object(object) = json_body(route, body)? else {
        return Err(ApiError::bad_request(format!(
            "{route}: the body must be a JSON object {{{}}}",
            fields.join(", ")
        )));
    };
    if let Some(unknown) = object.keys().find(|k| !fields.contains(&k.as_str())) {
        return Err(ApiError::bad_request(format!(
            "{route}: unknown field `{unknown}` (fields: {})",
            fields.join(", ")
        )));
    }
    Ok(object)
}

/// Any path or method the API has no route for.
pub async fn no_route(method: Method, uri: Uri) -> ApiError {
    ApiError::not_found(format!("no route {method} {}", uri.path()))
}

/// A request whose `Content-Length` is past [`crate::server::MAX_BODY_BYTES`] is answered 413
/// before any of its body is read (a body without a length is cut at the limit as it is read).
pub async fn refuse_oversize(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let length =
        request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if let Some(length) = length
        && length > crate::server::MAX_BODY_BYTES as u64
    {
        let route = format!("{} {}", request.method(), request.uri().path());
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("{route}: the body is {length} bytes; the limit is {} bytes", crate::server::MAX_BODY_BYTES),
        )
        .into_response();
    }
    next.run(request).await
}
