//! The API's operations for one caller's token, whatever carries them: the HTTP routes and the
//! MCP face (`swarm mcp`) both call these, so each operation has one implementation. Each goes
//! to the desk on the host thread, and reads of the journal run off the async threads.

use std::collections::BTreeMap;
use std::path::PathBuf;

use axum::http::StatusCode;
use tokio::sync::{mpsc, oneshot};

use super::desk::{Answer, Call, Op};
use super::error::ApiError;
use crate::engine::Event;
use crate::store::journal::Reader;
use crate::store::journal::signals::{self, SignalError};
use crate::value::Value;

/// A caller of the API: the way to the desk and the token every call presents.
#[derive(Clone)]
pub struct Client {
    calls: mpsc::UnboundedSender<Call>,
    token: String,
}

/// A run's events as a subscriber gets them: those past (journal and trace merged by seq, after
/// the seq asked for) and, for a run still in flight, the live feed of those after them.
pub struct Events {
    /// The events up to now, in seq order.
    pub past: Vec<Event>,
    /// The live feed, for a run in flight.
    pub live: Option<mpsc::UnboundedReceiver<Event>>,
    /// The seq the live feed must go past (the last one in `past`, or the one asked for).
    pub last: u64,
}

impl Client {
    /// A caller presenting `token`.
    pub fn new(calls: mpsc::UnboundedSender<Call>, token: String) -> Client {
        Client { calls, token }
    }

    /// Does `op` at the desk.
    pub(crate) async fn call(&self, op: Op) -> Result<Answer, ApiError> {
        let (reply, answer) = oneshot::channel();
        self.calls.send(Call { token: self.token.clone(), op, reply }).map_err(|_| ApiError::unavailable())?;
        answer.await.map_err(|_| ApiError::unavailable())?
    }

    /// A JSON answer of the desk, or its error.
    async fn json(&self, op: Op) -> Result<serde_json::Value, ApiError> {
        match self.call(op).await? {
            Answer::Json(_, value) => Ok(value),
            Answer::NoContent => Ok(serde_json::Value::Null),
            _ => Err(unexpected()),
        }
    }

    /// The exposed blueprints.
    pub async fn blueprints(&self) -> Result<serde_json::Value, ApiError> {
        self.json(Op::Blueprints).await
    }

    /// Starts a run of `blueprint` (an exposed name, or a JSON blueprint): its id.
    pub async fn start(&self, blueprint: serde_json::Value, input: Value) -> Result<String, ApiError> {
        let answer = self.json(Op::Start { blueprint, input }).await?;
        answer["run_id"].as_str().map(str::to_string).ok_or_else(unexpected)
    }

    /// The journal a read may open, or why there is none.
    async fn journal(&self, route: &str) -> Result<PathBuf, ApiError> {
        match self.call(Op::Read).await? {
            Answer::Journal { path: Some(path) } => Ok(path),
            _ => Err(ApiError::conflict(format!(
                "{route}: this server journals nothing (started with --state memory); runs are listed from the journal"
            ))),
        }
    }

    /// Every run in the journal, as `swarm runs list --json`.
    pub async fn runs(&self) -> Result<serde_json::Value, ApiError> {
        let path = self.journal("GET /v1/runs").await?;
        let runs = read(path, |reader| reader.runs().map_err(journal_error)).await?;
        serde_json::to_value(&runs).map_err(journal_error)
    }

    /// One run with its steps, waits and signals, as `swarm runs show ID --json`.
    pub async fn run(&self, id: &str) -> Result<serde_json::Value, ApiError> {
        let path = self.journal("GET /v1/runs/{id}").await?;
        let id = id.to_string();
        read(path, move |reader| {
            let detail = reader.run_detail(&id).map_err(journal_error)?;
            detail.ok_or_else(|| ApiError::not_found(format!("GET /v1/runs/{id}: no run {id} in the journal")))
        })
        .await
    }

    /// Cancels a run in flight.
    pub async fn cancel(&self, id: &str) -> Result<(), ApiError> {
        self.json(Op::Cancel { run_id: id.to_string() }).await.map(drop)
    }

    /// Resumes an interrupted run: `{run_id}`.
    pub async fn resume(&self, id: &str) -> Result<serde_json::Value, ApiError> {
        self.json(Op::Resume { run_id: id.to_string() }).await
    }

    /// Signals a run: delivered here, or through the journal to the process that has the run.
    pub async fn signal(&self, id: &str, name: &str, value: Value) -> Result<serde_json::Value, ApiError> {
        let route = format!("POST /v1/runs/{id}/signals/{name}");
        let op = Op::Signal { run_id: id.to_string(), name: name.to_string(), value: value.clone() };
        match self.call(op).await? {
            Answer::Json(_, value) => Ok(value),
            Answer::SignalJournal { path } => {
                let (id, name) = (id.to_string(), name.to_string());
                read(path.clone(), move |_| {
                    let sent = signals::send(&path, &id, &name, &value).map_err(|e| match e {
                        SignalError::NoSuchRun(_) => ApiError::not_found(format!("{route}: {e}")),
                        SignalError::NotWaiting { .. } => {
                            ApiError::new(StatusCode::CONFLICT, e.kind(), format!("{route}: {e}"))
                        }
                        SignalError::Journal(e) => journal_error(e),
                    })?;
                    Ok(serde_json::json!({
                        "run_id": id,
                        "signal": name,
                        "delivered": false,
                        "journaled": true,
                        "status": sent.status,
                    }))
                })
                .await
            }
            _ => Err(unexpected()),
        }
    }

    /// A run's events after seq `after`, and the live feed if it is in flight.
    pub async fn events(&self, id: &str, after: u64) -> Result<Events, ApiError> {
        let Answer::Feed { trace, live, journal } = self.call(Op::Subscribe { run_id: id.to_string() }).await? else {
            return Err(unexpected());
        };
        let journaled = match journal {
            Some(path) => {
                let run_id = id.to_string();
                read(path, move |reader| {
                    if reader.run(&run_id).map_err(journal_error)?.is_none() {
                        return Ok(None);
                    }
                    reader.events(&run_id).map(Some).map_err(journal_error)
                })
                .await?
            }
            None => None,
        };
        if live.is_none() && journaled.is_none() && trace.is_empty() {
            return Err(ApiError::not_found(format!("GET /v1/runs/{id}/events: no run {id}")));
        }
        let mut past: BTreeMap<u64, Event> = BTreeMap::new();
        for event in journaled.unwrap_or_default().into_iter().chain(trace) {
            if event.seq > after {
                past.entry(event.seq).or_insert(event);
            }
        }
        let last = past.keys().next_back().copied().unwrap_or(after).max(after);
        Ok(Events { past: past.into_values().collect(), live, last })
    }

    /// The open questions of seat `seat`, or of every seat.
    pub async fn questions(&self, seat: Option<&str>) -> Result<Vec<serde_json::Value>, ApiError> {
        match self.call(Op::Questions { seat: seat.map(str::to_string), follow: false }).await? {
            Answer::Questions { open, .. } => Ok(open),
            _ => Err(unexpected()),
        }
    }

    /// Answers question `question` (of seat `seat`, if given) with `value`.
    pub async fn answer(
        &self,
        seat: Option<&str>,
        question: &str,
        value: Value,
    ) -> Result<serde_json::Value, ApiError> {
        self.json(Op::AnswerQuestion { seat: seat.map(str::to_string), question: question.to_string(), value }).await
    }
}

fn unexpected() -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "unexpected answer")
}

fn journal_error(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "journal", e.to_string())
}

/// Reads the journal off the async threads (SQLite blocks).
async fn read<T: Send + 'static>(
    path: PathBuf,
    f: impl FnOnce(&Reader) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(move || {
        let reader = Reader::open(&path).map_err(journal_error)?;
        f(&reader)
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
}
