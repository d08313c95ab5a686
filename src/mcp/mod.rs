//! The Model Context Protocol face of a served host (`swarm mcp FILE`, docs/mcp.md): a model's
//! client drives the host's swarms over stdio with the tools below. Each tool is one of the
//! API's operations ([`crate::server::Client`]), with the owner's token, so the MCP face and
//! the HTTP API cannot disagree: same gate, same errors (`{error: {kind, message}}` as a tool
//! error), same journal reads.
//!
//! The face runs on a thread of its own (the SDK's handlers are `Send`; the engine is not) and
//! reaches the engine through the desk, as the HTTP server does.

mod check;

use std::time::Duration;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolResult, Implementation, ProgressNotificationParam, RequestMetaObject, ServerCapabilities, ServerConfig,
};
use rmcp::schemars::{self, JsonSchema};
use rmcp::{Peer, RoleServer, ServerHandler, tool, tool_handler, tool_router};
use serde::Deserialize;
use serde_json::json;

use crate::engine::EventKind;
use crate::server::{ApiError, Client, Events};
use crate::value::Value;

/// The longest `start_run` waits for its run to end.
pub const MAX_WAIT_MS: u64 = 600_000;

/// The tools, on one caller of the API.
#[derive(Clone)]
pub struct McpFace {
    client: Client,
    load_timeout: Duration,
    tool_router: ToolRouter<McpFace>,
}

#[derive(Deserialize, JsonSchema)]
struct CheckArgs {
    /// The Lua source of a blueprint module (it returns `swarm.blueprint({...})`).
    source: String,
    /// The file name diagnostics are reported under (default `blueprint.lua`).
    name: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
struct StartArgs {
    /// An exposed blueprint's id (see list_blueprints), or a JSON blueprint.
    blueprint: serde_json::Value,
    /// The run's initial ctx (a JSON object; default {}).
    input: Option<serde_json::Value>,
    /// Wait up to this many milliseconds for the run to end, and answer its final ctx; progress
    /// notifications report each finished attempt meanwhile. 0 (the default) answers at once.
    wait_ms: Option<u64>,
}

#[derive(Deserialize, JsonSchema)]
struct RunArgs {
    /// The run's id (`r-…`).
    run_id: String,
}

#[derive(Deserialize, JsonSchema)]
struct EventsArgs {
    /// The run's id (`r-…`).
    run_id: String,
    /// Only the events after this seq (default 0: all of them).
    after: Option<u64>,
}

#[derive(Deserialize, JsonSchema)]
struct SignalArgs {
    /// The run's id (`r-…`).
    run_id: String,
    /// The signal's name, as the run's wait names it.
    signal: String,
    /// The signal's value (default null).
    value: Option<serde_json::Value>,
}

#[derive(Deserialize, JsonSchema)]
struct QuestionsArgs {
    /// Only the questions of this operator seat (default: every seat).
    seat: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
struct AnswerArgs {
    /// The question's id, as pending_questions lists it (`RUN.SIGNAL`).
    question_id: String,
    /// The answer: the value the question's wait returns.
    value: serde_json::Value,
}

/// A tool's answer: the value as structured content, or the API's error as a tool error.
fn answer(result: Result<serde_json::Value, ApiError>) -> CallToolResult {
    match result {
        Ok(value @ serde_json::Value::Object(_)) => CallToolResult::structured(value),
        Ok(other) => CallToolResult::structured(json!({ "value": other })),
        Err(e) => {
            let mut error = json!({ "kind": e.kind, "message": e.message });
            if let Some(errors) = e.errors {
                error["errors"] = errors;
            }
            CallToolResult::structured_error(json!({ "error": error }))
        }
    }
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::bad_request(message)
}

#[tool_router]
impl McpFace {
    /// The face for `client`; `load_timeout` bounds each `check_blueprint`'s load.
    pub fn new(client: Client, load_timeout: Duration) -> McpFace {
        McpFace { client, load_timeout, tool_router: Self::tool_router() }
    }

    #[tool(description = "The blueprints the served script exposes: id, agents, and the flow as a Mermaid graph.")]
    async fn list_blueprints(&self) -> CallToolResult {
        answer(self.client.blueprints().await.map(|list| json!({ "blueprints": list })))
    }

    #[tool(
        description = "Compiles a blueprint's Lua source without running it: every diagnostic with its file:line, and the warnings."
    )]
    async fn check_blueprint(&self, Parameters(args): Parameters<CheckArgs>) -> CallToolResult {
        let name = args.name.unwrap_or_else(|| "blueprint.lua".into());
        let timeout = self.load_timeout;
        let checked = tokio::task::spawn_blocking(move || check::check(&args.source, &name, timeout)).await;
        let internal = |e: tokio::task::JoinError| {
            ApiError::new(axum::http::StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
        };
        answer(checked.map_err(internal).and_then(|r| r))
    }

    #[tool(
        description = "Starts a run of an exposed blueprint (or a JSON blueprint) with an input ctx. With wait_ms, waits for it to end (progress notifications meanwhile) and answers its status and final ctx."
    )]
    async fn start_run(
        &self,
        Parameters(args): Parameters<StartArgs>,
        meta: RequestMetaObject,
        peer: Peer<RoleServer>,
    ) -> CallToolResult {
        let input = match args.input {
            None | Some(serde_json::Value::Null) => Value::object(),
            Some(v @ serde_json::Value::Object(_)) => Value::from(v),
            Some(_) => return answer(Err(bad("start_run: `input` must be a JSON object (the initial ctx)"))),
        };
        let wait_ms = args.wait_ms.unwrap_or(0);
        if wait_ms > MAX_WAIT_MS {
            return answer(Err(bad(format!("start_run: `wait_ms` is at most {MAX_WAIT_MS}"))));
        }
        let run_id = match self.client.start(args.blueprint, input).await {
            Ok(id) => id,
            Err(e) => return answer(Err(e)),
        };
        if wait_ms == 0 {
            return answer(Ok(json!({ "run_id": run_id, "status": "running" })));
        }
        let progress = meta.get_progress_token();
        answer(self.wait_for(&run_id, Duration::from_millis(wait_ms), progress, &peer).await)
    }

    #[tool(description = "A run as the journal has it: status, input, ctx, error, its steps, waits and signals.")]
    async fn run_status(&self, Parameters(args): Parameters<RunArgs>) -> CallToolResult {
        answer(self.client.run(&args.run_id).await)
    }

    #[tool(description = "A run's events so far, in order (those after seq `after`, if given).")]
    async fn run_events(&self, Parameters(args): Parameters<EventsArgs>) -> CallToolResult {
        let events = self.client.events(&args.run_id, args.after.unwrap_or(0)).await;
        answer(events.map(|e| json!({ "events": e.past, "in_flight": e.live.is_some() })))
    }

    #[tool(description = "Cancels a run in flight.")]
    async fn cancel_run(&self, Parameters(args): Parameters<RunArgs>) -> CallToolResult {
        answer(self.client.cancel(&args.run_id).await.map(|()| json!({ "run_id": args.run_id, "cancelled": true })))
    }

    #[tool(description = "Resumes an interrupted run from the journal; its finished steps are not run again.")]
    async fn resume_run(&self, Parameters(args): Parameters<RunArgs>) -> CallToolResult {
        answer(self.client.resume(&args.run_id).await)
    }

    #[tool(
        description = "Sends a signal with a JSON value to a run: its wait on that name returns the value (buffered if the wait is not reached yet)."
    )]
    async fn signal_run(&self, Parameters(args): Parameters<SignalArgs>) -> CallToolResult {
        let value = args.value.map(Value::from).unwrap_or(Value::Null);
        answer(self.client.signal(&args.run_id, &args.signal, value).await)
    }

    #[tool(
        description = "The open questions of operator seats (a person's or a model's turn in a flow): id, run, seat, the question and its prompt."
    )]
    async fn pending_questions(&self, Parameters(args): Parameters<QuestionsArgs>) -> CallToolResult {
        answer(self.client.questions(args.seat.as_deref()).await.map(|open| json!({ "questions": open })))
    }

    #[tool(description = "Answers an open question (see pending_questions) with a JSON value.")]
    async fn answer_question(&self, Parameters(args): Parameters<AnswerArgs>) -> CallToolResult {
        answer(self.client.answer(None, &args.question_id, Value::from(args.value)).await)
    }
}

impl McpFace {
    /// Follows run `run_id` until it ends or `wait` passes, telling the client of each finished
    /// attempt; then the run (from the journal, else from its last event).
    async fn wait_for(
        &self,
        run_id: &str,
        wait: Duration,
        progress: Option<rmcp::model::ProgressToken>,
        peer: &Peer<RoleServer>,
    ) -> Result<serde_json::Value, ApiError> {
        let Events { past, mut live, last } = self.client.events(run_id, 0).await?;
        let deadline = tokio::time::Instant::now() + wait;
        let mut finished = 0u32;
        let mut ended = None;
        let mut seen = last;
        let note = async |event: &crate::engine::Event, finished: &mut u32| {
            if let EventKind::AttemptFinished { agent, attempt, status, .. } = &event.kind {
                *finished += 1;
                if let Some(token) = &progress {
                    let message = format!("{agent} attempt {attempt}: {}", status.name());
                    let param =
                        ProgressNotificationParam::new(token.clone(), f64::from(*finished)).with_message(message);
                    let _ = peer.notify_progress(param).await;
                }
            }
        };
        for event in &past {
            note(event, &mut finished).await;
            if let EventKind::RunFinished { status, .. } = &event.kind {
                ended = Some(status.name());
            }
        }
        while ended.is_none() {
            let Some(feed) = live.as_mut() else { break };
            let event = match tokio::time::timeout_at(deadline, feed.recv()).await {
                Ok(Some(event)) => event,
                Ok(None) | Err(_) => break,
            };
            if event.seq <= seen {
                continue;
            }
            seen = event.seq;
            note(&event, &mut finished).await;
            if let EventKind::RunFinished { status, .. } = &event.kind {
                ended = Some(status.name());
            }
        }
        match self.client.run(run_id).await {
            Ok(run) => Ok(run),
            // A host that journals nothing: what the events said.
            Err(_) => Ok(json!({ "id": run_id, "status": ended.unwrap_or("running") })),
        }
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for McpFace {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("swarm", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "Drives the agent swarms of a luaswarm host: list_blueprints, then start_run (with wait_ms to get the \
                 final ctx); answer operator seats with pending_questions and answer_question; check_blueprint \
                 compiles Lua source and reports diagnostics with file:line.",
            )
    }
}
