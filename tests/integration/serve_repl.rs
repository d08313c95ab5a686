//! `swarm serve FILE --repl`: the REPL on the served engine; leaving it stops the server.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SCRIPT: &str = r#"
local swarm = require("swarm")
local F = swarm.flow
local bp = swarm.blueprint({ id = "ticker", agents = { tick = function() return "tock" end }, flow = F.step({ agent = "tick" }) })
swarm.every(30, function() swarm.run(bp) end)
"#;

#[test]
fn the_repl_sees_the_served_engine_and_quitting_stops_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("served.lua");
    std::fs::write(&script, SCRIPT).unwrap();
    let history = dir.path().join("history");
    let mut child = Command::new(env!("CARGO_BIN_EXE_swarm"))
        .args(["serve", script.to_str().unwrap(), "--repl"])
        .env("SWARM_HISTORY", &history)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Give the timer time to start a few runs, then list them from the REPL and leave.
    let session = "swarm.sleep(400)\n:runs\n:quit\n";
    child.stdin.take().unwrap().write_all(session.as_bytes()).unwrap();
    let started = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if started.elapsed() > Duration::from_secs(30) {
            child.kill().unwrap();
            panic!("the server did not stop when the REPL ended");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("serving "), "{stderr}");
    let listed = stdout.lines().chain(stderr.lines()).filter(|l| l.contains("ticker")).count();
    assert!(listed >= 2, "the REPL lists the served script's runs:\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stderr.contains("stopped"), "{stderr}");
}
