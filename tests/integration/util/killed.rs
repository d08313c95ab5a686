//! A `swarm` child killed with SIGKILL part way through a run, for the journal tests: the run's
//! steps append a line each to a side file, and the child is killed once it has enough lines.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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
    let deadline = Instant::now() + Duration::from_secs(60);
    while lines(side).len() < kill_at {
        assert!(Instant::now() < deadline, "the run never reached {kill_at} steps");
        assert!(child.0.try_wait().unwrap().is_none(), "the run ended before it was killed");
        std::thread::sleep(Duration::from_millis(10));
    }
    child.0.kill().unwrap();
    child.0.wait().unwrap();
}
