//! Running the real `swarm` binary from tests, as a person would.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// `swarm ARGS` run from the crate's directory (so `examples/…` paths work).
pub fn swarm(args: &[&str]) -> Output {
    swarm_in(root(), args)
}

/// `swarm ARGS` run from `dir`.
pub fn swarm_in(dir: &Path, args: &[&str]) -> Output {
    command(dir, args).output().expect("the swarm binary runs")
}

/// The command `swarm ARGS` in `dir`, for a test to set up further (its environment, its input).
pub fn command(dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_swarm"));
    command.args(args).current_dir(dir);
    command
}

/// Runs `command` to its end with `input` on its stdin (then closed).
pub fn with_input(mut command: Command, input: &str) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the swarm binary runs");
    child.stdin.take().unwrap().write_all(input.as_bytes()).expect("the child reads its stdin");
    child.wait_with_output().expect("the child's output")
}

/// The crate's directory, where `swarm` and `command` run by default.
pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
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

/// Writes `text` to `dir/name` (making the folders `name` names) and returns the path as text.
pub fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().expect("a parent folder")).expect("create the folder");
    std::fs::write(&path, text).expect("write the file");
    path.display().to_string()
}
