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
    "gate",
    "engine",
    "middleware",
    "worker",
    "blueprint",
    "store",
    "host",
    "stdout",
    "reload",
    "repl",
    "cli",
];

/// Edges that still run up, each to be cut, never added to: the test also fails when one of
/// them is gone, so this list shrinks with the code.
const NOT_YET_CUT: &[(&str, &str)] = &[
    // The engine runs a `CompiledBlueprint` and maps errors to the blueprint's source lines.
    ("engine", "blueprint"),
    // Hint layers are resolved against the blueprint's `layers` list.
    ("middleware", "blueprint"),
    // Spawner factories read the blueprint's agent definitions.
    ("worker", "blueprint"),
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
    let known: BTreeSet<(String, String)> = NOT_YET_CUT.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
    let new: Vec<_> = upward.difference(&known).collect();
    assert!(new.is_empty(), "these modules use modules above them (see LAYERS): {new:?}");
    let cut: Vec<_> = known.difference(&upward).collect();
    assert!(cut.is_empty(), "these edges are gone: take them off NOT_YET_CUT: {cut:?}");
}
