//! `swarm serve FILE`: a script with timers in a host that stays alive, edited while it runs.

use crate::util::live::{Swarm, save_by_rename};

/// A served script whose 50 ms timer counts in `swarm.state.n` and prints `tick <tag> <n>`.
fn counter(tag: &str) -> String {
    format!(
        r#"local swarm = require("swarm")
swarm.state.n = swarm.state.n or 0
swarm.every(50, function()
  swarm.state.n = swarm.state.n + 1
  print("tick {tag} " .. swarm.state.n)
end)
swarm.on_reload(function(info)
  print("hook {tag} " .. #info.changed)
end)
"#
    )
}

/// The `(tag, n)` of every tick line, in order.
fn ticks(out: &str) -> Vec<(String, u64)> {
    out.lines()
        .filter_map(|l| l.strip_prefix("tick "))
        .map(|rest| {
            let (tag, n) = rest.split_once(' ').unwrap();
            (tag.to_string(), n.parse().unwrap())
        })
        .collect()
}

#[test]
fn state_survives_a_reload_and_only_the_new_versions_timer_fires() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("s.lua");
    std::fs::write(&script, counter("v1")).unwrap();
    let mut swarm = Swarm::start(dir.path(), &["serve", "s.lua"]);
    swarm.wait_stdout("tick v1 3", 1);
    std::fs::write(&script, counter("v2")).unwrap();
    swarm.wait_stdout("tick v2", 5);

    let out = swarm.stdout();
    let ticks = ticks(&out);
    let first_new = ticks.iter().position(|(tag, _)| tag == "v2").unwrap();
    assert!(first_new >= 3, "{out}");
    assert!(ticks[first_new..].iter().all(|(tag, _)| tag == "v2"), "the old timer is gone: {out}");
    let counts: Vec<u64> = ticks.iter().map(|(_, n)| *n).collect();
    let expected: Vec<u64> = (1..=counts.len() as u64).collect();
    assert_eq!(counts, expected, "swarm.state.n went on counting across the reload: {out}");
    assert_eq!(out.matches("hook v2 1").count(), 1, "on_reload ran once, told of one file: {out}");
    assert!(!out.contains("hook v1"), "the old version's hook does not run: {out}");
    assert_eq!(swarm.stderr().matches("reloaded in ").count(), 1, "{}", swarm.stderr());

    swarm.signal("INT");
    assert_eq!(swarm.wait_exit().code(), Some(0), "{}", swarm.stderr());
}

#[test]
fn a_broken_save_keeps_the_old_version_and_its_timer_running() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("s.lua");
    std::fs::write(&script, counter("v1")).unwrap();
    let swarm = Swarm::start(dir.path(), &["serve", "s.lua"]);
    swarm.wait_stdout("tick v1 2", 1);
    std::fs::write(
        &script,
        format!("{}\nswarm.every(10, function() print('tick broken 0') end)\nerror('no')\n", counter("v9")),
    )
    .unwrap();
    swarm.wait_stderr("reload failed: ", 1);
    let err = swarm.stderr();
    assert!(err.contains("reload failed: s.lua:12: no"), "{err}");
    let at_failure = ticks(&swarm.stdout()).len();
    swarm.wait_until("three more old ticks", |out, _| ticks(out).len() >= at_failure + 3);
    assert!(ticks(&swarm.stdout()).iter().all(|(tag, _)| tag == "v1"), "{}", swarm.stdout());

    std::fs::write(&script, counter("v2")).unwrap();
    swarm.wait_stdout("tick v2", 2);
    let counts: Vec<u64> = ticks(&swarm.stdout()).iter().map(|(_, n)| *n).collect();
    assert_eq!(counts, (1..=counts.len() as u64).collect::<Vec<_>>(), "{}", swarm.stdout());
}

#[test]
fn sigterm_cancels_the_run_in_flight_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("s.lua"),
        r#"local swarm = require("swarm")
local F = swarm.flow
local slow = swarm.blueprint({
  id = "slow",
  agents = { wait = function() swarm.sleep(60000) return "never" end },
  flow = F.step({ agent = "wait", input = F.p("$"), out = "$.r" }),
})
local started = false
local timer
timer = swarm.every(20, function()
  if started then return end
  started = true
  timer:cancel()
  local run = swarm.default_engine():start(slow, {}, {
    on_event = function(e)
      if e.kind == "attempt_finished" then print("attempt " .. e.status) end
    end,
  })
  print("started " .. run.id)
  local ok, err = pcall(run.wait, run)
  print("outcome " .. tostring(ok) .. " " .. tostring(err and err.kind))
end)
"#,
    )
    .unwrap();
    let mut swarm = Swarm::start(dir.path(), &["serve", "s.lua"]);
    swarm.wait_stdout("started r-", 1);
    swarm.signal("TERM");
    assert_eq!(swarm.wait_exit().code(), Some(0), "{}", swarm.stderr());
    let out = swarm.stdout();
    assert!(out.contains("attempt cancelled"), "the attempt's event was delivered: {out}");
    assert!(out.contains("outcome false cancelled"), "the run ended cancelled: {out}");
    let run_id = out.lines().find_map(|l| l.strip_prefix("started ")).unwrap();
    assert!(swarm.stderr().contains(&format!("run {run_id} cancelled")), "{}", swarm.stderr());
    assert!(swarm.stderr().trim_end().ends_with("stopped"), "{}", swarm.stderr());
}

/// A served script that counts its loads in `swarm.state.loads` and tries to keep a function
/// there, printing whether it was refused.
fn keeps_a_function(tag: &str) -> String {
    format!(
        r#"local swarm = require("swarm")
swarm.state.loads = (swarm.state.loads or 0) + 1
local ok, err = pcall(function()
  swarm.state.handler = function() end
end)
print("load {tag} " .. swarm.state.loads .. " refused=" .. tostring(not ok))
if not ok then print("why " .. tostring(err)) end
local nested_ok, nested_err = pcall(function() swarm.state.cache = {{ items = {{ 1, print }} }} end)
if not nested_ok then print("nested " .. tostring(nested_err)) end
"#
    )
}

#[test]
fn storing_a_function_in_state_is_refused_where_it_is_stored_and_never_wedges_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("s.lua");
    std::fs::write(&script, keeps_a_function("v1")).unwrap();
    let mut swarm = Swarm::start(dir.path(), &["serve", "s.lua", "--state", "memory"]);
    // `serving` comes once the watcher follows the script: a save before it could be missed.
    swarm.wait_stderr("serving s.lua", 1);
    let out = swarm.stdout();
    assert!(out.contains("load v1 1 refused=true"), "{out}");
    assert!(
        out.contains(
            "why s.lua:4: swarm.state.handler: a function has no JSON form; swarm.state keeps only plain data"
        ),
        "the error names the line, the key and the type: {out}"
    );
    assert!(out.contains("nested s.lua:8: swarm.state.cache.items[2]: a function"), "{out}");

    // Two saves: each reload carries the state over (the count goes on).
    save_by_rename(&script, &keeps_a_function("v2"));
    swarm.wait_stdout("load v2 2 refused=true", 1);
    // The next save only once this reload has finished (and the watcher follows the file again).
    swarm.wait_stderr("reloaded in ", 1);
    save_by_rename(&script, &keeps_a_function("v3"));
    swarm.wait_stdout("load v3 3 refused=true", 1);
    // The load prints before the host says the reload is done.
    swarm.wait_stderr("reloaded in ", 2);
    assert_eq!(swarm.stderr().matches("reloaded in ").count(), 2, "{}", swarm.stderr());
    assert!(!swarm.stderr().contains("reload failed"), "{}", swarm.stderr());
    swarm.signal("TERM");
    assert_eq!(swarm.wait_exit().code(), Some(0), "{}", swarm.stderr());
}

#[test]
fn a_function_slipped_into_a_stored_table_fails_that_reload_by_its_key_path() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("s.lua");
    // The table is stored while plain; the function goes in afterwards, past the check.
    std::fs::write(
        &script,
        r#"local swarm = require("swarm")
swarm.state.n = 1
swarm.state.t = { ok = true }
swarm.state.t.f = print
swarm.every(30, function() print("tick v1") end)
"#,
    )
    .unwrap();
    let swarm = Swarm::start(dir.path(), &["serve", "s.lua", "--state", "memory"]);
    swarm.wait_stdout("tick v1", 1);
    std::fs::write(&script, "local swarm = require('swarm')\nprint('v2 loaded')\n").unwrap();
    swarm.wait_stderr("reload failed: ", 1);
    let err = swarm.stderr();
    assert!(
        err.contains("reload failed: swarm.state.t.f: a function has no JSON form; a reload carries only plain data, so this version stays live with its state"),
        "{err}"
    );
    let ticks = swarm.stdout().matches("tick v1").count();
    swarm.wait_until("the old version still ticks", |out, _| out.matches("tick v1").count() >= ticks + 2);
    assert!(!swarm.stdout().contains("v2 loaded"), "{}", swarm.stdout());
}

#[test]
fn an_out_of_range_timer_period_is_refused_at_its_line_and_the_server_lives() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("s.lua");
    std::fs::write(&script, "local swarm = require('swarm')\nswarm.every(1e300, function() end)\n").unwrap();
    let mut swarm = Swarm::start(dir.path(), &["serve", "s.lua", "--state", "memory"]);
    swarm.wait_stderr("swarm.every", 1);
    assert!(swarm.stderr().contains("s.lua:2: swarm.every: `ms` must be milliseconds from 0 to"), "{}", swarm.stderr());
    // Still serving: the next good save loads.
    std::fs::write(&script, counter("fixed")).unwrap();
    swarm.wait_stdout("tick fixed 1", 1);
    swarm.signal("TERM");
    assert!(swarm.wait_exit().success(), "{}", swarm.stderr());
}

#[test]
fn a_save_that_lands_while_the_first_load_runs_is_not_missed() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("s.lua");
    // The first version busies itself for a while after saying it is loading.
    std::fs::write(
        &script,
        "print('loading v1') io.stdout:flush()\nlocal t = os.clock() while os.clock() - t < 0.5 do end\nprint('loaded v1')\n",
    )
    .unwrap();
    let mut swarm = Swarm::start(dir.path(), &["serve", "s.lua", "--state", "memory"]);
    swarm.wait_stdout("loading v1", 1);
    save_by_rename(&script, "print('loaded v2')\n");
    swarm.wait_stdout("loaded v2", 1);
    swarm.signal("TERM");
    assert!(swarm.wait_exit().success(), "{}", swarm.stderr());
}
