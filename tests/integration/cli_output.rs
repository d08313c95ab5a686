//! What the commands do with their output and options, run as the real binary: a reader that
//! leaves early ends a command quietly, a full disk is an error, global options go before or
//! after the subcommand, and `swarm runs` finds the runs `swarm run` journaled.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::util::bin::{stderr, stdout, swarm, swarm_in, write};

/// A blueprint of `steps` steps: its JSON and its diagram run to hundreds of KiB, more than a
/// pipe holds, so the command is still writing when the reader leaves.
fn big_blueprint(dir: &Path, steps: usize) -> String {
    write(
        dir,
        "big.lua",
        &format!(
            r#"local swarm = require("swarm")
local F = swarm.flow
local steps = {{}}
for i = 1, {steps} do
  steps[i] = F.step({{ agent = "work", input = F.lit("step number " .. i), out = "$.s" .. i }})
end
return swarm.blueprint({{ id = "big", agents = {{ work = function(x) return x end }}, flow = F.seq(steps) }})
"#
        ),
    )
}

/// Runs `swarm ARGS` from `dir`, reads the first line of its stdout, then closes the pipe while
/// it still writes (as `| head -1` does); returns that line and how the command ended.
fn first_line_then_leave(dir: &Path, args: &[&str]) -> (String, Output) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_swarm"))
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    {
        let mut reader = BufReader::with_capacity(64, child.stdout.take().unwrap());
        reader.read_line(&mut first).unwrap();
        // Dropping the reader closes the read end.
    }
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    let status = child.wait().unwrap();
    (first, Output { status, stdout: Vec::new(), stderr: err.into_bytes() })
}

/// `swarm ARGS` from `dir` with stdout on `/dev/full`, where every write fails with ENOSPC.
fn to_a_full_disk(dir: &Path, args: &[&str]) -> Output {
    let full = std::fs::OpenOptions::new().write(true).open("/dev/full").expect("/dev/full exists");
    Command::new(env!("CARGO_BIN_EXE_swarm")).args(args).current_dir(dir).stdout(full).output().unwrap()
}

#[test]
fn a_reader_that_leaves_ends_compile_graph_and_run_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let file = big_blueprint(dir.path(), 4000);
    for (args, first) in [
        (vec!["compile", file.as_str()], "{"),
        (vec!["graph", file.as_str()], "---"),
        (vec!["graph", file.as_str(), "--format", "dot"], "digraph"),
    ] {
        let (line, out) = first_line_then_leave(dir.path(), &args);
        assert!(line.starts_with(first), "{args:?}: {line}");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
        assert!(!stderr(&out).contains("panicked"), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).is_empty(), "{args:?} ends quietly: {}", stderr(&out));
    }

    // A final ctx bigger than a pipe holds.
    let input = write(dir.path(), "input.json", &format!(r#"{{"name":"x","big":"{}"}}"#, "x".repeat(1 << 20)));
    let at_input = format!("@{input}");
    let run = ["run", "--state", "memory", "--input", &at_input, "examples/hello.lua"];
    let (line, out) = first_line_then_leave(Path::new(env!("CARGO_MANIFEST_DIR")), &run);
    assert_eq!(line, "{\n");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
}

#[test]
fn a_full_disk_is_an_error_for_every_command_that_writes_to_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let hello = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/hello.lua");
    let hello = hello.to_str().unwrap();
    let journaled = swarm_in(dir.path(), &["run", hello, "--input", r#"{"name":"x"}"#]);
    assert_eq!(journaled.status.code(), Some(0), "{}", stderr(&journaled));
    let id = stderr(&journaled).split_whitespace().nth(1).unwrap().to_string();
    for (args, command) in [
        (vec!["compile", hello], "compile"),
        (vec!["graph", hello], "graph"),
        (vec!["run", hello, "--input", r#"{"name":"x"}"#], "run"),
        (vec!["runs", "list"], "runs"),
        (vec!["runs", "list", "--json"], "runs"),
        (vec!["runs", "show", id.as_str()], "runs"),
        (vec!["runs", "events", id.as_str()], "runs"),
    ] {
        let out = to_a_full_disk(dir.path(), &args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(&format!("swarm {command}: cannot write to stdout: No space left on device")),
            "{args:?}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn global_options_go_before_or_after_the_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("elsewhere.db");
    let db = db.to_str().unwrap();
    let ran = swarm(&["run", "examples/hello.lua", "--input", r#"{"name":"x"}"#, "--state", db]);
    assert_eq!(ran.status.code(), Some(0), "{}", stderr(&ran));
    let id = stderr(&ran).split_whitespace().nth(1).unwrap().to_string();

    for args in [
        vec!["runs", "--state", db, "list", "--json"],
        vec!["runs", "list", "--state", db, "--json"],
        vec!["runs", "list", "--json", "--state", db],
        vec!["--state", db, "runs", "list", "--json"],
    ] {
        let out = swarm_in(dir.path(), &args);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
        let runs: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
        assert_eq!(runs[0]["id"], id.as_str(), "{args:?}");
    }
    // Resume takes it after its argument: refused because the run finished, not for usage.
    let resume = swarm_in(dir.path(), &["runs", "resume", &id, "--state", db]);
    assert_eq!(resume.status.code(), Some(2));
    assert!(stderr(&resume).contains("only an interrupted run"), "{}", stderr(&resume));

    for args in [
        vec!["--load-timeout", "5000", "check", "examples/hello.lua"],
        vec!["check", "examples/hello.lua", "--load-timeout", "5000"],
        vec!["compile", "--load-timeout", "5000", "examples/hello.lua"],
        vec!["graph", "examples/hello.lua", "--load-timeout=5000"],
    ] {
        let out = swarm(&args);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
    }
    let bad = swarm(&["check", "examples/hello.lua", "--load-timeout", "soon"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("--load-timeout"), "{}", stderr(&bad));
}

#[test]
fn swarm_runs_finds_what_swarm_run_journaled_from_the_same_directory() {
    let scripts = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let script = write(
        scripts.path(),
        "echo.lua",
        r#"local swarm = require("swarm")
return swarm.blueprint({ id = "echo", agents = { echo = function(x) return x end },
  flow = swarm.flow.step({ agent = "echo" }) })
"#,
    );
    let ran = swarm_in(work.path(), &["run", &script]);
    assert_eq!(ran.status.code(), Some(0), "{}", stderr(&ran));
    let first = stderr(&ran).lines().next().unwrap().to_string();
    let id = first.split_whitespace().nth(1).unwrap().to_string();
    assert_eq!(first, format!("run {id}  journal .swarm/state.db"), "the first line says where it journals");
    assert!(work.path().join(".swarm/state.db").is_file(), "the journal is in the current directory");
    assert!(!scripts.path().join(".swarm").exists(), "not beside the script");

    let list = swarm_in(work.path(), &["runs", "list"]);
    assert_eq!(list.status.code(), Some(0), "{}", stderr(&list));
    assert!(stdout(&list).contains(&id) && stdout(&list).contains("echo"), "{}", stdout(&list));

    // Where there is no journal, `runs` says where it looked and where runs journal.
    let elsewhere = swarm_in(scripts.path(), &["runs", "list"]);
    assert_eq!(elsewhere.status.code(), Some(2));
    assert!(stderr(&elsewhere).contains("no journal at .swarm/state.db"), "{}", stderr(&elsewhere));

    let memory = swarm_in(work.path(), &["run", &script, "--state", "memory"]);
    assert!(stderr(&memory).lines().next().unwrap().ends_with("  (not journaled)"), "{}", stderr(&memory));
}

#[test]
fn swarm_runs_finds_what_swarm_serve_journaled_from_the_scripts_directory() {
    let scripts = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    write(
        scripts.path(),
        "s.lua",
        r#"local swarm = require("swarm")
local bp = swarm.blueprint({ id = "served", agents = { echo = function(x) return x end },
  flow = swarm.flow.step({ agent = "echo" }) })
local timer
timer = swarm.every(20, function()
  timer:cancel()
  local run = swarm.default_engine():start(bp, {})
  run:wait()
  print("ran " .. run.id)
end)
"#,
    );
    let script = scripts.path().join("s.lua");
    let mut served = crate::util::live::Swarm::start(work.path(), &["serve", script.to_str().unwrap()]);
    served.wait_stdout("ran r-", 1);
    let id = served.stdout().lines().find_map(|l| l.strip_prefix("ran ")).unwrap().to_string();
    assert!(served.stderr().contains("journal "), "serve says where it journals: {}", served.stderr());
    served.signal("TERM");
    assert_eq!(served.wait_exit().code(), Some(0), "{}", served.stderr());

    let list = swarm_in(scripts.path(), &["runs", "list"]);
    assert_eq!(list.status.code(), Some(0), "{}", stderr(&list));
    assert!(stdout(&list).contains(&id), "{}", stdout(&list));
}
