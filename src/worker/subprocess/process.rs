//! A running child in a process group of its own, and the guarantee that nothing it started
//! outlives its owner: dropping a [`GroupChild`] whose exit was not collected (a cancelled or
//! timed-out attempt, a keep-alive pool going away, the engine shutting down) sends SIGKILL to
//! the whole group and to every other process that came from the child (see [`reaper`]), so
//! grandchildren that called `setsid` die too; tokio then reaps the child. The child gets
//! SIGKILL as well if the host dies first (`PR_SET_PDEATHSIG`), and every [`ChildLedger`]
//! (the journal) hears of it while it runs, so a host started after a crash can kill what the
//! dead one left.
//!
//! [`reaper`]: super::reaper

use std::cell::RefCell;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::rc::{Rc, Weak};

use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command};

use super::launch::Launch;
use super::reaper::{self, OWNER_ENV};

/// Hears of every child the subprocess workers start on this thread, and of its end, so a
/// record of the running ones survives the host (the journal keeps one).
pub trait ChildLedger {
    /// Child `pgid` (the leader of its group, started at `start` clock ticks after boot) runs.
    fn child_started(&self, pgid: i64, start: i64);
    /// Child `pgid` and its group are gone.
    fn child_ended(&self, pgid: i64);
}

thread_local! {
    static LEDGERS: RefCell<Vec<Weak<dyn ChildLedger>>> = const { RefCell::new(Vec::new()) };
}

/// Tells `ledger` of every child started on this thread from now on, while it lives.
pub fn add_ledger(ledger: &Rc<dyn ChildLedger>) {
    LEDGERS.with(|l| {
        let mut ledgers = l.borrow_mut();
        ledgers.retain(|w| w.strong_count() > 0);
        ledgers.push(Rc::downgrade(ledger));
    });
}

fn tell_ledgers(tell: impl Fn(&dyn ChildLedger)) {
    let live: Vec<Rc<dyn ChildLedger>> = LEDGERS.with(|l| l.borrow().iter().filter_map(Weak::upgrade).collect());
    for ledger in live {
        tell(&*ledger);
    }
}

/// A child that leads its own process group (started with `process_group(0)`).
pub struct GroupChild {
    child: Child,
    /// The group's id: the child's pid.
    pgid: libc::pid_t,
    /// The child's [`OWNER_ENV`] tag, which its descendants inherit.
    tag: String,
    /// Set once the child's exit status has been collected (it is reaped).
    reaped: bool,
}

impl GroupChild {
    /// Starts `command` (made by `launch`, so in a new process group), tagged, and set to die
    /// with the host.
    pub fn spawn(command: &mut Command, launch: &Launch) -> Result<GroupChild, String> {
        let name = launch.name();
        let tag = reaper::next_tag();
        command.env(OWNER_ENV, &tag);
        die_with_the_host(command);
        let child = command.spawn().map_err(|e| launch.start_error(&e))?;
        let Some(pid) = child.id() else {
            // tokio reports no pid only after the exit was collected, which cannot have
            // happened yet; refuse rather than guess a group to kill later.
            return Err(format!("cannot start {name}: the child has no pid"));
        };
        let pgid = libc::pid_t::try_from(pid).map_err(|_| format!("cannot start {name}: pid {pid} out of range"))?;
        let start = reaper::start_time(pgid).unwrap_or(0) as i64;
        tell_ledgers(|l| l.child_started(i64::from(pgid), start));
        Ok(GroupChild { child, pgid, tag, reaped: false })
    }

    /// The child's pid, which is also its process group's id.
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
        self.kill_leftovers();
        Ok(status)
    }

    /// Kills what the child left behind once it is gone: its group, and the tagged processes
    /// the host inherited from it.
    fn kill_leftovers(&self) {
        reaper::kill_everything_from(None, self.pgid, &self.tag);
        tell_ledgers(|l| l.child_ended(i64::from(self.pgid)));
    }

    /// The exit status, if the child has exited (without waiting).
    pub fn try_exited(&mut self) -> Option<ExitStatus> {
        match self.child.try_wait() {
            Ok(Some(status)) => {
                self.reaped = true;
                self.kill_leftovers();
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
        // Still running: its descendants can be found through it before it dies.
        reaper::kill_everything_from(Some(self.pgid), self.pgid, &self.tag);
        tell_ledgers(|l| l.child_ended(i64::from(self.pgid)));
        // Reap it now if it is already gone; otherwise dropping the `Child` hands it to tokio's
        // orphan queue, which reaps it when its SIGCHLD arrives.
        let _ = self.child.try_wait();
    }
}

/// Asks the kernel to SIGKILL the child when the host dies (Linux), so a host killed with
/// SIGKILL does not leave it running. Strictly the signal comes when the thread that started
/// the child ends: that is the engine's thread, which lives as long as the engine. The hook
/// makes std fork and exec instead of taking its `posix_spawn` path, a small price for that.
fn die_with_the_host(command: &mut Command) {
    #[cfg(target_os = "linux")]
    {
        let host = std::process::id() as libc::pid_t;
        // SAFETY: the hook runs in the forked child before exec and calls only prctl and
        // getppid, which are async-signal-safe.
        unsafe {
            command.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) != 0 {
                    return Err(io::Error::last_os_error());
                }
                // The host died between the fork and the prctl: the signal will never come.
                if libc::getppid() != host {
                    return Err(io::Error::other("the host exited while the child started"));
                }
                Ok(())
            });
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
