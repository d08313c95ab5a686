//! The journal's writer. Each journal write becomes SQL statements, built on the host thread
//! and appended to this process's write-ahead log (see `ahead`); a step's record is written to
//! the log before its close returns, which makes it durable against a process crash without
//! waiting for SQLite. One thread owns the SQLite connection: statements arrive on a channel,
//! the thread takes one message and everything else already queued, and applies the batch in
//! one transaction (group commit) together with how far into the log it got. WAL with
//! `synchronous=NORMAL` makes a commit durable against a process crash once it returns.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;

use rusqlite::{Connection, OpenFlags, params};
use tokio::sync::oneshot;

use super::ahead::{self, LogFile, Param, Stmt};
use super::{Ack, Journal, JournalError, RunStart, StepRecord, schema, status_name};
use crate::engine::{Event, EventKind, RunStatus, now_ms};
use crate::flow::FlowError;
use crate::store::OutputRecord;
use crate::value::Value;
use crate::worker::subprocess::process::ChildLedger;
use crate::worker::subprocess::reaper::{self, HostId};

enum Msg {
    /// One journal write: its statements, and the log position after its record.
    Write { stmts: Vec<Stmt>, log: Arc<str>, end: u64 },
    /// Acked once everything before it is committed (or failed).
    Flush(oneshot::Sender<Result<(), String>>),
    /// [`Msg::Flush`] for a caller that blocks.
    Sync(mpsc::Sender<Result<(), String>>),
    /// The host moved on to a new log file; the old one goes once SQLite has all of it.
    Retire(Arc<str>),
}

/// A journal in a SQLite file, written by its own thread, fronted by a write-ahead log.
/// Dropping it writes what is queued, stops the thread, and deletes the log.
pub struct SqliteJournal {
    path: PathBuf,
    tx: Option<mpsc::Sender<Msg>>,
    thread: Option<JoinHandle<()>>,
    log: RefCell<LogFile>,
}

/// Opens `path` read-write, migrating its schema, applying the logs of dead processes, killing
/// the children dead hosts left running, and marking runs left `running` by a dead process
/// `interrupted`: a file that is not a journal, or one locked by another process for longer than
/// the busy timeout, is an error and nothing is written.
pub(super) fn open_connection(path: &Path) -> Result<Connection, JournalError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let mut conn = Connection::open_with_flags(path, flags).map_err(|e| JournalError::new(path, e))?;
    conn.busy_timeout(std::time::Duration::from_secs(BUSY_SECS)).map_err(|e| JournalError::new(path, e))?;
    // The first read tells a database from any other file, before anything is written.
    let version = conn.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0)).map_err(|e| opening(path, e))?;
    if version > schema::SCHEMA_VERSION {
        let message = format!("schema version {version} is newer than this build's ({})", schema::SCHEMA_VERSION);
        return Err(JournalError::new(path, message));
    }
    conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get::<_, String>(0)).map_err(|e| opening(path, e))?;
    conn.pragma_update(None, "synchronous", "NORMAL").map_err(|e| JournalError::new(path, e))?;
    schema::migrate(&mut conn).map_err(|e| JournalError::new(path, e))?;
    // What dead processes logged but SQLite never got goes in first, then their runs are marked.
    ahead::recover(&mut conn, path, alive).map_err(|e| opening(path, e))?;
    // Before any of their runs can be resumed, what dead hosts left running is killed.
    kill_leftover_children(&conn).map_err(|e| JournalError::new(path, e))?;
    mark_interrupted(&conn).map_err(|e| JournalError::new(path, e))?;
    Ok(conn)
}

/// [`open_connection`], tried again while another process holds a lock, until the busy
/// timeout. SQLite answers some lock conflicts at once rather than through its busy handler
/// (two processes creating or migrating a new journal together), so `swarm run`s started side
/// by side in one directory would otherwise fail for nothing.
pub(super) fn open_retrying(path: &Path) -> Result<Connection, JournalError> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(BUSY_SECS);
    let mut pause = std::time::Duration::from_millis(5);
    loop {
        match open_connection(path) {
            Err(e) if e.locked && std::time::Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(std::time::Duration::from_millis(200));
            }
            Err(e) if e.locked => {
                return Err(JournalError::new(
                    path,
                    format!("the journal is locked by another process (waited {BUSY_SECS} s)"),
                ));
            }
            other => return other,
        }
    }
}

/// Why a journal did not open: locked by another process, or not a journal at all.
fn opening(path: &Path, e: rusqlite::Error) -> JournalError {
    use rusqlite::ErrorCode::{DatabaseBusy, DatabaseLocked};
    match e.sqlite_error_code() {
        Some(DatabaseBusy | DatabaseLocked) => {
            let mut error = JournalError::new(path, "the journal is locked by another process");
            error.locked = true;
            error
        }
        _ => JournalError::new(path, format!("not a swarm journal ({e})")),
    }
}

/// How long an open or a write waits for another process's lock.
const BUSY_SECS: u64 = 5;

impl SqliteJournal {
    /// Opens (creating) the journal at `path`, marks runs left `running` by a process that is
    /// gone as `interrupted`, and starts the writer thread.
    pub fn open(path: &Path) -> Result<SqliteJournal, JournalError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| JournalError::new(dir, e))?;
        }
        let conn = open_retrying(path)?;
        let log = LogFile::create(path).map_err(|e| JournalError::new(path, format!("cannot create its log: {e}")))?;
        let (tx, rx) = mpsc::channel();
        let dir = log.path_of("");
        let thread = std::thread::Builder::new()
            .name("swarm-journal".into())
            .spawn(move || write_loop(conn, rx, dir))
            .map_err(|e| JournalError::new(path, e))?;
        Ok(SqliteJournal { path: path.to_path_buf(), tx: Some(tx), thread: Some(thread), log: RefCell::new(log) })
    }

    /// The journal file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn send(&self, msg: Msg) -> bool {
        let sent = self.tx.as_ref().is_some_and(|tx| tx.send(msg).is_ok());
        if !sent {
            tracing::error!(path = %self.path.display(), "the journal writer has stopped");
        }
        sent
    }

    /// Logs `stmts` (every token in their text replaced by its fingerprint) and hands them to the
    /// writer; with `durable`, the log is written before this returns (an error if it could
    /// not be).
    fn record(&self, mut stmts: Vec<Stmt>, durable: bool) -> Result<(), String> {
        // The last line of defence: no token reaches the file, whatever path it came by.
        for param in stmts.iter_mut().flat_map(|s| s.params.iter_mut()) {
            if let Param::Text(text) = param {
                crate::gate::scrub::scrub_string(text);
            }
        }
        let mut log = self.log.borrow_mut();
        let end = log.append(&stmts);
        self.send(Msg::Write { stmts, log: log.name.clone(), end });
        if !durable {
            return Ok(());
        }
        log.write().map_err(|e| format!("{}: writing the journal's log: {e}", self.path.display()))?;
        match log.rotate() {
            Ok(Some(old)) => {
                self.send(Msg::Retire(old));
            }
            Ok(None) => {}
            Err(e) => tracing::warn!("{}: cannot start a new log file: {e}", self.path.display()),
        }
        Ok(())
    }

    /// Resolves once everything sent so far is committed to SQLite.
    pub fn flush(&self) -> Ack {
        let (tx, rx) = oneshot::channel();
        if let Err(e) = self.log.borrow_mut().write() {
            let _ = tx.send(Err(format!("{}: writing the journal's log: {e}", self.path.display())));
        } else if !self.send(Msg::Flush(tx)) {
            return Ack::failed("the journal writer stopped");
        }
        Ack::pending(rx)
    }

    /// Journals a stored output (the SQLite output store writes through here).
    pub fn output(&self, r: OutputRecord) {
        let stmt = Stmt::new(
            ahead::OUTPUT,
            vec![
                (&*r.id).into(),
                (&*r.run_id).into(),
                (&*r.task_id).into(),
                Param::Int(i64::from(r.attempt)),
                (&*r.producer).into(),
                r.value.to_json().into(),
                Param::Int(r.size as i64),
            ],
        );
        // Kept with the next durable write, as events are.
        let _ = self.record(vec![stmt], false);
    }
}

impl Drop for SqliteJournal {
    fn drop(&mut self) {
        if let Err(e) = self.log.borrow_mut().write() {
            tracing::error!("{}: writing the journal's log: {e}", self.path.display());
        }
        self.tx.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The running children go in the log at once: a host killed a moment later must leave their
/// record behind for the next one.
impl ChildLedger for SqliteJournal {
    fn child_started(&self, pgid: i64, start: i64) {
        let host = HostId::current();
        let stmt = Stmt::new(
            ahead::CHILD_STARTED,
            vec![Param::Int(host.pid), Param::Int(host.start), Param::Int(pgid), Param::Int(start)],
        );
        if let Err(e) = self.record(vec![stmt], true) {
            tracing::warn!("cannot journal child {pgid}: {e}");
        }
    }

    fn child_ended(&self, pgid: i64) {
        let stmt = Stmt::new(ahead::CHILD_ENDED, vec![Param::Int(HostId::current().pid), Param::Int(pgid)]);
        let _ = self.record(vec![stmt], false);
    }
}

impl Journal for SqliteJournal {
    fn run_started(&self, run: &RunStart) {
        let stmt = if run.resumed {
            Stmt::new(
                ahead::RUN_RESUMED,
                vec![(&*run.id).into(), Param::Int(i64::from(std::process::id())), (&*run.digest).into()],
            )
        } else {
            Stmt::new(
                ahead::RUN_INSERT,
                vec![
                    (&*run.id).into(),
                    (&*run.blueprint).into(),
                    run.file.clone().into(),
                    run.input.to_json().into(),
                    Param::Int(now_ms() as i64),
                    Param::Int(i64::from(std::process::id())),
                    (&*run.digest).into(),
                ],
            )
        };
        let _ = self.record(vec![stmt], false);
    }

    fn event(&self, event: &Event) {
        let _ = self.record(event_statements(event), false);
    }

    fn step_closed(&self, step: StepRecord) -> Ack {
        let (status, output, error) = match &step.outcome {
            Ok(v) => ("pass", Param::Text(v.to_json()), Param::Null),
            Err(e) => (e.kind.name(), Param::Null, Param::Text(json(e))),
        };
        let at = Param::Int(now_ms() as i64);
        let mut stmts = Vec::with_capacity(2);
        if step.replayed {
            let created = vec![(&*step.task_id).into(), (&*step.run_id).into(), (&*step.agent).into(), at.clone()];
            stmts.push(Stmt::new(ahead::TASK_CREATED, created));
        }
        stmts.push(Stmt::new(
            ahead::TASK_SETTLED,
            vec![
                (&*step.task_id).into(),
                status.into(),
                at,
                (&*step.pointer).into(),
                (&*step.input_hash).into(),
                Param::Int(i64::from(step.occurrence)),
                output,
                error,
                Param::Int(i64::from(step.replayed)),
            ],
        ));
        match self.record(stmts, true) {
            Ok(()) => Ack::done(),
            Err(e) => Ack::failed(e),
        }
    }

    /// Durable in the log, and acked once committed to SQLite too, so whoever waited for the
    /// run can read all of it from the file.
    fn run_finished(&self, run_id: &Arc<str>, status: RunStatus, ctx: &Value, error: Option<&FlowError>) -> Ack {
        let stmt = Stmt::new(
            ahead::RUN_FINISHED,
            vec![
                (&**run_id).into(),
                status_name(status).into(),
                Param::Int(now_ms() as i64),
                ctx.to_json().into(),
                error.map(json).into(),
            ],
        );
        match self.record(vec![stmt], true) {
            Ok(()) => self.flush(),
            Err(e) => Ack::failed(e),
        }
    }

    fn location(&self) -> Option<&Path> {
        Some(&self.path)
    }

    fn sync(&self) -> Result<(), String> {
        self.log
            .borrow_mut()
            .write()
            .map_err(|e| format!("{}: writing the journal's log: {e}", self.path.display()))?;
        let (tx, rx) = mpsc::channel();
        if !self.send(Msg::Sync(tx)) {
            return Err("the journal writer stopped".into());
        }
        rx.recv().unwrap_or_else(|_| Err("the journal writer stopped".into()))
    }
}

/// The statements that journal `event`: the event itself, and what it says about its task.
fn event_statements(event: &Event) -> Vec<Stmt> {
    let at = Param::Int(event.at_ms as i64);
    let run: Param = (&*event.run_id).into();
    let mut stmts = vec![Stmt::new(
        ahead::EVENT,
        vec![run.clone(), Param::Int(event.seq as i64), at.clone(), event.kind.name().into(), json(event).into()],
    )];
    match &event.kind {
        EventKind::TaskCreated { task_id, agent, .. } => {
            stmts.push(Stmt::new(ahead::TASK_CREATED, vec![(&**task_id).into(), run, (&**agent).into(), at]));
        }
        EventKind::AttemptStarted { task_id, attempt, .. } => {
            let attempt = Param::Int(i64::from(*attempt));
            stmts.push(Stmt::new(ahead::ATTEMPT_STARTED, vec![(&**task_id).into(), attempt.clone(), run, at]));
            stmts.push(Stmt::new(ahead::TASK_ATTEMPTS, vec![(&**task_id).into(), attempt]));
        }
        EventKind::AttemptFinished { task_id, attempt, status, elapsed_ms, error, .. } => {
            stmts.push(Stmt::new(
                ahead::ATTEMPT_FINISHED,
                vec![
                    (&**task_id).into(),
                    Param::Int(i64::from(*attempt)),
                    status.name().into(),
                    Param::Real(*elapsed_ms),
                    error.clone().into(),
                ],
            ));
        }
        EventKind::TaskCancelled { task_id } => {
            stmts.push(Stmt::new(ahead::TASK_CANCELLED, vec![(&**task_id).into(), at]));
        }
        _ => {}
    }
    stmts
}

/// Whether process `pid` is alive (it may belong to someone else: then it is alive too).
fn alive(pid: i64) -> bool {
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
fn kill_leftover_children(conn: &Connection) -> rusqlite::Result<()> {
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

fn mark_interrupted(conn: &Connection) -> rusqlite::Result<()> {
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

fn write_loop(mut conn: Connection, rx: mpsc::Receiver<Msg>, dir: PathBuf) {
    // The first failure stops applying: the log keeps the rest, for whoever opens the journal
    // after this process (recovery applies it then).
    let mut failed: Option<String> = None;
    let mut current: Option<Arc<str>> = None;
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        if failed.is_none()
            && let Err(e) = write_batch(&mut conn, &batch)
        {
            tracing::error!("journal write failed: {e}");
            failed = Some(e.to_string());
        }
        let result = failed.as_ref().map_or(Ok(()), |e| Err(e.clone()));
        for msg in batch {
            match msg {
                Msg::Write { log, .. } => current = Some(log),
                Msg::Flush(ack) => {
                    let _ = ack.send(result.clone());
                }
                Msg::Sync(ack) => {
                    let _ = ack.send(result.clone());
                }
                Msg::Retire(name) if failed.is_none() => retire(&conn, &dir, &name),
                Msg::Retire(_) => {}
            }
        }
    }
    if let (None, Some(name)) = (failed, current) {
        retire(&conn, &dir, &name);
    }
}

/// Deletes a log SQLite has all of: the file first, then its row.
fn retire(conn: &Connection, dir: &Path, name: &str) {
    let _ = std::fs::remove_file(dir.join(name));
    if let Err(e) = conn.execute("DELETE FROM logs WHERE name = ?1", [name]) {
        tracing::warn!("forgetting the journal log {name}: {e}");
    }
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("journal records encode as JSON")
}

/// Applies a batch in one transaction, with how far into each log it got.
fn write_batch(conn: &mut Connection, batch: &[Msg]) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    let mut reached: Vec<(&Arc<str>, u64)> = Vec::new();
    for msg in batch {
        if let Msg::Write { stmts, log, end } = msg {
            for stmt in stmts {
                stmt.execute(&tx)?;
            }
            match reached.iter_mut().find(|(name, _)| *name == log) {
                Some(r) => r.1 = *end,
                None => reached.push((log, *end)),
            }
        }
    }
    for (name, end) in reached {
        tx.prepare_cached("INSERT OR REPLACE INTO logs (name, applied) VALUES (?1, ?2)")?
            .execute(params![&**name, end as i64])?;
    }
    tx.commit()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::journal::Reader;

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
    }

    fn event(run: &Arc<str>, seq: u64, kind: EventKind) -> Event {
        Event { run_id: run.clone(), seq, at_ms: 1000 + seq, kind }
    }

    #[test]
    fn an_acked_step_is_read_back_by_another_connection() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let journal = SqliteJournal::open(&path).unwrap();
        let run: Arc<str> = "r-t".into();
        journal.run_started(&RunStart {
            id: run.clone(),
            blueprint: "bp".into(),
            file: Some("/x/bp.lua".into()),
            input: Value::from("in"),
            digest: "d".into(),
            resumed: false,
        });
        // Two lanes' steps with the same key, sent together: one batch, acked in order.
        let mut acks = Vec::new();
        for (n, out) in [(1, "first"), (2, "second")] {
            let task: Arc<str> = format!("r-t.{n}").into();
            let created = EventKind::TaskCreated { task_id: task.clone(), agent: "a".into(), depth: 0, parent: None };
            journal.event(&event(&run, n, created));
            acks.push(journal.step_closed(StepRecord {
                run_id: run.clone(),
                task_id: task,
                agent: "a".into(),
                pointer: "/body".into(),
                input_hash: "h".into(),
                occurrence: n as u32 - 1,
                outcome: Ok(Value::from(out)),
                replayed: false,
            }));
        }
        for ack in acks {
            block_on(ack.wait()).unwrap();
        }
        // Acked means written to the log; SQLite has it once the writer caught up.
        let log = journal.log.borrow().path_of(&journal.log.borrow().name);
        let logged = ahead::decode(&std::fs::read(&log).unwrap());
        assert_eq!(logged.last().unwrap().1[0].sql, ahead::TASK_SETTLED, "the last step's record is in the log");
        journal.sync().unwrap();
        let reader = Reader::open(&path).unwrap();
        let steps = reader.steps("r-t").unwrap();
        assert_eq!(steps.iter().map(|s| s.status.as_str()).collect::<Vec<_>>(), ["pass", "pass"]);
        let recorded = reader.recorded("r-t").unwrap();
        let values: Vec<Value> = recorded[&(Arc::from("/body"), Arc::from("h"))].iter().cloned().collect();
        assert_eq!(values, [Value::from("first"), Value::from("second")], "in occurrence order");
        assert_eq!(reader.counters("r-t").unwrap(), (2, 2));
        let row = reader.run("r-t").unwrap().unwrap();
        assert_eq!((row.status.as_str(), row.file.as_deref()), ("running", Some("/x/bp.lua")));
    }

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
                ahead::RUN_INSERT,
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
            Stmt::new(ahead::EVENT, vec!["r-x".into(), Param::Int(1), Param::Int(1), "k".into(), body.into()])
        };
        let created = Stmt::new(ahead::TASK_CREATED, vec!["r-x.1".into(), "r-x".into(), "a".into(), Param::Int(2)]);
        let settled = Stmt::new(
            ahead::TASK_SETTLED,
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
        ahead::encode(&[run("bp"), event("from the log")], &mut bytes);
        let applied = bytes.len();
        ahead::encode(&[created], &mut bytes);
        ahead::encode(&[settled], &mut bytes);
        // The process died inside its last write.
        let mut torn = Vec::new();
        ahead::encode(&[event("torn")], &mut torn);
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

    #[test]
    fn a_clean_exit_leaves_no_log_and_a_long_log_is_retired_as_it_goes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let logs = || {
            std::fs::read_dir(dir.path())
                .unwrap()
                .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with("state.db-log-"))
                .count()
        };
        let journal = SqliteJournal::open(&path).unwrap();
        journal.log.borrow_mut().rotate_at = 4096;
        let run: Arc<str> = "r-r".into();
        for n in 0..200u64 {
            let task: Arc<str> = format!("r-r.{n}").into();
            let created = EventKind::TaskCreated { task_id: task.clone(), agent: "a".into(), depth: 0, parent: None };
            journal.event(&event(&run, n, created));
            let step = StepRecord {
                run_id: run.clone(),
                task_id: task,
                agent: "a".into(),
                pointer: "/".into(),
                input_hash: "h".into(),
                occurrence: n as u32,
                outcome: Ok(Value::from(n as i64)),
                replayed: false,
            };
            block_on(journal.step_closed(step).wait()).unwrap();
        }
        assert!(journal.log.borrow().generation > 5, "the log moved on to new files");
        journal.sync().unwrap();
        assert_eq!(logs(), 1, "the retired files are gone once SQLite has them");
        drop(journal);
        assert_eq!(logs(), 0, "a clean exit deletes the log");
        assert_eq!(Reader::open(&path).unwrap().steps("r-r").unwrap().len(), 200);
    }
}
