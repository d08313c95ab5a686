//! Running the real `swarm` binary from tests, as a person would.

use std::path::Path;
use std::process::{Command, Output};

/// `swarm ARGS` run from the crate's directory (so `examples/…` paths work).
pub fn swarm(args: &[&str]) -> Output {
    swarm_in(Path::new(env!("CARGO_MANIFEST_DIR")), args)
}

/// `swarm ARGS` run from `dir`.
pub fn swarm_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_swarm")).args(args).current_dir(dir).output().expect("the swarm binary runs")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// stdout parsed as JSON (the final ctx of `swarm run`).
pub fn stdout_json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("stdout is JSON ({e}): {}", String::from_utf8_lossy(&o.stdout)))
}

/// Writes `text` to `dir/name` and returns the path as text.
pub fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}
