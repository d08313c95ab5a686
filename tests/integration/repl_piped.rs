//! `swarm repl` with piped stdin: lines in, results on stdout, notes and errors on stderr.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use crate::util::bin::{command, root, with_input};

fn repl(input: &str, history: &std::path::Path) -> Output {
    let mut repl = command(root(), &["repl"]);
    repl.env("SWARM_HISTORY", history);
    with_input(repl, input)
}

#[test]
fn a_session_evaluates_loads_runs_and_reports() {
    let dir = tempfile::tempdir().unwrap();
    let input = [
        r#"1 + 1, "two""#,
        "function add(a, b)",
        "  return a + b",
        "end",
        "add(2, 40)",
        r#"t = {name = "t", list = {1, 2, 3}, none = swarm.null}; t.self = t"#,
        "t",
        "error('boom')",
        "6 * 7",
        ":load examples/hello.lua",
        r#":run {"name":"x"}"#,
        "swarm.run(bp, {name = 'lua'}).loud",
        ":runs",
        ":events",
        ":graph",
        ":nonsense",
        ":quit",
        "print('never read')",
    ]
    .join("\n");
    let out = repl(&format!("{input}\n"), &dir.path().join("history"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "a chunk failed, so the session exits 1: {stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "2\t\"two\"", "{stdout}");
    assert_eq!(lines[1], "42", "a multi-line function was defined: {stdout}");
    assert_eq!(lines[2], r#"{ list = { 1, 2, 3 }, name = "t", none = null, self = <cycle> }"#);
    assert!(stderr.contains("error: repl:1: boom"), "{stderr}");
    assert_eq!(lines[3], "42", "the session goes on after an error: {stdout}");
    assert!(stderr.contains("loaded hello (2 agents, 2 steps) from examples/hello.lua"), "{stderr}");

    // :run prints the final ctx as JSON.
    let start = stdout.find("\n{\n").unwrap() + 1;
    let end = stdout.find("\n}").unwrap() + 2;
    let ctx: serde_json::Value = serde_json::from_str(&stdout[start..end]).unwrap();
    assert_eq!(ctx["loud"], "HELLO, X!");
    assert!(stdout.contains("\"HELLO, LUA!\""), "`bp` is the loaded blueprint: {stdout}");

    // Two runs, both of `hello`; :events shows the last one, one line per event.
    let runs: Vec<&str> = lines.iter().copied().filter(|l| l.starts_with("r-") && l.contains("hello")).collect();
    assert_eq!(runs.len(), 2, "{stdout}");
    assert!(runs.iter().all(|l| l.contains("finished") && l.ends_with(" ms")), "{runs:?}");
    let last_run = runs[1].split_whitespace().next().unwrap();
    let events: Vec<&str> =
        lines.iter().copied().filter(|l| l.starts_with(" ") && l.trim_start().starts_with(char::is_numeric)).collect();
    assert_eq!(events.len(), 8, "{stdout}");
    assert!(events[0].contains("run_started") && events[7].contains("run_finished"), "{events:?}");
    assert!(events[3].contains("attempt_finished") && events[3].contains(last_run), "{events:?}");

    assert!(stdout.contains("flowchart TD") && stdout.contains("greet (lua)"), "{stdout}");
    assert!(stderr.contains("unknown command :nonsense"), "{stderr}");
    assert!(!stdout.contains("never read"), ":quit ends the session: {stdout}");
}

#[test]
fn the_file_argument_is_loaded_first_and_a_console_operator_asks_at_the_prompt() {
    let dir = tempfile::tempdir().unwrap();
    let mut repl = command(root(), &["repl", "tests/fixtures/console.lua"]);
    repl.env("SWARM_HISTORY", dir.path().join("history"));
    let input = ":run {\"release\":{\"name\":\"swarm\",\"version\":\"2.0\"}}\nship it\n{\n\"ok\": true\n}\n";
    let out = with_input(repl, input);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("loaded console_desk"), "{stderr}");
    assert_eq!(stderr.matches("Approve the release of swarm 2.0?").count(), 2, "{stderr}");
    let ctx: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(ctx["first"], "ship it");
    assert_eq!(ctx["second"], serde_json::json!({"ok": true}));
}

#[test]
fn raised_tables_and_run_errors_are_pretty_printed() {
    let dir = tempfile::tempdir().unwrap();
    let bp = dir.path().join("bp.lua");
    std::fs::write(
        &bp,
        r#"local swarm = require("swarm")
return swarm.blueprint({
  id = "coded",
  agents = { coded = function() error({ code = 7, message = "boom" }) end },
  flow = swarm.flow.step({ agent = "coded", out = "$.x" }),
})
"#,
    )
    .unwrap();
    let input = ["error({code = 7, message = 'boom'})", &format!(":load {}", bp.display()), ":run"].join("\n");
    let out = repl(&format!("{input}\n"), &dir.path().join("history"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(r#"error: { code = 7, message = "boom" }"#), "{stderr}");
    assert!(!stderr.contains("table: 0x"), "{stderr}");
    // :run shows the run's error the same way (long, so one field per line).
    let shown = &stderr[stderr.find("error: {\n  kind = ").unwrap_or_else(|| panic!("{stderr}"))..];
    assert!(shown.contains(r#"kind = "failed","#) && shown.contains(r#"message = "boom","#), "{shown}");
    assert!(
        shown.contains(r#"step = "coded","#) && shown.contains(r#"value = { code = 7, message = "boom" },"#),
        "{shown}"
    );
    // A failed chunk makes a piped session exit 1.
    assert_eq!(out.status.code(), Some(1), "{stderr}");
}

#[test]
fn a_piped_session_exits_1_if_any_chunk_or_command_failed_and_0_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let history = dir.path().join("history");
    let clean = repl("x = 1\nx + 1\n:load examples/hello.lua\n", &history);
    assert_eq!(clean.status.code(), Some(0), "{}", String::from_utf8_lossy(&clean.stderr));
    for failing in ["error('boom')", "x = = 1", ":load no/such/file.lua", ":run", ":nonsense"] {
        let out = repl(&format!("{failing}\n'still' .. ' going'\n"), &history);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{failing}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(stdout.contains("\"still going\""), "{failing}: the session went on: {stdout}");
    }
}

#[test]
fn reload_loads_the_current_file_again_and_takes_its_new_version() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("greet.lua");
    let version = |word: &str| {
        format!(
            r#"local swarm = require("swarm")
return swarm.blueprint({{ id = "greet", agents = {{ say = function() return "{word}" end }},
  flow = swarm.flow.step({{ agent = "say", out = "$.said" }}) }})
"#
        )
    };
    std::fs::write(&file, version("first")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_swarm"))
        .args(["repl", file.to_str().unwrap()])
        .env("SWARM_HISTORY", dir.path().join("history"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    let mut read_until = |needle: &str, stdout: &mut std::io::BufReader<std::process::ChildStdout>| loop {
        line.clear();
        assert!(std::io::BufRead::read_line(stdout, &mut line).unwrap() > 0, "stdout ended before {needle}");
        if line.contains(needle) {
            return;
        }
    };
    stdin.write_all(b"swarm.run(bp).said\n").unwrap();
    read_until("\"first\"", &mut stdout);
    // The file changes only once the first version has run, so the reload must read it again.
    std::fs::write(&file, version("second")).unwrap();
    stdin.write_all(b":reload\nswarm.run(bp).said\n:reload\n:run\n").unwrap();
    drop(stdin);
    read_until("\"second\"", &mut stdout);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(stderr.matches("loaded greet (1 agents, 1 steps)").count(), 3, "{stderr}");
    assert!(rest.contains("\"said\": \"second\""), ":run runs the reloaded version: {rest}");
}

#[test]
fn pending_lists_the_open_waits_and_answer_delivers_their_signals() {
    let dir = tempfile::tempdir().unwrap();
    let until_waiting = "while #swarm.default_engine():pending() == 0 do swarm.sleep(5) end";
    let input = [
        "F = swarm.flow",
        r#"run = swarm.default_engine():start(swarm.blueprint{id = "w", agents = {}, flow = F.seq{F.wait{signal = "go", out = "$.go"}, F.wait{signal = "q", out = "$.q"}}})"#,
        until_waiting,
        ":pending",
        ":runs",
        r#":answer go {"n": 5}"#,
        ":answer nothing 1",
        until_waiting,
        ":answer q hello there",
        "run:wait().go.n, run:wait().q",
        ":pending",
    ]
    .join("\n");
    let out = repl(&format!("{input}\n"), &dir.path().join("history"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains(" go ") && stdout.contains("at /children/0"), "the open wait is listed: {stdout}");
    assert!(stdout.contains("signal go delivered to run r-"), "{stdout}");
    assert!(stdout.contains(" w                    waiting "), ":runs says the run waits: {stdout}");
    assert!(stderr.contains("nothing waits for 'nothing'"), "{stderr}");
    assert!(stdout.contains("5\t\"hello there\"\n"), "the values the signals carried: {stdout}");
    assert!(stdout.trim_end().ends_with("nothing waits"), "{stdout}");
    assert_eq!(out.status.code(), Some(1), "a failed command fails the piped session: {stderr}");
}
