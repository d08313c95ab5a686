//! The guide in `docs/` stays true: every example under `docs/examples/` is checked and run by
//! the real binary, and every relative link in the Markdown points at a file that exists.
//!
//! An example states what it expects in the comment lines at its top:
//! - `-- input: {...}`: the initial ctx (`swarm run --input`);
//! - `-- expect: exit N`: the exit code of `swarm run` (default 0; `swarm check` is expected to
//!   exit 0 too, unless the run is expected to exit 2, a compile error);
//! - `-- expect-json: {...}`: keys and values the final ctx must contain (objects are matched
//!   as subsets, arrays element by element, everything else exactly).

use std::path::{Path, PathBuf};

use crate::util::bin::{root, swarm};

use serde_json::Value;

/// What an example's header comment asks for.
#[derive(Default)]
struct Expectations {
    input: Option<String>,
    exit: Option<i32>,
    json: Option<Value>,
}

fn expectations(path: &Path) -> Expectations {
    let text = std::fs::read_to_string(path).unwrap();
    let mut found = Expectations::default();
    if path.extension().is_some_and(|e| e == "json") {
        return found;
    }
    for line in text.lines().take_while(|l| l.starts_with("--")) {
        let line = line.trim_start_matches('-').trim();
        if let Some(input) = line.strip_prefix("input:") {
            found.input = Some(input.trim().to_string());
        } else if let Some(code) = line.strip_prefix("expect: exit") {
            found.exit = Some(code.trim().parse().unwrap_or_else(|_| panic!("{}: bad `expect: exit`", path.display())));
        } else if let Some(json) = line.strip_prefix("expect-json:") {
            let value = serde_json::from_str(json.trim())
                .unwrap_or_else(|e| panic!("{}: `expect-json` is not JSON: {e}", path.display()));
            found.json = Some(value);
        }
    }
    found
}

fn examples() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("docs/examples"))
        .expect("docs/examples exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "lua" || e == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no examples under docs/examples");
    files
}

/// Where `actual` differs from what `expected` asks for, as `path: why` lines.
fn mismatches(expected: &Value, actual: &Value, at: &str, out: &mut Vec<String>) {
    match (expected, actual) {
        (Value::Object(want), Value::Object(have)) => {
            for (key, value) in want {
                let here = format!("{at}.{key}");
                match have.get(key) {
                    Some(found) => mismatches(value, found, &here, out),
                    None => out.push(format!("{here}: missing")),
                }
            }
        }
        (Value::Array(want), Value::Array(have)) if want.len() == have.len() => {
            for (i, (w, h)) in want.iter().zip(have).enumerate() {
                mismatches(w, h, &format!("{at}[{i}]"), out);
            }
        }
        _ if expected == actual => {}
        _ => out.push(format!("{at}: expected {expected}, got {actual}")),
    }
}

#[test]
fn every_example_checks_and_runs_as_its_header_says() {
    let mut failures = Vec::new();
    for path in examples() {
        let name = path.strip_prefix(root()).unwrap().display().to_string();
        let want = expectations(&path);
        let want_exit = want.exit.unwrap_or(0);

        let check = swarm(&["check", &name]);
        let check_exit = if want_exit == 2 { 2 } else { 0 };
        if check.status.code() != Some(check_exit) {
            failures.push(format!(
                "{name}: `swarm check` exited {:?}, expected {check_exit}\n{}",
                check.status.code(),
                String::from_utf8_lossy(&check.stderr)
            ));
        }

        let mut args = vec!["run", name.as_str(), "--state", "memory"];
        if let Some(input) = &want.input {
            args.extend(["--input", input.as_str()]);
        }
        let run = swarm(&args);
        if run.status.code() != Some(want_exit) {
            failures.push(format!(
                "{name}: `swarm run` exited {:?}, expected {want_exit}\nstdout: {}\nstderr: {}",
                run.status.code(),
                String::from_utf8_lossy(&run.stdout),
                String::from_utf8_lossy(&run.stderr)
            ));
            continue;
        }
        if let Some(expected) = &want.json {
            let ctx: Value = match serde_json::from_slice(&run.stdout) {
                Ok(ctx) => ctx,
                Err(e) => {
                    failures.push(format!("{name}: stdout is not JSON ({e})"));
                    continue;
                }
            };
            let mut wrong = Vec::new();
            mismatches(expected, &ctx, "$", &mut wrong);
            if !wrong.is_empty() {
                failures.push(format!("{name}: the final ctx differs:\n  {}\nctx: {ctx}", wrong.join("\n  ")));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The Markdown files whose links are checked: the guide and the README.
fn markdown_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    files.sort();
    files.push(root().join("README.md"));
    files
}

/// The targets of the inline links `[text](target)` in `text`, outside code spans and blocks.
fn link_targets(text: &str) -> Vec<String> {
    let mut targets = Vec::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        // Drop code spans, whose brackets are not links.
        let mut plain = String::new();
        for (i, part) in line.split('`').enumerate() {
            if i % 2 == 0 {
                plain.push_str(part);
            }
        }
        let mut rest = plain.as_str();
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(end) = after.find(')') else { break };
            targets.push(after[..end].trim().to_string());
            rest = &after[end..];
        }
    }
    targets
}

#[test]
fn relative_links_in_the_docs_point_at_files_that_exist() {
    let mut broken = Vec::new();
    let mut checked = 0;
    for file in markdown_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        for target in link_targets(&text) {
            if target.contains("://") || target.starts_with("mailto:") || target.starts_with('#') {
                continue;
            }
            let path = target.split('#').next().unwrap();
            checked += 1;
            if !file.parent().unwrap().join(path).exists() {
                broken.push(format!("{}: ({target})", file.strip_prefix(root()).unwrap().display()));
            }
        }
    }
    assert!(checked > 0, "no relative links found at all: is the link parser broken?");
    assert!(broken.is_empty(), "links to files that do not exist:\n{}", broken.join("\n"));
}

#[test]
fn every_example_is_linked_from_the_guide() {
    let guide: String = markdown_files().iter().map(|f| std::fs::read_to_string(f).unwrap()).collect();
    let unlinked: Vec<String> = examples()
        .iter()
        .map(|p| format!("examples/{}", p.file_name().unwrap().to_string_lossy()))
        .filter(|name| !guide.contains(&format!("({name})")))
        .collect();
    assert!(unlinked.is_empty(), "examples no page of docs/ links to: {unlinked:?}");
}

#[test]
fn the_link_parser_finds_links_and_skips_code() {
    let text = "see [a](a.md) and [b](../b.lua#top)\n`[c](c.md)` here\n```\n[d](d.md)\n```\n";
    assert_eq!(link_targets(text), ["a.md", "../b.lua#top"]);
    let mut out = Vec::new();
    let have = serde_json::json!({"a": 1, "b": {"c": [1, {"d": 2, "e": 3}]}, "x": 0});
    mismatches(&serde_json::json!({"a": 1, "b": {"c": [1, {"d": 2}]}}), &have, "$", &mut out);
    assert!(out.is_empty(), "{out:?}");
    mismatches(&serde_json::json!({"a": 2, "z": 1}), &have, "$", &mut out);
    assert_eq!(out, ["$.a: expected 2, got 1", "$.z: missing"]);
}
