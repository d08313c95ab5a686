//! Finding and killing every process a child started, including those that left its process
//! group (`setsid`, a double fork), and reaping the ones that end up as ours.
//!
//! Three things make that possible. The host is a child subreaper (Linux), so a descendant
//! whose parent dies is reparented to the host rather than to pid 1, and stays findable.
//! Every child is started with [`OWNER_ENV`] set to a tag naming the host (pid and start time)
//! and the child; descendants inherit it, so a process reparented to the host can be traced to
//! the child it came from, and after a crash the next host can find what a dead host left. And
//! while a child runs, its descendants are found by walking `/proc/<pid>/task/*/children`.
//!
//! Processes killed here that the host inherited are the host's to reap; tokio reaps only the
//! children it started, so [`reap_adopted`] waits for those, by pid and start time, never
//! touching a child tokio owns.

use std::cell::RefCell;
use std::collections::HashSet;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The environment variable that tags every process a child starts with its owner.
pub const OWNER_ENV: &str = "SWARM_OWNER";

/// Makes this process a child subreaper, so orphaned descendants of its children are
/// reparented to it instead of to pid 1. The `swarm` binary calls this at start-up; an
/// embedder may too. A no-op outside Linux.
pub fn become_subreaper() {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes an integer flag and touches no memory.
    unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong, 0, 0, 0);
    }
}

/// Whether this process is a child subreaper (always no outside Linux).
fn is_subreaper() -> bool {
    #[cfg(target_os = "linux")]
    {
        let mut flag: libc::c_int = 0;
        // SAFETY: PR_GET_CHILD_SUBREAPER writes one int through the pointer it is given.
        let ok = unsafe { libc::prctl(libc::PR_GET_CHILD_SUBREAPER, &mut flag as *mut libc::c_int) } == 0;
        ok && flag != 0
    }
    #[cfg(not(target_os = "linux"))]
    false
}

/// This host, as tags and the journal name it: its pid and its start time, so a pid reused
/// after the host died is not taken for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostId {
    /// The host's pid.
    pub pid: i64,
    /// The host's start time in clock ticks after boot; 0 when unknown.
    pub start: i64,
}

impl HostId {
    /// This process.
    pub fn current() -> HostId {
        static ME: OnceLock<HostId> = OnceLock::new();
        *ME.get_or_init(|| {
            let pid = std::process::id() as i64;
            HostId { pid, start: start_time(pid as libc::pid_t).unwrap_or(0) as i64 }
        })
    }

    /// Whether this host is still running: its pid is taken by a live process that started
    /// when it did.
    pub fn alive(self) -> bool {
        let Ok(pid) = libc::pid_t::try_from(self.pid) else { return false };
        match stat(pid) {
            Some(stat) => stat.state != 'Z' && (self.start == 0 || stat.start as i64 == self.start),
            None => false,
        }
    }

    /// The prefix of the tags of every child this host started.
    pub fn tag_prefix(self) -> String {
        format!("{}.{}.", self.pid, self.start)
    }
}

/// A fresh tag for a child about to start: `<host pid>.<host start>.<n>`.
pub fn next_tag() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!("{}{}", HostId::current().tag_prefix(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// What `/proc/<pid>/stat` says that matters here.
#[derive(Clone, Copy, Debug)]
pub struct Stat {
    /// The process state letter (`R`, `S`, `Z`, ...).
    pub state: char,
    /// The parent's pid.
    pub ppid: libc::pid_t,
    /// The process group id.
    pub pgid: libc::pid_t,
    /// Clock ticks after boot.
    pub start: u64,
}

/// `/proc/<pid>/stat`, or `None` once the process is reaped (or outside Linux).
pub fn stat(pid: libc::pid_t) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold anything: the fields follow its last ')'.
    let (_, rest) = text.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Field 3 (state) is fields[0]; ppid 4, pgrp 5, starttime 22.
    Some(Stat {
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        pgid: fields.get(2)?.parse().ok()?,
        start: fields.get(19)?.parse().ok()?,
    })
}

/// When `pid` started (clock ticks after boot).
pub fn start_time(pid: libc::pid_t) -> Option<u64> {
    stat(pid).map(|s| s.start)
}

/// The children of `pid`, from every one of its threads.
fn children_of(pid: libc::pid_t) -> Vec<libc::pid_t> {
    let mut found = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return found };
    for task in tasks.flatten() {
        if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
            found.extend(text.split_whitespace().filter_map(|p| p.parse::<libc::pid_t>().ok()));
        }
    }
    found
}

/// Every descendant of `pid` (not `pid` itself), parents before their children.
pub fn descendants(pid: libc::pid_t) -> Vec<libc::pid_t> {
    let mut found = Vec::new();
    let mut next = vec![pid];
    while let Some(parent) = next.pop() {
        for child in children_of(parent) {
            if child != pid && !found.contains(&child) {
                found.push(child);
                next.push(child);
            }
        }
    }
    found
}

/// Whether `pid`'s environment holds `OWNER_ENV=<value>`, or starts with `<prefix>` when
/// `whole` is false. Unreadable (someone else's, or a zombie) is no.
fn tagged(pid: libc::pid_t, tag: &str, whole: bool) -> bool {
    let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else { return false };
    environ.split(|b| *b == 0).any(|var| {
        var.strip_prefix(OWNER_ENV.as_bytes())
            .and_then(|v| v.strip_prefix(b"="))
            .is_some_and(|value| if whole { value == tag.as_bytes() } else { value.starts_with(tag.as_bytes()) })
    })
}

fn sigkill(pid: libc::pid_t) {
    // SAFETY: kill takes plain integers and touches no memory of ours.
    unsafe { libc::kill(pid, libc::SIGKILL) };
}

thread_local! {
    /// Processes killed here that are (or will be, once their parent dies) the host's to reap,
    /// with their start times so a reused pid is never waited for.
    static ADOPTED: RefCell<HashSet<(libc::pid_t, u64)>> = RefCell::new(HashSet::new());
}

/// Kills every process that came from the child leading group `pgid` (tagged `tag`) and is
/// still around: its descendants while it lives (`live` is its pid then; once it is reaped
/// its pid may be reused, so it is not walked), the members of its group, and the processes
/// tagged with `tag` the host inherited. The child itself is killed with its group; reaping it
/// is its owner's business.
pub fn kill_everything_from(live: Option<libc::pid_t>, pgid: libc::pid_t, tag: &str) {
    let me = std::process::id() as libc::pid_t;
    // Walk and kill until nothing new turns up, in case something forked during the walk.
    for _ in 0..4 {
        let mut found = live.map(descendants).unwrap_or_default();
        found.extend(children_of(me).into_iter().filter(|&c| c != pgid && tagged(c, tag, true)));
        let fresh: Vec<_> = found.into_iter().filter_map(|p| Some((p, start_time(p)?))).collect();
        let new = ADOPTED.with(|a| {
            let mut adopted = a.borrow_mut();
            fresh.iter().filter(|entry| adopted.insert(**entry)).count()
        });
        for (p, _) in &fresh {
            sigkill(*p);
        }
        if new == 0 {
            break;
        }
    }
    kill_group(pgid);
    // Group members the host inherited earlier need reaping too, and they are no longer
    // tagged readably once dead: they are known by their group.
    for child in children_of(me) {
        if child != pgid
            && let Some(s) = stat(child)
            && s.pgid == pgid
        {
            ADOPTED.with(|a| a.borrow_mut().insert((child, s.start)));
        }
    }
    reap_adopted(Duration::from_millis(100));
}

/// Reaps the killed processes the host inherited, waiting up to `patience` for those killed a
/// moment ago to be reparented and become zombies. The ones still not reaped by then (their
/// parent is someone else's, or is slow to die) are tried again at the next kill.
pub fn reap_adopted(patience: Duration) {
    let me = std::process::id() as libc::pid_t;
    let deadline = Instant::now() + patience;
    loop {
        let left = ADOPTED.with(|a| {
            let mut adopted = a.borrow_mut();
            adopted.retain(|&(pid, start)| match stat(pid) {
                None => false,
                Some(s) if s.start != start => false,
                Some(s) if s.ppid == me && s.state == 'Z' => {
                    let mut status = 0;
                    // SAFETY: a pid and a pointer to a local int; the process is a zombie child of
                    // ours that tokio did not start, so nobody else waits for it.
                    let reaped = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
                    reaped == 0
                }
                // Killed, not dead yet.
                Some(s) if s.ppid == me => true,
                // Another process's zombie is its to reap. A live one comes to the host when its
                // dying parent is gone, but only if the host is a subreaper.
                Some(s) => s.state != 'Z' && is_subreaper(),
            });
            adopted.len()
        });
        if left == 0 || Instant::now() >= deadline {
            return;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// SIGKILL to every process in group `pgid`; a group that is already empty is fine.
pub fn kill_group(pgid: libc::pid_t) {
    // SAFETY: killpg takes plain integers and touches no memory of ours.
    let result = unsafe { libc::killpg(pgid, libc::SIGKILL) };
    if result != 0 {
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::ESRCH) {
            tracing::warn!(pgid, "cannot kill the process group: {err}");
        }
    }
}

/// Kills what a dead host left running: the group `pgid` whose leader started at `leader_start`
/// (unless its pid now belongs to another process), and every process tagged by that host.
/// Returns how many processes were signalled.
pub fn kill_leftovers_of(host: HostId, groups: &[(i64, i64)]) -> usize {
    let mut killed = 0;
    for &(pgid, leader_start) in groups {
        let Ok(pgid) = libc::pid_t::try_from(pgid) else { continue };
        if pgid <= 1 {
            continue;
        }
        // A live leader that started at another time is someone else's process; a gone leader
        // leaves the group id reserved while any member lives, so the group is still ours.
        if let Some(s) = stat(pgid)
            && s.start as i64 != leader_start
        {
            continue;
        }
        // SAFETY: killpg takes plain integers and touches no memory of ours.
        if unsafe { libc::killpg(pgid, libc::SIGKILL) } == 0 {
            killed += 1;
        }
    }
    let prefix = host.tag_prefix();
    let Ok(entries) = std::fs::read_dir("/proc") else { return killed };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<libc::pid_t>().ok()) else { continue };
        if tagged(pid, &prefix, false) {
            sigkill(pid);
            killed += 1;
        }
    }
    killed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_found_in_proc() {
        let me = HostId::current();
        assert!(me.alive());
        let dead = HostId { start: me.start + 1, ..me };
        assert!(!dead.alive(), "the same pid with another start time is another process");
        let tag = next_tag();
        assert!(tag.starts_with(&me.tag_prefix()) && next_tag() != tag);
    }

    #[test]
    fn descendants_are_found_through_every_generation() {
        let mut child = std::process::Command::new("sh").args(["-c", "sleep 30 & sleep 30 & wait"]).spawn().unwrap();
        let pid = child.id() as libc::pid_t;
        let deadline = Instant::now() + Duration::from_secs(20);
        while descendants(pid).len() < 2 {
            assert!(Instant::now() < deadline, "the grandchildren never showed up");
            std::thread::sleep(Duration::from_millis(5));
        }
        for p in descendants(pid) {
            assert_eq!(stat(p).unwrap().ppid, pid);
            sigkill(p);
        }
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
