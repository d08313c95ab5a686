//! `GET /v1/runs/{id}/events` (subscribe_events): a run's events as Server-Sent Events, each
//! with `id:` its `seq` and `data:` the event as JSON (as `swarm runs events` prints it).
//!
//! `Last-Event-ID: N` resumes after seq N. No event is lost or sent twice across a reconnect:
//! the desk opens the live feed and copies the engine's trace in the same turn of the host
//! thread, then lets the journal catch up; the past (journal and trace, merged by seq) goes
//! first, then the live feed from the first seq past it. A finished run's stream ends after
//! its last event; a live run's ends after `run_finished`.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;

use super::client;
use crate::engine::Event;
use crate::server::ApiState;
use crate::server::client::Events;
use crate::server::error::ApiError;

fn sse(event: &Event) -> Result<SseEvent, Infallible> {
    let data = serde_json::to_string(event).unwrap_or_else(|_| "{}".into());
    Ok(SseEvent::default().id(event.seq.to_string()).data(data))
}

pub async fn stream(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let after = match headers.get("last-event-id") {
        None => 0,
        Some(value) => value.to_str().ok().and_then(|t| t.trim().parse::<u64>().ok()).ok_or_else(|| {
            ApiError::bad_request(format!(
                "GET /v1/runs/{id}/events: `Last-Event-ID` must be the seq of an event (a whole number)"
            ))
        })?,
    };
    let Events { past, live, last } = client(&state, &headers)?.events(&id, after).await?;
    let past = futures::stream::iter(past.iter().map(sse).collect::<Vec<_>>());
    let live = futures::stream::unfold((live, last), |(feed, last)| async move {
        let mut feed = feed?;
        loop {
            let event = feed.recv().await?;
            if event.seq > last {
                let seq = event.seq;
                return Some((sse(&event), (Some(feed), seq)));
            }
        }
    });
    let body = past.chain(live);
    Ok(Sse::new(body).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))).into_response())
}
