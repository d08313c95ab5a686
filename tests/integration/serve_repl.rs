//! `swarm serve FILE --repl`: the REPL on the served engine; leaving it stops the server.

use crate::util::bin::command;
use crate::util::live::Swarm;

/// A served script whose 30 ms timer runs the `ticker` blueprint and prints `ran N` after the
/// Nth run.
const SCRIPT: &str = r#"
local swarm = require("swarm")
local F = swarm.flow
local bp = swarm.blueprint({ id = "ticker", agents = { tick = function() return "tock" end }, flow = F.step({ agent = "tick" }) })
local n = 0
swarm.every(30, function()
  swarm.run(bp)
  n = n + 1
  print("ran " .. n)
end)
"#;

#[test]
fn the_repl_sees_the_served_engine_and_quitting_stops_the_server() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("served.lua"), SCRIPT).unwrap();
    let mut serve = command(dir.path(), &["serve", "served.lua", "--repl"]);
    serve.env("SWARM_HISTORY", dir.path().join("history"));
    let mut swarm = Swarm::start_command(serve, true);
    // Once the timer has finished two runs, list them from the REPL and leave.
    swarm.wait_stdout("ran 2", 1);
    swarm.send(":runs\n:quit\n");
    let status = swarm.wait_exit();
    let (stdout, stderr) = (swarm.stdout(), swarm.stderr());
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("serving "), "{stderr}");
    let listed = stdout.lines().chain(stderr.lines()).filter(|l| l.contains("ticker")).count();
    assert!(listed >= 2, "the REPL lists the served script's runs:\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stderr.contains("stopped"), "{stderr}");
}
