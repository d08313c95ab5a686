//! `swarm.engine{state = PATH}` and `engine:resume(run_id)` across real processes: a run killed
//! with SIGKILL (one started by `swarm run`, one started from a script on its own journaled
//! engine) is resumed from Lua; the steps that passed before the kill are not run again, and the
//! final ctx equals an uninterrupted run's. The resuming side is `tests/lua/support/resume.lua`
//! run in a host VM in this process.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::util::live::lines;

use luaswarm::host::{Host, lua_error_message};
use mlua::Table;

/// A blueprint module: eight steps of a `work` agent that appends its input to `side` and
/// sleeps 200 ms, answering `{"done": input}`.
fn blueprint(dir: &Path, side: &Path) -> PathBuf {
    let text = format!(
        r#"local swarm = require("swarm")
local F = swarm.flow
local work = {{ kind = "subprocess", spec = {{ program = "sh", timeout_ms = 20000, args = {{ "-c",
  "input=$(cat); printf '%s\n' \"$input\" >> '{side}'; sleep 0.2; printf '{{\"done\":%s}}' \"$input\"" }} }} }}
local steps = {{}}
for i = 1, 8 do steps[i] = F.step({{ agent = "work", input = F.lit("s" .. i), out = "$.s" .. i }}) end
return swarm.blueprint({{ id = "long", agents = {{ work = work }}, flow = F.seq(steps) }})
"#,
        side = side.display()
    );
    let path = dir.join("long.lua");
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs `tests/lua/support/resume.lua` with `args` in a fresh host VM; what it returns.
fn resume_in_lua(dir: &Path, args: Vec<String>) -> Result<serde_json::Value, String> {
    let host = Host::new().map_err(|e| e.to_string())?;
    let lua = host.lua();
    let package: Table = lua.globals().get("package").unwrap();
    let search: String = package.get("path").unwrap();
    package.set("path", format!("{}/?.lua;{search}", dir.display())).unwrap();
    let driver = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lua/support/resume.lua");
    let source = std::fs::read_to_string(&driver).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async {
        let call = lua
            .load(source)
            .set_name("@tests/lua/support/resume.lua")
            .call_async::<String>(mlua::Variadic::from_iter(args));
        match tokio::time::timeout(Duration::from_secs(60), call).await {
            Ok(Ok(json)) => Ok(serde_json::from_str(&json).unwrap()),
            Ok(Err(e)) => Err(lua_error_message(&e)),
            Err(_) => Err("timed out after 60 s".into()),
        }
    })
}

/// The ids of the journal's runs, by reading it with `swarm runs list --json`.
fn runs(dir: &Path, journal: &Path) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_swarm"))
        .args(["runs", "--state", journal.to_str().unwrap(), "list", "--json"])
        .current_dir(dir)
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)))
}

/// The resumed run ran every step, the ones in `side` before the kill exactly once.
fn check_once_each(side: &Path, before: &[String], ctx: &serde_json::Value) {
    let all = lines(side);
    let mut distinct = all.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 8, "every step ran: {all:?}");
    // The step in flight at the kill may run twice; every step before it ran once.
    for input in &before[..before.len() - 1] {
        assert_eq!(all.iter().filter(|l| *l == input).count(), 1, "{input} finished before the kill: {all:?}");
    }
    let want: serde_json::Map<String, serde_json::Value> =
        (1..=8).map(|i| (format!("s{i}"), serde_json::json!({ "done": format!("s{i}") }))).collect();
    assert_eq!(ctx, &serde_json::Value::Object(want), "the ctx of an uninterrupted run");
}

#[test]
fn a_run_of_swarm_run_killed_mid_seq_resumes_from_lua_with_its_recorded_file() {
    let dir = tempfile::tempdir().unwrap();
    let side = dir.path().join("side.txt");
    let file = blueprint(dir.path(), &side);
    let journal = dir.path().join("state.db");
    crate::util::live::kill_at(
        dir.path(),
        &["run", file.to_str().unwrap(), "--state", journal.to_str().unwrap()],
        &side,
        4,
    );
    let before = lines(&side);
    let listed = runs(dir.path(), &journal);
    assert_eq!(listed[0]["status"], "interrupted");
    let id = listed[0]["id"].as_str().unwrap().to_string();

    let ctx = resume_in_lua(dir.path(), vec![journal.display().to_string(), id.clone()]).unwrap();
    check_once_each(&side, &before, &ctx);
    let listed = runs(dir.path(), &journal);
    assert_eq!(listed[0]["id"], id.as_str(), "resumed under its own id, not as a new run");
    assert_eq!(listed[0]["status"], "finished");
    assert_eq!(listed.as_array().unwrap().len(), 1);

    // A finished run does not resume again.
    let again = resume_in_lua(dir.path(), vec![journal.display().to_string(), id]).unwrap_err();
    assert!(again.contains("only an interrupted run can be resumed"), "{again}");
}

#[test]
fn a_run_started_from_a_script_resumes_with_the_blueprint_passed_in() {
    let dir = tempfile::tempdir().unwrap();
    let side = dir.path().join("side.txt");
    blueprint(dir.path(), &side);
    let journal = dir.path().join("script.db");
    // A served script starts the run on its own journaled engine: no blueprint file is recorded.
    let script = dir.path().join("start.lua");
    std::fs::write(
        &script,
        format!(
            "local swarm = require('swarm')\nENGINE = swarm.engine({{ state = '{}' }})\nRUN = ENGINE:start((require('long')))\n",
            journal.display()
        ),
    )
    .unwrap();
    crate::util::live::kill_at(dir.path(), &["serve", script.to_str().unwrap()], &side, 3);
    let before = lines(&side);
    let id = runs(dir.path(), &journal)[0]["id"].as_str().unwrap().to_string();

    let path = journal.display().to_string();
    let without = resume_in_lua(dir.path(), vec![path.clone(), id.clone()]).unwrap_err();
    assert!(without.contains("not started from a blueprint file"), "{without}");
    assert_eq!(lines(&side), before, "a refused resume runs nothing");

    let ctx = resume_in_lua(dir.path(), vec![path, id, "long".into()]).unwrap();
    check_once_each(&side, &before, &ctx);
    assert_eq!(runs(dir.path(), &journal)[0]["status"], "finished");
}

#[test]
fn swarm_serve_journals_beside_its_script_and_a_killed_run_resumes_from_lua() {
    let dir = tempfile::tempdir().unwrap();
    let side = dir.path().join("side.txt");
    blueprint(dir.path(), &side);
    let script = dir.path().join("served.lua");
    std::fs::write(&script, "RUN = require('swarm').default_engine():start((require('long')))\n").unwrap();
    crate::util::live::kill_at(dir.path(), &["serve", script.to_str().unwrap()], &side, 2);
    let before = lines(&side);
    let journal = dir.path().join(".swarm").join("state.db");
    let listed = runs(dir.path(), &journal);
    assert_eq!(listed[0]["status"], "interrupted", "{listed}");
    let id = listed[0]["id"].as_str().unwrap().to_string();

    let ctx = resume_in_lua(dir.path(), vec![journal.display().to_string(), id, "long".into()]).unwrap();
    check_once_each(&side, &before, &ctx);
}

#[test]
fn swarm_serve_with_state_memory_journals_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let side = dir.path().join("side.txt");
    blueprint(dir.path(), &side);
    let script = dir.path().join("served.lua");
    std::fs::write(&script, "RUN = require('swarm').default_engine():start((require('long')))\n").unwrap();
    crate::util::live::kill_at(dir.path(), &["serve", script.to_str().unwrap(), "--state", "memory"], &side, 2);
    assert!(!dir.path().join(".swarm").exists(), "no journal beside the script");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(leftovers.len(), 3, "only long.lua, served.lua and side.txt: {leftovers:?}");
}

/// A run another live process is resuming is refused with `already_running` and that
/// process's pid, as a table error.
#[test]
fn resuming_a_run_another_process_resumes_raises_already_running_with_its_pid() {
    let dir = tempfile::tempdir().unwrap();
    let side = dir.path().join("side.txt");
    let file = blueprint(dir.path(), &side);
    let journal = dir.path().join("state.db");
    let state = journal.to_str().unwrap();
    crate::util::live::kill_at(dir.path(), &["run", file.to_str().unwrap(), "--state", state], &side, 2);
    let id = runs(dir.path(), &journal)[0]["id"].as_str().unwrap().to_string();
    let at_kill = lines(&side).len();
    let resumer = crate::util::live::Killed(
        Command::new(env!("CARGO_BIN_EXE_swarm"))
            .args(["runs", "--state", state, "resume", &id])
            .current_dir(dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    crate::util::wait_for("the other process resuming the run", || lines(&side).len() > at_kill);

    let host = Host::new().unwrap();
    let source = format!(
        r#"local swarm = require("swarm")
local ok, err = pcall(function() return swarm.engine({{ state = "{state}" }}):resume("{id}") end)
assert(not ok, "the resume was refused")
return err.kind .. " " .. tostring(err.pid) .. " " .. err.message"#
    );
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let local = tokio::task::LocalSet::new();
    let got: String = local
        .block_on(&runtime, host.lua().load(source).call_async::<String>(()))
        .unwrap_or_else(|e| panic!("{}", lua_error_message(&e)));
    let pid = resumer.0.id();
    assert!(got.starts_with(&format!("already_running {pid} ")), "{got}");
    assert!(got.contains(&format!("run {id} is already running in process {pid}")), "{got}");
}
