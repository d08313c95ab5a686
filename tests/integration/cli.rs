//! `swarm check | compile | graph` run as a person runs them: the real binary on real files.

use crate::util::bin::{stderr, stdout, swarm, write};
use std::path::{Path, PathBuf};

fn examples() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "lua" || e == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "the examples folder holds the runnable examples");
    files
}

#[test]
fn every_example_checks() {
    for example in examples() {
        let out = swarm(&["check", example.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(0), "{}: {}", example.display(), stderr(&out));
        assert!(stderr(&out).contains("ok: "), "{}", stderr(&out));
    }
}

#[test]
fn compile_output_checks_back_and_is_stable() {
    let dir = tempfile::tempdir().unwrap();
    for example in examples() {
        let first = swarm(&["compile", example.to_str().unwrap()]);
        assert_eq!(first.status.code(), Some(0), "{}: {}", example.display(), stderr(&first));
        let json = write(dir.path(), "compiled.json", &stdout(&first));
        let check = swarm(&["check", &json]);
        assert_eq!(check.status.code(), Some(0), "{}: {}", example.display(), stderr(&check));
        let second = swarm(&["compile", &json]);
        assert_eq!(stdout(&second), stdout(&first), "{}: compile is not idempotent", example.display());
    }
}

#[test]
fn a_lua_blueprint_with_each_compile_error_exits_2_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "broken.lua",
        r#"local swarm = require("swarm")
local F = swarm.flow
return swarm.blueprint({
  id = "broken",
  agents = {
    { name = "a", kind = "rust_fn", spec = { fn_id = "echo" } },
    { name = "a", kind = "rust_fn", spec = { fn_id = "echo" } },
    { name = "k", kind = "mystery" },
    { name = "s", kind = "subprocess", spec = {} },
    { name = "o", kind = "operator", spec = { operator_ref = "nobody" } },
  },
  flow = F.seq({
    F.step({ agent = "a" }),
    F.step({ agent = "missing" }),
  }),
})
"#,
    );
    let out = swarm(&["check", &file]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    let lines: Vec<&str> = err.lines().collect();
    let expected = [
        "broken.lua:3: unresolved_operator_ref:",
        "broken.lua:3: duplicate_agent:",
        "broken.lua:3: unknown_kind:",
        "broken.lua:3: invalid_spec:",
        "broken.lua:14: unresolved_ref:",
    ];
    assert_eq!(lines.len(), expected.len(), "{err}");
    for (line, want) in lines.iter().zip(expected) {
        assert!(line.contains(want), "expected '{want}' in '{line}'");
    }
    let compile = swarm(&["compile", &file]);
    assert_eq!(compile.status.code(), Some(2));
    assert!(stdout(&compile).is_empty(), "no JSON for a blueprint that does not compile");
}

#[test]
fn broken_files_exit_2_with_a_located_message() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("syntax.lua", "local swarm = require('swarm')\nreturn swarm.blueprint({ id = 'x',\n", "syntax.lua:3:"),
        (
            "builder.lua",
            "local F = require('swarm').flow\n\nreturn { id = 'x', flow = F.step({ agent = 'a', out = 'nope' }) }\n",
            "builder.lua:3: F.step: `out`: invalid path `nope`",
        ),
        ("runtime.lua", "local x = nil\nreturn x.field\n", "runtime.lua:2:"),
        ("nothing.lua", "return 42\n", "expected a blueprint table"),
        ("shape.lua", "return { id = 'x', flow = { kind = 'seq', children = {} }, colour = 'red' }\n", "colour"),
        (
            "bad.json",
            "{\"id\": \"x\",\n \"flow\": {\"kind\": \"seq\", \"children\": []},\n \"agnets\": []}",
            "bad.json:3:",
        ),
    ];
    for (name, text, needle) in cases {
        let file = write(dir.path(), name, text);
        let out = swarm(&["check", &file]);
        assert_eq!(out.status.code(), Some(2), "{name}");
        assert!(stderr(&out).contains(needle), "{name}: expected '{needle}' in:\n{}", stderr(&out));
    }
    let out = swarm(&["check", "no/such/file.lua"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no/such/file.lua"), "{}", stderr(&out));
}

#[test]
fn required_modules_load_from_beside_the_blueprint() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "agents.lua", "return { greet = function(x) return x end }\n");
    let file = write(
        dir.path(),
        "main.lua",
        "local swarm = require('swarm')\nlocal agents = require('agents')\nreturn swarm.blueprint({ id = 'm', agents = agents, flow = swarm.flow.step({ agent = 'greet' }) })\n",
    );
    let out = swarm(&["check", &file]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(swarm(&[]).status.code(), Some(2));
    assert_eq!(swarm(&["check"]).status.code(), Some(2));
    assert_eq!(swarm(&["graph", "examples/hello.lua", "--format", "png"]).status.code(), Some(2));
}

#[test]
fn graph_draws_every_example_in_both_formats() {
    for example in examples() {
        let path = example.to_str().unwrap();
        let compiled = swarm(&["compile", path]);
        let bp: serde_json::Value = serde_json::from_slice(&compiled.stdout).unwrap();
        let mermaid = swarm(&["graph", path]);
        assert_eq!(mermaid.status.code(), Some(0), "{path}: {}", stderr(&mermaid));
        let text = stdout(&mermaid);
        assert!(text.contains("flowchart TD"), "{path}: {text}");
        assert!(text.contains(&format!("title: \"{}\"", bp["id"].as_str().unwrap())), "{path}");
        let dot = stdout(&swarm(&["graph", path, "--format", "dot"]));
        assert!(dot.starts_with(&format!("digraph \"{}\"", bp["id"].as_str().unwrap())), "{path}: {dot}");
        // Every agent a step names is drawn, in both formats.
        for agent in bp["agents"].as_array().unwrap() {
            let name = agent["name"].as_str().unwrap();
            let in_flow = serde_json::to_string(&bp["flow"]).unwrap().contains(&format!("\"ref\":\"{name}\""));
            if in_flow {
                assert!(text.contains(name) && dot.contains(name), "{path}: agent {name} is not drawn");
            }
        }
    }
    let broken = swarm(&["graph", "no/such.lua"]);
    assert_eq!(broken.status.code(), Some(2));
}
