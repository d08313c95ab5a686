//! `swarm run FILE --watch`: the real binary on files in a temporary directory, edited the way
//! editors and people edit them.

use std::path::Path;
use std::process::Command;

use crate::util::bin::command;

use crate::util::live::{Swarm, save_by_rename};

/// A blueprint whose one step returns `word` from the module `words` (so both files count).
fn script(word_expr: &str) -> String {
    format!(
        r#"local swarm = require("swarm")
local F = swarm.flow
local words = require("words")
return swarm.blueprint({{
  id = "said",
  agents = {{ say = function(input) return {word_expr} end }},
  flow = F.step({{ agent = "say", input = F.p("$"), out = "$.said" }}),
}})
"#
    )
}

fn project(word_expr: &str, word: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("x.lua"), script(word_expr)).unwrap();
    std::fs::create_dir(dir.path().join("lib")).unwrap();
    std::fs::write(dir.path().join("words.lua"), "return require('lib.deep')").unwrap();
    std::fs::write(dir.path().join("lib/deep.lua"), format!("return {{ word = {word:?} }}")).unwrap();
    dir
}

fn said(word: &str) -> String {
    format!("\"said\": \"{word}\"")
}

fn watch(dir: &Path, extra: &[&str]) -> Swarm {
    Swarm::start_command(watch_command(dir, extra), false)
}

/// `swarm run x.lua --watch EXTRA` in `dir`, not yet started.
fn watch_command(dir: &Path, extra: &[&str]) -> Command {
    let mut args = vec!["run", "x.lua", "--input", r#"{"n": 1}"#, "--watch"];
    args.extend_from_slice(extra);
    command(dir, &args)
}

#[test]
fn a_plain_write_reloads_and_runs_the_new_version_with_the_same_input() {
    let dir = project("words.word .. input.n", "one");
    let swarm = watch(dir.path(), &[]);
    swarm.wait_stdout(&said("one1"), 1);
    std::fs::write(dir.path().join("x.lua"), script("'edited' .. input.n")).unwrap();
    swarm.wait_stdout(&said("edited1"), 1);
    assert_eq!(swarm.stderr().matches("reloaded in ").count(), 1, "{}", swarm.stderr());
    assert!(swarm.stderr().lines().any(|l| l.starts_with("reloaded in ") && l.ends_with(" ms")), "{}", swarm.stderr());
}

#[test]
fn write_then_rename_saves_reload_every_time() {
    let dir = project("words.word", "one");
    let swarm = watch(dir.path(), &[]);
    swarm.wait_stdout(&said("one"), 1);
    save_by_rename(&dir.path().join("x.lua"), &script("'first save'"));
    swarm.wait_stdout(&said("first save"), 1);
    save_by_rename(&dir.path().join("x.lua"), &script("'second save'"));
    swarm.wait_stdout(&said("second save"), 1);
    assert_eq!(swarm.stderr().matches("reloaded in ").count(), 2, "{}", swarm.stderr());
}

#[test]
fn a_change_in_a_module_required_by_a_required_module_reloads() {
    let dir = project("words.word", "one");
    let swarm = watch(dir.path(), &[]);
    swarm.wait_stdout(&said("one"), 1);
    std::fs::write(dir.path().join("lib/deep.lua"), "return { word = 'deeper' }").unwrap();
    swarm.wait_stdout(&said("deeper"), 1);
}

#[test]
fn a_broken_save_reports_file_and_line_keeps_the_old_version_and_a_fix_recovers() {
    let dir = project("words.word", "one");
    let swarm = watch(dir.path(), &[]);
    swarm.wait_stdout(&said("one"), 1);
    // Saved whole (write and rename), so the watcher never reads a half-written file.
    save_by_rename(&dir.path().join("x.lua"), "local swarm = require('swarm')\nreturn swarm.blueprint({\n  id = \n");
    swarm.wait_stderr("reload failed: ", 1);
    let err = swarm.stderr();
    let line = err.lines().find(|l| l.starts_with("reload failed: ")).unwrap();
    assert!(line.contains("x.lua:4:") || line.contains("x.lua:3:"), "the error names file:line: {line}");
    // A change to a tracked module while the script is broken is another failed reload, and
    // the old version is not re-run in between.
    std::fs::write(dir.path().join("lib/deep.lua"), "return { word = 'fixed' }").unwrap();
    swarm.wait_stderr("reload failed: ", 2);
    std::fs::write(dir.path().join("x.lua"), script("words.word")).unwrap();
    swarm.wait_stdout(&said("fixed"), 1);
    let err = swarm.stderr();
    let failed_at = err.find("reload failed: ").unwrap();
    let recovered_at = err.find("reloaded in ").unwrap();
    assert!(failed_at < recovered_at, "{err}");
    assert!(!err[failed_at..recovered_at].contains("run r-"), "nothing ran while the script was broken: {err}");
    assert_eq!(swarm.stdout().matches("\"said\"").count(), 2, "{}", swarm.stdout());
}

#[test]
fn touching_a_file_or_saving_the_same_bytes_does_not_reload() {
    let dir = project("words.word", "one");
    // notify's trace shows every file event the watcher receives, its own reads included.
    let mut traced = watch_command(dir.path(), &[]);
    traced.env("SWARM_LOG", "notify_debouncer_full=trace");
    let swarm = Swarm::start_command(traced, false);
    swarm.wait_stdout(&said("one"), 1);
    let deep = dir.path().join("lib/deep.lua");
    let same = std::fs::read_to_string(&deep).unwrap();
    std::fs::write(&deep, &same).unwrap();
    save_by_rename(&dir.path().join("x.lua"), &script("words.word"));
    let file = std::fs::File::options().append(true).open(&deep).unwrap();
    file.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(5)).unwrap();
    drop(file);
    // Closing the touched file is the last event of these saves. Once their batch is handled,
    // the watcher reads deep.lua to hash it: a read after that close means every save above
    // has been weighed, and a wrong reload already sent, ahead of the real change below.
    swarm.wait_until("the watcher hashing deep.lua after the saves", |_, err| {
        let events: Vec<&str> = err.lines().filter(|l| l.contains("deep.lua")).collect();
        let closed = events.iter().rposition(|l| l.contains("Close(Write)"));
        closed.is_some_and(|at| events[at..].iter().any(|l| l.contains("Close(Read)")))
    });
    std::fs::write(&deep, "return { word = 'real change' }").unwrap();
    swarm.wait_stdout(&said("real change"), 1);
    assert_eq!(swarm.stderr().matches("reloaded in ").count(), 1, "only the real change reloaded: {}", swarm.stderr());
    assert_eq!(swarm.stderr().matches("run r-").count(), 2, "{}", swarm.stderr());
}

#[test]
fn a_run_in_flight_finishes_on_its_version_then_the_new_one_runs() {
    let dir = project("words.word", "one");
    // Version one waits for a file the test creates only after the reload, so the save lands
    // while it is in flight, whatever the machine's speed.
    let waiting = "(function() while not io.open('go') do swarm.sleep(5) end return 'old' end)()";
    std::fs::write(dir.path().join("x.lua"), script(waiting)).unwrap();
    let swarm = watch(dir.path(), &[]);
    swarm.wait_stderr("run r-", 1);
    std::fs::write(dir.path().join("x.lua"), script("'new'")).unwrap();
    swarm.wait_stderr("reloaded in ", 1);
    assert!(!swarm.stdout().contains("\"said\""), "the first run is still waiting: {}", swarm.stdout());
    std::fs::write(dir.path().join("go"), "").unwrap();
    swarm.wait_stdout(&said("new"), 1);
    let out = swarm.stdout();
    assert!(out.find(&said("old")).expect("the old run finished") < out.find(&said("new")).unwrap(), "{out}");
}

#[test]
fn polling_notices_saves_too() {
    let dir = project("words.word", "one");
    let swarm = watch(dir.path(), &["--poll"]);
    swarm.wait_stdout(&said("one"), 1);
    std::fs::write(dir.path().join("lib/deep.lua"), "return { word = 'polled' }").unwrap();
    swarm.wait_stdout(&said("polled"), 1);
    save_by_rename(&dir.path().join("x.lua"), &script("'renamed'"));
    swarm.wait_stdout(&said("renamed"), 1);
}

#[test]
fn ctrl_c_cancels_the_run_in_flight_and_exits_cleanly() {
    let dir = project("(function() swarm.sleep(60000) return 'never' end)()", "one");
    let mut swarm = watch(dir.path(), &[]);
    swarm.wait_stderr("run r-", 1);
    swarm.signal("INT");
    let status = swarm.wait_exit();
    assert_eq!(status.code(), Some(0), "{}", swarm.stderr());
    assert!(swarm.stderr().contains("cancelled"), "the run ended cancelled: {}", swarm.stderr());
    assert!(!swarm.stdout().contains("never"));
}
