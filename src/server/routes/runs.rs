//! Runs: `POST /v1/runs` (start_task), `GET /v1/runs` and `GET /v1/runs/{id}`
//! (read_task_state, read from the journal as `swarm runs list/show --json` print them),
//! `POST /v1/runs/{id}/cancel` (cancel_task) and `/resume` (start_task).

use std::path::PathBuf;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{call, json_body, object_body, respond};
use crate::server::ApiState;
use crate::server::desk::{Answer, Op};
use crate::server::error::ApiError;
use crate::store::journal::Reader;
use crate::store::journal::signals::{self, SignalError};
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

/// The journal a read may open, or why there is none.
async fn journal(state: &ApiState, headers: &HeaderMap, route: &str) -> Result<PathBuf, ApiError> {
    match call(state, headers, Op::Read).await? {
        Answer::Journal { path: Some(path) } => Ok(path),
        _ => Err(ApiError::conflict(format!(
            "{route}: this server journals nothing (started with --state memory); runs are listed from the journal"
        ))),
    }
}

/// Reads the journal off the async threads (SQLite blocks).
async fn read<T: Send + 'static>(
    path: PathBuf,
    f: impl FnOnce(&Reader) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(move || {
        let reader = Reader::open(&path)
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "journal", e.to_string()))?;
        f(&reader)
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
}

fn journal_error(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "journal", e.to_string())
}

pub async fn list(State(state): State<ApiState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let path = journal(&state, &headers, "GET /v1/runs").await?;
    let runs = read(path, |reader| reader.runs().map_err(journal_error)).await?;
    Ok(Json(serde_json::to_value(&runs).map_err(journal_error)?).into_response())
}

pub async fn show(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let path = journal(&state, &headers, "GET /v1/runs/{id}").await?;
    let value = read(path, move |reader| {
        reader
            .run_detail(&id)
            .map_err(journal_error)?
            .ok_or_else(|| ApiError::not_found(format!("GET /v1/runs/{id}: no run {id} in the journal")))
    })
    .await?;
    Ok(Json(value).into_response())
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
    match call(&state, &headers, Op::Signal { run_id: id.clone(), name: name.clone(), value: value.clone() }).await? {
        Answer::SignalJournal { path } => {
            let sent = read(path.clone(), move |_| {
                signals::send(&path, &id, &name, &value)
                    .map_err(|e| match e {
                        SignalError::NoSuchRun(_) => ApiError::not_found(format!("{route}: {e}")),
                        SignalError::NotWaiting { .. } => {
                            ApiError::new(StatusCode::CONFLICT, e.kind(), format!("{route}: {e}"))
                        }
                        SignalError::Journal(e) => journal_error(e),
                    })
                    .map(|sent| (sent, id, name))
            })
            .await?;
            let (sent, id, name) = sent;
            Ok((
                StatusCode::ACCEPTED,
                Json(serde_json::json!({
                    "run_id": id,
                    "signal": name,
                    "delivered": false,
                    "journaled": true,
                    "status": sent.status,
                })),
            )
                .into_response())
        }
        answer => Ok(respond(answer)),
    }
}
