//! The editor definitions cover the whole `swarm` module, and `swarm init` starts a project
//! that checks and runs.

use std::collections::BTreeSet;
use std::process::Command;

use luaswarm::cli::types::DEFINITIONS;
use luaswarm::host::Host;
use mlua::{Table, Value};

/// Every name the definitions declare: `function a.b.c(`, `function A:m(`, `a.b = ...`, and
/// `---@field` lines, with `local X = {}` (or `X = {}`) after `---@class NAME` read as NAME.
fn declared() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (_, text) in DEFINITIONS {
        let mut aliases: Vec<(String, String)> = Vec::new();
        let mut class: Option<String> = None;
        let resolve = |aliases: &Vec<(String, String)>, path: &str| -> String {
            let (head, rest) = path.split_once('.').unwrap_or((path, ""));
            match aliases.iter().find(|(alias, _)| alias == head) {
                Some((_, name)) if rest.is_empty() => name.clone(),
                Some((_, name)) => format!("{name}.{rest}"),
                None => path.to_string(),
            }
        };
        for line in text.lines() {
            let line = line.trim();
            if let Some(rest) = line.strip_prefix("---@class ") {
                class = rest.split([' ', ':']).next().map(str::to_string);
            } else if let Some(rest) = line.strip_prefix("---@field ") {
                if let (Some(class), Some(field)) = (&class, rest.split_whitespace().next()) {
                    names.insert(format!("{class}.{}", field.trim_end_matches('?')));
                }
            } else if let Some(rest) = line.strip_prefix("function ") {
                let name = rest.split('(').next().unwrap().replace(':', ".");
                names.insert(resolve(&aliases, &name));
            } else if !line.starts_with("--") && line.contains(" = ") {
                let (lhs, rhs) = line.split_once(" = ").unwrap();
                let lhs = lhs.trim_start_matches("local ").trim();
                if rhs.trim() == "{}" && lhs.chars().all(|c| c.is_alphanumeric() || c == '_') {
                    if let Some(class) = class.take() {
                        aliases.push((lhs.to_string(), class.clone()));
                        names.insert(class);
                    }
                } else {
                    names.insert(resolve(&aliases, lhs));
                }
            }
        }
    }
    names
}

/// The exported names of `table` under `prefix`, through the sub-tables in `descend`.
fn exported(prefix: &str, table: &Table, descend: &[&str], out: &mut BTreeSet<String>) {
    for pair in table.pairs::<Value, Value>() {
        let (key, value) = pair.unwrap();
        let Value::String(key) = key else { continue };
        let name = format!("{prefix}.{}", key.to_str().unwrap());
        if let Value::Table(t) = &value
            && descend.contains(&name.as_str())
        {
            exported(&name, t, descend, out);
        }
        out.insert(name);
    }
}

#[test]
fn the_definitions_name_every_export_of_swarm_and_std() {
    let host = Host::new().unwrap();
    let mut exports = BTreeSet::new();
    let descend = ["swarm.flow", "swarm.json", "swarm.token", "swarm.gate", "swarm.output"];
    exported("swarm", &host.swarm().unwrap(), &descend, &mut exports);
    for module in ["std.layers", "std.pipeline"] {
        let table: Table = host.lua().load(format!("return require('{module}')")).eval().unwrap();
        exported(module, &table, &[], &mut exports);
    }
    assert!(exports.len() > 40 && exports.contains("swarm.flow.step"), "{exports:?}");
    let declared = declared();
    let missing: Vec<&String> = exports.iter().filter(|name| !declared.contains(*name)).collect();
    assert!(missing.is_empty(), "exported but not in lua/types: {missing:?}");
    // The parser itself finds what it should (so the check above cannot pass vacuously).
    for name in ["swarm.run", "swarm.flow.p", "swarm.gate.roles", "swarm.null", "std.pipeline.stage", "swarm.Run.wait"]
    {
        assert!(declared.contains(name), "{name} not parsed: {declared:?}");
    }
    assert!(!declared.contains("swarm.flow.no_such_builder"));
}

#[test]
fn init_makes_a_project_that_checks_and_runs() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("demo");
    let swarm = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_swarm")).args(args).output().unwrap();
    let init = swarm(&["init", project.to_str().unwrap()]);
    assert_eq!(init.status.code(), Some(0), "{}", String::from_utf8_lossy(&init.stderr));
    let main = project.join("main.lua");
    let check = swarm(&["check", main.to_str().unwrap()]);
    assert_eq!(check.status.code(), Some(0), "{}", String::from_utf8_lossy(&check.stderr));
    let run = swarm(&["run", main.to_str().unwrap(), "--input", r#"{"name":"you"}"#]);
    assert_eq!(run.status.code(), Some(0), "{}", String::from_utf8_lossy(&run.stderr));
    let ctx: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(ctx["loud"], "HELLO, YOU!");

    let luarc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(project.join(".luarc.json")).unwrap()).unwrap();
    let library = luarc["workspace.library"][0].as_str().unwrap();
    let defs = std::fs::read_to_string(project.join(library).join("swarm.d.lua")).unwrap();
    assert!(defs.starts_with("---@meta swarm"));
    assert!(project.join(library).join("std/pipeline.d.lua").exists());
    assert_eq!(swarm(&["init", project.to_str().unwrap()]).status.code(), Some(2), "init does not overwrite");

    let types = dir.path().join("defs");
    assert_eq!(swarm(&["types", types.to_str().unwrap()]).status.code(), Some(0));
    assert_eq!(std::fs::read_to_string(types.join("swarm.d.lua")).unwrap(), DEFINITIONS[0].1);
}
