//! Durable waits through the real binary: `swarm run --detach` leaves a waiting run in the
//! journal, `swarm runs signal` carries it on (or hands the signal to the live process that
//! has it), deadlines that pass while no process runs fire when the run is picked up, and a
//! `swarm serve` stopped or killed while a run waits picks it up again when restarted. The
//! steps before a wait append to a side file, so the tests count how often each ran.

use std::path::Path;

use crate::util::bin::{command, stderr, stdout_json, swarm_in, with_input, write};
use crate::util::live::{Swarm, lines};
use crate::util::wait_for;

/// Lua for an agent that appends its name to the file at `$.side`.
const MARK: &str = r#"local function mark(name)
  return function(input)
    local f = assert(io.open(input.side, "a"))
    f:write(name, "\n")
    f:close()
    return name
  end
end
"#;

/// A blueprint whose agents `before` and `after` append their name to the file at `$.side`,
/// with `middle` (flow nodes, Lua) between them.
fn blueprint(dir: &Path, middle: &str) -> String {
    let text = format!(
        r#"local swarm = require("swarm")
local F = swarm.flow
{MARK}return swarm.blueprint({{
  id = "side_waits",
  agents = {{ before = mark("before"), after = mark("after") }},
  flow = F.seq({{
    F.step({{ agent = "before", input = F.p("$"), out = "$.before" }}),
    {middle},
    F.step({{ agent = "after", input = F.p("$"), out = "$.after" }}),
  }}),
}})
"#
    );
    write(dir, "bp.lua", &text)
}

fn input(side: &Path) -> String {
    serde_json::json!({ "side": side.display().to_string() }).to_string()
}

/// The run id from `swarm run`'s first stderr line, `run <id>  journal <path>`.
fn run_id(stderr: &str) -> String {
    let first = stderr.lines().next().unwrap_or_default();
    first.split_whitespace().nth(1).unwrap_or_else(|| panic!("no run id in {stderr}")).to_string()
}

fn show(dir: &Path, id: &str) -> serde_json::Value {
    let out = swarm_in(dir, &["runs", "show", id, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    stdout_json(&out)
}

#[test]
fn a_detached_run_goes_on_when_signalled_and_its_steps_before_the_wait_run_once() {
    let dir = tempfile::tempdir().unwrap();
    let side = dir.path().join("side.txt");
    let bp = blueprint(dir.path(), r#"F.wait({ signal = "approve", out = "$.approval" })"#);
    let run = swarm_in(dir.path(), &["run", &bp, "--input", &input(&side), "--detach"]);
    let err = stderr(&run);
    assert_eq!(run.status.code(), Some(3), "{err}");
    let id = run_id(&err);
    assert!(err.contains(&format!("run {id} waiting for approve")), "{err}");
    assert!(run.stdout.is_empty(), "no ctx is printed for a run left waiting");
    assert_eq!(lines(&side), ["before"]);

    let listed = swarm_in(dir.path(), &["runs", "list"]);
    assert!(String::from_utf8_lossy(&listed.stdout).contains("waiting"), "{listed:?}");
    let shown = show(dir.path(), &id);
    assert_eq!(shown["status"], "waiting");
    assert_eq!(shown["waits"][0]["signal"], "approve");
    assert_eq!(shown["waits"][0]["pointer"], "/children/1");

    let signalled = swarm_in(dir.path(), &["runs", "signal", &id, "approve", "--value", r#"{"ok": true}"#]);
    assert_eq!(signalled.status.code(), Some(0), "{}", stderr(&signalled));
    let ctx = stdout_json(&signalled);
    assert_eq!(ctx["approval"], serde_json::json!({"ok": true}));
    assert_eq!(ctx["after"], "after");
    assert_eq!(lines(&side), ["before", "after"], "the step before the wait ran once");
    let shown = show(dir.path(), &id);
    assert_eq!(shown["status"], "finished");
    assert_eq!(shown["waits"], serde_json::json!([]));

    // A run that ended waits for nothing.
    let late = swarm_in(dir.path(), &["runs", "signal", &id, "approve"]);
    assert_eq!(late.status.code(), Some(2));
    assert!(stderr(&late).contains("not_waiting"), "{}", stderr(&late));
    let unknown = swarm_in(dir.path(), &["runs", "signal", "r-nope", "approve"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(stderr(&unknown).contains("no run r-nope"), "{}", stderr(&unknown));
}

#[test]
fn signals_sent_before_their_wait_are_buffered_in_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let side = dir.path().join("side.txt");
    let bp = blueprint(dir.path(), r#"F.wait({ signal = "a", out = "$.a" }), F.wait({ signal = "b", out = "$.b" })"#);
    let run = swarm_in(dir.path(), &["run", &bp, "--input", &input(&side), "--detach"]);
    assert_eq!(run.status.code(), Some(3), "{}", stderr(&run));
    let id = run_id(&stderr(&run));
    // b first: the run takes nothing, and waits again for a.
    let value = write(dir.path(), "b.json", r#"{"from": "a file"}"#);
    let early = swarm_in(dir.path(), &["runs", "signal", &id, "b", "--value", &format!("@{value}")]);
    assert_eq!(early.status.code(), Some(3), "{}", stderr(&early));
    assert!(stderr(&early).contains(&format!("run {id} waiting for a")), "{}", stderr(&early));
    let shown = show(dir.path(), &id);
    assert_eq!(shown["signals"][0]["name"], "b", "b is buffered: {shown}");
    let done = swarm_in(dir.path(), &["runs", "signal", &id, "a", "--value", "1"]);
    assert_eq!(done.status.code(), Some(0), "{}", stderr(&done));
    let ctx = stdout_json(&done);
    assert_eq!((ctx["a"].clone(), ctx["b"].clone()), (serde_json::json!(1), serde_json::json!({"from": "a file"})));
    assert_eq!(lines(&side), ["before", "after"]);
    let bad = swarm_in(dir.path(), &["runs", "signal", &id, "a", "--value", "{nope"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("--value: not valid JSON"), "{}", stderr(&bad));
}

#[test]
fn a_deadline_that_passed_while_no_process_ran_fires_when_the_run_is_picked_up() {
    let dir = tempfile::tempdir().unwrap();
    let side = dir.path().join("side.txt");
    let bp = blueprint(
        dir.path(),
        r#"F.try({ body = F.wait({ signal = "approve", out = "$.approval", timeout_ms = 300 }), err_at = "$.late",
             catch = F.assign({ at = "$.approval", value = "nobody answered" }) })"#,
    );
    let run = swarm_in(dir.path(), &["run", &bp, "--input", &input(&side), "--detach"]);
    assert_eq!(run.status.code(), Some(3), "{}", stderr(&run));
    let id = run_id(&stderr(&run));
    let deadline = show(dir.path(), &id)["waits"][0]["deadline_ms"].as_u64().expect("the wait has a deadline");
    // No process has the run while its deadline passes.
    wait_for("the wait's deadline to pass", || luaswarm::engine::now_ms() > deadline + 50);
    let resumed = swarm_in(dir.path(), &["runs", "resume", &id]);
    assert_eq!(resumed.status.code(), Some(0), "{}", stderr(&resumed));
    let ctx = stdout_json(&resumed);
    assert_eq!(ctx["approval"], "nobody answered");
    assert_eq!(ctx["late"]["kind"], "timeout");
    assert_eq!(lines(&side), ["before", "after"]);
}

#[test]
fn a_live_run_takes_a_signal_sent_from_another_process() {
    let dir = tempfile::tempdir().unwrap();
    let side = dir.path().join("side.txt");
    let bp = blueprint(dir.path(), r#"F.wait({ signal = "approve", out = "$.approval" })"#);
    let input = input(&side);
    let mut live = Swarm::start(dir.path(), &["run", &bp, "--input", &input]);
    live.wait_stderr("waiting for approve", 1);
    let id = run_id(&live.stderr());
    let sent = swarm_in(dir.path(), &["runs", "signal", &id, "approve", "--value", r#""yes""#]);
    assert_eq!(sent.status.code(), Some(0), "{}", stderr(&sent));
    assert!(stderr(&sent).contains("delivered"), "{}", stderr(&sent));
    assert!(sent.stdout.is_empty(), "the live process carries the run on, not this one");
    let status = live.wait_exit();
    assert_eq!(status.code(), Some(0), "{}", live.stderr());
    let ctx: serde_json::Value = serde_json::from_str(&live.stdout()).unwrap();
    assert_eq!(ctx["approval"], "yes");
    assert_eq!(lines(&side), ["before", "after"]);
}

#[test]
fn lanes_of_a_detached_fanout_wait_on_names_of_their_own() {
    let dir = tempfile::tempdir().unwrap();
    let side = dir.path().join("side.txt");
    let bp = blueprint(
        dir.path(),
        r#"F.fanout({ items = { "x", "y" }, bind = "$.name", out = "$.lanes", collect = "$.got",
             body = F.wait({ signal = F.p("$.name"), out = "$.got" }) })"#,
    );
    let run = swarm_in(dir.path(), &["run", &bp, "--input", &input(&side), "--detach"]);
    assert_eq!(run.status.code(), Some(3), "{}", stderr(&run));
    let id = run_id(&stderr(&run));
    assert!(stderr(&run).contains(&format!("run {id} waiting for x, y")), "{}", stderr(&run));
    let one = swarm_in(dir.path(), &["runs", "signal", &id, "y", "--value", "2"]);
    assert_eq!(one.status.code(), Some(3), "{}", stderr(&one));
    assert!(stderr(&one).contains(&format!("run {id} waiting for x")), "{}", stderr(&one));
    let two = swarm_in(dir.path(), &["runs", "signal", &id, "x", "--value", "1"]);
    assert_eq!(two.status.code(), Some(0), "{}", stderr(&two));
    assert_eq!(stdout_json(&two)["lanes"], serde_json::json!([1, 2]));
    assert_eq!(lines(&side), ["before", "after"]);
}

#[test]
fn a_console_question_left_waiting_is_answered_with_its_signal() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = crate::util::bin::root().join("tests/fixtures/console.lua");
    let fixture = fixture.to_str().unwrap();
    let args = ["run", fixture, "--input", r#"{"release":{"name":"swarm","version":"1.0"}}"#, "--detach"];
    let run = with_input(command(dir.path(), &args), "an answer nobody reads\n");
    let err = stderr(&run);
    assert_eq!(run.status.code(), Some(3), "{err}");
    assert!(err.contains("Approve the release of swarm 1.0?"), "the question is shown: {err}");
    let id = run_id(&err);
    let signal = question_signal(&err, &id);
    assert!(signal.starts_with("human."), "{signal}");
    let first = swarm_in(dir.path(), &["runs", "signal", &id, &signal, "--value", r#""ship it""#]);
    let err = stderr(&first);
    assert_eq!(first.status.code(), Some(3), "the second question waits: {err}");
    let second = question_signal(&err, &id);
    assert_ne!(second, signal, "each question has a signal of its own");
    let done = swarm_in(dir.path(), &["runs", "signal", &id, &second, "--value", r#"{"approved": true}"#]);
    assert_eq!(done.status.code(), Some(0), "{}", stderr(&done));
    let ctx = stdout_json(&done);
    assert_eq!(ctx["first"], "ship it");
    assert_eq!(ctx["second"], serde_json::json!({"approved": true}));
}

/// The signal named in the last `run <id> waiting for <signal>` line of `stderr`.
fn question_signal(stderr: &str, id: &str) -> String {
    let prefix = format!("run {id} waiting for ");
    let line = stderr.lines().rev().find(|l| l.starts_with(&prefix)).unwrap_or_else(|| panic!("{stderr}"));
    line[prefix.len()..].trim().to_string()
}

/// A served script that builds a blueprint waiting for `approve` and, with START_RUN set,
/// starts a run of it, naming it on stderr.
fn served_script(dir: &Path, side: &Path) -> String {
    let text = format!(
        r#"local swarm = require("swarm")
local F = swarm.flow
{MARK}local bp = swarm.blueprint({{
  id = "served_waits",
  agents = {{ before = mark("before"), after = mark("after") }},
  flow = F.seq({{
    F.step({{ agent = "before", input = F.p("$"), out = "$.before" }}),
    F.wait({{ signal = "approve", out = "$.approval", timeout_ms = 3600000 }}),
    F.step({{ agent = "after", input = F.p("$"), out = "$.after" }}),
  }}),
}})
if os.getenv("START_RUN") then
  local run = swarm.default_engine():start(bp, {{ side = {side:?} }})
  io.stderr:write("started ", run.id, "\n")
end
"#,
        side = side.display().to_string()
    );
    write(dir, "served.lua", &text)
}

fn status(dir: &Path, state: &str, id: &str) -> String {
    let out = swarm_in(dir, &["runs", "show", id, "--json", "--state", state]);
    stdout_json(&out)["status"].as_str().unwrap_or_default().to_string()
}

#[test]
fn a_serve_stopped_or_killed_while_a_run_waits_picks_it_up_when_restarted() {
    let dir = tempfile::tempdir().unwrap();
    let side = dir.path().join("side.txt");
    let script = served_script(dir.path(), &side);
    let state = dir.path().join("state.db").display().to_string();
    let serve = |start: bool| {
        let mut cmd = command(dir.path(), &["serve", &script, "--state", &state]);
        if start {
            cmd.env("START_RUN", "1");
        }
        Swarm::start_command(cmd, false)
    };

    let mut first = serve(true);
    first.wait_stderr("started ", 1);
    let id = first.stderr().lines().find_map(|l| l.strip_prefix("started ")).unwrap().trim().to_string();
    wait_for("the run to wait", || status(dir.path(), &state, &id) == "waiting");
    let deadline = show_in(dir.path(), &state, &id)["waits"][0]["deadline_ms"].clone();
    first.signal("TERM");
    assert_eq!(first.wait_exit().code(), Some(0), "{}", first.stderr());
    assert!(first.stderr().contains(&format!("run {id} left waiting")), "{}", first.stderr());
    assert_eq!(status(dir.path(), &state, &id), "waiting", "stopping serve leaves the run waiting");

    // Restarted: picked up, and killed outright while it waits.
    let mut second = serve(false);
    second.wait_stderr(&format!("picked up run {id}"), 1);
    second.signal("KILL");
    second.wait_exit();

    let third = serve(false);
    third.wait_stderr(&format!("picked up run {id}"), 1);
    wait_for("the run to wait again", || status(dir.path(), &state, &id) == "waiting");
    assert_eq!(show_in(dir.path(), &state, &id)["waits"][0]["deadline_ms"], deadline, "the deadline is kept");
    let sent = swarm_in(dir.path(), &["runs", "signal", &id, "approve", "--value", "true", "--state", &state]);
    assert_eq!(sent.status.code(), Some(0), "{}", stderr(&sent));
    assert!(stderr(&sent).contains("delivered"), "{}", stderr(&sent));
    wait_for("the served run to finish", || status(dir.path(), &state, &id) == "finished");
    let ctx = show_in(dir.path(), &state, &id)["ctx"].clone();
    assert_eq!(ctx["approval"], true);
    assert_eq!(lines(&side), ["before", "after"], "the step before the wait ran once across three processes");
}

fn show_in(dir: &Path, state: &str, id: &str) -> serde_json::Value {
    stdout_json(&swarm_in(dir, &["runs", "show", id, "--json", "--state", state]))
}

#[test]
fn the_senior_escalation_question_is_a_wait_too() {
    let dir = tempfile::tempdir().unwrap();
    let bp = write(
        dir.path(),
        "senior.lua",
        r#"local swarm = require("swarm")
local F = swarm.flow
return swarm.blueprint({
  id = "escalates",
  layers = { "senior_escalation" },
  hints = { global = { senior_escalation = { ask = "console" } } },
  agents = { flaky = function() error("the model is down") end },
  flow = F.step({ agent = "flaky", out = "$.answer" }),
})
"#,
    );
    let run = swarm_in(dir.path(), &["run", &bp, "--detach"]);
    let err = stderr(&run);
    assert_eq!(run.status.code(), Some(3), "{err}");
    let id = run_id(&err);
    let signal = question_signal(&err, &id);
    assert!(signal.starts_with("senior."), "{signal}");
    let done = swarm_in(dir.path(), &["runs", "signal", &id, &signal, "--value", r#""use the cache""#]);
    assert_eq!(done.status.code(), Some(0), "{}", stderr(&done));
    let ctx = stdout_json(&done);
    assert_eq!(ctx["answer"]["senior_answer"], "use the cache");
    assert_eq!(ctx["answer"]["original"]["error"].as_str().map(|e| e.contains("the model is down")), Some(true));
}

#[test]
fn detach_needs_a_journal_and_a_run_that_never_waits_just_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let side = dir.path().join("side.txt");
    let bp = blueprint(dir.path(), r#"F.assign({ at = "$.middle", value = true })"#);
    let memory = swarm_in(dir.path(), &["run", &bp, "--input", &input(&side), "--detach", "--state", "memory"]);
    assert_eq!(memory.status.code(), Some(2));
    assert!(stderr(&memory).contains("--detach leaves the run in the journal"), "{}", stderr(&memory));
    let run = swarm_in(dir.path(), &["run", &bp, "--input", &input(&side), "--detach"]);
    assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
    assert_eq!(stdout_json(&run)["middle"], true);
    assert_eq!(lines(&side), ["before", "after"]);
}

#[test]
fn a_signal_value_larger_than_the_host_takes_is_refused_before_anything_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let side = dir.path().join("side.txt");
    let bp = blueprint(dir.path(), r#"F.wait({ signal = "approve", out = "$.approval" })"#);
    let run = swarm_in(dir.path(), &["run", &bp, "--input", &input(&side), "--detach"]);
    let id = run_id(&stderr(&run));
    let big = dir.path().join("big.json");
    let file = std::fs::File::create(&big).unwrap();
    file.set_len((64 << 20) + 1).unwrap();
    let out = swarm_in(dir.path(), &["runs", "signal", &id, "approve", "--value", &format!("@{}", big.display())]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("more than a signal may carry"), "{}", stderr(&out));
    assert_eq!(show(dir.path(), &id)["signals"], serde_json::json!([]), "nothing was sent");
}

/// An inline agent that dispatches sub-tasks, then waits: when the run is carried on, the
/// agent runs again from its start, and the sub-dispatches that finished are replayed from the
/// journal (the side file shows each tool ran once), while a new one (another input) runs.
#[test]
fn sub_dispatches_that_finished_before_a_wait_are_replayed_when_the_run_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let side = dir.path().join("side.txt");
    let text = format!(
        r#"local swarm = require("swarm")
local F = swarm.flow
{MARK}local function boss(input, task)
  local a = task:dispatch("tool", {{ side = input.side, n = 1 }})
  local b = task:dispatch("tool", {{ side = input.side, n = 1 }})
  local c = task:dispatch("nested", {{ side = input.side }})
  local answer = swarm.wait("go")
  local d = task:dispatch("tool", {{ side = input.side, n = answer }})
  return {{ a, b, c, d }}
end
local function nested(input, task)
  return task:dispatch("tool", {{ side = input.side, n = 9 }})
end
return swarm.blueprint({{
  id = "replayed_dispatch",
  agents = {{ boss = boss, tool = mark("tool"), nested = nested }},
  flow = F.step({{ agent = "boss", input = F.p("$"), out = "$.out" }}),
}})
"#
    );
    let bp = write(dir.path(), "bp.lua", &text);
    let run = swarm_in(dir.path(), &["run", &bp, "--input", &input(&side), "--detach"]);
    let err = stderr(&run);
    assert_eq!(run.status.code(), Some(3), "{err}");
    assert_eq!(lines(&side), ["tool", "tool", "tool"], "two direct dispatches and a nested one");
    let id = run_id(&err);
    let signalled = swarm_in(dir.path(), &["runs", "signal", &id, "go", "--value", "2"]);
    assert_eq!(signalled.status.code(), Some(0), "{}", stderr(&signalled));
    assert_eq!(stdout_json(&signalled)["out"], serde_json::json!(["tool", "tool", "tool", "tool"]));
    assert_eq!(lines(&side), ["tool", "tool", "tool", "tool"], "only the dispatch after the wait ran again");
}
