//! The engine's side of the API. The engine, the host VM and the runs live on the host thread
//! (Rc/RefCell, not Send); the HTTP server runs on a thread of its own. A handler sends a
//! [`Call`] over a channel and awaits its answer on a oneshot; the desk, a task on the host
//! thread's `LocalSet`, does each call at once (no call awaits on the host thread), so a slow
//! client, a long-poll or an SSE stream never holds the engine. A run started here belongs to
//! the engine: the request that started it may go away.

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use axum::http::StatusCode;
use mlua::Lua;
use tokio::sync::{mpsc, oneshot};

use super::error::ApiError;
use crate::blueprint::Blueprint;
use crate::blueprint::compile::{CompiledBlueprint, Compiler};
use crate::blueprint::graph::mermaid;
use crate::engine::spawner::SubTaskError;
use crate::engine::wait::PendingWait;
use crate::engine::{Auth, Engine, Event};
use crate::gate::Verb;
use crate::host::engine_api::{resume_run, start_run};
use crate::store::journal::tokens::Ledger;
use crate::value::Value;

/// What a handler asks of the engine, with the bearer token it presented.
pub struct Call {
    /// The token of the request's `Authorization: Bearer` header.
    pub(crate) token: String,
    pub(crate) op: Op,
    pub(crate) reply: oneshot::Sender<Result<Answer, ApiError>>,
}

/// One engine operation of a route.
pub(crate) enum Op {
    /// `GET /v1/blueprints`.
    Blueprints,
    /// `POST /v1/runs`: an exposed name, or an inline JSON blueprint.
    Start { blueprint: serde_json::Value, input: Value },
    /// `GET /v1/runs`, `GET /v1/runs/{id}`: the caller may read; the journal is then in step.
    Read,
    /// `POST /v1/runs/{id}/cancel`.
    Cancel { run_id: String },
    /// `POST /v1/runs/{id}/resume`.
    Resume { run_id: String },
    /// `GET /v1/runs/{id}/events`.
    Subscribe { run_id: String },
    /// `POST /v1/runs/{id}/signals/{name}`.
    Signal { run_id: String, name: String, value: Value },
    /// `GET /v1/operators/{name}/questions`: the seat's open questions; `follow` also opens the
    /// engine's event feed, so the stream knows when to look again.
    Questions { seat: Option<String>, follow: bool },
    /// `POST /v1/operators/{name}/answers/{question_id}`.
    AnswerQuestion { seat: Option<String>, question: String, value: Value },
    /// `POST /v1/work/claim`: answered when an attempt is claimed or the wait is over.
    Claim { queues: Vec<String>, wait: Duration },
    /// `GET /v1/tasks/{id}/prompt`.
    Prompt { task_id: String },
    /// `GET /v1/outputs/{ref}`.
    Output { id: String },
    /// `POST /v1/tasks/{id}/events`.
    Emit { task_id: String, events: Vec<Value> },
    /// `POST /v1/tasks/{id}/result`.
    Result { task_id: String, value: Value, ok: bool },
    /// `POST /v1/tasks/{id}/dispatch`: answered when the sub-task settles.
    Dispatch { task_id: String, agent: String, input: Value },
}

/// The desk's answer.
pub(crate) enum Answer {
    Json(StatusCode, serde_json::Value),
    NoContent,
    /// `Read`: where the journal is (none with `--state memory`).
    Journal {
        path: Option<PathBuf>,
    },
    /// `Signal` to a run this process does not have: the caller may answer queries, and the
    /// signal goes through the journal (to the process that has the run, or to whoever resumes
    /// it).
    SignalJournal {
        path: PathBuf,
    },
    /// `Questions`: the seat's open questions, and the event feed if asked for.
    Questions {
        open: Vec<serde_json::Value>,
        events: Option<tokio::sync::broadcast::Receiver<Event>>,
    },
    /// `Subscribe`: the run's events in the engine's trace and its live feed (taken in the same
    /// turn of the host thread, so nothing falls between them), and the journal to read the
    /// older ones from. `live` is `None` for a run no longer in flight.
    Feed {
        trace: Vec<Event>,
        live: Option<mpsc::UnboundedReceiver<Event>>,
        journal: Option<PathBuf>,
    },
}

/// What the served script exposed, and the VM its runs call back into.
#[derive(Clone)]
pub struct Catalogue {
    /// The live version's VM: its externs and inline agents serve the runs started here.
    pub lua: Lua,
    /// Compiles inline JSON blueprints (no Lua agents can be named in JSON).
    pub compiler: Compiler,
    /// `swarm.expose`'s blueprints, by name.
    pub exposed: Vec<(String, Rc<CompiledBlueprint>)>,
}

/// The desk's view of the served script; the serving loop replaces it at each reload.
pub type CatalogueCell = Rc<RefCell<Option<Catalogue>>>;

/// Serves calls until every sender is gone.
pub async fn serve_calls(engine: Engine, catalogue: CatalogueCell, mut calls: mpsc::UnboundedReceiver<Call>) {
    // Tokens `swarm token mint` issued for this journal are taken in by the gate (see
    // `TokenLedger`): looked up on first use, and again at each use for a revocation.
    if let Some(path) = journal_path(&engine) {
        match Ledger::open(&path) {
            Ok(ledger) => engine.set_token_ledger(Some(Box::new(ledger))),
            Err(e) => tracing::warn!("tokens minted by `swarm token mint` will not be taken: {e}"),
        }
    }
    // The calls that wait run beside the desk, which goes on answering the others; they end
    // with it (their requests are then answered 503).
    let mut waiting = tokio::task::JoinSet::new();
    while let Some(call) = calls.recv().await {
        while waiting.try_join_next().is_some() {}
        let Call { token, op, reply } = call;
        match op {
            Op::Claim { queues, wait } => {
                waiting.spawn_local(claim(engine.clone(), token, queues, wait, reply));
            }
            Op::Dispatch { task_id, agent, input } => {
                let engine = engine.clone();
                waiting.spawn_local(async move {
                    let outcome = engine.dispatch_for(Auth::Encoded(&token), &task_id, &agent, input).await;
                    let _ = reply.send(dispatched(outcome));
                });
            }
            op => {
                let answer = handle(&engine, &catalogue, &token, op);
                // The client may have gone; the operation stands either way.
                let _ = reply.send(answer);
            }
        }
    }
}

/// A claim: the attempt as JSON, or no content once the wait is over. An attempt claimed for a
/// request that went away meanwhile is offered again at once, not left to its lease.
async fn claim(
    engine: Engine,
    token: String,
    queues: Vec<String>,
    wait: Duration,
    reply: oneshot::Sender<Result<Answer, ApiError>>,
) {
    match engine.claim_work(Auth::Encoded(&token), &queues, wait).await {
        Ok(Some(claimed)) => {
            let body = serde_json::to_value(&claimed.claim).unwrap_or_default();
            if reply.send(Ok(Answer::Json(StatusCode::OK, body))).is_err() {
                engine.unclaim(claimed);
            }
        }
        Ok(None) => {
            let _ = reply.send(Ok(Answer::NoContent));
        }
        Err(e) => {
            let _ = reply.send(Err(ApiError::engine(&e)));
        }
    }
}

/// A sub-task's outcome: `{ok: true, value}`, or `{ok: false, error}` for a sub-task that ran
/// and failed; a refusal to start it is the refusal's error.
fn dispatched(outcome: Result<Value, SubTaskError>) -> Result<Answer, ApiError> {
    match outcome {
        Ok(value) => Ok(Answer::Json(StatusCode::OK, serde_json::json!({ "ok": true, "value": value }))),
        Err(e) => match e.refused {
            Some(kind) => Err(ApiError::refusal(kind, e.error.message)),
            None => {
                let mut error = serde_json::json!({ "kind": e.error.kind.name(), "message": e.error.message });
                if let Some(value) = &e.error.value {
                    error["value"] = serde_json::to_value(value).unwrap_or_default();
                }
                Ok(Answer::Json(StatusCode::OK, serde_json::json!({ "ok": false, "error": error })))
            }
        },
    }
}

fn verify(engine: &Engine, token: &str, verb: Verb) -> Result<(), ApiError> {
    engine.verify(token, verb, None).map(drop).map_err(|e| ApiError::engine(&e))
}

fn journal_path(engine: &Engine) -> Option<PathBuf> {
    engine.config().journal.as_ref().and_then(|j| j.0.location().map(PathBuf::from))
}

/// Lets the journal's writer catch up, so a read of the file sees what the engine did.
fn sync_journal(engine: &Engine) -> Result<(), ApiError> {
    match &engine.config().journal {
        Some(journal) => journal.0.sync().map_err(|e| {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "journal", format!("the journal cannot be read: {e}"))
        }),
        None => Ok(()),
    }
}

fn live_catalogue(catalogue: &CatalogueCell) -> Result<Catalogue, ApiError> {
    catalogue.borrow().clone().ok_or_else(|| {
        ApiError::conflict("the served script has no live version (its first load failed; fix it and save)")
    })
}

pub(crate) fn handle(engine: &Engine, catalogue: &CatalogueCell, token: &str, op: Op) -> Result<Answer, ApiError> {
    match op {
        Op::Blueprints => {
            verify(engine, token, Verb::ReadTaskState)?;
            let exposed = catalogue.borrow().as_ref().map(|c| c.exposed.clone()).unwrap_or_default();
            let list: Vec<serde_json::Value> = exposed
                .iter()
                .map(|(name, compiled)| {
                    let bp = &compiled.blueprint;
                    serde_json::json!({
                        "id": name,
                        "blueprint": bp.id,
                        "agents": bp.agents.iter().map(|a| serde_json::json!({"name": a.name, "kind": a.kind})).collect::<Vec<_>>(),
                        "graph": mermaid(bp),
                        "flow": serde_json::to_value(&bp.flow).unwrap_or_default(),
                    })
                })
                .collect();
            Ok(Answer::Json(StatusCode::OK, serde_json::Value::Array(list)))
        }
        Op::Start { blueprint, input } => {
            verify(engine, token, Verb::StartTask)?;
            let live = live_catalogue(catalogue)?;
            let compiled = match &blueprint {
                serde_json::Value::String(name) => {
                    live.exposed.iter().find(|(n, _)| n == name).map(|(_, c)| c.clone()).ok_or_else(|| {
                        let names: Vec<&str> = live.exposed.iter().map(|(n, _)| n.as_str()).collect();
                        ApiError::not_found(format!(
                            "POST /v1/runs: `blueprint` names no exposed blueprint `{name}` (exposed: {})",
                            if names.is_empty() { "none".to_string() } else { names.join(", ") }
                        ))
                    })?
                }
                serde_json::Value::Object(_) => Rc::new(compile_inline(&live.compiler, blueprint)?),
                _ => {
                    return Err(ApiError::bad_request(
                        "POST /v1/runs: `blueprint` must be an exposed blueprint's name (a string) or a JSON blueprint (an object)",
                    ));
                }
            };
            let run = start_run(&live.lua, engine, compiled, input);
            Ok(Answer::Json(StatusCode::CREATED, serde_json::json!({ "run_id": &*run.id })))
        }
        Op::Read => {
            verify(engine, token, Verb::ReadTaskState)?;
            sync_journal(engine)?;
            Ok(Answer::Journal { path: journal_path(engine) })
        }
        Op::Cancel { run_id } => {
            verify(engine, token, Verb::CancelTask)?;
            if engine.cancel_run(&run_id) {
                Ok(Answer::NoContent)
            } else {
                Err(ApiError::conflict(format!("POST /v1/runs/{run_id}/cancel: run {run_id} is not in flight")))
            }
        }
        Op::Resume { run_id } => {
            verify(engine, token, Verb::StartTask)?;
            let live = live_catalogue(catalogue)?;
            let Some(path) = journal_path(engine) else {
                return Err(ApiError::conflict(
                    "POST /v1/runs/{id}/resume: this server journals nothing (--state memory)",
                ));
            };
            sync_journal(engine)?;
            let row = crate::store::journal::Reader::open(&path)
                .and_then(|r| r.run(&run_id))
                .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "journal", e.to_string()))?;
            let Some(row) = row else {
                return Err(ApiError::not_found(format!(
                    "POST /v1/runs/{run_id}/resume: no run {run_id} in the journal"
                )));
            };
            let compiled = live
                .exposed
                .iter()
                .find(|(_, c)| c.blueprint.id == row.blueprint)
                .map(|(_, c)| c.clone())
                .ok_or_else(|| {
                ApiError::conflict(format!(
                    "POST /v1/runs/{run_id}/resume: blueprint `{}` of run {run_id} is not exposed by the served script",
                    row.blueprint
                ))
            })?;
            match resume_run(&live.lua, engine, &run_id, compiled) {
                Ok(Ok(run)) => Ok(Answer::Json(StatusCode::OK, serde_json::json!({ "run_id": &*run.id }))),
                Ok(Err((kind, message))) => {
                    Err(ApiError::new(StatusCode::CONFLICT, "conflict", format!("{kind}: {message}")))
                }
                Err(e) => Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "resume", e.to_string())),
            }
        }
        Op::Signal { run_id, name, value } => {
            if engine.running().iter().any(|r| **r == *run_id) {
                let reached =
                    engine.signal_run(Auth::Encoded(token), &run_id, &name, value).map_err(|e| ApiError::engine(&e))?;
                return Ok(Answer::Json(
                    StatusCode::ACCEPTED,
                    serde_json::json!({ "run_id": run_id, "signal": name, "delivered": reached > 0, "waits": reached }),
                ));
            }
            verify(engine, token, Verb::AnswerQuery)?;
            match journal_path(engine) {
                Some(path) => Ok(Answer::SignalJournal { path }),
                None => Err(ApiError::not_found(format!(
                    "POST /v1/runs/{run_id}/signals/{name}: no run {run_id} in flight (this server journals nothing)"
                ))),
            }
        }
        Op::Questions { seat, follow } => {
            // Checked at every look, so a stream whose token is revoked or expires ends.
            verify(engine, token, Verb::AttachSession)?;
            let events = if follow { Some(engine.follow_all().map_err(|e| ApiError::engine(&e))?) } else { None };
            let open =
                questions_of(engine, seat.as_deref()).into_iter().map(|(id, q)| question_json(&id, &q)).collect();
            Ok(Answer::Questions { open, events })
        }
        Op::AnswerQuestion { seat, question, value } => {
            let Some((_, wait)) = questions_of(engine, seat.as_deref()).into_iter().find(|(id, _)| *id == question)
            else {
                verify(engine, token, Verb::AnswerQuery)?;
                return Err(ApiError::not_found(match &seat {
                    Some(seat) => format!(
                        "POST /v1/operators/{seat}/answers/{question}: seat {seat} has no open question {question}"
                    ),
                    None => format!("no open question {question}"),
                }));
            };
            let reached = engine
                .signal_run(Auth::Encoded(token), &wait.run_id, &wait.signal, value)
                .map_err(|e| ApiError::engine(&e))?;
            Ok(Answer::Json(
                StatusCode::ACCEPTED,
                serde_json::json!({ "question_id": question, "run_id": &*wait.run_id, "delivered": reached > 0 }),
            ))
        }
        Op::Prompt { task_id } => {
            let prompt = engine.fetch_prompt(Auth::Encoded(token), &task_id).map_err(|e| ApiError::engine(&e))?;
            let mut body = serde_json::json!({
                "task_id": &*prompt.task_id,
                "agent": &*prompt.agent,
                "attempt": prompt.attempt,
                "input": prompt.input,
                "directives": prompt.directives,
            });
            if let Some(system) = prompt.system_prompt {
                body["system"] = system.into();
            }
            Ok(Answer::Json(StatusCode::OK, body))
        }
        Op::Output { id } => {
            let value = engine.fetch_output(Auth::Encoded(token), &id).map_err(|e| ApiError::engine(&e))?;
            Ok(Answer::Json(StatusCode::OK, serde_json::to_value(&value).unwrap_or_default()))
        }
        Op::Emit { task_id, events } => {
            if events.is_empty() {
                verify(engine, token, Verb::EmitOutput)?;
            }
            for event in events {
                engine.emit_for_task(Auth::Encoded(token), &task_id, event).map_err(|e| ApiError::engine(&e))?;
            }
            Ok(Answer::NoContent)
        }
        Op::Result { task_id, value, ok } => {
            engine.post_result(Auth::Encoded(token), &task_id, value, ok).map_err(|e| ApiError::engine(&e))?;
            Ok(Answer::NoContent)
        }
        Op::Claim { .. } | Op::Dispatch { .. } => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "a waiting call reached the desk's quick path",
        )),
        Op::Subscribe { run_id } => {
            let journal = journal_path(engine);
            if engine.running().iter().any(|r| **r == *run_id) {
                let live = engine.subscribe_run(Auth::Encoded(token), &run_id).map_err(|e| ApiError::engine(&e))?;
                let trace = engine.trace(Some(&run_id));
                sync_journal(engine)?;
                Ok(Answer::Feed { trace, live: Some(live), journal })
            } else {
                verify(engine, token, Verb::SubscribeEvents)?;
                sync_journal(engine)?;
                Ok(Answer::Feed { trace: engine.trace(Some(&run_id)), live: None, journal })
            }
        }
    }
}

/// The open questions of operator seat `seat` (of every seat for `None`), by question id: a question is a wait whose
/// signal is the seat's (`seat` or `seat.<hex>`), and its id is `<run id>.<signal>`, since two
/// runs of one blueprint ask under the same signal name.
fn questions_of(engine: &Engine, seat: Option<&str>) -> Vec<(String, PendingWait)> {
    let of_seat = |w: &PendingWait| match seat {
        Some(seat) => *w.signal == *seat || w.signal.strip_prefix(seat).is_some_and(|rest| rest.starts_with('.')),
        None => true,
    };
    engine
        .pending_waits()
        .into_iter()
        .filter(|w| w.question.is_some())
        .filter(of_seat)
        .map(|w| (format!("{}.{}", w.run_id, w.signal), w))
        .collect()
}

fn question_json(id: &str, wait: &PendingWait) -> serde_json::Value {
    let mut value = serde_json::to_value(wait).unwrap_or_default();
    value["id"] = serde_json::Value::from(id);
    value
}

/// An inline JSON blueprint, compiled; 400 for JSON that is not a blueprint, 422 with the list
/// for one that does not compile.
fn compile_inline(compiler: &Compiler, json: serde_json::Value) -> Result<CompiledBlueprint, ApiError> {
    let bp: Blueprint = serde_json::from_value(json)
        .map_err(|e| ApiError::bad_request(format!("POST /v1/runs: `blueprint` is not a blueprint: {e}")))?;
    compiler.compile(Rc::new(bp), None).map_err(|errors| {
        let mut error = ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "compile", errors.to_string());
        error.errors = serde_json::to_value(&errors.0).ok();
        error
    })
}
