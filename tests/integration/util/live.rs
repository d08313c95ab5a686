//! Long-lived `swarm` children. [`Swarm`], for the hot-reload and server tests: its output is
//! collected by threads, tests poll it for markers with a deadline, and the process is killed
//! when the guard drops (a failing test included). [`kill_at`], for the journal tests: a run
//! whose steps append a line each to a side file, killed with SIGKILL once it has enough.

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{DEADLINE, wait_for};

pub struct Swarm {
    child: Child,
    /// The child's stdin, when started with [`Swarm::start_with_stdin`].
    stdin: Option<std::process::ChildStdin>,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
}

fn collect(mut from: impl Read + Send + 'static, into: Arc<Mutex<String>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 {
                break;
            }
            into.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    })
}

impl Swarm {
    /// Starts `swarm ARGS` in `dir`.
    pub fn start(dir: &Path, args: &[&str]) -> Swarm {
        Swarm::spawn(dir, args, false)
    }

    /// Starts `swarm ARGS` in `dir` with a pipe on stdin, for [`Swarm::send`].
    pub fn start_with_stdin(dir: &Path, args: &[&str]) -> Swarm {
        Swarm::spawn(dir, args, true)
    }

    /// Writes `text` to the child's stdin.
    pub fn send(&mut self, text: &str) {
        use std::io::Write;
        let stdin = self.stdin.as_mut().expect("started with a stdin pipe");
        stdin.write_all(text.as_bytes()).expect("the child reads its stdin");
        stdin.flush().unwrap();
    }

    /// Closes the child's stdin (end of input).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    fn spawn(dir: &Path, args: &[&str], piped_stdin: bool) -> Swarm {
        Swarm::start_command(super::bin::command(dir, args), piped_stdin)
    }

    /// Starts `command` (see [`super::bin::command`]), with a pipe on stdin if `piped_stdin`.
    pub fn start_command(mut command: Command, piped_stdin: bool) -> Swarm {
        let mut child = command
            .stdin(if piped_stdin { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the swarm binary starts");
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let readers = vec![
            collect(child.stdout.take().unwrap(), stdout.clone()),
            collect(child.stderr.take().unwrap(), stderr.clone()),
        ];
        let stdin = child.stdin.take();
        Swarm { child, stdin, stdout, stderr, readers }
    }

    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until `ready(stdout, stderr)` holds; panics with both streams at the deadline.
    pub fn wait_until(&self, what: &str, ready: impl Fn(&str, &str) -> bool) {
        let start = Instant::now();
        loop {
            let (out, err) = (self.stdout(), self.stderr());
            if ready(&out, &err) {
                return;
            }
            if start.elapsed() > DEADLINE {
                panic!("timed out waiting for {what}\n--- stdout\n{out}\n--- stderr\n{err}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until stderr holds `needle` `times` times, each in a whole line (output may arrive
    /// in pieces, and a test reading the line must see all of it).
    pub fn wait_stderr(&self, needle: &str, times: usize) {
        self.wait_until(&format!("{times} × {needle:?} on stderr"), |_, err| {
            whole_lines(err).matches(needle).count() >= times
        });
    }

    /// Waits until stdout holds `needle` `times` times, each in a whole line.
    pub fn wait_stdout(&self, needle: &str, times: usize) {
        self.wait_until(&format!("{times} × {needle:?} on stdout"), |out, _| {
            whole_lines(out).matches(needle).count() >= times
        });
    }

    /// Sends a signal by name (`INT`, `TERM`).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill").arg(format!("-{name}")).arg(self.child.id().to_string()).status();
        assert!(status.expect("kill runs").success(), "kill -{name} failed");
    }

    /// Waits for the process to exit (and its output to be read); panics at the deadline.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait works") {
                for reader in self.readers.drain(..) {
                    let _ = reader.join();
                }
                return status;
            }
            if start.elapsed() > DEADLINE {
                panic!("swarm did not exit\n--- stdout\n{}\n--- stderr\n{}", self.stdout(), self.stderr());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Swarm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `text` up to its last newline: the lines written whole so far.
fn whole_lines(text: &str) -> &str {
    text.rfind('\n').map_or("", |end| &text[..end])
}

/// Saves like editors that write a temporary file and rename it over the original.
pub fn save_by_rename(path: &Path, text: &str) {
    let tmp = path.with_extension("lua.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A child process killed (SIGKILL) when dropped, so a failing test leaves nothing running.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The lines of `path`; none while it does not exist.
pub fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path).map(|t| t.lines().map(str::to_string).collect()).unwrap_or_default()
}

/// Spawns `swarm args` in `dir` and SIGKILLs it once `side` has `kill_at` lines.
pub fn kill_at(dir: &Path, args: &[&str], side: &Path, kill_at: usize) {
    let mut child = Killed(
        Command::new(env!("CARGO_BIN_EXE_swarm"))
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for(&format!("the run reaching {kill_at} steps"), || {
        assert!(child.0.try_wait().unwrap().is_none(), "the run ended before it was killed");
        lines(side).len() >= kill_at
    });
    child.0.kill().unwrap();
    child.0.wait().unwrap();
}
