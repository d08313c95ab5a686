//! Lua that never yields, tried through the real binary with real signals: Ctrl-C (SIGINT)
//! and SIGTERM still reach a CPU-bound agent, an extern, a flow that never dispatches, a REPL
//! chunk and a served timer; a module whose load loops is stopped by `--load-timeout`.

use crate::util::bin::{stderr, swarm_in, write};
use crate::util::live::Swarm;

const SPIN_AGENT: &str = r#"
local swarm = require("swarm")
local F = swarm.flow
return swarm.blueprint({
  id = "spin",
  agents = { spin = function() while true do end end },
  flow = F.step({ agent = "spin" }),
})
"#;

/// A run whose agent loops forever, stopped by `signal` once the attempt has started.
fn signal_stops_a_spinning_run(signal: &str) {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "spin.lua", SPIN_AGENT);
    let mut swarm = Swarm::start(dir.path(), &["run", "spin.lua", "--state", "memory", "--events", "ndjson"]);
    swarm.wait_stderr("\"attempt_started\"", 1);
    swarm.signal(signal);
    let status = swarm.wait_exit();
    assert_eq!(status.code(), Some(1), "a cancelled run exits 1\n{}", swarm.stderr());
    assert!(swarm.stderr().contains("\"cancelled\""), "the run ends cancelled:\n{}", swarm.stderr());
}

#[test]
fn ctrl_c_cancels_a_run_whose_agent_never_yields() {
    signal_stops_a_spinning_run("INT");
}

#[test]
fn sigterm_cancels_a_run_whose_agent_never_yields() {
    signal_stops_a_spinning_run("TERM");
}

#[test]
fn ctrl_c_stops_an_extern_that_loops() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "extern.lua",
        r#"
local swarm = require("swarm")
local F = swarm.flow
swarm.extern("spin", function() io.stderr:write("spinning\n") while true do end end)
return swarm.blueprint({ id = "ext", flow = F.assign({ at = "$.x", value = F.call("spin", {}) }) })
"#,
    );
    let mut swarm = Swarm::start(dir.path(), &["run", "extern.lua", "--state", "memory"]);
    swarm.wait_stderr("spinning", 1);
    swarm.signal("INT");
    let status = swarm.wait_exit();
    assert_eq!(status.code(), Some(1), "{}", swarm.stderr());
    assert!(swarm.stderr().contains("interrupted (SIGINT)"), "the extern was stopped:\n{}", swarm.stderr());
}

#[test]
fn ctrl_c_cancels_a_flow_that_never_dispatches() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "count.lua",
        r#"
local swarm = require("swarm")
local F = swarm.flow
return swarm.blueprint({
  id = "count",
  flow = F.loop({ counter = "$.i", max = 2000000000, cond = true, body = F.assign({ at = "$.x", value = 1 }) }),
})
"#,
    );
    let mut swarm = Swarm::start(dir.path(), &["run", "count.lua", "--state", "memory"]);
    swarm.wait_stderr("run r-", 1);
    swarm.signal("INT");
    assert_eq!(swarm.wait_exit().code(), Some(1), "{}", swarm.stderr());
    assert!(swarm.stderr().contains("\"cancelled\""), "{}", swarm.stderr());
}

#[test]
fn ctrl_c_in_the_repl_stops_a_looping_chunk_and_the_prompt_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let mut repl = Swarm::start_with_stdin(dir.path(), &["repl"]);
    // A chunk that yields (a plain loop), then one that cannot (a loop in a sort comparator).
    repl.send("print('first') while true do end\n");
    repl.wait_stdout("first", 1);
    repl.signal("INT");
    repl.wait_stderr("interrupted", 1);
    repl.send("print('second') table.sort({3, 2, 1}, function() while true do end end)\n");
    repl.wait_stdout("second", 1);
    repl.signal("INT");
    repl.wait_stderr("interrupted", 2);
    repl.send("print('still here')\n");
    repl.wait_stdout("still here", 1);
    repl.close_stdin();
    repl.wait_exit();
}

#[test]
fn sigterm_stops_serve_while_a_timer_body_loops() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "serve.lua",
        r#"
local swarm = require("swarm")
swarm.every(10, function() print("tick") io.stdout:flush() while true do end end)
"#,
    );
    let mut swarm = Swarm::start(dir.path(), &["serve", "serve.lua", "--state", "memory"]);
    swarm.wait_stdout("tick", 1);
    swarm.signal("TERM");
    let status = swarm.wait_exit();
    assert!(status.success(), "serve exits cleanly: {status:?}\n{}", swarm.stderr());
}

const LOOPING_LOAD: &str = "local n = 0\nwhile true do n = n + 1 end\n";

#[test]
fn a_module_whose_load_loops_is_stopped_by_the_load_timeout() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "loops.lua", LOOPING_LOAD);
    for command in ["check", "compile", "graph"] {
        let out = swarm_in(dir.path(), &[command, "loops.lua", "--load-timeout", "200"]);
        assert_eq!(out.status.code(), Some(2), "swarm {command}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains("loops.lua") && err.contains("200 ms"),
            "swarm {command} names the file and limit:\n{err}"
        );
    }
    // Before the subcommand too: it is a global option.
    let out = swarm_in(dir.path(), &["--load-timeout", "200", "run", "loops.lua", "--state", "memory"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn a_save_whose_load_loops_leaves_the_old_version_live_and_the_watcher_watching() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("flow.lua");
    let version = |n: u32| {
        format!(
            "local swarm = require('swarm')\nreturn swarm.blueprint({{ id = 'v', flow = swarm.flow.assign({{ at = '$.v', value = {n} }}) }})\n"
        )
    };
    std::fs::write(&file, version(1)).unwrap();
    let mut swarm = Swarm::start(
        dir.path(),
        &["run", "flow.lua", "--watch", "--poll", "--state", "memory", "--load-timeout", "300"],
    );
    swarm.wait_stdout("\"v\": 1", 1);
    crate::util::live::save_by_rename(&file, LOOPING_LOAD);
    swarm.wait_stderr("reload failed", 1);
    assert!(swarm.stderr().contains("300 ms"), "the failed reload says why:\n{}", swarm.stderr());
    crate::util::live::save_by_rename(&file, &version(2));
    swarm.wait_stdout("\"v\": 2", 1);
    swarm.signal("INT");
    assert!(swarm.wait_exit().success(), "{}", swarm.stderr());
}

#[test]
fn ctrl_c_reaches_run_watch_while_a_load_loops() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "loops.lua", "io.stdout:write('looping\\n') io.stdout:flush()\nwhile true do end\n");
    // A load limit far beyond the test's own deadline: only the signal can end this load.
    let mut swarm = Swarm::start(
        dir.path(),
        &["run", "loops.lua", "--watch", "--poll", "--state", "memory", "--load-timeout", "600000"],
    );
    swarm.wait_stdout("looping", 1);
    swarm.signal("INT");
    assert!(swarm.wait_exit().success(), "{}", swarm.stderr());
}

#[test]
fn sigterm_reaches_serve_while_the_script_load_loops() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "serve.lua", "io.stdout:write('loading\\n') io.stdout:flush()\nwhile true do end\n");
    // A load limit far beyond the test's own deadline: only the signal can end this load.
    let mut swarm = Swarm::start(dir.path(), &["serve", "serve.lua", "--state", "memory", "--load-timeout", "600000"]);
    swarm.wait_stdout("loading", 1);
    swarm.signal("TERM");
    swarm.wait_exit();
}
