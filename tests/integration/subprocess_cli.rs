//! Subprocess agents through the real binary: the examples, and blueprints written for the test.

use crate::util::bin::{stderr, stdout_json, swarm, write};

const EXAMPLES: [&str; 3] = ["examples/shell_agent.lua", "examples/streaming_agent.lua", "examples/keep_alive.lua"];

#[test]
fn the_subprocess_examples_check() {
    for example in EXAMPLES {
        let out = swarm(&["check", example]);
        assert_eq!(out.status.code(), Some(0), "{example}: {}", stderr(&out));
    }
}

#[test]
fn the_shell_agent_example_runs() {
    let out = swarm(&["run", "examples/shell_agent.lua", "--input", r#"{"order":{"id":7,"items":["tea"]}}"#]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let wrapped = &stdout_json(&out)["wrapped"];
    assert_eq!(wrapped["order"], serde_json::json!({"id": 7, "items": ["tea"]}));
    assert_eq!((&wrapped["agent"], &wrapped["attempt"]), (&"wrap".into(), &1.into()));
    assert_eq!(wrapped["bytes"], r#"{"id":7,"items":["tea"]}"#.len());
}

#[test]
fn the_streaming_example_runs_and_its_events_stream() {
    let input = r#"{"text":"the quick brown fox"}"#;
    let out = swarm(&["run", "examples/streaming_agent.lua", "--input", input, "--events", "ndjson"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout_json(&out)["count"], serde_json::json!({"words": 4}));
    let outputs: Vec<serde_json::Value> = stderr(&out)
        .lines()
        .skip(1)
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["kind"] == "worker_output")
        .map(|e| e["output"].clone())
        .collect();
    assert_eq!(outputs.len(), 2, "{outputs:?}");
    assert_eq!(outputs[0]["type"], "progress");
    assert_eq!(outputs[1], serde_json::json!({"type": "partial", "chunk": {"kind": "inline", "value": 4}}));
}

#[test]
fn the_keep_alive_example_serves_every_step_from_one_child_and_kills_it_at_exit() {
    let out = swarm(&["run", "examples/keep_alive.lua", "--input", r#"{"items":["a",{"b":[1,2]},3]}"#]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let replies = stdout_json(&out)["replies"].as_array().unwrap().clone();
    let echoes: Vec<&serde_json::Value> = replies.iter().map(|r| &r["echo"]).collect();
    assert_eq!(echoes, [&serde_json::json!("a"), &serde_json::json!({"b": [1, 2]}), &serde_json::json!(3)]);
    let mut served: Vec<u64> = replies.iter().map(|r| r["served"].as_u64().unwrap()).collect();
    served.sort_unstable();
    assert_eq!(served, [1, 2, 3]);
    let pid = &replies[0]["pid"];
    assert!(replies.iter().all(|r| &r["pid"] == pid), "one child: {replies:?}");
    // swarm has exited; its child must stop running the loop (SIGKILL takes a moment).
    crate::util::wait_for("the keep-alive child stopping after swarm", || {
        !String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default())
            .contains("served=0")
    });
}

#[test]
fn a_lua_blueprint_runs_a_plain_and_an_ndjson_agent_from_its_own_directory() {
    let dir = tempfile::tempdir().unwrap();
    // A relative program path is taken from the blueprint's directory, not swarm's.
    let script = write(dir.path(), "upper.sh", "#!/bin/sh\ntr a-z A-Z\n");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let file = write(
        dir.path(),
        "bp.lua",
        r#"local swarm = require("swarm")
local F = swarm.flow
return swarm.blueprint({
  id = "two_kinds",
  agents = {
    upper = { kind = "subprocess", spec = { program = "./upper.sh" } },
    stream = { kind = "subprocess", spec = {
      program = "sh", stream_mode = "ndjson_lines",
      args = { "-c", [[printf '{"type":"progress","stage":"go"}\n{"type":"final","content":{"kind":"inline","value":%s},"ok":true}\n' "$(cat)"]] },
    } },
  },
  flow = F.seq({
    F.step({ agent = "upper", input = F.p("$.word"), out = "$.loud" }),
    F.step({ agent = "stream", input = F.p("$.loud"), out = "$.echoed" }),
  }),
})
"#,
    );
    let out = swarm(&["run", &file, "--input", r#"{"word":"quiet"}"#]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let ctx = stdout_json(&out);
    assert_eq!((&ctx["loud"], &ctx["echoed"]), (&"QUIET".into(), &"QUIET".into()));
}

#[test]
fn a_missing_program_fails_check_with_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "missing.lua",
        r#"local swarm = require("swarm")
return swarm.blueprint({
  id = "missing",
  agents = { ghost = { kind = "subprocess", spec = { program = "no-such-program-xyz" } } },
  flow = swarm.flow.step({ agent = "ghost", input = 1, out = "$.x" }),
})
"#,
    );
    let out = swarm(&["check", &file]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("missing.lua:"), "{err}");
    assert!(
        err.contains("invalid_spec: agent 'ghost' (subprocess): program 'no-such-program-xyz' was not found on PATH"),
        "{err}"
    );
}

#[test]
fn a_missing_cwd_fails_check_naming_the_agent_the_line_and_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "nowhere.lua",
        r#"local swarm = require("swarm")
return swarm.blueprint({
  id = "nowhere",
  agents = {
    lost = { kind = "subprocess", spec = { program = "/bin/sh", cwd = "work/out" } },
  },
  flow = swarm.flow.step({ agent = "lost", input = 1, out = "$.x" }),
})
"#,
    );
    let out = swarm(&["check", &file]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    let missing = dir.path().join("work/out");
    assert!(err.contains("nowhere.lua:"), "{err}");
    assert!(
        err.contains(&format!(
            "invalid_spec: agent 'lost' (subprocess): cwd 'work/out' does not exist ({})",
            missing.display()
        )),
        "{err}"
    );
}

#[test]
fn a_failing_subprocess_step_exits_1_with_its_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "fails.lua",
        r#"local swarm = require("swarm")
return swarm.blueprint({
  id = "fails",
  agents = { bad = { kind = "subprocess", spec = { program = "/bin/sh", args = { "-c", "echo 'no disk' >&2; exit 5" } } } },
  flow = swarm.flow.step({ agent = "bad", input = 1, out = "$.x" }),
})
"#,
    );
    let out = swarm(&["run", &file]);
    assert_eq!(out.status.code(), Some(1));
    let last = stderr(&out).lines().last().unwrap().to_string();
    let report: serde_json::Value = serde_json::from_str(&last).unwrap();
    assert_eq!(report["error"]["message"], "/bin/sh exited with code 5; stderr: no disk");
    assert_eq!(report["error"]["kind"], "failed");
}
