//! A running child in a process group of its own, and the guarantee that it does not outlive
//! its owner: dropping a [`GroupChild`] whose exit was not collected (a cancelled or timed-out
//! attempt, a keep-alive pool going away, the engine shutting down) sends SIGKILL to the whole
//! group, so the grandchildren it started die with it; tokio then reaps the child.

use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command};

/// A child that leads its own process group (started with `process_group(0)`).
pub struct GroupChild {
    child: Child,
    /// The group's id: the child's pid.
    pgid: libc::pid_t,
    /// Set once the child's exit status has been collected (it is reaped).
    reaped: bool,
}

impl GroupChild {
    /// Starts `command`, which must put the child in a new process group; `name` is how the
    /// error names the program.
    pub fn spawn(command: &mut Command, name: impl std::fmt::Display) -> Result<GroupChild, String> {
        let child = command.spawn().map_err(|e| format!("cannot start {name}: {e}"))?;
        let Some(pid) = child.id() else {
            // tokio reports no pid only after the exit was collected, which cannot have
            // happened yet; refuse rather than guess a group to kill later.
            return Err(format!("cannot start {name}: the child has no pid"));
        };
        let pgid = libc::pid_t::try_from(pid).map_err(|_| format!("cannot start {name}: pid {pid} out of range"))?;
        Ok(GroupChild { child, pgid, reaped: false })
    }

    pub fn pid(&self) -> u32 {
        self.pgid as u32
    }

    /// Takes the child's pipes (each is there once, if it was piped).
    pub fn pipes(&mut self) -> (Option<ChildStdin>, Option<ChildStdout>, Option<ChildStderr>) {
        (self.child.stdin.take(), self.child.stdout.take(), self.child.stderr.take())
    }

    /// Waits for the child to exit, then kills what is left of its group: background processes
    /// it started and left behind would otherwise be orphans, and would keep its pipes open.
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        let status = self.child.wait().await?;
        self.reaped = true;
        // The child is reaped, so its pid could in principle be reused; but a process group id
        // stays reserved while any member lives, so this reaches exactly the leftovers if there
        // are any, and only a pid recycled within these microseconds could be hit otherwise.
        kill_group(self.pgid);
        Ok(status)
    }

    /// The exit status, if the child has exited (without waiting).
    pub fn try_exited(&mut self) -> Option<ExitStatus> {
        match self.child.try_wait() {
            Ok(Some(status)) => {
                self.reaped = true;
                kill_group(self.pgid);
                Some(status)
            }
            _ => None,
        }
    }
}

impl Drop for GroupChild {
    fn drop(&mut self) {
        if self.reaped {
            return;
        }
        kill_group(self.pgid);
        // Reap it now if it is already gone; otherwise dropping the `Child` hands it to tokio's
        // orphan queue, which reaps it when its SIGCHLD arrives.
        let _ = self.child.try_wait();
    }
}

/// SIGKILL to every process in group `pgid`; a group that is already empty is fine.
fn kill_group(pgid: libc::pid_t) {
    // SAFETY: killpg takes plain integers and touches no memory of ours.
    let result = unsafe { libc::killpg(pgid, libc::SIGKILL) };
    if result != 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::ESRCH) {
            tracing::warn!(pgid, "cannot kill the process group: {err}");
        }
    }
}

/// "exited with code 3", "was killed by signal 9 (SIGKILL)".
pub fn describe_exit(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exited with code {code}");
    }
    match status.signal() {
        Some(signal) => match signal_name(signal) {
            Some(name) => format!("was killed by signal {signal} ({name})"),
            None => format!("was killed by signal {signal}"),
        },
        None => format!("ended with {status}"),
    }
}

fn signal_name(signal: i32) -> Option<&'static str> {
    Some(match signal {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGABRT => "SIGABRT",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGTERM => "SIGTERM",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exits_are_described_by_code_or_signal() {
        assert_eq!(describe_exit(ExitStatus::from_raw(3 << 8)), "exited with code 3");
        assert_eq!(describe_exit(ExitStatus::from_raw(9)), "was killed by signal 9 (SIGKILL)");
        assert_eq!(
            describe_exit(ExitStatus::from_raw(libc::SIGUSR1)),
            format!("was killed by signal {}", libc::SIGUSR1)
        );
    }
}
