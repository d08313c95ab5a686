//! The journal's writer: one thread owns the SQLite connection. Messages arrive on a channel;
//! the thread takes one, then everything else already queued, and writes the batch in one
//! transaction (group commit: fanout lanes settling together share a commit), then acks the
//! messages that asked for it. WAL with `synchronous=NORMAL` makes a commit durable against a
//! process crash once it returns.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;

use rusqlite::{Connection, OpenFlags, params};
use tokio::sync::oneshot;

use super::{Ack, Journal, JournalError, RunStart, StepRecord, schema, status_name};
use crate::engine::{Event, EventKind, RunStatus, now_ms};
use crate::flow::FlowError;
use crate::store::OutputRecord;
use crate::value::Value;

enum Op {
    RunStarted(RunStart, u64),
    Event(Event),
    Step(StepRecord, u64),
    RunFinished {
        id: Arc<str>,
        status: RunStatus,
        ctx: Value,
        error: Option<FlowError>,
        at_ms: u64,
    },
    Output(OutputRecord),
    /// Nothing: its ack says everything sent before it is durable.
    Flush,
}

struct Msg {
    op: Op,
    ack: Option<oneshot::Sender<Result<(), String>>>,
}

/// A journal in a SQLite file, written by its own thread. Dropping it writes what is queued and
/// stops the thread.
pub struct SqliteJournal {
    path: PathBuf,
    tx: Option<mpsc::Sender<Msg>>,
    thread: Option<JoinHandle<()>>,
}

/// Opens `path` read-write, migrating its schema and marking runs left `running` by a dead
/// process `interrupted`: a file that is not a journal, or one locked
/// by another process for longer than the busy timeout, is an error and nothing is written.
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
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("swarm-journal".into())
            .spawn(move || write_loop(conn, rx))
            .map_err(|e| JournalError::new(path, e))?;
        Ok(SqliteJournal { path: path.to_path_buf(), tx: Some(tx), thread: Some(thread) })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn send(&self, op: Op, want_ack: bool) -> Ack {
        let (ack, rx) = if want_ack {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let sent = self.tx.as_ref().is_some_and(|tx| tx.send(Msg { op, ack }).is_ok());
        if !sent {
            tracing::error!(path = %self.path.display(), "the journal writer has stopped");
        }
        Ack(rx)
    }

    /// Resolves once everything sent so far is durable.
    pub fn flush(&self) -> Ack {
        self.send(Op::Flush, true)
    }

    /// Journals a stored output (the SQLite output store writes through here).
    pub fn output(&self, record: OutputRecord) {
        self.send(Op::Output(record), false);
    }
}

impl Drop for SqliteJournal {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Journal for SqliteJournal {
    fn run_started(&self, run: &RunStart) {
        self.send(Op::RunStarted(run.clone(), now_ms()), false);
    }

    fn event(&self, event: &Event) {
        self.send(Op::Event(event.clone()), false);
    }

    fn step_closed(&self, step: StepRecord) -> Ack {
        self.send(Op::Step(step, now_ms()), true)
    }

    fn run_finished(&self, run_id: &Arc<str>, status: RunStatus, ctx: &Value, error: Option<&FlowError>) -> Ack {
        let op =
            Op::RunFinished { id: run_id.clone(), status, ctx: ctx.clone(), error: error.cloned(), at_ms: now_ms() };
        self.send(op, true)
    }

    fn location(&self) -> Option<&Path> {
        Some(&self.path)
    }
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

fn write_loop(mut conn: Connection, rx: mpsc::Receiver<Msg>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        let result = write_batch(&mut conn, &batch).map_err(|e| e.to_string());
        if let Err(e) = &result {
            tracing::error!("journal write failed: {e}");
        }
        for msg in batch {
            if let Some(ack) = msg.ack {
                let _ = ack.send(result.clone());
            }
        }
    }
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("journal records encode as JSON")
}

fn write_batch(conn: &mut Connection, batch: &[Msg]) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    for msg in batch {
        apply(&tx, &msg.op)?;
    }
    tx.commit()
}

fn apply(tx: &rusqlite::Transaction<'_>, op: &Op) -> rusqlite::Result<()> {
    match op {
        Op::RunStarted(run, at_ms) => {
            let pid = i64::from(std::process::id());
            if run.resumed {
                tx.prepare_cached(
                    "UPDATE runs SET status = 'running', pid = ?2, finished_ms = NULL, ctx = NULL, error = NULL, \
                     digest = ?3 WHERE id = ?1",
                )?
                .execute(params![&*run.id, pid, &*run.digest])?;
            } else {
                tx.prepare_cached(
                    "INSERT INTO runs (id, blueprint, file, input, status, started_ms, pid, digest) \
                     VALUES (?1, ?2, ?3, ?4, 'running', ?5, ?6, ?7)",
                )?
                .execute(params![
                    &*run.id,
                    &*run.blueprint,
                    run.file,
                    run.input.to_json(),
                    *at_ms as i64,
                    pid,
                    &*run.digest
                ])?;
            }
        }
        Op::Event(event) => {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO events (run_id, seq, at_ms, kind, body) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                &*event.run_id,
                event.seq as i64,
                event.at_ms as i64,
                event.kind.name(),
                json(event)
            ])?;
            let at = event.at_ms as i64;
            match &event.kind {
                EventKind::TaskCreated { task_id, agent, .. } => {
                    tx.prepare_cached(
                        "INSERT OR IGNORE INTO tasks (id, run_id, agent, status, started_ms) VALUES (?1, ?2, ?3, 'running', ?4)",
                    )?
                    .execute(params![&**task_id, &*event.run_id, &**agent, at])?;
                }
                EventKind::AttemptStarted { task_id, attempt, .. } => {
                    tx.prepare_cached(
                        "INSERT OR REPLACE INTO attempts (task_id, attempt, run_id, status, started_ms) \
                         VALUES (?1, ?2, ?3, 'running', ?4)",
                    )?
                    .execute(params![&**task_id, attempt, &*event.run_id, at])?;
                    tx.prepare_cached("UPDATE tasks SET attempts = ?2 WHERE id = ?1")?
                        .execute(params![&**task_id, attempt])?;
                }
                EventKind::AttemptFinished { task_id, attempt, status, elapsed_ms, error, .. } => {
                    tx.prepare_cached(
                        "UPDATE attempts SET status = ?3, elapsed_ms = ?4, error = ?5 WHERE task_id = ?1 AND attempt = ?2",
                    )?
                    .execute(params![&**task_id, attempt, status.name(), elapsed_ms, error])?;
                }
                EventKind::TaskCancelled { task_id } => {
                    tx.prepare_cached(
                        "UPDATE tasks SET status = 'cancelled', finished_ms = ?2 WHERE id = ?1 AND status = 'running'",
                    )?
                    .execute(params![&**task_id, at])?;
                }
                _ => {}
            }
        }
        Op::Step(step, at_ms) => {
            let (status, output, error) = match &step.outcome {
                Ok(v) => ("pass", Some(v.to_json()), None),
                Err(e) => (e.kind.name(), None, Some(json(e))),
            };
            let at = *at_ms as i64;
            if step.replayed {
                tx.prepare_cached(
                    "INSERT OR IGNORE INTO tasks (id, run_id, agent, status, started_ms) VALUES (?1, ?2, ?3, 'running', ?4)",
                )?
                .execute(params![&*step.task_id, &*step.run_id, &*step.agent, at])?;
            }
            tx.prepare_cached(
                "UPDATE tasks SET status = ?2, finished_ms = ?3, pointer = ?4, input_hash = ?5, occurrence = ?6, \
                 output = ?7, error = ?8, replayed = ?9 WHERE id = ?1",
            )?
            .execute(params![
                &*step.task_id,
                status,
                at,
                &*step.pointer,
                &*step.input_hash,
                step.occurrence,
                output,
                error,
                step.replayed
            ])?;
        }
        Op::RunFinished { id, status, ctx, error, at_ms } => {
            tx.prepare_cached("UPDATE runs SET status = ?2, finished_ms = ?3, ctx = ?4, error = ?5 WHERE id = ?1")?
                .execute(params![
                    &**id,
                    status_name(*status),
                    *at_ms as i64,
                    ctx.to_json(),
                    error.as_ref().map(json)
                ])?;
        }
        Op::Flush => {}
        Op::Output(r) => {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO outputs (id, run_id, task_id, attempt, producer, value, size) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                &*r.id,
                &*r.run_id,
                &*r.task_id,
                r.attempt,
                &*r.producer,
                r.value.to_json(),
                r.size as i64
            ])?;
        }
    }
    Ok(())
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
}
