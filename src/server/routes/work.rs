//! Remote workers (docs/api.md, "Remote workers"): `POST /v1/work/claim` (poll_task) takes an
//! attempt of a `remote` agent, waiting up to `wait_ms` for one; the task routes then serve that
//! attempt with the token the claim returned: `GET /v1/tasks/{id}/prompt` (fetch_prompt),
//! `GET /v1/outputs/{ref}` (fetch_data), `POST /v1/tasks/{id}/events` (emit_output),
//! `/result` (post_result) and `/dispatch` (start_task + dispatch_attempt). A child of a
//! subprocess agent uses the same routes with its `SWARM_TOKEN` on its `SWARM_API` socket.
//! Every call of an attempt renews its lease.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;

use super::runs::body_error;
use super::{call, json_body, object_body, respond};
use crate::server::ApiState;
use crate::server::desk::Op;
use crate::server::error::ApiError;
use crate::value::Value;

/// The longest a claim may wait, below the request timeout
/// ([`crate::server::REQUEST_TIMEOUT`]) so a claim that finds nothing is answered 204, not 408.
pub const MAX_CLAIM_WAIT_MS: u64 = 50_000;

pub async fn claim(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    const ROUTE: &str = "POST /v1/work/claim";
    let body = body.map_err(|r| body_error(ROUTE, r))?;
    let fields = object_body(ROUTE, &body, &["queues", "wait_ms"])?;
    let queues = match fields.get("queues") {
        Some(serde_json::Value::Array(items)) if !items.is_empty() => items
            .iter()
            .map(|q| match q {
                serde_json::Value::String(name) if !name.is_empty() => Ok(name.clone()),
                _ => Err(ApiError::bad_request(format!("{ROUTE}: `queues` holds {q}, not a queue name"))),
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(serde_json::Value::String(name)) if !name.is_empty() => vec![name.clone()],
        Some(_) => {
            return Err(ApiError::bad_request(format!("{ROUTE}: `queues` must be a non-empty array of queue names")));
        }
        None => {
            return Err(ApiError::bad_request(format!("{ROUTE}: missing field `queues` (the queues to take from)")));
        }
    };
    let wait_ms = match fields.get("wait_ms") {
        None | Some(serde_json::Value::Null) => 0,
        Some(n) => n.as_u64().filter(|ms| *ms <= MAX_CLAIM_WAIT_MS).ok_or_else(|| {
            ApiError::bad_request(format!(
                "{ROUTE}: `wait_ms` must be a whole number from 0 to {MAX_CLAIM_WAIT_MS}, not {n}"
            ))
        })?,
    };
    Ok(respond(call(&state, &headers, Op::Claim { queues, wait: Duration::from_millis(wait_ms) }).await?))
}

pub async fn prompt(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(task_id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(respond(call(&state, &headers, Op::Prompt { task_id }).await?))
}

pub async fn output(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(respond(call(&state, &headers, Op::Output { id }).await?))
}

/// `[output events]`, or one event; each is checked as a child's stream item is (docs/agents.md).
pub async fn events(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(task_id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let route = format!("POST /v1/tasks/{task_id}/events");
    let body = body.map_err(|r| body_error(&route, r))?;
    let items = match json_body(&route, &body)? {
        serde_json::Value::Array(items) => items,
        one @ serde_json::Value::Object(_) => vec![one],
        _ => {
            return Err(ApiError::bad_request(format!(
                "{route}: the body must be an output event or an array of them"
            )));
        }
    };
    let mut events = Vec::with_capacity(items.len());
    for (n, item) in items.iter().enumerate() {
        let text = item.to_string();
        let (event, last) = crate::worker::subprocess::output::parse_event(text.as_bytes())
            .map_err(|e| ApiError::bad_request(format!("{route}: event {}: {e}", n + 1)))?;
        if last.is_some() {
            return Err(ApiError::bad_request(format!(
                "{route}: event {}: a final event is the result: POST it to /v1/tasks/{task_id}/result as {{value, ok}}",
                n + 1
            )));
        }
        events.push(event);
    }
    Ok(respond(call(&state, &headers, Op::Emit { task_id, events }).await?))
}

/// `{value, ok}`: `ok` (default true) passes the step with `value`; `false` fails the attempt,
/// `value` saying why.
pub async fn result(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(task_id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let route = format!("POST /v1/tasks/{task_id}/result");
    let body = body.map_err(|r| body_error(&route, r))?;
    let mut fields = object_body(&route, &body, &["value", "ok"])?;
    let ok = match fields.get("ok") {
        None | Some(serde_json::Value::Null) => true,
        Some(serde_json::Value::Bool(ok)) => *ok,
        Some(other) => return Err(ApiError::bad_request(format!("{route}: `ok` must be true or false, not {other}"))),
    };
    let value = fields.remove("value").map(Value::from).unwrap_or(Value::Null);
    Ok(respond(call(&state, &headers, Op::Result { task_id, value, ok }).await?))
}

/// `{agent, input}`: runs a sub-task of the caller's task on one of its blueprint's agents and
/// answers `{ok: true, value}` or `{ok: false, error}` when it settles.
pub async fn dispatch(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(task_id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let route = format!("POST /v1/tasks/{task_id}/dispatch");
    let body = body.map_err(|r| body_error(&route, r))?;
    let mut fields = object_body(&route, &body, &["agent", "input"])?;
    let agent = match fields.remove("agent") {
        Some(serde_json::Value::String(agent)) if !agent.is_empty() => agent,
        _ => return Err(ApiError::bad_request(format!("{route}: `agent` must name an agent of the run's blueprint"))),
    };
    let input = fields.remove("input").map(Value::from).unwrap_or(Value::Null);
    Ok(respond(call(&state, &headers, Op::Dispatch { task_id, agent, input }).await?))
}
