//! Crash recovery, run by whoever opens the journal next: what the processes that died with the
//! journal open leave behind is put right before anything else is written. Their write-ahead
//! logs are applied (the records SQLite never got), the child process groups they left running
//! are killed, and their runs are marked `interrupted`.

use std::path::Path;

use rusqlite::{Connection, TransactionBehavior, params};

use super::write_ahead;
use crate::worker::subprocess::reaper::{self, HostId};

/// Applies what SQLite lacks of the logs of processes that are gone, then deletes them.
pub(super) fn apply_dead_logs(conn: &mut Connection, db: &Path) -> rusqlite::Result<()> {
    let dir = write_ahead::log_dir(db);
    let prefix = write_ahead::prefix(db);
    let Ok(entries) = std::fs::read_dir(&dir) else { return Ok(()) };
    let me = i64::from(std::process::id());
    // (pid, nonce, generation, name), oldest generation first.
    let mut logs: Vec<(i64, String, u32, String)> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|name| {
            let mut parts = name.strip_prefix(&prefix)?.split('-');
            let pid = parts.next()?.parse().ok()?;
            let nonce = parts.next()?.to_string();
            let generation = parts.next()?.parse().ok()?;
            Some((pid, nonce, generation, name))
        })
        .filter(|(pid, ..)| *pid != me && !alive(*pid))
        .collect();
    logs.sort();
    for (_, _, _, name) in logs {
        let path = dir.join(&name);
        let Ok(bytes) = std::fs::read(&path) else { continue };
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let applied: i64 = tx.query_row("SELECT applied FROM logs WHERE name = ?1", [&name], |r| r.get(0)).unwrap_or(0);
        let mut failed = 0;
        for (end, stmts) in write_ahead::decode(&bytes) {
            if end as i64 <= applied {
                continue;
            }
            for stmt in stmts {
                if let Err(e) = stmt.execute(&tx) {
                    failed += 1;
                    tracing::warn!("recovering {}: statement {} failed: {e}", path.display(), stmt.sql);
                }
            }
        }
        // Marked done in the same transaction: a process recovering it at the same time
        // finds it done and applies nothing twice.
        tx.execute("INSERT OR REPLACE INTO logs (name, applied) VALUES (?1, ?2)", params![&name, i64::MAX])?;
        tx.commit()?;
        if failed > 0 {
            tracing::warn!("recovered {} with {failed} statement(s) that did not apply", path.display());
        }
        let _ = std::fs::remove_file(&path);
    }
    Ok(())
}

/// Whether process `pid` is alive (it may belong to someone else: then it is alive too).
pub(super) fn alive(pid: i64) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else { return false };
    // SAFETY: signal 0 only checks that the process exists and may be signalled.
    let r = unsafe { libc::kill(pid, 0) };
    let exists = r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    // A process killed a moment ago may still be a zombie its parent has not reaped: it answers
    // signal 0 but will never write again.
    exists && !zombie(pid)
}

/// Whether `pid` is a zombie, per /proc (Linux); elsewhere, no.
fn zombie(pid: libc::pid_t) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| stat.rsplit_once(')').map(|(_, rest)| rest.trim_start().starts_with('Z')))
        .unwrap_or(false)
}

/// Kills the children (with their process groups and everything tagged as theirs) of hosts
/// that died while running them, and forgets them.
pub(super) fn kill_leftover_children(conn: &Connection) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare("SELECT host_pid, host_start, pgid, leader_start FROM children")?;
    let rows: Vec<(i64, i64, i64, i64)> =
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?.collect::<rusqlite::Result<_>>()?;
    let mut dead: Vec<(HostId, Vec<(i64, i64)>)> = Vec::new();
    for (pid, start, pgid, leader_start) in rows {
        let host = HostId { pid, start };
        if host == HostId::current() || host.alive() {
            continue;
        }
        match dead.iter_mut().find(|(h, _)| *h == host) {
            Some((_, groups)) => groups.push((pgid, leader_start)),
            None => dead.push((host, vec![(pgid, leader_start)])),
        }
    }
    for (host, groups) in dead {
        let killed = reaper::kill_leftovers_of(host, &groups);
        if killed > 0 {
            tracing::warn!(host = host.pid, killed, "killed processes a dead swarm host left running");
        }
        conn.execute("DELETE FROM children WHERE host_pid = ?1 AND host_start = ?2", params![host.pid, host.start])?;
    }
    Ok(())
}

/// Marks the runs left `running` by a process that is gone, and their tasks in flight,
/// `interrupted`: nobody will finish them, and a resume starts those tasks afresh.
pub(super) fn mark_interrupted(conn: &Connection) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare("SELECT id, pid FROM runs WHERE status = 'running'")?;
    let rows: Vec<(String, i64)> =
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<rusqlite::Result<_>>()?;
    let me = i64::from(std::process::id());
    for (id, pid) in rows {
        if pid != me && !alive(pid) {
            conn.execute(
                "UPDATE runs SET status = 'interrupted' WHERE id = ?1 AND status = 'running' AND pid = ?2",
                params![id, pid],
            )?;
            // Its tasks in flight died with it; a resume starts them afresh.
            conn.execute(
                "UPDATE tasks SET status = 'interrupted' WHERE run_id = ?1 AND status IN ('pending', 'running', 'suspended')",
                params![id],
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::open::open_connection;
    use super::super::write_ahead::{Param, Stmt};
    use super::super::{Reader, SqliteJournal};
    use super::*;

    #[test]
    fn only_runs_of_dead_processes_are_marked_interrupted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let mut dead = std::process::Command::new("true").spawn().unwrap();
        let dead_pid = dead.id();
        dead.wait().unwrap();
        /// Killed when dropped, so a failing assertion leaves no `sleep` behind.
        struct Child(std::process::Child);
        impl Drop for Child {
            fn drop(&mut self) {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
        let mut live = Child(std::process::Command::new("sleep").arg("30").spawn().unwrap());
        {
            let conn = open_connection(&path).unwrap();
            for (id, pid) in [("r-dead", dead_pid), ("r-live", live.0.id())] {
                conn.execute(
                    "INSERT INTO runs (id, blueprint, input, status, started_ms, pid) VALUES (?1, 'bp', '{}', 'running', 0, ?2)",
                    params![id, pid],
                )
                .unwrap();
            }
        }
        let reader = Reader::open(&path).unwrap();
        let status = |id: &str| reader.run(id).unwrap().unwrap().status;
        assert_eq!(status("r-dead"), "interrupted");
        assert_eq!(status("r-live"), "running", "its process is still there");
        live.0.kill().unwrap();
        live.0.wait().unwrap();
        drop(reader);
        let reader = Reader::open(&path).unwrap();
        assert_eq!(reader.run("r-live").unwrap().unwrap().status, "interrupted");
    }

    /// A process that died leaving records SQLite never got: the next open applies them, once.
    #[test]
    fn the_log_of_a_dead_process_is_applied_once_and_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        drop(SqliteJournal::open(&path).unwrap());
        let mut dead = std::process::Command::new("true").spawn().unwrap();
        let dead_pid = dead.id();
        dead.wait().unwrap();

        let run = |blueprint: &str| {
            Stmt::new(
                write_ahead::RUN_INSERT,
                vec![
                    "r-x".into(),
                    blueprint.into(),
                    Param::Null,
                    "{}".into(),
                    Param::Int(1),
                    Param::Int(i64::from(dead_pid)),
                    "d".into(),
                ],
            )
        };
        let event = |body: &str| {
            Stmt::new(write_ahead::EVENT, vec!["r-x".into(), Param::Int(1), Param::Int(1), "k".into(), body.into()])
        };
        let created =
            Stmt::new(write_ahead::TASK_CREATED, vec!["r-x.1".into(), "r-x".into(), "a".into(), Param::Int(2)]);
        let settled = Stmt::new(
            write_ahead::TASK_SETTLED,
            vec![
                "r-x.1".into(),
                "pass".into(),
                Param::Int(3),
                "/".into(),
                "h".into(),
                Param::Int(0),
                "7".into(),
                Param::Null,
                Param::Int(0),
            ],
        );
        let mut bytes = Vec::new();
        write_ahead::encode(&[run("bp"), event("from the log")], &mut bytes);
        let applied = bytes.len();
        write_ahead::encode(&[created], &mut bytes);
        write_ahead::encode(&[settled], &mut bytes);
        // The process died inside its last write.
        let mut torn = Vec::new();
        write_ahead::encode(&[event("torn")], &mut torn);
        bytes.extend_from_slice(&torn[..torn.len() / 2]);
        let name = format!("state.db-log-{dead_pid}-abc-0");
        // SQLite got the first record before the process died.
        {
            let conn = open_connection(&path).unwrap();
            run("bp").execute(&conn).unwrap();
            event("already applied").execute(&conn).unwrap();
            conn.execute("INSERT INTO logs (name, applied) VALUES (?1, ?2)", params![name, applied as i64]).unwrap();
        }
        std::fs::write(dir.path().join(&name), &bytes).unwrap();
        // Opened as `swarm runs` would: the dead process's records are there, and its run interrupted.
        let reader = Reader::open(&path).unwrap();
        let steps = reader.steps("r-x").unwrap();
        assert_eq!((steps.len(), steps[0].status.as_str()), (1, "pass"));
        assert_eq!(reader.run("r-x").unwrap().unwrap().status, "interrupted");
        let bodies: Vec<String> = Connection::open(&path)
            .unwrap()
            .prepare("SELECT body FROM events WHERE run_id = 'r-x'")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(bodies, ["already applied"], "the applied record was not applied again, the torn one not at all");
        assert!(!dir.path().join(&name).exists(), "the recovered log is deleted");
        // Opening again applies nothing twice.
        drop(reader);
        assert_eq!(Reader::open(&path).unwrap().steps("r-x").unwrap().len(), 1);
    }
}
