//! Runs: `POST /v1/runs` (start_task), `GET /v1/runs` and `GET /v1/runs/{id}`
//! (read_task_state, read from the journal as `swarm runs list/show --json` print them),
//! `POST /v1/runs/{id}/cancel` (cancel_task) and `/resume` (start_task).

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{call, client, json_body, object_body, respond};
use crate::server::ApiState;
use crate::server::desk::Op;
use crate::server::error::ApiError;
use crate::value::Value;

/// A body the extractor refused (too large: 413), as the API's error.
pub fn body_error(route: &str, rejection: BytesRejection) -> ApiError {
    let status = rejection.status();
    let kind = if status == StatusCode::PAYLOAD_TOO_LARGE { "too_large" } else { "bad_request" };
    ApiError::new(status, kind, format!("{route}: {}", rejection.body_text()))
}

pub async fn start(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    const ROUTE: &str = "POST /v1/runs";
    let body = body.map_err(|r| body_error(ROUTE, r))?;
    let serde_json::Value::Object(mut fields) = json_body(ROUTE, &body)? else {
        return Err(ApiError::bad_request(format!("{ROUTE}: the body must be a JSON object {{blueprint, input}}")));
    };
    if let Some(unknown) = fields.keys().find(|k| *k != "blueprint" && *k != "input") {
        return Err(ApiError::bad_request(format!("{ROUTE}: unknown field `{unknown}` (fields: blueprint, input)")));
    }
    let blueprint = fields
        .remove("blueprint")
        .ok_or_else(|| ApiError::bad_request(format!("{ROUTE}: missing field `blueprint`")))?;
    let input = match fields.remove("input") {
        None | Some(serde_json::Value::Null) => Value::object(),
        Some(v @ serde_json::Value::Object(_)) => Value::from(v),
        Some(_) => {
            return Err(ApiError::bad_request(format!("{ROUTE}: `input` must be a JSON object (the initial ctx)")));
        }
    };
    Ok(respond(call(&state, &headers, Op::Start { blueprint, input }).await?))
}

pub async fn list(State(state): State<ApiState>, headers: HeaderMap) -> Result<Response, ApiError> {
    Ok(Json(client(&state, &headers)?.runs().await?).into_response())
}

pub async fn show(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(client(&state, &headers)?.run(&id).await?).into_response())
}

pub async fn cancel(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(respond(call(&state, &headers, Op::Cancel { run_id: id }).await?))
}

pub async fn resume(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(respond(call(&state, &headers, Op::Resume { run_id: id }).await?))
}

pub async fn signal(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path((id, name)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let route = format!("POST /v1/runs/{id}/signals/{name}");
    let body = body.map_err(|r| body_error(&route, r))?;
    // An empty body is a signal without a value (null), as `swarm runs signal` without --value.
    let value = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        object_body(&route, &body, &["value"])?.remove("value").map(Value::from).unwrap_or(Value::Null)
    };
    let answer = client(&state, &headers)?.signal(&id, &name, value).await?;
    Ok((StatusCode::ACCEPTED, Json(answer)).into_response())
}
