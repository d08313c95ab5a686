//! The top-level modules form layers, each depending only on those below it: a test reads
//! every `crate::` path in the sources and fails on an edge that runs back up (a cycle among
//! modules always contains one). ARCHITECTURE.md draws the same stack.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Bottom to top. A module may use any module listed before it.
const LAYERS: &[&str] = &[
    "value",
    "interrupt",
    "flow",
    "schema",
    "gate",
    "engine",
    "middleware",
    "worker",
    "blueprint",
    "store",
    "host",
    "server",
    "mcp",
    "stdout",
    "reload",
    "repl",
    "cli",
];

/// `module -> modules it uses`, from the code (comments and `#[cfg(test)]` modules aside).
fn edges() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut files = vec![src.clone()];
    while let Some(path) = files.pop() {
        if path.is_dir() {
            files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let relative = path.strip_prefix(&src).unwrap();
        let module = relative.iter().next().unwrap().to_string_lossy().trim_end_matches(".rs").to_string();
        let text = std::fs::read_to_string(&path).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        for line in code.lines().map(str::trim).filter(|l| !l.starts_with("//")) {
            for (i, _) in line.match_indices("crate::") {
                let used: String =
                    line[i + "crate::".len()..].chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                if !used.is_empty() && used != module && LAYERS.contains(&used.as_str()) {
                    edges.entry(module.clone()).or_default().insert(used);
                }
            }
        }
    }
    edges
}

fn rank(module: &str) -> usize {
    LAYERS.iter().position(|m| *m == module).unwrap_or_else(|| panic!("src/{module} is in no layer of LAYERS"))
}

#[test]
fn every_module_is_in_a_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    for entry in std::fs::read_dir(src).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().trim_end_matches(".rs").to_string();
        if !["lib", "main", "layering"].contains(&name.as_str()) {
            rank(&name);
        }
    }
}

#[test]
fn no_module_uses_one_above_it() {
    let mut upward = BTreeSet::new();
    for (module, used) in edges() {
        for target in used {
            if rank(&target) > rank(&module) {
                upward.insert((module.clone(), target));
            }
        }
    }
    assert!(upward.is_empty(), "these modules use modules above them (see LAYERS): {upward:?}");
}
