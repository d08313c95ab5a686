//! Script agents through the real binary: the example, and a `file` script beside its
//! blueprint.

mod binary;

use std::path::Path;

use binary::{stderr, stdout_json, swarm_in as swarm};
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
