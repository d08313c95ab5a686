//! `swarm mcp FILE` driven as a model's client drives it, with the MCP SDK's client side over
//! the binary's stdio: initialize, the tools and their schemas, a run that asks an operator
//! question answered through the tools while `start_run` waits (with progress notifications),
//! diagnostics from `check_blueprint`, and the API's errors as tool errors.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rmcp::model::{
    CallToolRequest, CallToolRequestParams, CallToolResult, ClientRequest, ProgressNotificationParam, ServerResult,
};
use rmcp::service::{NotificationContext, PeerRequestOptions, RunningService};
use rmcp::transport::TokioChildProcess;
use rmcp::{ClientHandler, RoleClient, ServiceExt};
use serde_json::{Value, json};

use crate::util::DEADLINE;
use crate::util::bin::write;

/// A client that keeps the progress messages it is sent.
#[derive(Clone, Default)]
struct Watcher {
    progress: Arc<Mutex<Vec<String>>>,
}

impl ClientHandler for Watcher {
    async fn on_progress(&self, params: ProgressNotificationParam, _cx: NotificationContext<RoleClient>) {
        self.progress.lock().unwrap().push(params.message.unwrap_or_default());
    }
}

const SCRIPT: &str = r#"local swarm = require("swarm")
local F = swarm.flow
swarm.expose(swarm.blueprint({
  id = "signoff",
  operators = { { name = "reviewer", kind = "remote" } },
  agents = {
    draft = function(input) return "pay " .. tostring(input.amount) end,
    sign_off = {
      kind = "operator",
      spec = { operator_ref = "reviewer" },
      profile = { system_prompt = "Approve {{ amount }} EUR?" },
    },
  },
  flow = F.seq({
    F.step({ agent = "draft", input = F.p("$"), out = "$.draft" }),
    F.step({ agent = "sign_off", input = F.p("$"), out = "$.verdict" }),
  }),
}))
-- A script's print must not reach the protocol's stdout.
print("loaded")
"#;

async fn connect(dir: &Path, watcher: Watcher) -> RunningService<RoleClient, Watcher> {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_swarm"));
    command.current_dir(dir).args(["mcp", "s.lua"]);
    let stderr = std::fs::File::create(dir.join("stderr.txt")).unwrap();
    let (transport, _) = TokioChildProcess::builder(command).stderr(stderr).spawn().unwrap();
    watcher.serve(transport).await.unwrap_or_else(|e| panic!("initialize: {e}"))
}

async fn call(client: &RunningService<RoleClient, Watcher>, tool: &str, args: Value) -> CallToolResult {
    let params = CallToolRequestParams::new(tool.to_string()).with_arguments(args.as_object().unwrap().clone());
    client.call_tool(params).await.unwrap_or_else(|e| panic!("{tool}: {e}"))
}

fn structured(result: &CallToolResult) -> Value {
    result.structured_content.clone().unwrap_or_else(|| panic!("no structured content: {result:?}"))
}

#[tokio::test]
async fn a_models_client_starts_a_run_answers_its_question_and_gets_the_final_ctx() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "s.lua", SCRIPT);
    let watcher = Watcher::default();
    let client = connect(dir.path(), watcher.clone()).await;
    let info = client.peer_info().expect("the server introduced itself");
    assert_eq!(info.server_info.as_ref().map(|s| s.name.as_str()), Some("swarm"));

    let tools = client.list_all_tools().await.unwrap();
    let mut names: Vec<&str> = tools.iter().map(|t| &*t.name).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "answer_question",
            "cancel_run",
            "check_blueprint",
            "list_blueprints",
            "pending_questions",
            "resume_run",
            "run_events",
            "run_status",
            "signal_run",
            "start_run",
        ]
    );
    let start = tools.iter().find(|t| t.name == "start_run").unwrap();
    let schema = serde_json::to_value(&start.input_schema).unwrap();
    assert!(schema["properties"]["wait_ms"].is_object() && schema["properties"]["blueprint"].is_object(), "{schema}");

    let listed = structured(&call(&client, "list_blueprints", json!({})).await);
    assert_eq!(listed["blueprints"][0]["id"], "signoff", "{listed}");

    // start_run waits for the run's end; the question is answered meanwhile.
    let args = json!({"blueprint": "signoff", "input": {"amount": 10}, "wait_ms": 30_000});
    let request = ClientRequest::CallToolRequest(CallToolRequest::new(
        CallToolRequestParams::new("start_run").with_arguments(args.as_object().unwrap().clone()),
    ));
    let handle = client.send_cancellable_request(request, PeerRequestOptions::no_options()).await.unwrap();
    let started = Instant::now();
    let question = loop {
        let open = structured(&call(&client, "pending_questions", json!({"seat": "reviewer"})).await);
        if let Some(q) = open["questions"].as_array().and_then(|qs| qs.first()) {
            break q.clone();
        }
        assert!(started.elapsed() < DEADLINE, "no question was asked");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(question["question"]["prompt"], "Approve 10 EUR?", "{question}");
    let answered =
        call(&client, "answer_question", json!({"question_id": question["id"], "value": {"ok": true}})).await;
    assert_eq!(structured(&answered)["delivered"], true, "{answered:?}");
    let ServerResult::CallToolResult(result) = handle.await_response().await.unwrap() else {
        panic!("start_run did not answer a tool result");
    };
    let run = structured(&result);
    assert_eq!(run["status"], "finished", "{run}");
    assert_eq!(run["ctx"]["verdict"], json!({"ok": true}), "{run}");
    assert_eq!(run["ctx"]["draft"], "pay 10", "{run}");
    let progress = watcher.progress.lock().unwrap().clone();
    assert!(progress.iter().any(|m| m == "draft attempt 1: pass"), "{progress:?}");

    // The same run, read back by id; its events end with run_finished.
    let id = run["id"].as_str().unwrap();
    let status = structured(&call(&client, "run_status", json!({"run_id": id})).await);
    assert_eq!(status["status"], "finished");
    let events = structured(&call(&client, "run_events", json!({"run_id": id})).await);
    assert_eq!(events["events"].as_array().unwrap().last().unwrap()["kind"], "run_finished", "{events}");

    // The API's errors are tool errors, with the API's kinds.
    let missing = call(&client, "start_run", json!({"blueprint": "nope"})).await;
    assert_eq!(missing.is_error, Some(true));
    assert_eq!(structured(&missing)["error"]["kind"], "not_found", "{missing:?}");
    let not_waiting = call(&client, "signal_run", json!({"run_id": id, "signal": "x"})).await;
    assert_eq!(structured(&not_waiting)["error"]["kind"], "not_waiting", "{not_waiting:?}");

    // A run started without waiting answers at once, and is cancelled by id.
    let started =
        structured(&call(&client, "start_run", json!({"blueprint": "signoff", "input": {"amount": 1}})).await);
    assert_eq!(started["status"], "running", "{started}");
    let other = started["run_id"].as_str().unwrap();
    let cancelled = structured(&call(&client, "cancel_run", json!({"run_id": other})).await);
    assert_eq!(cancelled["cancelled"], true, "{cancelled}");
    let since = Instant::now();
    while structured(&call(&client, "run_status", json!({"run_id": other})).await)["status"] != "cancelled" {
        assert!(since.elapsed() < DEADLINE, "run {other} was not cancelled");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let twice = call(&client, "cancel_run", json!({"run_id": other})).await;
    assert_eq!(structured(&twice)["error"]["kind"], "conflict", "{twice:?}");

    client.cancel().await.unwrap();
    let stderr = std::fs::read_to_string(dir.path().join("stderr.txt")).unwrap();
    assert!(stderr.contains("loaded"), "the script's print went to stderr: {stderr}");
}

#[tokio::test]
async fn check_blueprint_reports_the_compilers_diagnostics_at_their_lines() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "s.lua", SCRIPT);
    let client = connect(dir.path(), Watcher::default()).await;
    let good = "local swarm = require(\"swarm\")\nreturn swarm.blueprint({ id = \"ok\", agents = { a = function() return 1 end },\n  flow = swarm.flow.step({ agent = \"a\" }) })\n";
    let checked = structured(&call(&client, "check_blueprint", json!({"source": good})).await);
    assert_eq!((checked["ok"].clone(), checked["blueprint"].clone()), (json!(true), json!("ok")), "{checked}");

    let unknown_agent = "local swarm = require(\"swarm\")\nlocal F = swarm.flow\nreturn swarm.blueprint({\n  id = \"bad\",\n  agents = { a = function() return 1 end },\n  flow = F.step({ agent = \"ghost\" }),\n})\n";
    let checked =
        structured(&call(&client, "check_blueprint", json!({"source": unknown_agent, "name": "mine.lua"})).await);
    assert_eq!(checked["ok"], false, "{checked}");
    let text = checked["errors"].to_string();
    assert!(text.contains("ghost") && text.contains("mine.lua:6"), "{checked}");
    assert!(!text.contains("swarm-check-"), "the scratch file is not named: {checked}");

    let broken = "local swarm = require(\"swarm\")\nreturn swarm.blueprint({ id = \n";
    let checked = structured(&call(&client, "check_blueprint", json!({"source": broken, "name": "b.lua"})).await);
    assert_eq!(checked["ok"], false);
    assert!(checked["errors"][0]["message"].as_str().unwrap().starts_with("b.lua:"), "{checked}");
    client.cancel().await.unwrap();
}
