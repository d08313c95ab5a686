//! `swarm repl` on a terminal: a pty from `script`, keys written to it, the screen read until an
//! expected marker appears (with a generous deadline). Covers completion, a multi-line block,
//! Ctrl-C cancelling a long `swarm.run`, and one history entry per block.

use std::io::{Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::util::{DEADLINE, wait_for};

struct Terminal {
    child: Child,
    keys: ChildStdin,
    screen: mpsc::Receiver<Vec<u8>>,
    seen: String,
}

impl Terminal {
    fn start(history: &std::path::Path) -> Terminal {
        let command = format!("{} repl", env!("CARGO_BIN_EXE_swarm"));
        let mut child = Command::new("script")
            .args(["-qec", &command, "/dev/null"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("SWARM_HISTORY", history)
            .env("TERM", "xterm")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("script(1) runs");
        let keys = child.stdin.take().unwrap();
        let mut out = child.stdout.take().unwrap();
        let (tx, screen) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        Terminal { child, keys, screen, seen: String::new() }
    }

    fn send(&mut self, keys: &str) {
        self.keys.write_all(keys.as_bytes()).unwrap();
        self.keys.flush().unwrap();
    }

    /// Reads the screen until `marker` shows up after what was consumed before; consumes it.
    fn expect(&mut self, marker: &str) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(i) = self.seen.find(marker) {
                self.seen.drain(..i + marker.len());
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.screen.recv_timeout(left) {
                Ok(bytes) => self.seen.push_str(&String::from_utf8_lossy(&bytes)),
                Err(_) => panic!("no {marker:?} on the screen; it shows: {:?}", self.seen),
            }
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn completion_multi_line_blocks_and_ctrl_c_on_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let history = dir.path().join("history");
    let mut term = Terminal::start(&history);
    term.expect("> ");

    // Tab completes dotted names: without it these lines would index nil.
    term.send("type(swarm.fl\t");
    term.expect("swarm.flow");
    term.send(".st\t");
    term.expect("swarm.flow.step");
    term.send(") .. \"-ok\"\r");
    term.expect("\"function-ok\"");

    // A block over three lines, with the continuation prompt.
    term.send("function add(a, b)\r");
    term.expect(">> ");
    term.send("return a + b\r");
    term.expect(">> ");
    term.send("end\r");
    term.expect("> ");
    term.send("add(20, 22)\r");
    term.expect("42");

    // Ctrl-C cancels a run whose agents sleep a minute; the REPL stays and answers.
    term.send(
        "swarm.run(dofile('tests/fixtures/slow.lua'), {}, {on_event = function(e) \
         if e.kind == 'attempt_started' and e.agent == 'wait' then print('wait' .. 'ing now') end end})\r",
    );
    term.expect("waiting now");
    let interrupted = Instant::now();
    term.send("\x03");
    term.expect("interrupted; cancelled 1 run(s)");
    assert!(interrupted.elapsed() < Duration::from_secs(30));
    term.send("'al' .. 'ive'\r");
    term.expect("\"alive\"");
    term.send(":runs\r");
    term.expect("cancelled");

    term.send(":quit\r");
    wait_for("the REPL quitting", || term.child.try_wait().unwrap().is_some());

    let saved = std::fs::read_to_string(&history).unwrap();
    let entries: Vec<&str> = saved.lines().filter(|l| *l != "#V2").collect();
    assert_eq!(entries.len(), 7, "one entry per block: {saved}");
    assert_eq!(entries[1], r"function add(a, b)\nreturn a + b\nend", "{saved}");
    assert_eq!(entries[5..], [":runs", ":quit"]);
}
