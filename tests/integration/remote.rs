//! Remote workers over real sockets: attempts of `remote` agents claimed with
//! `POST /v1/work/claim`, served by the task routes with the token the claim returned, held
//! under leases; late, duplicate and cancelled results; claims racing cancels; a thousand claims
//! waiting at once; children of subprocess agents on the same routes; examples/remote_worker.py.

use std::path::Path;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::util::DEADLINE;
use crate::util::bin::{command, root, write};
use crate::util::http::{Addr, Served, request};
use crate::util::live::Killed;

const SECRET: &str = "remote-test-secret-0123456789abcdef";

/// A served script: `count` (a big inline output, then a remote step on queue `words` whose
/// input is that output's ref), `leased` (a remote step with a short lease, retried on timeout),
/// `plain` (one remote step on queue `q`), `nested` (a remote step that may dispatch `double`).
fn serve(dir: &Path, lease_ms: u64) -> Served {
    write(
        dir,
        "s.lua",
        &format!(
            r#"local swarm = require("swarm")
local F = swarm.flow
swarm.expose(swarm.blueprint({{
  id = "count",
  agents = {{
    big = function() return string.rep("word ", 20000) end,
    count = {{ kind = "remote", spec = {{ queue = "words" }}, profile = {{ system_prompt = "Count the words." }} }},
  }},
  flow = F.seq({{
    F.step({{ agent = "big", out = "$.big" }}),
    F.step({{ agent = "count", input = F.p("$.big"), out = "$.counted" }}),
  }}),
}}))
swarm.expose(swarm.blueprint({{
  id = "leased",
  agents = {{ work = {{ kind = "remote", spec = {{ queue = "slow", lease_ms = {lease_ms} }} }} }},
  flow = F.step({{ agent = "work", input = F.p("$.n"), out = "$.done",
                   retry = {{ max_attempts = 2, on = {{ "timeout" }} }} }}),
}}))
swarm.expose(swarm.blueprint({{
  id = "plain",
  agents = {{ work = {{ kind = "remote", spec = {{ queue = "q" }} }} }},
  flow = F.step({{ agent = "work", input = F.p("$.n"), out = "$.done" }}),
}}))
swarm.expose(swarm.blueprint({{
  id = "nested",
  agents = {{
    outer = {{ kind = "remote", spec = {{ queue = "outer" }} }},
    double = function(n) return n * 2 end,
  }},
  flow = F.step({{ agent = "outer", input = F.p("$.n"), out = "$.done" }}),
}}))
"#
        ),
    );
    Served::start_with(dir, &["serve", "s.lua", "--listen", "127.0.0.1:0"], &[("SWARM_TOKEN_SECRET", SECRET)])
}

fn post(addr: &Addr, path: &str, token: &str, body: Value) -> crate::util::http::Response {
    request(addr, "POST", path, Some(token), body.to_string().as_bytes())
}

/// Posts `body` as the result of claimed attempt `claim`, with the attempt's own token.
fn post_result(addr: &Addr, claim: &Value, body: Value) -> crate::util::http::Response {
    let path = format!("/v1/tasks/{}/result", claim["task_id"].as_str().unwrap());
    post(addr, &path, claim["token"].as_str().unwrap(), body)
}

/// Claims from `queues`, waiting up to `wait_ms`: the claim, or `None` on 204.
fn claim(api: &Served, queues: &[&str], wait_ms: u64) -> Option<Value> {
    let r = post(&api.addr, "/v1/work/claim", &api.token, json!({"queues": queues, "wait_ms": wait_ms}));
    match r.status {
        200 => Some(r.json()),
        204 => None,
        other => panic!("claim: {other} {}", r.text()),
    }
}

/// Claims until an attempt comes (a claim waits at most 2 s, and the test's deadline holds).
fn claim_one(api: &Served, queues: &[&str]) -> Value {
    let start = Instant::now();
    loop {
        if let Some(c) = claim(api, queues, 2000) {
            return c;
        }
        assert!(start.elapsed() < DEADLINE, "nothing was offered on {queues:?}");
    }
}

/// The run's events, read whole over SSE once it has ended.
fn events(api: &Served, run: &str) -> Vec<Value> {
    let mut stream = crate::util::http::sse(&api.addr, &format!("/v1/runs/{run}/events"), &api.token, None);
    assert_eq!(stream.status, 200);
    let mut all = Vec::new();
    while let Some(event) = stream.next() {
        let ended = event.data["kind"] == "run_finished" || event.data["kind"] == "run_failed";
        all.push(event.data);
        if ended {
            break;
        }
    }
    all
}

#[test]
fn a_remote_worker_claims_an_attempt_reads_its_prompt_and_refs_reports_and_posts_its_result() {
    let dir = tempfile::tempdir().unwrap();
    let api = serve(dir.path(), 30_000);
    // Nothing offered yet: the claim waits its wait_ms out and says so with 204.
    let started = Instant::now();
    assert_eq!(claim(&api, &["words"], 300), None);
    assert!(started.elapsed() >= Duration::from_millis(300), "the claim waited");

    let run = api.start_run(json!("count"), json!({}));
    let c = claim_one(&api, &["other", "words"]);
    let (task, token) = (c["task_id"].as_str().unwrap().to_string(), c["token"].as_str().unwrap().to_string());
    assert_eq!((c["agent"].clone(), c["attempt"].clone()), (json!("count"), json!(1)), "{c}");
    assert_eq!(c["system"], "Count the words.");
    assert_eq!(c["input_refs"], json!([]));
    assert_eq!(c["lease_ms"], 30_000);
    assert!(!token.is_empty() && token != api.token);
    // The step's input is the ref of the big output; the body comes from the output store.
    let reference = c["input"]["ref"].as_str().unwrap_or_else(|| panic!("no ref in {c}")).to_string();
    let body = request(&api.addr, "GET", &format!("/v1/outputs/{reference}"), Some(&token), b"");
    assert_eq!(body.status, 200, "{}", body.text());
    assert_eq!(body.json().as_str().unwrap().split_whitespace().count(), 20_000);
    let missing = request(&api.addr, "GET", "/v1/outputs/out-nope", Some(&token), b"");
    assert_eq!((missing.status, missing.kind()), (404, "not_found".to_string()));
    // Another run's outputs are not this attempt's to read.
    let other_run = api.start_run(json!("count"), json!({}));
    let other = claim_one(&api, &["words"]);
    let theirs = other["input"]["ref"].as_str().unwrap();
    let refused = request(&api.addr, "GET", &format!("/v1/outputs/{theirs}"), Some(&token), b"");
    assert_eq!((refused.status, refused.kind()), (403, "task_mismatch".to_string()), "{}", refused.text());
    assert_eq!(post_result(&api.addr, &other, json!({"value": 0})).status, 204);
    api.wait_status(&other_run, "finished");

    let prompt = request(&api.addr, "GET", &format!("/v1/tasks/{task}/prompt"), Some(&token), b"");
    assert_eq!(prompt.status, 200, "{}", prompt.text());
    assert_eq!(prompt.json()["system"], "Count the words.");
    assert_eq!(prompt.json()["input"], c["input"]);

    // Another task's routes are closed to this token; the operator's token holds no worker verbs.
    let other = request(&api.addr, "GET", "/v1/tasks/r-other.1/prompt", Some(&token), b"");
    assert_eq!((other.status, other.kind()), (403, "task_mismatch".to_string()), "{}", other.text());
    let operator = post(&api.addr, &format!("/v1/tasks/{task}/result"), &api.token, json!({"value": 1}));
    assert_eq!((operator.status, operator.kind()), (403, "role_violation".to_string()), "{}", operator.text());

    let progress = json!([{"type": "progress", "stage": "counting", "note": "half"},
                          {"type": "partial", "chunk": {"kind": "inline", "value": "10000"}}]);
    let r = post(&api.addr, &format!("/v1/tasks/{task}/events"), &token, progress);
    assert_eq!(r.status, 204, "{}", r.text());
    let bad = post(&api.addr, &format!("/v1/tasks/{task}/events"), &token, json!([{"type": "progress"}]));
    assert_eq!(bad.status, 400);
    assert!(bad.text().contains("event 1: `stage` is missing"), "{}", bad.text());
    let final_event = json!({"type": "final", "content": {"kind": "inline", "value": 1}, "ok": true});
    let r = post(&api.addr, &format!("/v1/tasks/{task}/events"), &token, final_event);
    assert!(r.status == 400 && r.text().contains("/result"), "{}", r.text());

    let r = post(&api.addr, &format!("/v1/tasks/{task}/result"), &token, json!({"value": {"words": 20000}}));
    assert_eq!(r.status, 204, "{}", r.text());
    let done = api.wait_status(&run, "finished");
    assert_eq!(done["ctx"]["counted"], json!({"words": 20000}), "{done}");
    // A second result is late: 409, and the first stands.
    let again = post(&api.addr, &format!("/v1/tasks/{task}/result"), &token, json!({"value": 0}));
    assert_eq!((again.status, again.kind()), (409, "conflict".to_string()), "{}", again.text());
    assert!(again.text().contains("recorded outcome stands"), "{}", again.text());
    assert_eq!(api.get(&format!("/v1/runs/{run}")).json()["ctx"]["counted"], json!({"words": 20000}));

    let all = events(&api, &run);
    let outputs: Vec<&Value> = all.iter().filter(|e| e["kind"] == "worker_output").collect();
    assert_eq!(outputs.len(), 2, "{all:?}");
    assert_eq!(outputs[0]["output"]["stage"], "counting");
    // The worker's token is in nothing the host printed.
    assert!(!api.swarm.stderr().contains(&token) && !api.swarm.stdout().contains(&token));
}

#[test]
fn claims_are_checked_by_role_and_bad_claim_bodies_name_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let api = serve(dir.path(), 30_000);
    for (body, needle) in [
        (json!({}), "missing field `queues`"),
        (json!({"queues": []}), "non-empty array"),
        (json!({"queues": [1]}), "not a queue name"),
        (json!({"queues": ["q"], "wait_ms": -1}), "`wait_ms`"),
        (json!({"queues": ["q"], "wait_ms": 60_000}), "from 0 to 50000"),
        (json!({"queues": ["q"], "wait": 1}), "unknown field `wait`"),
    ] {
        let r = post(&api.addr, "/v1/work/claim", &api.token, body.clone());
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        assert!(r.text().contains(needle) && r.text().contains("POST /v1/work/claim"), "{body}: {}", r.text());
    }
    let mint = |role: &str| {
        let out =
            command(dir.path(), &["token", "mint", "--role", role]).env("SWARM_TOKEN_SECRET", SECRET).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let observer = mint("observer");
    let r = post(&api.addr, "/v1/work/claim", &observer, json!({"queues": ["q"]}));
    assert_eq!((r.status, r.kind()), (403, "role_violation".to_string()), "{}", r.text());
    // A worker token minted for a worker process claims as the operator's does.
    let worker = mint("worker");
    let run = api.start_run(json!("plain"), json!({"n": 1}));
    let r = post(&api.addr, "/v1/work/claim", &worker, json!({"queues": ["q"], "wait_ms": 10_000}));
    assert_eq!(r.status, 200, "{}", r.text());
    let c = r.json();
    assert_eq!(post_result(&api.addr, &c, json!({"value": "done"})).status, 204);
    assert_eq!(api.wait_status(&run, "finished")["ctx"]["done"], "done");
    let no_token = request(&api.addr, "POST", "/v1/work/claim", None, br#"{"queues":["q"]}"#);
    assert_eq!((no_token.status, no_token.kind()), (401, "malformed".to_string()));
}

#[test]
fn a_lease_that_runs_out_fails_the_attempt_as_a_timeout_and_the_retry_is_offered_again() {
    let dir = tempfile::tempdir().unwrap();
    let api = serve(dir.path(), 1000);
    let run = api.start_run(json!("leased"), json!({"n": 7}));
    // Attempt 1 is claimed and never heard of again.
    let first = claim_one(&api, &["slow"]);
    assert_eq!(first["attempt"], 1);
    assert_eq!(first["lease_ms"], 1000);
    // Attempt 2 is offered once attempt 1's lease has run out; its worker keeps calling for
    // longer than a lease, and every call renews it.
    let second = claim_one(&api, &["slow"]);
    assert_eq!((second["attempt"].clone(), second["task_id"].clone()), (json!(2), first["task_id"].clone()));
    let (task, token) = (second["task_id"].as_str().unwrap(), second["token"].as_str().unwrap());
    let renewing = Instant::now();
    while renewing.elapsed() < Duration::from_millis(2500) {
        let r =
            post(&api.addr, &format!("/v1/tasks/{task}/events"), token, json!([{"type": "progress", "stage": "on"}]));
        assert_eq!(r.status, 204, "the lease held: {}", r.text());
        std::thread::sleep(Duration::from_millis(100));
    }
    // Attempt 1's result comes too late: 409, and nothing changes.
    let late = post_result(&api.addr, &first, json!({"value": 1}));
    assert_eq!((late.status, late.kind()), (409, "conflict".to_string()), "{}", late.text());
    assert!(late.text().contains("attempt 1 of task"), "{}", late.text());
    let r = post_result(&api.addr, &second, json!({"value": {"n": 7}}));
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(api.wait_status(&run, "finished")["ctx"]["done"], json!({"n": 7}));
    let all = events(&api, &run);
    let expired = all
        .iter()
        .find(|e| e["kind"] == "attempt_finished" && e["attempt"] == 1)
        .unwrap_or_else(|| panic!("no attempt 1 in {all:?}"));
    assert_eq!(expired["status"], "timeout", "{expired}");
    assert!(expired["error"].as_str().unwrap().contains("lease expired"), "{expired}");
}

#[test]
fn an_attempt_that_fails_remotely_fails_its_step_with_the_workers_reason() {
    let dir = tempfile::tempdir().unwrap();
    let api = serve(dir.path(), 30_000);
    let run = api.start_run(json!("plain"), json!({"n": 1}));
    let c = claim_one(&api, &["q"]);
    let r = post_result(&api.addr, &c, json!({"value": "disk full", "ok": false}));
    assert_eq!(r.status, 204, "{}", r.text());
    let failed = api.wait_status(&run, "failed");
    assert!(failed.to_string().contains("disk full"), "{failed}");
}

#[test]
fn results_after_a_cancel_are_refused_and_a_claim_racing_a_cancel_settles_the_run_once() {
    let dir = tempfile::tempdir().unwrap();
    let api = serve(dir.path(), 30_000);
    // Claimed, then cancelled: the result is late.
    let run = api.start_run(json!("plain"), json!({"n": 1}));
    let c = claim_one(&api, &["q"]);
    assert_eq!(api.post(&format!("/v1/runs/{run}/cancel"), json!({})).status, 204);
    api.wait_status(&run, "cancelled");
    let late = post_result(&api.addr, &c, json!({"value": 1}));
    assert_eq!((late.status, late.kind()), (409, "conflict".to_string()), "{}", late.text());
    // Cancelled before anyone claimed it: the offer is gone.
    let run = api.start_run(json!("plain"), json!({"n": 2}));
    api.wait_status(&run, "running");
    assert_eq!(api.post(&format!("/v1/runs/{run}/cancel"), json!({})).status, 204);
    api.wait_status(&run, "cancelled");
    assert_eq!(claim(&api, &["q"], 300), None, "a cancelled attempt is not offered");

    // A claim and a result racing a cancel: each run ends once, as whichever came first says.
    for n in 0..20 {
        let run = api.start_run(json!("plain"), json!({"n": n}));
        let c = claim_one(&api, &["q"]);
        let (addr, token) = (api.addr.clone(), api.token.clone());
        let cancel_path = format!("/v1/runs/{run}/cancel");
        let canceller = std::thread::spawn(move || post(&addr, &cancel_path, &token, json!({})).status);
        let result = post_result(&api.addr, &c, json!({"value": n})).status;
        let cancel = canceller.join().unwrap();
        let status = loop {
            let s = api.get(&format!("/v1/runs/{run}")).json()["status"].as_str().unwrap().to_string();
            if s != "running" {
                break s;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        match status.as_str() {
            "finished" => assert_eq!(result, 204, "run {run} finished: the result was taken"),
            "cancelled" => {
                assert_eq!(cancel, 204, "run {run} cancelled: the cancel was taken");
                assert!(result == 409 || result == 204, "run {run}: result {result}");
            }
            other => panic!("run {run} ended {other}"),
        }
        // Nothing is left on the queue either way.
        assert_eq!(claim(&api, &["q"], 0), None);
    }
}

#[test]
fn a_thousand_claims_wait_at_once_and_each_offer_goes_to_exactly_one() {
    let dir = tempfile::tempdir().unwrap();
    let api = serve(dir.path(), 30_000);
    const CLAIMS: usize = 1000;
    const RUNS: usize = 10;
    let ready = Arc::new(Barrier::new(CLAIMS + 1));
    let claims: Vec<_> = (0..CLAIMS)
        .map(|_| {
            let (addr, token, ready) = (api.addr.clone(), api.token.clone(), ready.clone());
            std::thread::Builder::new()
                .stack_size(128 * 1024)
                .spawn(move || {
                    let mut stream = addr.connect();
                    let body = json!({"queues": ["q"], "wait_ms": 4000}).to_string();
                    let auth = format!("Bearer {token}");
                    crate::util::http::send(
                        &mut *stream,
                        "POST",
                        "/v1/work/claim",
                        &[("Authorization", &auth)],
                        body.as_bytes(),
                    );
                    ready.wait();
                    let response = crate::util::http::read_response(stream);
                    if response.status == 200 {
                        let c = response.json();
                        let posted = post_result(&addr, &c, json!({"value": c["input"]}));
                        assert_eq!(posted.status, 204, "{}", posted.text());
                        Some(c["task_id"].as_str().unwrap().to_string())
                    } else {
                        assert_eq!(response.status, 204, "{}", response.text());
                        None
                    }
                })
                .unwrap()
        })
        .collect();
    ready.wait();
    let runs: Vec<String> = (0..RUNS).map(|n| api.start_run(json!("plain"), json!({"n": n}))).collect();
    let taken: Vec<String> = claims.into_iter().filter_map(|c| c.join().unwrap()).collect();
    let mut unique = taken.clone();
    unique.sort();
    unique.dedup();
    assert_eq!((taken.len(), unique.len()), (RUNS, RUNS), "each offer went to exactly one claim: {taken:?}");
    for (n, run) in runs.iter().enumerate() {
        assert_eq!(api.wait_status(run, "finished")["ctx"]["done"], n, "run {run}");
    }
    assert_eq!(request(&api.addr, "GET", "/healthz", None, b"").status, 200);
}

#[test]
fn a_remote_worker_dispatches_sub_tasks_on_its_blueprints_agents() {
    let dir = tempfile::tempdir().unwrap();
    let api = serve(dir.path(), 30_000);
    let run = api.start_run(json!("nested"), json!({"n": 21}));
    let c = claim_one(&api, &["outer"]);
    let (task, token) = (c["task_id"].as_str().unwrap(), c["token"].as_str().unwrap());
    let path = format!("/v1/tasks/{task}/dispatch");
    let r = post(&api.addr, &path, token, json!({"agent": "double", "input": 21}));
    assert_eq!((r.status, r.json()), (200, json!({"ok": true, "value": 42})), "{}", r.text());
    let r = post(&api.addr, &path, token, json!({"agent": "nobody", "input": 1}));
    assert_eq!((r.status, r.kind()), (404, "not_found".to_string()), "{}", r.text());
    assert!(r.text().contains("nobody"), "{}", r.text());
    let r = post(&api.addr, &path, token, json!({"input": 1}));
    assert!(r.status == 400 && r.text().contains("`agent`"), "{}", r.text());
    // The operator's token is not the worker's: it may not dispatch under another's task.
    let r = post(&api.addr, &format!("/v1/tasks/{task}/result"), token, json!({"value": 42}));
    assert_eq!(r.status, 204, "{}", r.text());
    let done = api.wait_status(&run, "finished");
    assert_eq!(done["ctx"]["done"], 42);
}

#[test]
fn sub_dispatches_over_http_nest_until_the_depth_limit_refuses_one() {
    let dir = tempfile::tempdir().unwrap();
    let api = serve(dir.path(), 30_000);
    let run = api.start_run(json!("nested"), json!({"n": 1}));
    // Each claimed `outer` attempt dispatches another `outer`, which the next claim takes, until
    // the engine's depth limit (8) refuses one; then each answers its parent from the inside out.
    let mut claims = vec![claim_one(&api, &["outer"])];
    let mut waiting = Vec::new();
    let refused = loop {
        let c = claims.last().unwrap().clone();
        let (addr, path) = (api.addr.clone(), format!("/v1/tasks/{}/dispatch", c["task_id"].as_str().unwrap()));
        let token = c["token"].as_str().unwrap().to_string();
        let call = std::thread::spawn(move || post(&addr, &path, &token, json!({"agent": "outer", "input": 1})));
        // Either the dispatch is refused (its call ends) or its sub-task is offered.
        let start = Instant::now();
        let child = loop {
            if call.is_finished() {
                break None;
            }
            if let Some(child) = claim(&api, &["outer"], 200) {
                break Some(child);
            }
            assert!(start.elapsed() < DEADLINE, "the dispatch neither ended nor offered a sub-task");
        };
        match child {
            Some(child) => {
                claims.push(child);
                waiting.push(call);
            }
            None => break call.join().unwrap(),
        }
    };
    assert_eq!((refused.status, refused.kind()), (403, "depth_exceeded".to_string()), "{}", refused.text());
    assert_eq!(claims.len(), 8, "depths 0 to 7 ran, depth 8 was refused");
    // The innermost posts 0; each dispatch answers its parent with its child's value, plus one.
    let mut value = 0;
    while let Some(c) = claims.pop() {
        assert_eq!(post_result(&api.addr, &c, json!({"value": value})).status, 204);
        if let Some(call) = waiting.pop() {
            let answer = call.join().unwrap();
            assert_eq!((answer.status, answer.json()["ok"].clone()), (200, json!(true)), "{}", answer.text());
            value = answer.json()["value"].as_i64().unwrap() + 1;
        }
    }
    assert_eq!(api.wait_status(&run, "finished")["ctx"]["done"], 7);
}

#[test]
fn the_example_worker_serves_the_example_script() {
    let dir = tempfile::tempdir().unwrap();
    let script = std::fs::read_to_string(root().join("examples/serve/remote.lua")).unwrap();
    write(dir.path(), "remote.lua", &script);
    let api = Served::start_with(dir.path(), &["serve", "remote.lua", "--listen", "127.0.0.1:0"], &[]);
    let Addr::Tcp(addr) = &api.addr else { unreachable!() };
    let mut worker = Killed(
        std::process::Command::new("python3")
            .arg(root().join("examples/remote_worker.py"))
            .args(["--api", &format!("http://{addr}"), "--queue", "words", "--max-tasks", "2", "--wait-ms", "1000"])
            .arg("--token-file")
            .arg(dir.path().join(".swarm/operator.token"))
            .spawn()
            .unwrap(),
    );
    for text in ["the quick brown fox", "a b"] {
        let run = api.start_run(json!("count_words"), json!({"text": text}));
        let done = api.wait_status(&run, "finished");
        let words = text.split_whitespace().count();
        assert_eq!(done["ctx"]["counted"]["words"], words, "{done}");
        assert!(done["ctx"]["report"].as_str().unwrap().starts_with(&format!("{words} words")), "{done}");
    }
    assert!(worker.0.wait().unwrap().success(), "the worker stopped after --max-tasks");
}

/// A child that serves its own task over `SWARM_API` and prints no final event.
const CHILD: &str = r#"
import http.client, json, os, socket
class Unix(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(os.environ["SWARM_API"][len("unix:"):])
def call(method, path, body=None):
    c = Unix("localhost")
    c.request(method, path, body=None if body is None else json.dumps(body),
              headers={"Authorization": "Bearer " + os.environ["SWARM_TOKEN"]})
    r = c.getresponse(); raw = r.read(); c.close()
    return r.status, (json.loads(raw) if raw else None)
task = os.environ["SWARM_TASK_ID"]
status, prompt = call("GET", f"/v1/tasks/{task}/prompt")
assert status == 200, (status, prompt)
assert call("POST", f"/v1/tasks/{task}/events", [{"type": "progress", "stage": "child"}])[0] == 204
status, doubled = call("POST", f"/v1/tasks/{task}/dispatch", {"agent": "double", "input": prompt["input"]["n"]})
assert status == 200, (status, doubled)
assert call("POST", f"/v1/tasks/{task}/result", {"value": {"doubled": doubled["value"], "attempt": prompt["attempt"]}})[0] == 204
"#;

#[test]
fn a_child_serves_its_own_task_over_its_hosts_private_socket() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "child.py", CHILD);
    write(
        dir.path(),
        "bp.lua",
        r#"local swarm = require("swarm")
local F = swarm.flow
return swarm.blueprint({
  id = "child",
  agents = {
    call = { kind = "subprocess", spec = { program = "python3", args = { "child.py" } } },
    double = function(n) return n * 2 end,
  },
  flow = F.step({ agent = "call", input = F.p("$"), out = "$.seen" }),
})
"#,
    );
    let out = command(dir.path(), &["run", "bp.lua", "--state", "memory", "--input", r#"{"n": 4}"#]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let ctx: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(ctx["seen"], json!({"doubled": 8, "attempt": 1}), "{ctx}");
}

#[test]
fn swarm_run_says_where_remote_workers_can_reach_a_remote_agent() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "bp.lua",
        r#"local swarm = require("swarm")
local F = swarm.flow
return swarm.blueprint({
  id = "lonely",
  agents = { far = { kind = "remote", spec = { queue = "q" } } },
  flow = F.step({ agent = "far", timeout_ms = 200, out = "$.x" }),
})
"#,
    );
    let out = command(dir.path(), &["run", "bp.lua", "--state", "memory"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("agent 'far' is remote") && stderr.contains("swarm serve bp.lua --listen"), "{stderr}");
    assert!(stderr.contains("timeout"), "the step timed out: {stderr}");
}

#[test]
fn a_serve_stopping_answers_its_waiting_claims_and_exits() {
    let dir = tempfile::tempdir().unwrap();
    let api = serve(dir.path(), 30_000);
    let (addr, token) = (api.addr.clone(), api.token.clone());
    let waiting = std::thread::spawn(move || {
        let mut stream = addr.connect();
        let auth = format!("Bearer {token}");
        let body = json!({"queues": ["q"], "wait_ms": 50_000}).to_string();
        crate::util::http::send(&mut *stream, "POST", "/v1/work/claim", &[("Authorization", &auth)], body.as_bytes());
        let mut answer = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stream, &mut answer);
        String::from_utf8_lossy(&answer).into_owned()
    });
    // The claim is on its way or waiting: either way the stop must not wait out its 50 s.
    assert_eq!(request(&api.addr, "GET", "/healthz", None, b"").status, 200);
    let stopping = Instant::now();
    api.swarm.signal("TERM");
    let mut swarm = api.swarm;
    assert_eq!(swarm.wait_exit().code(), Some(0), "{}", swarm.stderr());
    // A claim left waiting would hold the stop for the whole 2 s grace of open requests.
    assert!(stopping.elapsed() < Duration::from_millis(1500), "the stop took {:?}", stopping.elapsed());
    let answer = waiting.join().unwrap();
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 503"), "a stopping server's claim: {answer}");
}
