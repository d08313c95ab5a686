//! Remote operator seats: `GET /v1/operators/{name}/questions` (attach_session) streams the
//! seat's questions as Server-Sent Events, and `POST /v1/operators/{name}/answers/{question_id}`
//! (answer_query) answers one. A question is a wait (an operator seat of kind `remote` or
//! `console`, a senior's escalation), so an answer is the wait's signal, and the journal keeps
//! both: a question asked before a restart is still open after it.
//!
//! The stream sends `event: question` for each open question (those already open first), and
//! `event: answered` once a question is no longer open (answered here or anywhere else, timed
//! out, or its run ended). It looks at the open questions again whenever the engine publishes an
//! event that can change them.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use tokio::sync::broadcast::error::RecvError;

use super::runs::body_error;
use super::{call, object_body, respond};
use crate::engine::Event;
use crate::engine::event::EventKind;
use crate::server::ApiState;
use crate::server::desk::{Answer, Op};
use crate::server::error::ApiError;
use crate::value::Value;

/// Whether `event` can open or close a question.
fn may_change_questions(event: &Event) -> bool {
    matches!(
        event.kind,
        EventKind::RunWaiting { .. }
            | EventKind::RunSignalled { .. }
            | EventKind::TaskSuspended { .. }
            | EventKind::TaskResumed { .. }
            | EventKind::TaskCancelled { .. }
            | EventKind::RunFinished { .. }
            | EventKind::AttemptFinished { .. }
    )
}

fn sse(kind: &str, data: &serde_json::Value) -> Result<SseEvent, Infallible> {
    Ok(SseEvent::default().event(kind).data(data.to_string()))
}

/// What changed between the questions sent and those open now, as events to send.
fn changes(
    sent: &mut BTreeMap<String, serde_json::Value>,
    open: Vec<serde_json::Value>,
) -> Vec<Result<SseEvent, Infallible>> {
    let open: BTreeMap<String, serde_json::Value> =
        open.into_iter().map(|q| (q["id"].as_str().unwrap_or_default().to_string(), q)).collect();
    let mut out = Vec::new();
    sent.retain(|id, _| {
        let still = open.contains_key(id);
        if !still {
            out.push(sse("answered", &serde_json::json!({ "id": id })));
        }
        still
    });
    for (id, question) in open {
        if let std::collections::btree_map::Entry::Vacant(slot) = sent.entry(id) {
            out.push(sse("question", &question));
            slot.insert(question);
        }
    }
    out
}

pub async fn questions(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(seat): Path<String>,
) -> Result<Response, ApiError> {
    let Answer::Questions { open, events } =
        call(&state, &headers, Op::Questions { seat: Some(seat.clone()), follow: true }).await?
    else {
        return Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "unexpected answer"));
    };
    let Some(events) = events else {
        return Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "no event feed"));
    };
    let mut sent = BTreeMap::new();
    let first = changes(&mut sent, open);
    let token = super::bearer(&headers)?;
    let later = futures::stream::unfold(
        (events, sent, state, token, seat),
        |(mut events, mut sent, state, token, seat)| async move {
            loop {
                match events.recv().await {
                    Ok(event) if !may_change_questions(&event) => continue,
                    Ok(_) | Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => return None,
                }
                let mut headers = HeaderMap::new();
                headers.insert(axum::http::header::AUTHORIZATION, format!("Bearer {token}").parse().ok()?);
                let Ok(Answer::Questions { open, .. }) =
                    call(&state, &headers, Op::Questions { seat: Some(seat.clone()), follow: false }).await
                else {
                    return None;
                };
                let out = changes(&mut sent, open);
                if !out.is_empty() {
                    return Some((futures::stream::iter(out), (events, sent, state, token, seat)));
                }
            }
        },
    );
    use futures::StreamExt as _;
    let body = futures::stream::iter(first).chain(later.flatten());
    Ok(Sse::new(body).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))).into_response())
}

pub async fn answer(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path((seat, question)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let route = format!("POST /v1/operators/{seat}/answers/{question}");
    let body = body.map_err(|r| body_error(&route, r))?;
    let value = object_body(&route, &body, &["value"])?
        .remove("value")
        .map(Value::from)
        .ok_or_else(|| ApiError::bad_request(format!("{route}: missing field `value` (the answer)")))?;
    Ok(respond(call(&state, &headers, Op::AnswerQuestion { seat: Some(seat), question, value }).await?))
}
