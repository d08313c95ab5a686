//! What the subprocess tests share: an engine that compiles `subprocess` agents, a scratch
//! directory whose unique path marks every process a test starts, and checks that those
//! processes are gone.
//!
//! Processes are found by that marker: child scripts live in the scratch directory and
//! grandchildren run `sleeper` (a link to `sleep` in it), so the marker is in their command
//! lines. A [`Scratch`] kills whatever still carries its marker when it is dropped, so a failing
//! test does not leave processes behind either.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

use luaswarm::Value;
use luaswarm::blueprint::Blueprint;
use luaswarm::blueprint::compile::{CompiledBlueprint, Compiler};
use luaswarm::engine::{Engine, EngineConfig, Event, EventKind, RunHandle, RunOutcome};
use luaswarm::flow::NoExterns;
use luaswarm::worker::subprocess::SubprocessFactory;
use serde_json::{Value as J, json};
use tokio::sync::mpsc;

pub use super::{DEADLINE, eventually, within};

/// A scratch directory with a unique path, which marks the processes a test starts.
pub struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new(test: &str) -> Scratch {
        let dir = tempfile::Builder::new().prefix(&format!("swarm-proc-test-{test}-")).tempdir().unwrap();
        let sleep = ["/bin/sleep", "/usr/bin/sleep"].into_iter().find(|p| Path::new(p).exists()).unwrap();
        std::os::unix::fs::symlink(sleep, dir.path().join("sleeper")).unwrap();
        Scratch { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The marker: the directory's path.
    pub fn marker(&self) -> &str {
        self.dir.path().to_str().unwrap()
    }

    /// Writes an executable `/bin/sh` script; `$DIR` in it is the scratch directory.
    pub fn script(&self, name: &str, body: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, format!("#!/bin/sh\nDIR='{}'\n{body}\n", self.marker())).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path.to_str().unwrap().to_string()
    }

    /// The pid a child wrote to `name` in the scratch directory.
    pub fn pid(&self, name: &str) -> u32 {
        let text = std::fs::read_to_string(self.dir.path().join(name))
            .unwrap_or_else(|e| panic!("the child did not write {name}: {e}"));
        text.trim().parse().unwrap_or_else(|e| panic!("{name} holds {text:?}: {e}"))
    }

    /// The pids of the processes carrying the marker (zombies carry none).
    pub fn marked(&self) -> Vec<u32> {
        let out = std::process::Command::new("pgrep").arg("-f").arg(self.marker()).output().unwrap();
        String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| l.trim().parse().ok()).collect()
    }

    /// Waits until no process carries the marker; fails the test if one still does at the
    /// deadline.
    pub async fn assert_no_survivors(&self) {
        let start = Instant::now();
        loop {
            let left = self.marked();
            if left.is_empty() {
                return;
            }
            assert!(start.elapsed() < DEADLINE, "processes survived the test: {left:?} ({})", self.marker());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for pid in self.marked() {
            // SAFETY: kill takes plain integers; these are processes this test started.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        }
    }
}

/// What `/proc` says of `pid`: its state letter and whether its command line carries
/// `marker` (a pid reused by someone else's process does not), or `None` once it is reaped.
fn proc_state(pid: u32, marker: &str) -> Option<(char, bool)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The state follows the command name, which is in parentheses and may hold spaces.
    let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.trim_start().chars().next())?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let ours = String::from_utf8_lossy(&cmdline).contains(marker);
    Some((state, ours))
}

impl Scratch {
    /// Whether `pid` is one of this test's processes and still running (a zombie has exited
    /// and only awaits its reaper).
    pub fn running(&self, pid: u32) -> bool {
        matches!(proc_state(pid, self.marker()), Some((state, true)) if state != 'Z')
    }

    /// Whether `pid` has exited and been reaped (or its number now belongs to someone else).
    pub fn gone(&self, pid: u32) -> bool {
        match proc_state(pid, self.marker()) {
            None => true,
            Some((state, ours)) => state != 'Z' && !ours,
        }
    }

    /// The child we started must be killed and reaped; its grandchild must be dead (whoever
    /// inherited it reaps it, which is not our business).
    pub async fn assert_killed(&self, child: u32, grandchild: u32) {
        eventually("the grandchild dying", || !self.running(grandchild)).await;
        eventually("the child dying and being reaped", || self.gone(child)).await;
    }
}

/// An engine that compiles `subprocess` agents.
pub struct Rig {
    pub engine: Engine,
}

impl Rig {
    pub fn new() -> Rig {
        let config = EngineConfig { token_secret: Some("subprocess-tests".into()), ..EngineConfig::default() };
        Rig { engine: Engine::new(config).unwrap() }
    }

    /// Compiles a blueprint of `flow` over `agents` (each a `subprocess` agent unless it says).
    pub fn compile(&self, agents: J, flow: J) -> Rc<CompiledBlueprint> {
        Rc::new(try_compile(agents, flow).unwrap_or_else(|e| panic!("compile: {e}")))
    }

    /// Starts a run of `compiled` over `ctx`, following its events.
    pub fn start(&self, compiled: &Rc<CompiledBlueprint>, ctx: J) -> (RunHandle, mpsc::UnboundedReceiver<Event>) {
        let run = self.engine.start(compiled.clone(), Value::from(ctx), Rc::new(NoExterns));
        let tap = self.engine.follow_run(&run.id).unwrap();
        (run, tap)
    }

    /// Runs `compiled` over an empty ctx to its end: the outcome and every event. Nothing of
    /// the run holds on to the blueprint afterwards.
    pub async fn run(&self, compiled: &Rc<CompiledBlueprint>) -> (RunOutcome, Vec<Event>) {
        let (run, mut tap) = self.start(compiled, json!({}));
        let outcome = run.wait().await;
        let mut events = Vec::new();
        while let Some(event) = tap.recv().await {
            events.push(event);
        }
        (outcome, events)
    }

    /// Runs one step of a single agent `a` with spec `spec` on `input`; the result is at `$.out`.
    pub async fn run_one(&self, spec: J, input: J) -> (RunOutcome, Vec<Event>) {
        let compiled = self.compile(json!([{"name": "a", "spec": spec}]), step("a", input));
        self.run(&compiled).await
    }
}

/// Compiles, returning the compile errors as text.
pub fn try_compile(agents: J, flow: J) -> Result<CompiledBlueprint, String> {
    let mut agents = agents;
    for agent in agents.as_array_mut().unwrap() {
        if agent.get("kind").is_none() {
            agent["kind"] = json!("subprocess");
        }
    }
    let bp = json!({"id": "subprocess-test", "flow": flow, "agents": agents});
    let bp = Blueprint::from_json(&bp.to_string()).unwrap();
    let mut compiler = Compiler::new();
    compiler.register("subprocess", SubprocessFactory);
    compiler.compile(Rc::new(bp), None).map_err(|e| e.to_string())
}

/// A step of agent `agent` on the literal `input`, its result at `$.out`.
pub fn step(agent: &str, input: J) -> J {
    json!({"kind": "step", "ref": agent, "in": {"op": "lit", "value": input}, "out": {"op": "path", "at": "$.out"}})
}

/// A spec running `sh -c script` (with `$0` set to `marker`, so the child carries it).
pub fn sh(script: &str, marker: &str) -> J {
    json!({"program": "/bin/sh", "args": ["-c", script, marker]})
}

/// Merges `extra` fields into a spec.
pub fn with(mut spec: J, extra: J) -> J {
    spec.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    spec
}

/// The `worker_output` events' outputs, in order.
pub fn outputs(events: &[Event]) -> Vec<J> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::WorkerOutput { output, .. } => Some(serde_json::from_str(&output.to_json()).unwrap()),
            _ => None,
        })
        .collect()
}

/// A finished run's ctx as JSON; the run must have passed.
pub fn ctx_json(outcome: &RunOutcome) -> J {
    assert!(outcome.error.is_none(), "the run failed: {:?}", outcome.error);
    serde_json::from_str(&outcome.ctx.to_json()).unwrap()
}

/// A FIFO `name` in the scratch directory, opened for reading and writing, so neither this
/// open nor a child's blocks, and what the test writes waits there until the child reads it.
pub fn fifo(scratch: &Scratch, name: &str) -> std::fs::File {
    let path = scratch.path().join(name);
    assert!(std::process::Command::new("mkfifo").arg(&path).status().unwrap().success());
    std::fs::OpenOptions::new().read(true).write(true).open(&path).unwrap()
}

/// The value at `$.out` of a finished run.
pub fn out(outcome: &RunOutcome) -> J {
    ctx_json(outcome)["out"].clone()
}

/// The message of a failed run's error.
pub fn failure(outcome: &RunOutcome) -> String {
    let error = outcome.error.as_ref().unwrap_or_else(|| panic!("the run passed: {}", outcome.ctx.to_json()));
    error.message.clone()
}

/// The value a failed run's error carries.
pub fn failure_value(outcome: &RunOutcome) -> J {
    let value = outcome.error.as_ref().and_then(|e| e.value.as_ref()).expect("the error carries a value");
    serde_json::from_str(&value.to_json()).unwrap()
}

/// Waits on a tap for the first `worker_output` whose progress stage is `stage`.
pub async fn progress(tap: &mut mpsc::UnboundedReceiver<Event>, stage: &str) -> Value {
    loop {
        let event = tap.recv().await.unwrap_or_else(|| panic!("the run ended before progress `{stage}`"));
        if let EventKind::WorkerOutput { output, .. } = &event.kind
            && output.get("stage").and_then(Value::as_str) == Some(stage)
        {
            return output.clone();
        }
    }
}
