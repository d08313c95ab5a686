//! The HTTP API of `swarm serve --listen` over real sockets: runs started, read, signalled,
//! cancelled and resumed from outside; every run route with every role; bad tokens of every
//! kind; events as Server-Sent Events resumed with `Last-Event-ID`; bounds on bodies; clients
//! that go away.

use std::io::{Read, Write};
use std::path::Path;

use luaswarm::gate::{Gate, Role, Verb};
use serde_json::json;

use crate::util::bin::{command, write};
use crate::util::http::{Addr, Served, request, request_with, sse};
use crate::util::wait_for;

const SECRET: &str = "api-test-secret-0123456789abcdef";

/// A served script exposing `approval` (a step, then a wait for `approve`) and `counted` (a
/// step that counts its runs in a side file, a wait for `go`, then `n` more steps).
fn script(dir: &Path) -> String {
    let side = dir.join("side.txt");
    write(
        dir,
        "s.lua",
        &format!(
            r#"local swarm = require("swarm")
local F = swarm.flow
swarm.expose(swarm.blueprint({{
  id = "approval",
  agents = {{ draft = function(input) return "draft of " .. tostring(input.title) end }},
  flow = F.seq({{
    F.step({{ agent = "draft", input = F.p("$"), out = "$.draft" }}),
    F.wait({{ signal = "approve", out = "$.approval" }}),
  }}),
}}))
swarm.expose(swarm.blueprint({{
  id = "counted",
  agents = {{
    count = function()
      local f = assert(io.open({side:?}, "a")); f:write("ran\n"); f:close()
      return true
    end,
    tick = function(i) return i end,
  }},
  flow = F.seq({{
    F.step({{ agent = "count", out = "$.counted" }}),
    F.wait({{ signal = "go" }}),
    F.loop({{
      counter = "$.i", max = 100000, cond = F.p("$.i"):lt(F.p("$.n")),
      body = F.step({{ agent = "tick", input = F.p("$.i"), out = "$.last" }}),
    }}),
  }}),
}}), "ticks")
"#
        ),
    )
}

fn serve(dir: &Path) -> Served {
    script(dir);
    Served::start_with(dir, &["serve", "s.lua", "--listen", "127.0.0.1:0"], &[("SWARM_TOKEN_SECRET", SECRET)])
}

/// `swarm token mint ARGS` in `dir` with the serve's secret: the token.
fn mint(dir: &Path, args: &[&str]) -> (String, String) {
    let mut all = vec!["token", "mint"];
    all.extend_from_slice(args);
    let out = command(dir, &all).env("SWARM_TOKEN_SECRET", SECRET).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{stderr}");
    let fingerprint = stderr.split(" token ").nth(1).unwrap().split_whitespace().next().unwrap().to_string();
    (String::from_utf8(out.stdout).unwrap().trim().to_string(), fingerprint)
}

#[test]
fn a_run_is_started_watched_signalled_and_read_back_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let api = serve(dir.path());
    let health = request(&api.addr, "GET", "/healthz", None, b"");
    assert_eq!((health.status, health.json()), (200, json!({"ok": true})));

    let blueprints = api.get("/v1/blueprints");
    assert_eq!(blueprints.status, 200, "{}", blueprints.text());
    assert_eq!(blueprints.header("content-type"), Some("application/json"));
    let list = blueprints.json();
    let ids: Vec<&str> = list.as_array().unwrap().iter().map(|b| b["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["approval", "ticks"]);
    assert_eq!(list[0]["agents"], json!([{"name": "draft", "kind": "lua"}]));
    assert!(list[0]["graph"].as_str().unwrap().contains("flowchart TD"), "{list}");

    let id = api.start_run(json!("approval"), json!({"title": "v2"}));
    let waiting = api.wait_status(&id, "waiting");
    assert_eq!(waiting["waits"][0]["signal"], "approve", "{waiting}");
    assert_eq!(waiting["steps"][0]["output"], "draft of v2");

    let r = api.post(&format!("/v1/runs/{id}/signals/approve"), json!({"value": {"ok": true}}));
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(r.json()["delivered"], true);
    let done = api.wait_status(&id, "finished");
    assert_eq!(done["ctx"], json!({"title": "v2", "draft": "draft of v2", "approval": {"ok": true}}));

    // A finished run waits for nothing.
    let again = api.post(&format!("/v1/runs/{id}/signals/approve"), json!({"value": 1}));
    assert_eq!((again.status, again.kind()), (409, "not_waiting".to_string()), "{}", again.text());
    let runs = api.get("/v1/runs").json();
    assert!(runs.as_array().unwrap().iter().any(|r| r["id"] == id.as_str() && r["status"] == "finished"), "{runs}");
    let missing = api.get("/v1/runs/r-nope");
    assert_eq!((missing.status, missing.kind()), (404, "not_found".to_string()));
    let no_route = api.get("/v1/nothing");
    assert_eq!(no_route.status, 404);

    // The token went nowhere it should not.
    assert!(!api.swarm.stderr().contains(&api.token), "{}", api.swarm.stderr());
    assert!(!api.swarm.stdout().contains(&api.token));
}

#[test]
fn a_signal_sent_before_the_wait_is_buffered_and_inline_blueprints_run() {
    let dir = tempfile::tempdir().unwrap();
    let api = serve(dir.path());
    // The JSON wire form of a blueprint, with a wait and an assign; no Lua agents needed.
    let inline = json!({
        "id": "inline",
        "agents": [],
        "flow": {"kind": "seq", "children": [
            {"kind": "wait", "signal": "first", "out": {"op": "path", "at": "$.a"}},
            {"kind": "wait", "signal": "second", "out": {"op": "path", "at": "$.b"}}
        ]}
    });
    let id = api.start_run(inline, json!({}));
    api.wait_status(&id, "waiting");
    // `second` arrives before its wait is reached: it is kept until then.
    assert_eq!(api.post(&format!("/v1/runs/{id}/signals/second"), json!({"value": 2})).status, 202);
    assert_eq!(api.post(&format!("/v1/runs/{id}/signals/first"), json!({"value": 1})).status, 202);
    assert_eq!(api.wait_status(&id, "finished")["ctx"], json!({"a": 1, "b": 2}));

    // Bad blueprints: not one (400), not compiling (422 with the list), not exposed (404).
    let r = api.post("/v1/runs", json!({"blueprint": 7}));
    assert_eq!((r.status, r.kind()), (400, "bad_request".to_string()), "{}", r.text());
    let r = api.post("/v1/runs", json!({"blueprint": {"id": "x", "agents": [], "flow": {"kind": "step", "ref": "ghost", "in": {"op": "path", "at": "$"}, "out": {"op": "path", "at": "$.x"}}}}));
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(r.text().contains("ghost"), "the compile error names the agent: {}", r.text());
    assert!(r.json()["error"]["errors"].as_array().is_some_and(|e| !e.is_empty()), "{}", r.text());
    let r = api.post("/v1/runs", json!({"blueprint": "nope"}));
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(r.text().contains("approval, ticks"), "the exposed ones are named: {}", r.text());
    let r = api.post("/v1/runs", json!({"blueprint": "approval", "inputs": {}}));
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("unknown field `inputs`"), "{}", r.text());
    let r = request(&api.addr, "POST", "/v1/runs", Some(&api.token), b"{not json");
    assert_eq!(r.status, 400, "{}", r.text());
}

#[test]
fn cancel_ends_a_waiting_run_once() {
    let dir = tempfile::tempdir().unwrap();
    let api = serve(dir.path());
    let id = api.start_run(json!("approval"), json!({"title": "t"}));
    api.wait_status(&id, "waiting");
    let r = api.post(&format!("/v1/runs/{id}/cancel"), json!({}));
    assert_eq!(r.status, 204, "{}", r.text());
    api.wait_status(&id, "cancelled");
    let r = api.post(&format!("/v1/runs/{id}/cancel"), json!({}));
    assert_eq!((r.status, r.kind()), (409, "conflict".to_string()), "{}", r.text());
}

/// Each run route's verb, and a request that is well formed for it.
fn routes(run: &str) -> Vec<(&'static str, String, Option<serde_json::Value>, Verb)> {
    vec![
        ("GET", "/v1/blueprints".into(), None, Verb::ReadTaskState),
        ("GET", "/v1/runs".into(), None, Verb::ReadTaskState),
        ("GET", format!("/v1/runs/{run}"), None, Verb::ReadTaskState),
        ("POST", "/v1/runs".into(), Some(json!({"blueprint": "approval", "input": {"title": "m"}})), Verb::StartTask),
        ("POST", format!("/v1/runs/{run}/signals/nobody"), Some(json!({"value": 0})), Verb::AnswerQuery),
        ("POST", format!("/v1/runs/{run}/resume"), Some(json!({})), Verb::StartTask),
        ("POST", format!("/v1/runs/{run}/cancel"), Some(json!({})), Verb::CancelTask),
        ("POST", "/v1/work/claim".into(), Some(json!({"queues": ["none"]})), Verb::PollTask),
        ("GET", format!("/v1/tasks/{run}.1/prompt"), None, Verb::FetchPrompt),
        ("GET", "/v1/outputs/out-none".into(), None, Verb::FetchData),
        ("POST", format!("/v1/tasks/{run}.1/events"), Some(json!([])), Verb::EmitOutput),
        ("POST", format!("/v1/tasks/{run}.1/result"), Some(json!({"value": 1})), Verb::PostResult),
        ("POST", format!("/v1/tasks/{run}.1/dispatch"), Some(json!({"agent": "draft", "input": {}})), Verb::StartTask),
    ]
}

#[test]
fn every_route_lets_in_exactly_the_roles_the_gate_gives_its_verb() {
    let dir = tempfile::tempdir().unwrap();
    let api = serve(dir.path());
    let run = api.start_run(json!("approval"), json!({"title": "m"}));
    api.wait_status(&run, "waiting");
    let gate = Gate::default();
    for role in Role::ALL {
        let (token, _) = mint(dir.path(), &["--role", role.name()]);
        for (method, path, body, verb) in routes(&run) {
            // Cancel last of all, with the operator's own token, so the run is there throughout.
            if verb == Verb::CancelTask && gate.allows(role, verb) {
                continue;
            }
            let body = body.map(|b| b.to_string()).unwrap_or_default();
            let r = request(&api.addr, method, &path, Some(&token), body.as_bytes());
            if gate.allows(role, verb) {
                assert!(
                    r.status != 401 && r.status != 403,
                    "{} may {} ({method} {path}) but got {}: {}",
                    role.name(),
                    verb.name(),
                    r.status,
                    r.text()
                );
            } else {
                assert_eq!(
                    (r.status, r.kind()),
                    (403, "role_violation".to_string()),
                    "{} may not {} ({method} {path}): {}",
                    role.name(),
                    verb.name(),
                    r.text()
                );
            }
        }
        if gate.allows(role, Verb::SubscribeEvents) {
            // The run waits, so its stream stays open; the status line is enough here.
            let mut stream = sse(&api.addr, &format!("/v1/runs/{run}/events"), &token, None);
            assert_eq!(stream.status, 200, "{}", role.name());
            assert_eq!(stream.next().unwrap().data["kind"], "run_started");
        } else {
            let events = request(&api.addr, "GET", &format!("/v1/runs/{run}/events"), Some(&token), b"");
            assert_eq!((events.status, events.kind()), (403, "role_violation".to_string()), "{}", role.name());
        }
    }
    let r = api.post(&format!("/v1/runs/{run}/cancel"), json!({}));
    assert_eq!(r.status, 204, "{}", r.text());
}

#[test]
fn forged_expired_revoked_used_up_and_unknown_tokens_are_refused_by_kind() {
    let dir = tempfile::tempdir().unwrap();
    let api = serve(dir.path());
    let get = |token: &str| request(&api.addr, "GET", "/v1/runs", Some(token), b"");
    let refused = |token: &str, kind: &str| {
        let r = get(token);
        assert_eq!((r.status, r.kind()), (401, kind.to_string()), "{}", r.text());
        assert!(!r.text().contains(token), "the token is not echoed: {}", r.text());
    };
    // No header, or not a bearer token.
    let r = request(&api.addr, "GET", "/v1/runs", None, b"");
    assert_eq!((r.status, r.kind()), (401, "malformed".to_string()));
    let r = request_with(&api.addr, "GET", "/v1/runs", None, &[("Authorization", "Basic abc")], b"");
    assert_eq!((r.status, r.kind()), (401, "malformed".to_string()));
    refused("not-a-token", "malformed");

    // A token with one character of its signature changed: decode, flip, encode.
    let (good, fingerprint) = mint(dir.path(), &["--role", "observer"]);
    assert_eq!(get(&good).status, 200);
    let tampered = tamper(&good);
    refused(&tampered, "bad_signature");
    // Signed with another secret.
    let other = command(dir.path(), &["token", "mint", "--role", "observer", "--state", "other.db"])
        .env("SWARM_TOKEN_SECRET", "some-other-secret")
        .output()
        .unwrap();
    refused(String::from_utf8(other.stdout).unwrap().trim(), "bad_signature");
    // Signed with the secret but recorded in no journal this serve reads.
    let unknown = command(dir.path(), &["token", "mint", "--role", "observer", "--state", "other2.db"])
        .env("SWARM_TOKEN_SECRET", SECRET)
        .output()
        .unwrap();
    refused(String::from_utf8(unknown.stdout).unwrap().trim(), "unknown_token");

    // Revoked after it was used.
    let out = command(dir.path(), &["token", "revoke", &fingerprint]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    refused(&good, "revoked");
    let out = command(dir.path(), &["token", "revoke", "000000000000"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));

    // One use, then no more.
    let (once, _) = mint(dir.path(), &["--role", "observer", "--max-uses", "1"]);
    assert_eq!(get(&once).status, 200);
    refused(&once, "uses_exhausted");

    // A second's life.
    let (short, _) = mint(dir.path(), &["--role", "observer", "--ttl", "1"]);
    wait_for("the one-second token to expire", || get(&short).status == 401);
    refused(&short, "expired");

    // Minting needs the secret, and names it.
    let out = command(dir.path(), &["token", "mint", "--role", "observer"])
        .env_remove("SWARM_TOKEN_SECRET")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("SWARM_TOKEN_SECRET is not set"));
    let out =
        command(dir.path(), &["token", "mint", "--role", "king"]).env("SWARM_TOKEN_SECRET", SECRET).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("`king` is no role"));

    // Nothing the serve printed holds a token.
    let printed = format!("{}{}", api.swarm.stdout(), api.swarm.stderr());
    for token in [&good, &once, &short, &api.token] {
        assert!(!printed.contains(token.as_str()), "{printed}");
    }
}

/// `token` with the last character of its signature changed.
fn tamper(token: &str) -> String {
    use base64::Engine as _;
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut json: serde_json::Value = serde_json::from_slice(&engine.decode(token).unwrap()).unwrap();
    let sig = json["sig"].as_str().unwrap().to_string();
    let last = if sig.ends_with('0') { '1' } else { '0' };
    json["sig"] = json!(format!("{}{last}", &sig[..sig.len() - 1]));
    engine.encode(json.to_string())
}

#[test]
fn an_event_stream_resumed_with_last_event_id_loses_and_repeats_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let api = serve(dir.path());
    let id = api.start_run(json!("ticks"), json!({"n": 300}));
    let path = format!("/v1/runs/{id}/events");
    let mut stream = sse(&api.addr, &path, &api.token, None);
    assert_eq!(stream.status, 200);
    let mut seen = Vec::new();
    loop {
        let event = stream.next().expect("the stream stays open while the run waits");
        assert_eq!(event.id, event.data["seq"].as_u64(), "id: is the seq");
        seen.push(event.data["seq"].as_u64().unwrap());
        if event.data["kind"] == "run_waiting" {
            break;
        }
    }
    drop(stream);
    // Events flow while nobody listens: 300 steps' worth.
    assert_eq!(api.post(&format!("/v1/runs/{id}/signals/go"), json!({})).status, 202);
    let mut resumed = sse(&api.addr, &path, &api.token, seen.last().copied());
    let mut last_kind = String::new();
    while let Some(event) = resumed.next() {
        seen.push(event.data["seq"].as_u64().unwrap());
        last_kind = event.data["kind"].as_str().unwrap().to_string();
        // Drop it mid-flow once, and pick it up again.
        if seen.len() == 200 {
            break;
        }
    }
    if last_kind != "run_finished" {
        let mut again = sse(&api.addr, &path, &api.token, seen.last().copied());
        while let Some(event) = again.next() {
            seen.push(event.data["seq"].as_u64().unwrap());
            last_kind = event.data["kind"].as_str().unwrap().to_string();
        }
    }
    assert_eq!(last_kind, "run_finished", "the stream ends with the run");
    let expected: Vec<u64> = (1..=seen.len() as u64).collect();
    assert_eq!(seen, expected, "every seq once, in order, across two reconnects");
    assert!(seen.len() > 600, "300 steps' events: {}", seen.len());

    // A finished run's stream is its past, then ends; a bad Last-Event-ID is a 400.
    let mut past = sse(&api.addr, &path, &api.token, Some(seen.len() as u64 - 2));
    let tail: Vec<u64> = std::iter::from_fn(|| past.next()).map(|e| e.id.unwrap()).collect();
    assert_eq!(tail, [seen.len() as u64 - 1, seen.len() as u64]);
    let r = request_with(&api.addr, "GET", &path, Some(&api.token), &[("Last-Event-ID", "x")], b"");
    assert_eq!(r.status, 400, "{}", r.text());
    let r = request(&api.addr, "GET", "/v1/runs/r-none/events", Some(&api.token), b"");
    assert_eq!(r.status, 404, "{}", r.text());
}

#[test]
fn a_run_outlives_the_request_that_started_it_and_a_half_sent_request_harms_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let api = serve(dir.path());
    // A client that sends its request and goes before the answer.
    let body = json!({"blueprint": "ticks", "input": {"n": 3}}).to_string();
    let mut stream = api.addr.connect();
    crate::util::http::send(
        &mut *stream,
        "POST",
        "/v1/runs",
        &[("Authorization", &format!("Bearer {}", api.token))],
        body.as_bytes(),
    );
    drop(stream);
    // One that stops halfway through its body.
    let mut half = api.addr.connect();
    let head = format!(
        "POST /v1/runs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"blueprint\":",
        api.token
    );
    half.write_all(head.as_bytes()).unwrap();
    drop(half);
    wait_for("the run the first client started", || {
        api.get("/v1/runs").json().as_array().is_some_and(|runs| runs.iter().any(|r| r["blueprint"] == "counted"))
    });
    let runs = api.get("/v1/runs").json();
    assert_eq!(runs.as_array().unwrap().len(), 1, "the half-sent request started nothing: {runs}");
    let id = runs[0]["id"].as_str().unwrap().to_string();
    api.wait_status(&id, "waiting");
    assert_eq!(api.post(&format!("/v1/runs/{id}/signals/go"), json!({})).status, 202);
    assert_eq!(api.wait_status(&id, "finished")["ctx"]["last"], 2);
}

#[test]
fn bodies_past_the_limit_are_refused_before_they_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let api = serve(dir.path());
    let mut stream = api.addr.connect();
    let head = format!(
        "POST /v1/runs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        api.token,
        64 * 1024 * 1024
    );
    stream.write_all(head.as_bytes()).unwrap();
    // Some of the body, not all of it: the answer comes without the rest.
    let _ = stream.write_all(&vec![b' '; 1024 * 1024]);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("too_large"), "{answer}");
    // The server is still there.
    assert_eq!(api.get("/v1/runs").status, 200);
}

#[test]
fn the_api_listens_on_a_unix_socket_and_loopback_only_unless_told() {
    let dir = tempfile::tempdir().unwrap();
    script(dir.path());
    let api =
        Served::start_with(dir.path(), &["serve", "s.lua", "--listen", "unix:api.sock", "--state", "memory"], &[]);
    let Addr::Unix(path) = &api.addr else { panic!("{:?}", api.addr) };
    assert!(path.ends_with("api.sock"));
    assert_eq!(api.get("/v1/blueprints").status, 200);
    // Without a journal there is no list to read, and that is said.
    let r = api.get("/v1/runs");
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(r.text().contains("--state memory"), "{}", r.text());
    // The operator token file is the owner's alone, and a new one each start.
    let token_file = dir.path().join(".swarm/operator.token");
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777, 0o600);
    let first = api.token.clone();
    api.swarm.signal("TERM");
    let mut swarm = api.swarm;
    assert_eq!(swarm.wait_exit().code(), Some(0), "{}", swarm.stderr());
    assert!(!path.exists(), "the socket file goes with the server");
    let again =
        Served::start_with(dir.path(), &["serve", "s.lua", "--listen", "unix:api.sock", "--state", "memory"], &[]);
    assert_ne!(again.token, first, "a fresh token at each start");
    let r = request(&again.addr, "GET", "/v1/blueprints", Some(&first), b"");
    assert_eq!(r.status, 401, "the old token is no good: {}", r.text());

    // Another machine's reach needs --allow-remote.
    let out = command(dir.path(), &["serve", "s.lua", "--listen", "0.0.0.0:0", "--state", "memory"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--allow-remote"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = command(dir.path(), &["serve", "s.lua", "--listen", "localhost:80"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unix:PATH"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn an_interrupted_run_is_resumed_over_http_without_rerunning_its_finished_steps() {
    let dir = tempfile::tempdir().unwrap();
    let side = dir.path().join("side.txt");
    let gate = dir.path().join("release");
    write(
        dir.path(),
        "s.lua",
        &format!(
            r#"local swarm = require("swarm")
local F = swarm.flow
swarm.expose(swarm.blueprint({{
  id = "held",
  agents = {{
    count = function()
      local f = assert(io.open({side:?}, "a")); f:write("ran\n"); f:close()
      return true
    end,
    hold = {{ kind = "subprocess", spec = {{ program = "sh", args = {{ "-c", "while [ ! -f {gate} ]; do sleep 0.05; done; echo '{{\"ok\":true}}'" }} }} }},
  }},
  flow = F.seq({{
    F.step({{ agent = "count", out = "$.counted" }}),
    F.step({{ agent = "hold", out = "$.held" }}),
    F.wait({{ signal = "later", out = "$.later" }}),
  }}),
}}))
"#,
            gate = gate.display()
        ),
    );
    let env = [("SWARM_TOKEN_SECRET", SECRET)];
    let api = Served::start_with(dir.path(), &["serve", "s.lua", "--listen", "127.0.0.1:0"], &env);
    let id = api.start_run(json!("held"), json!({}));
    wait_for("the first step", || std::fs::read_to_string(&side).is_ok_and(|s| s.lines().count() == 1));
    wait_for("the second step to start", || {
        api.get(&format!("/v1/runs/{id}")).json()["steps"].as_array().is_some_and(|s| s.len() == 2)
    });
    // SIGKILL: the run is left running by a dead process, which the next one marks interrupted.
    let Served { mut swarm, .. } = api;
    swarm.signal("KILL");
    swarm.wait_exit();
    let api = Served::start_with(dir.path(), &["serve", "s.lua", "--listen", "127.0.0.1:0"], &env);
    api.wait_status(&id, "interrupted");
    // A signal to a run no process has goes through the journal, for whoever resumes it.
    let r = api.post(&format!("/v1/runs/{id}/signals/later"), json!({"value": "kept"}));
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!((r.json()["journaled"].clone(), r.json()["delivered"].clone()), (json!(true), json!(false)));
    std::fs::write(&gate, "").unwrap();
    let r = api.post(&format!("/v1/runs/{id}/resume"), json!({}));
    assert_eq!(r.status, 200, "{}", r.text());
    let done = api.wait_status(&id, "finished");
    assert_eq!(done["ctx"]["held"], json!({"ok": true}), "{done}");
    assert_eq!(done["ctx"]["later"], "kept", "the journaled signal reached the wait: {done}");
    assert_eq!(std::fs::read_to_string(&side).unwrap().lines().count(), 1, "the finished step did not run again");
    let r = api.post(&format!("/v1/runs/{id}/resume"), json!({}));
    assert_eq!(r.status, 409, "a finished run is not resumed: {}", r.text());
}

#[test]
fn a_name_exposed_twice_or_a_blueprint_that_does_not_compile_fails_the_load_at_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let twice = r#"local swarm = require("swarm")
local F = swarm.flow
local bp = swarm.blueprint({ id = "a", agents = { x = function() return 1 end }, flow = F.step({ agent = "x", out = "$.x" }) })
swarm.expose(bp)
swarm.expose(bp)
"#;
    write(dir.path(), "s.lua", twice);
    let api = Served::start_with(dir.path(), &["serve", "s.lua", "--listen", "127.0.0.1:0", "--state", "memory"], &[]);
    api.swarm.wait_stderr("is exposed already", 1);
    assert!(api.swarm.stderr().contains("s.lua:5:"), "{}", api.swarm.stderr());
    let r = api.post("/v1/runs", json!({"blueprint": "a"}));
    assert_eq!((r.status, r.kind()), (409, "conflict".to_string()), "{}", r.text());
    assert!(r.text().contains("no live version"), "{}", r.text());
    // A save that fixes it is served at once.
    crate::util::live::save_by_rename(
        &dir.path().join("s.lua"),
        &twice.replace("swarm.expose(bp)\nswarm.expose(bp)", "swarm.expose(bp, \"b\")"),
    );
    api.swarm.wait_stderr("reloaded in ", 1);
    let listed = api.get("/v1/blueprints").json();
    assert_eq!(listed[0]["id"], "b", "{listed}");
    let id = api.start_run(json!("b"), json!({}));
    assert!(id.starts_with("r-"));
    // A blueprint that does not compile: the reload fails at the expose, and "b" stays served.
    let broken = "local swarm = require(\"swarm\")\n\nswarm.expose({ id = \"c\", agents = {}, flow = swarm.flow.step({ agent = \"ghost\", out = \"$.x\" }) })\n";
    crate::util::live::save_by_rename(&dir.path().join("s.lua"), broken);
    api.swarm.wait_stderr("reload failed: ", 1);
    let err = api.swarm.stderr();
    assert!(err.contains("s.lua:3: swarm.expose: ") && err.contains("ghost"), "{err}");
    assert_eq!(api.get("/v1/blueprints").json()[0]["id"], "b");
}

#[test]
fn a_remote_operator_seat_gets_its_questions_as_events_and_answers_them_over_http() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "s.lua",
        r#"local swarm = require("swarm")
local F = swarm.flow
swarm.expose(swarm.blueprint({
  id = "signoff",
  operators = { { name = "reviewer", kind = "remote" } },
  agents = {
    sign_off = {
      kind = "operator",
      spec = { operator_ref = "reviewer" },
      profile = { system_prompt = "Approve {{ amount }} EUR?" },
    },
  },
  flow = F.step({ agent = "sign_off", input = F.p("$"), out = "$.verdict" }),
}))
"#,
    );
    let api = Served::start_with(
        dir.path(),
        &["serve", "s.lua", "--listen", "127.0.0.1:0"],
        &[("SWARM_TOKEN_SECRET", SECRET)],
    );
    let first = api.start_run(json!("signoff"), json!({"amount": 10}));
    api.wait_status(&first, "waiting");
    let mut seat = sse(&api.addr, "/v1/operators/reviewer/questions", &api.token, None);
    assert_eq!(seat.status, 200);
    // A question already open comes first, then one asked while attached.
    let q1 = seat.next().expect("the open question");
    assert_eq!(q1.data["run_id"], first.as_str(), "{:?}", q1.data);
    assert_eq!(q1.data["question"]["prompt"], "Approve 10 EUR?", "{:?}", q1.data);
    let second = api.start_run(json!("signoff"), json!({"amount": 20}));
    let q2 = seat.next().expect("the new question");
    assert_eq!(q2.data["run_id"], second.as_str());
    assert_ne!(q1.data["id"], q2.data["id"], "each run's question has its own id");

    // Answering the second, over HTTP, finishes its run only; the stream says it is answered.
    let id2 = q2.data["id"].as_str().unwrap();
    let r = api.post(&format!("/v1/operators/reviewer/answers/{id2}"), json!({"value": {"ok": true}}));
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(api.wait_status(&second, "finished")["ctx"]["verdict"], json!({"ok": true}));
    let gone = seat.next().expect("the answered notice");
    assert_eq!(gone.data["id"], id2);
    // The first is answered elsewhere (a plain signal): the seat hears that too.
    let signal = q1.data["signal"].as_str().unwrap();
    assert_eq!(api.post(&format!("/v1/runs/{first}/signals/{signal}"), json!({"value": "fine"})).status, 202);
    assert_eq!(seat.next().unwrap().data["id"], q1.data["id"]);
    assert_eq!(api.wait_status(&first, "finished")["ctx"]["verdict"], "fine");

    // A question that is not open, another seat's, and roles without the verbs.
    let r = api.post(&format!("/v1/operators/reviewer/answers/{id2}"), json!({"value": 1}));
    assert_eq!(r.status, 404, "{}", r.text());
    let r = api.post("/v1/operators/reviewer/answers/x", json!({}));
    assert_eq!(r.status, 400, "the answer is required: {}", r.text());
    let (observer, _) = mint(dir.path(), &["--role", "observer"]);
    let r = request(&api.addr, "GET", "/v1/operators/reviewer/questions", Some(&observer), b"");
    assert_eq!((r.status, r.kind()), (403, "role_violation".to_string()), "{}", r.text());
    let (senior, _) = mint(dir.path(), &["--role", "senior"]);
    let third = api.start_run(json!("signoff"), json!({"amount": 30}));
    let q3 = seat.next().expect("the third question");
    assert_eq!(q3.data["run_id"], third.as_str());
    let path = format!("/v1/operators/reviewer/answers/{}", q3.data["id"].as_str().unwrap());
    let r = request(&api.addr, "POST", &path, Some(&observer), br#"{"value": 1}"#);
    assert_eq!((r.status, r.kind()), (403, "role_violation".to_string()), "{}", r.text());
    // A senior may answer (answer_query), though it may not attach a seat.
    let r = request(&api.addr, "POST", &path, Some(&senior), br#"{"value": 3}"#);
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(api.wait_status(&third, "finished")["ctx"]["verdict"], 3);
}

/// A child that calls its host's API through `SWARM_API` with its own `SWARM_TOKEN` (and once
/// with a forged one), and answers with what it saw.
const CHILD: &str = r#"
import json, os, socket, stat
def get(path, token):
    where = os.environ["SWARM_API"]
    assert where.startswith("unix:"), where
    s = socket.socket(socket.AF_UNIX)
    s.connect(where[len("unix:"):])
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n".encode())
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    return int(data.split(b" ")[1])
where = os.environ["SWARM_API"][len("unix:"):]
print(json.dumps({
    "own": get("/v1/blueprints", os.environ["SWARM_TOKEN"]),
    "forged": get("/v1/blueprints", os.environ["SWARM_TOKEN"][:-4] + "AAAA"),
    "dir_mode": stat.S_IMODE(os.stat(os.path.dirname(where)).st_mode),
    "socket": where,
}))
"#;

#[test]
fn children_reach_their_hosts_api_on_a_private_socket_with_their_own_token() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "child.py", CHILD);
    write(
        dir.path(),
        "bp.lua",
        r#"local swarm = require("swarm")
local F = swarm.flow
return swarm.blueprint({
  id = "child",
  agents = { call = { kind = "subprocess", spec = { program = "python3", args = { "child.py" } } } },
  flow = F.step({ agent = "call", out = "$.seen" }),
})
"#,
    );
    let out = command(dir.path(), &["run", "bp.lua", "--state", "memory"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let ctx: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let seen = &ctx["seen"];
    assert_eq!(seen["own"], 200, "{ctx}");
    assert_eq!(seen["forged"], 401, "{ctx}");
    assert_eq!(seen["dir_mode"], 0o700, "{ctx}");
    let socket = Path::new(seen["socket"].as_str().unwrap());
    assert!(!socket.parent().unwrap().exists(), "the socket's directory went with the run");

    // Under serve too, for a run a client started.
    // Under serve too, for a run a client started. (require's second value, the file, is no name.)
    write(dir.path(), "s.lua", "local swarm = require(\"swarm\")\nswarm.expose(require(\"bp\"))\n");
    let api = Served::start_with(dir.path(), &["serve", "s.lua", "--listen", "127.0.0.1:0"], &[]);
    api.swarm.wait_stderr("looks like a file path", 1);
    crate::util::live::save_by_rename(
        &dir.path().join("s.lua"),
        "local swarm = require(\"swarm\")\nswarm.expose((require(\"bp\")))\n",
    );
    api.swarm.wait_stderr("reloaded in ", 1);
    let id = api.start_run(json!("child"), json!({}));
    let seen = api.wait_status(&id, "finished")["ctx"]["seen"].clone();
    assert_eq!((seen["own"].clone(), seen["forged"].clone()), (json!(200), json!(401)), "{seen}");
    assert_ne!(seen["socket"], ctx["seen"]["socket"], "each process has its own socket");
    let socket = std::path::PathBuf::from(seen["socket"].as_str().unwrap());
    assert!(socket.exists(), "the serve's socket is there while it serves");
    api.swarm.signal("TERM");
    let mut swarm = api.swarm;
    assert_eq!(swarm.wait_exit().code(), Some(0), "{}", swarm.stderr());
    assert!(!socket.parent().unwrap().exists(), "and gone when it stops");
}
