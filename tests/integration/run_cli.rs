//! `swarm run` end to end: the real binary on the examples and on purpose-built blueprints.

use crate::util::bin::{stderr, stdout_json, swarm};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn the_examples_run() {
    let hello = swarm(&["run", "examples/hello.lua", "--input", r#"{"name":"world"}"#]);
    assert_eq!(hello.status.code(), Some(0), "{}", stderr(&hello));
    assert_eq!(stdout_json(&hello)["loud"], "HELLO, WORLD!");
    assert!(stderr(&hello).starts_with("run r-"), "the first stderr line names the run: {}", stderr(&hello));

    let review =
        swarm(&["run", "examples/review.lua", "--input", r#"{"drafts":["short","This one is long enough to pass."]}"#]);
    assert_eq!(review.status.code(), Some(0), "{}", stderr(&review));
    let ctx = stdout_json(&review);
    assert_eq!(ctx["status"], "done");
    assert_eq!(ctx["reviewed"].as_array().unwrap().len(), 2);
    assert!(ctx["reviewed"][0].as_str().unwrap().ends_with('.'), "the short draft was revised: {ctx}");

    let operator = swarm(&[
        "run",
        "examples/operator.lua",
        "--input",
        r#"{"expenses":[{"amount":40,"what":"books"},{"amount":900,"what":"a laptop"}]}"#,
    ]);
    assert_eq!(operator.status.code(), Some(0), "{}", stderr(&operator));
    let decisions = &stdout_json(&operator)["decisions"];
    assert_eq!(decisions[0]["value"]["note"], "Approve 40 EUR for books?");
    assert_eq!(decisions[1]["status"], "rejected");
    assert_eq!(decisions[1]["reason"]["kind"], "blocked");

    let pipeline = swarm(&["run", "examples/pipeline.lua", "--input", r#"{"topic":"lua"}"#]);
    assert_eq!(pipeline.status.code(), Some(0), "{}", stderr(&pipeline));
    let ctx = stdout_json(&pipeline);
    assert_eq!(ctx["publish"], "printed: lua!!!");
    assert_eq!(ctx["review_retries"], 2);
    assert_eq!(ctx["done"], true);
    assert!(stderr(&pipeline).contains("critic attempt 1 ok"), "the logging layer logged: {}", stderr(&pipeline));

    let triage = swarm(&["run", "examples/triage.json", "--input", r#"{"ticket":{"id":1,"severity":"low"}}"#]);
    assert_eq!(triage.status.code(), Some(0), "{}", stderr(&triage));
    assert_eq!(stdout_json(&triage)["archived"], 1);
}

#[test]
fn layers_act_visibly_on_their_steps() {
    let out = swarm(&["run", "examples/layered.lua", "--input", r#"{"question":"life"}"#, "--events", "ndjson"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let reply = &stdout_json(&out)["reply"];
    assert_eq!(reply["answer"], "life? 42");
    assert_eq!(reply["try"], 3, "the Lua layer retried twice and its hint reached the agent");
    let events: Vec<serde_json::Value> =
        stderr(&out).lines().skip(1).map(|l| serde_json::from_str(l).expect("an event per line")).collect();
    let phases: Vec<&str> = events
        .iter()
        .filter(|e| e["kind"] == "layer_note" && e["layer"] == "audit")
        .map(|e| e["note"]["phase"].as_str().unwrap())
        .collect();
    // audit is inside patient, so it sees each of the three tries.
    assert_eq!(phases, ["started", "finished", "started", "finished", "started", "finished"]);
    let attempts = events.iter().filter(|e| e["kind"] == "attempt_finished").count();
    assert_eq!(attempts, 1, "the retries happened inside one attempt");
}

#[test]
fn input_comes_from_a_file_too() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input.json");
    std::fs::write(&input, r#"{"name":"file"}"#).unwrap();
    let out = swarm(&["run", "examples/hello.lua", "--input", &format!("@{}", input.display())]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout_json(&out)["greeting"], "hello, file");
}

#[test]
fn events_stream_as_ndjson_in_order() {
    let out = swarm(&["run", "examples/review.lua", "--input", r#"{"drafts":["a"]}"#, "--events", "ndjson"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    let mut lines = err.lines();
    let first = lines.next().unwrap();
    assert!(first.starts_with("run ") && first.ends_with("  journal .swarm/state.db"), "run line first: {first}");
    let run_id = first.split_whitespace().nth(1).unwrap().to_string();
    let events: Vec<serde_json::Value> =
        lines.map(|l| serde_json::from_str(l).expect("each line is an event")).collect();
    assert_eq!(events.first().unwrap()["kind"], "run_started");
    assert_eq!(events.last().unwrap()["kind"], "run_finished");
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["seq"], i as u64 + 1);
        assert_eq!(e["run_id"], run_id.as_str());
    }
    for kind in ["task_created", "attempt_started", "attempt_finished"] {
        assert!(events.iter().any(|e| e["kind"] == kind), "no {kind} event");
    }
}

#[test]
fn a_failing_run_exits_1_with_the_structured_error() {
    let out = swarm(&["run", "tests/fixtures/fails.lua"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "no ctx on stdout for a failed run");
    let last = stderr(&out).lines().last().unwrap().to_string();
    let report: serde_json::Value = serde_json::from_str(&last).expect("the error is JSON");
    assert_eq!(report["error"]["kind"], "failed");
    assert_eq!(report["error"]["step"], "second");
    assert!(report["error"]["message"].as_str().unwrap().contains("fails.lua:9: no luck"), "{report}");
}

#[test]
fn usage_and_compile_errors_exit_2() {
    assert_eq!(swarm(&["run", "examples/hello.lua", "--input", "{not json"]).status.code(), Some(2));
    assert_eq!(swarm(&["run", "examples/hello.lua", "--input", "[1,2]"]).status.code(), Some(2));
    assert_eq!(swarm(&["run", "examples/hello.lua", "--events", "xml"]).status.code(), Some(2));
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.lua");
    std::fs::write(&bad, "local swarm = require('swarm')\nreturn swarm.blueprint({ id = 'b', flow = swarm.flow.step({ agent = 'x' }) })\n").unwrap();
    let out = swarm(&["run", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("bad.lua:2: unresolved_ref"), "{}", stderr(&out));
}

#[test]
fn a_thousand_sleeping_lanes_interleave() {
    let started = Instant::now();
    let out = swarm(&["run", "tests/fixtures/lanes.lua"]);
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let done = stdout_json(&out)["done"].as_array().unwrap().len();
    assert_eq!(done, 1000);
    // Serialized, 1,000 × 50 ms would take 50 s; the bound is generous so only that fails it.
    assert!(took < Duration::from_secs(10), "1,000 lanes of 50 ms took {took:?}");
}

#[test]
fn ctrl_c_cancels_the_run_and_every_task_in_flight() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_swarm"))
        .args(["run", "tests/fixtures/slow.lua", "--events", "ndjson"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    // Wait until both slow attempts have started, then interrupt.
    let mut started = 0;
    let mut events = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) {
            if event["kind"] == "attempt_started" && event["agent"] == "wait" {
                started += 1;
            }
            events.push(event);
        }
        if started == 2 {
            break;
        }
    }
    assert_eq!(started, 2, "the slow steps started");
    let interrupted = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(interrupted.success());
    for line in lines {
        let line = line.unwrap();
        if let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) {
            events.push(event);
        }
    }
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(1));
    let cancelled = events.iter().filter(|e| e["kind"] == "task_cancelled").count();
    assert_eq!(cancelled, 2, "both tasks in flight were cancelled");
    let finished = events.iter().find(|e| e["kind"] == "run_finished").expect("run_finished");
    assert_eq!(finished["status"], "cancelled");
    let error = events.last().unwrap();
    assert_eq!(error["error"]["kind"], "cancelled", "the last line is the error report");
}

#[test]
fn on_a_terminal_each_attempt_gets_a_line_and_a_live_line_counts_the_steps() {
    // `script` gives the child a pseudo-terminal, as a person's shell would.
    let command = format!("{} run examples/hello.lua --input '{{\"name\":\"tty\"}}'", env!("CARGO_BIN_EXE_swarm"));
    let out = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("script(1) from util-linux runs");
    let raw = String::from_utf8_lossy(&out.stdout).replace("\x1b[2K", "");
    // The live line is drawn after a carriage return, each time over the last one.
    assert!(raw.contains("\r  1/2 steps, ") && raw.contains("\r  2/2 steps, "), "{raw:?}");
    // What stays on the screen: each line as the last carriage return left it.
    let screen: Vec<&str> = raw.split('\n').map(|l| l.trim_end_matches('\r').rsplit('\r').next().unwrap()).collect();
    let lines: Vec<&&str> = screen.iter().filter(|l| l.contains(" ms")).collect();
    assert_eq!(lines.len(), 2, "one line per attempt:\n{screen:#?}");
    for (line, agent) in lines.iter().zip(["greet", "shout"]) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(fields[..3], [agent, "pass", "#1"], "{line}");
        assert!(fields[3].parse::<f64>().is_ok(), "milliseconds: {line}");
    }
    assert!(!screen.iter().any(|l| l.contains("steps,")), "the live line is cleared at the end: {screen:#?}");
}

#[test]
fn off_a_terminal_each_attempt_gets_a_plain_line() {
    let out = swarm(&["run", "examples/hello.lua", "--input", r#"{"name":"ci"}"#, "--state", "memory"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(!err.contains('\r') && !err.contains('\x1b'), "no terminal codes in a pipe: {err:?}");
    let lines: Vec<Vec<&str>> = err.lines().skip(1).map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(lines.len(), 2, "{err}");
    for (fields, agent) in lines.iter().zip(["greet", "shout"]) {
        assert_eq!(fields[..3], [agent, "pass", "#1"], "{err}");
        assert!(fields[3].parse::<f64>().is_ok() && fields[4] == "ms", "{err}");
    }
}

#[test]
fn an_evaluation_error_names_its_node_and_the_line_that_built_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("compare.lua");
    std::fs::write(
        &file,
        r#"local swarm = require("swarm")
local F = swarm.flow
return swarm.blueprint({
  id = "compare",
  agents = { score = function() return 3 end },
  flow = F.seq({
    F.step({ agent = "score", out = "$.score" }),
    F.branch({ cond = F.p("$.score"):gt("high"), on_true = F.assign({ at = "$.big", value = true }) }),
  }),
})
"#,
    )
    .unwrap();
    let out = swarm(&["run", file.to_str().unwrap(), "--state", "memory"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let last = stderr(&out).lines().last().unwrap().to_string();
    let error = &serde_json::from_str::<serde_json::Value>(&last).unwrap()["error"];
    assert_eq!(error["message"], "type error in gt: cannot compare number with string");
    assert_eq!(error["pointer"], "/children/1/cond");
    assert_eq!((error["file"].as_str().unwrap(), &error["line"]), (file.to_str().unwrap(), &8.into()), "{error}");
}
