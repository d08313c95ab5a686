//! The run journal through the real binary: what `swarm run` journals, `swarm runs
//! list/show/events`, `--state memory`, a file that is not a journal, concurrent runs, and a run
//! killed with SIGKILL in the middle of a seq and of a fanout, then resumed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::util::live::{Killed, lines};

fn swarm_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_swarm")).args(args).current_dir(dir).output().expect("the swarm binary runs")
}

fn json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).unwrap_or_else(|e| panic!("JSON ({e}): {}", String::from_utf8_lossy(bytes)))
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A blueprint whose `work` agent appends its input to `side` and sleeps 200 ms; `flow` is Lua
/// building the flow with `F`.
fn script(dir: &Path, name: &str, side: &Path, flow: &str) -> PathBuf {
    let text = format!(
        r#"local swarm = require("swarm")
local F = swarm.flow
local work = {{ kind = "subprocess", spec = {{ program = "sh", timeout_ms = 20000, args = {{ "-c",
  "input=$(cat); printf '%s\n' \"$input\" >> '{side}'; sleep 0.2; printf '{{\"done\":%s}}' \"$input\"" }} }} }}
return swarm.blueprint({{ id = "{name}", agents = {{ work = work }}, flow = {flow} }})
"#,
        side = side.display()
    );
    let path = dir.join(format!("{name}.lua"));
    std::fs::write(&path, text).unwrap();
    path
}

const SEQ: &str = r#"(function()
  local steps = {}
  for i = 1, 8 do steps[i] = F.step({ agent = "work", input = F.lit("s" .. i), out = "$.s" .. i }) end
  return F.seq(steps)
end)()"#;

const FANOUT: &str = r#"F.seq({
  F.step({ agent = "work", input = F.lit("first"), out = "$.first" }),
  F.fanout({ items = F.lit({ "a", "b", "c", "d", "e", "f", "g", "h" }), max_concurrency = 2,
    body = F.step({ agent = "work", input = F.p("$.item"), out = "$.r" }), out = "$.lanes" }),
  F.step({ agent = "work", input = F.lit("last"), out = "$.last" }),
})"#;

#[test]
fn a_run_is_journaled_and_listed_shown_and_its_events_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let side = dir.path().join("side.txt");
    let file = script(
        dir.path(),
        "two",
        &side,
        r#"F.seq({ F.step({ agent = "work", input = F.lit(1), out = "$.a" }),
        F.step({ agent = "work", input = F.p("$.a"), out = "$.b" }) })"#,
    );
    let run = swarm_in(dir.path(), &["run", file.to_str().unwrap(), "--events", "ndjson"]);
    assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
    let ctx = json(&run.stdout);
    assert!(dir.path().join(".swarm/state.db").is_file(), "the default journal is beside the script");

    let list = swarm_in(dir.path(), &["runs", "list", "--json"]);
    assert_eq!(list.status.code(), Some(0), "{}", stderr(&list));
    let runs = json(&list.stdout);
    assert_eq!(runs.as_array().unwrap().len(), 1);
    let id = runs[0]["id"].as_str().unwrap().to_string();
    assert!(stderr(&run).starts_with(&format!("run {id}  journal .swarm/state.db\n")), "{}", stderr(&run));
    assert_eq!(
        (&runs[0]["blueprint"], &runs[0]["status"], &runs[0]["steps"]),
        (&"two".into(), &"finished".into(), &2.into())
    );

    let show = swarm_in(dir.path(), &["runs", "show", &id, "--json"]);
    let shown = json(&show.stdout);
    assert_eq!(shown["ctx"], ctx, "the journaled final ctx is the printed one");
    let steps = shown["steps"].as_array().unwrap();
    let summary: Vec<(&str, &str, i64)> = steps
        .iter()
        .map(|s| (s["pointer"].as_str().unwrap(), s["status"].as_str().unwrap(), s["attempts"].as_i64().unwrap()))
        .collect();
    assert_eq!(summary, [("/children/0", "pass", 1), ("/children/1", "pass", 1)]);

    // The journaled events are exactly the ones the run streamed.
    let streamed: Vec<serde_json::Value> = stderr(&run).lines().skip(1).map(|l| json(l.as_bytes())).collect();
    let events = swarm_in(dir.path(), &["runs", "events", &id]);
    let journaled: Vec<serde_json::Value> =
        String::from_utf8_lossy(&events.stdout).lines().map(|l| json(l.as_bytes())).collect();
    assert_eq!(journaled, streamed);
    assert_eq!(journaled.last().unwrap()["kind"], "run_finished");

    let human = swarm_in(dir.path(), &["runs", "show", &id]);
    assert!(
        String::from_utf8_lossy(&human.stdout).contains("/children/1"),
        "{}",
        String::from_utf8_lossy(&human.stdout)
    );
    let missing = swarm_in(dir.path(), &["runs", "show", "r-nope"]);
    assert_eq!(missing.status.code(), Some(2));
    let not_interrupted = swarm_in(dir.path(), &["runs", "resume", &id]);
    assert_eq!(not_interrupted.status.code(), Some(2));
    assert!(stderr(&not_interrupted).contains("only an interrupted run"), "{}", stderr(&not_interrupted));
}

#[test]
fn state_memory_journals_nothing_and_an_explicit_path_is_used() {
    let dir = tempfile::tempdir().unwrap();
    let side = dir.path().join("side.txt");
    let file = script(dir.path(), "one", &side, r#"F.step({ agent = "work", input = F.lit(1), out = "$.a" })"#);
    let out = swarm_in(dir.path(), &["run", file.to_str().unwrap(), "--state", "memory"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!dir.path().join(".swarm").exists(), "--state memory writes no journal");

    let db = dir.path().join("elsewhere.db");
    let out = swarm_in(dir.path(), &["run", file.to_str().unwrap(), "--state", db.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let list = swarm_in(dir.path(), &["runs", "--state", db.to_str().unwrap(), "list", "--json"]);
    assert_eq!(json(&list.stdout).as_array().unwrap().len(), 1);
}

#[test]
fn a_file_that_is_not_a_journal_is_reported_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let side = dir.path().join("side.txt");
    let file = script(dir.path(), "one", &side, r#"F.step({ agent = "work", input = F.lit(1), out = "$.a" })"#);
    let db = dir.path().join("state.db");
    let garbage: Vec<u8> = (0..8192u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&db, &garbage).unwrap();
    let out = swarm_in(dir.path(), &["run", file.to_str().unwrap(), "--state", db.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("not a swarm journal"), "{}", stderr(&out));
    assert!(lines(&side).is_empty(), "nothing ran");
    let list = swarm_in(dir.path(), &["runs", "--state", db.to_str().unwrap(), "list"]);
    assert_eq!(list.status.code(), Some(2));
    assert!(std::fs::read(&db).unwrap() == garbage, "the file is untouched");
}

#[test]
fn concurrent_runs_journal_side_by_side() {
    let dir = tempfile::tempdir().unwrap();
    let side = dir.path().join("side.txt");
    let file = script(dir.path(), "par", &side, SEQ);
    // Six processes open (and so create and migrate) the same new journal at once.
    let children: Vec<Killed> = (0..6)
        .map(|_| {
            Killed(
                Command::new(env!("CARGO_BIN_EXE_swarm"))
                    .args(["run", file.to_str().unwrap()])
                    .current_dir(dir.path())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap(),
            )
        })
        .collect();
    for mut child in children {
        assert!(child.0.wait().unwrap().success());
    }
    let runs = json(&swarm_in(dir.path(), &["runs", "list", "--json"]).stdout);
    assert_eq!(runs.as_array().unwrap().len(), 6);
    for run in runs.as_array().unwrap() {
        let id = run["id"].as_str().unwrap();
        assert_eq!((&run["status"], &run["steps"]), (&"finished".into(), &8.into()), "{run}");
        let out = swarm_in(dir.path(), &["runs", "events", id]);
        let seqs: Vec<i64> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| {
                let e = json(l.as_bytes());
                assert_eq!(e["run_id"], id);
                e["seq"].as_i64().unwrap()
            })
            .collect();
        assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>(), "every event of {id}, in order");
    }
}

/// Runs `flow` and SIGKILLs the process once `kill_at` lines are in the side file, resumes it,
/// and checks: the steps the journal had as passed ran exactly once, every step ran, and the
/// final ctx is an uninterrupted run's.
fn kill_and_resume(flow: &str, kill_at: usize, total: usize) {
    let dir = tempfile::tempdir().unwrap();
    let side = dir.path().join("side.txt");
    let file = script(dir.path(), "long", &side, flow);
    crate::util::live::kill_at(dir.path(), &["run", file.to_str().unwrap()], &side, kill_at);

    let runs = json(&swarm_in(dir.path(), &["runs", "list", "--json"]).stdout);
    let id = runs[0]["id"].as_str().unwrap().to_string();
    assert_eq!(runs[0]["status"], "interrupted", "a run left running by a dead process is interrupted");
    let shown = json(&swarm_in(dir.path(), &["runs", "show", &id, "--json"]).stdout);
    let statuses: Vec<&str> =
        shown["steps"].as_array().unwrap().iter().map(|s| s["status"].as_str().unwrap()).collect();
    assert!(!statuses.contains(&"running"), "steps in flight died with the process: {statuses:?}");
    assert!(statuses.contains(&"interrupted"), "the step in flight is marked interrupted: {statuses:?}");
    // The work agent answers {"done": input}: the passed steps' inputs, as the side file has them.
    let passed: Vec<String> = shown["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["status"] == "pass")
        .map(|s| s["output"]["done"].to_string())
        .collect();
    assert!(passed.len() >= kill_at - 2 && passed.len() < total, "killed mid-run: {shown}");

    let resumed = swarm_in(dir.path(), &["runs", "resume", &id]);
    assert_eq!(resumed.status.code(), Some(0), "{}", stderr(&resumed));
    assert!(stderr(&resumed).starts_with(&format!("run {id}  journal ")), "resumed under its own id");
    let ctx = json(&resumed.stdout);

    // Every step ran; the ones journaled as passed before the kill ran exactly once.
    let all = lines(&side);
    let mut distinct = all.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), total, "{all:?}");
    for input in &passed {
        assert_eq!(all.iter().filter(|l| *l == input).count(), 1, "{input} finished before the kill: {all:?}");
    }
    let shown_after = json(&swarm_in(dir.path(), &["runs", "show", &id, "--json"]).stdout);
    assert_eq!(shown_after["status"], "finished");
    // The killed process's write-ahead log was applied and deleted; the resuming one's deleted
    // at its clean exit.
    let logs: Vec<String> = std::fs::read_dir(dir.path().join(".swarm"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("state.db-log-"))
        .collect();
    assert!(logs.is_empty(), "{logs:?}");

    let fresh_side = dir.path().join("fresh.txt");
    let fresh = script(dir.path(), "fresh", &fresh_side, flow);
    let uninterrupted = swarm_in(dir.path(), &["run", fresh.to_str().unwrap(), "--state", "memory"]);
    assert_eq!(json(&uninterrupted.stdout), ctx, "the resumed run ends as an uninterrupted one");
    assert_eq!(shown_after["ctx"], ctx);
}

#[test]
fn a_seq_killed_mid_run_resumes_without_rerunning_finished_steps() {
    kill_and_resume(SEQ, 4, 8);
}

#[test]
fn a_fanout_killed_mid_run_resumes_without_rerunning_finished_lanes() {
    kill_and_resume(FANOUT, 5, 10);
}

/// Two `swarm runs resume ID` started together: exactly one runs the run, the other is refused
/// naming the winner's pid, and no step runs twice. Tried a few times, to give the race room.
#[test]
fn two_resumers_started_together_run_the_run_once() {
    for round in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        let side = dir.path().join("side.txt");
        let file = script(dir.path(), "raced", &side, SEQ);
        let id = start_and_kill(dir.path(), &file, &side, 3);
        let before = lines(&side);
        let start = || {
            Command::new(env!("CARGO_BIN_EXE_swarm"))
                .args(["runs", "resume", &id])
                .current_dir(dir.path())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        };
        let (a, b) = (start(), start());
        let pids = [a.id(), b.id()];
        let outs = [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()];
        let won: Vec<usize> = (0..2).filter(|&i| outs[i].status.code() == Some(0)).collect();
        assert_eq!(
            won.len(),
            1,
            "round {round}: exactly one resumer wins: {:?} / {:?}",
            stderr(&outs[0]),
            stderr(&outs[1])
        );
        let (winner, loser) = (won[0], 1 - won[0]);
        assert_eq!(outs[loser].status.code(), Some(2));
        assert_eq!(
            stderr(&outs[loser]).trim(),
            format!("swarm runs resume: run {id} is already running in process {}", pids[winner])
        );
        // The steps after the kill ran once each, none of those that had passed ran again.
        let all = lines(&side);
        let resumed = &all[before.len()..];
        let mut distinct = resumed.to_vec();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), resumed.len(), "round {round}: a step ran twice: {all:?}");
        for input in &before[..before.len() - 1] {
            assert!(!resumed.contains(input), "round {round}: {input} passed before the kill: {all:?}");
        }
        let shown = json(&swarm_in(dir.path(), &["runs", "show", &id, "--json"]).stdout);
        assert_eq!(shown["status"], "finished");
    }
}

/// Starts `file` and SIGKILLs it once `kill_at` lines are in `side`; the run's id.
fn start_and_kill(dir: &Path, file: &Path, side: &Path, kill_at: usize) -> String {
    crate::util::live::kill_at(dir, &["run", file.to_str().unwrap()], side, kill_at);
    let runs = json(&swarm_in(dir, &["runs", "list", "--json"]).stdout);
    runs[0]["id"].as_str().unwrap().to_string()
}

#[test]
fn resuming_on_a_changed_blueprint_says_so_and_reruns_the_steps_that_no_longer_match() {
    let dir = tempfile::tempdir().unwrap();
    let side = dir.path().join("side.txt");
    let file = script(dir.path(), "long", &side, SEQ);
    let id = start_and_kill(dir.path(), &file, &side, 3);
    script(dir.path(), "long", &side, &SEQ.replace(r#"F.lit("s" .. i)"#, r#"F.lit((i == 1 and "z" or "s") .. i)"#));
    let resumed = swarm_in(dir.path(), &["runs", "resume", &id]);
    assert_eq!(resumed.status.code(), Some(0), "{}", stderr(&resumed));
    assert!(stderr(&resumed).contains("changed since the run started"), "{}", stderr(&resumed));
    assert!(stderr(&resumed).contains("1 recorded step result(s) no longer match"), "{}", stderr(&resumed));
    let ctx = json(&resumed.stdout);
    assert_eq!(ctx["s1"], serde_json::json!({"done": "z1"}));
    assert_eq!(lines(&side).iter().filter(|l| *l == "\"z1\"").count(), 1);
}

#[test]
fn a_version_1_journal_migrates_and_keeps_its_runs() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("old.db");
    {
        // The version 1 schema, as the first journaling build wrote it.
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch(
            r#"CREATE TABLE runs (id TEXT PRIMARY KEY, blueprint TEXT NOT NULL, file TEXT, input TEXT NOT NULL,
                 status TEXT NOT NULL, started_ms INTEGER NOT NULL, finished_ms INTEGER, ctx TEXT, error TEXT,
                 pid INTEGER NOT NULL);
               CREATE TABLE tasks (id TEXT PRIMARY KEY, run_id TEXT NOT NULL, agent TEXT NOT NULL, status TEXT NOT NULL,
                 attempts INTEGER NOT NULL DEFAULT 0, started_ms INTEGER NOT NULL, finished_ms INTEGER, pointer TEXT,
                 input_hash TEXT, occurrence INTEGER, output TEXT, error TEXT, replayed INTEGER NOT NULL DEFAULT 0);
               CREATE INDEX tasks_by_run ON tasks(run_id);
               CREATE TABLE attempts (task_id TEXT NOT NULL, attempt INTEGER NOT NULL, run_id TEXT NOT NULL,
                 status TEXT NOT NULL, started_ms INTEGER NOT NULL, elapsed_ms REAL, error TEXT,
                 PRIMARY KEY (task_id, attempt));
               CREATE TABLE events (run_id TEXT NOT NULL, seq INTEGER NOT NULL, at_ms INTEGER NOT NULL,
                 kind TEXT NOT NULL, body TEXT NOT NULL, PRIMARY KEY (run_id, seq));
               CREATE TABLE outputs (id TEXT PRIMARY KEY, run_id TEXT NOT NULL, task_id TEXT NOT NULL,
                 attempt INTEGER NOT NULL, producer TEXT NOT NULL, value TEXT NOT NULL, size INTEGER NOT NULL);
               CREATE INDEX outputs_by_producer ON outputs(producer);
               CREATE INDEX outputs_by_run ON outputs(run_id);
               INSERT INTO runs VALUES ('r-old', 'legacy', NULL, '{}', 'finished', 1000, 1500, '{"a":1}', NULL, 1);
               INSERT INTO tasks VALUES ('r-old.1', 'r-old', 'w', 'pass', 1, 1000, 1400, '', 'h', 0, '1', NULL, 0);
               PRAGMA user_version = 1;"#,
        )
        .unwrap();
    }
    let list = swarm_in(dir.path(), &["runs", "--state", db.to_str().unwrap(), "list", "--json"]);
    assert_eq!(list.status.code(), Some(0), "{}", stderr(&list));
    let runs = json(&list.stdout);
    assert_eq!((&runs[0]["id"], &runs[0]["duration_ms"], &runs[0]["steps"]), (&"r-old".into(), &500.into(), &1.into()));
    assert_eq!(runs[0]["digest"], serde_json::Value::Null, "the new column, empty for the old run");
    let shown =
        json(&swarm_in(dir.path(), &["runs", "--state", db.to_str().unwrap(), "show", "r-old", "--json"]).stdout);
    assert_eq!(shown["ctx"], serde_json::json!({"a": 1}));
    let conn = rusqlite::Connection::open(&db).unwrap();
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
    assert_eq!(version, luaswarm::store::journal::SCHEMA_VERSION);

    // A journal from a newer build is refused, not rewritten (not even switched to WAL).
    let mode: String = conn.query_row("PRAGMA journal_mode = DELETE", [], |r| r.get(0)).unwrap();
    assert_eq!(mode, "delete");
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    let before = std::fs::read(&db).unwrap();
    let refused = swarm_in(dir.path(), &["runs", "--state", db.to_str().unwrap(), "list"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(stderr(&refused).contains("newer than this build"), "{}", stderr(&refused));
    assert!(std::fs::read(&db).unwrap() == before, "the newer journal is untouched");
    assert!(!dir.path().join("old.db-wal").exists());
}

#[test]
fn rerun_from_a_step_replays_the_steps_before_it_as_a_new_run() {
    let dir = tempfile::tempdir().unwrap();
    let side = dir.path().join("side.txt");
    let file = script(dir.path(), "long", &side, SEQ);
    let first = swarm_in(dir.path(), &["run", file.to_str().unwrap()]);
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    let id = stderr(&first).split_whitespace().nth(1).unwrap().to_string();
    assert_eq!(lines(&side).len(), 8);

    let rerun = swarm_in(dir.path(), &["runs", "rerun", &id, "--from", "/children/5"]);
    assert_eq!(rerun.status.code(), Some(0), "{}", stderr(&rerun));
    let new_id = stderr(&rerun).split_whitespace().nth(1).unwrap().to_string();
    assert_ne!(new_id, id, "a rerun is a new run");
    assert_eq!(json(&rerun.stdout), json(&first.stdout));
    assert_eq!(lines(&side)[8..], ["\"s6\"", "\"s7\"", "\"s8\""], "only the steps from the cut ran again");
    let shown = json(&swarm_in(dir.path(), &["runs", "show", &new_id, "--json"]).stdout);
    let replayed: Vec<bool> = shown["steps"].as_array().unwrap().iter().map(|s| s["replayed"] == true).collect();
    assert_eq!(replayed, [true, true, true, true, true, false, false, false]);

    // By agent name: its first step is the cut, so everything runs again.
    let by_agent = swarm_in(dir.path(), &["runs", "rerun", &id, "--from", "work"]);
    assert_eq!(by_agent.status.code(), Some(0), "{}", stderr(&by_agent));
    assert_eq!(lines(&side).len(), 19);

    let unknown = swarm_in(dir.path(), &["runs", "rerun", &id, "--from", "/children/99"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(stderr(&unknown).contains("has no step '/children/99'"), "{}", stderr(&unknown));
}

#[test]
fn a_journal_locked_by_another_process_is_reported_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let side = dir.path().join("side.txt");
    let file = script(dir.path(), "one", &side, r#"F.step({ agent = "work", input = F.lit(1), out = "$.a" })"#);
    let db = dir.path().join("state.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch("CREATE TABLE other (x); INSERT INTO other VALUES (1);").unwrap();
    let before = std::fs::read(&db).unwrap();
    // An exclusive lock in rollback-journal mode keeps every other connection out, readers too.
    conn.execute_batch("PRAGMA locking_mode = EXCLUSIVE; BEGIN EXCLUSIVE;").unwrap();
    let out = swarm_in(dir.path(), &["run", file.to_str().unwrap(), "--state", db.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("locked by another process"), "{}", stderr(&out));
    assert!(lines(&side).is_empty(), "nothing ran");
    conn.execute_batch("ROLLBACK;").unwrap();
    drop(conn);
    assert!(std::fs::read(&db).unwrap() == before, "the file is untouched");
}
