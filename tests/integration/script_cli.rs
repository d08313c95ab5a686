//! Script agents through the real binary: the example, and a `file` script beside its
//! blueprint.

use std::path::Path;

use crate::util::bin::{stderr, stdout_json, swarm_in as swarm};
use serde_json::json;

#[test]
fn the_script_agent_example_checks_and_runs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let check = swarm(root, &["check", "examples/script_agent.lua"]);
    assert_eq!(check.status.code(), Some(0), "{}", stderr(&check));

    let input = json!({"docs": [{"text": "The cat and the hat. The cat sat."}, {"text": "Lua is small; Lua is fast"}]});
    let out = swarm(root, &["run", "examples/script_agent.lua", "--input", &input.to_string()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let ctx = stdout_json(&out);
    assert_eq!(ctx["summaries"], json!([{"words": 8, "top": "cat"}, {"words": 6, "top": "lua"}]));
    assert_eq!(ctx["report"], json!(["8 words, mostly about cat", "6 words, mostly about lua"]));

    // An empty document fails its summary with `ok = false`, and the run with it.
    let out = swarm(root, &["run", "examples/script_agent.lua", "--input", r#"{"docs":[{"text":"..."}]}"#]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains(r#"the script returned ok = false with value {\"words\":0}"#), "{}", stderr(&out));
}

#[test]
fn a_file_script_runs_beside_its_blueprint_and_names_its_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("agents")).unwrap();
    std::fs::write(
        dir.path().join("agents/shout.lua"),
        "-- Shouts its prompt.\nif _PROMPT == '' then\n  error('nothing to shout')\nend\nreturn _PROMPT:upper() .. '!'\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("bp.lua"),
        r#"local swarm = require("swarm")
return swarm.blueprint({
  id = "shout",
  agents = { shout = { kind = "lua", spec = { file = "agents/shout.lua", timeout_ms = 500 } } },
  flow = swarm.flow.step({ agent = "shout", input = swarm.flow.p("$.text"), out = "$.loud" }),
})
"#,
    )
    .unwrap();
    // Run from elsewhere: the script resolves against the blueprint's folder.
    let bp = dir.path().join("bp.lua");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = swarm(root, &["run", bp.to_str().unwrap(), "--input", r#"{"text":"hey"}"#]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout_json(&out)["loud"], json!("HEY!"));

    let out = swarm(root, &["run", bp.to_str().unwrap(), "--input", r#"{"text":""}"#]);
    assert_eq!(out.status.code(), Some(1));
    let script = dir.path().join("agents/shout.lua");
    assert!(stderr(&out).contains(&format!("{}:3: nothing to shout", script.display())), "{}", stderr(&out));

    std::fs::remove_file(&script).unwrap();
    let out = swarm(root, &["check", bp.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("invalid_spec") && stderr(&out).contains("does not exist"), "{}", stderr(&out));
}

#[test]
fn what_a_script_prints_is_kept_as_a_bounded_tail_not_written_out() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bp.lua"),
        r#"local swarm = require("swarm")
local loud = "for i = 1, 200000 do print('line ' .. i .. ' ' .. string.rep('x', 80)) end "
return swarm.blueprint({
  id = "chatty",
  agents = {
    quiet = { kind = "lua", spec = { source = loud .. "return 'done'" } },
    loud = { kind = "lua", spec = { source = loud .. "error('gave up', 0)" } },
  },
  flow = swarm.flow.seq({
    swarm.flow.step({ agent = "quiet", out = "$.quiet" }),
    swarm.flow.step({ agent = "loud", out = "$.loud" }),
  }),
})
"#,
    )
    .unwrap();
    let out = swarm(dir.path(), &["run", "bp.lua", "--events", "ndjson"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    // About 18 MB were printed; the host's stderr holds the tails, not the stream.
    assert!(err.len() < 200_000, "stderr has {} bytes", err.len());
    assert!(err.contains("gave up; print (last 8 KiB of "), "{err}");
    assert!(err.contains("line 200000 xxxx"), "the end of what it printed is kept");
    // The step that passed shows its tail as a progress event.
    let progress = err
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|e| e["kind"] == "worker_output" && e["output"]["stage"] == "print")
        .unwrap_or_else(|| panic!("no print event in {err}"));
    let note = progress["output"]["note"].as_str().unwrap();
    let last_line = format!("line 200000 {}", "x".repeat(80));
    assert!(note.starts_with('…') && note.ends_with(&last_line), "{note}");
    assert!(note.len() < 9_000, "{}", note.len());
}
