//! The journal's writer. Each journal write becomes SQL statements, built on the host thread
//! and appended to this process's write-ahead log (see `write_ahead`); a step's record is
//! written to the log before its close returns, which makes it durable against a process crash
//! without waiting for SQLite. One thread owns the SQLite connection: statements arrive on a
//! channel, the thread takes one message and everything else already queued, and applies the
//! batch in one transaction (group commit) together with how far into the log it got. SQLite's
//! own WAL journal mode with `synchronous=NORMAL` makes a commit durable against a process crash
//! once it returns.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, mpsc};
use std::thread::JoinHandle;

use rusqlite::{Connection, params};
use tokio::sync::oneshot;

use super::open::open_retrying;
use super::write_ahead::{self, LogFile, Param, Stmt};
use super::{Ack, Journal, JournalError, RunStart, StepRecord, status_name};
use crate::engine::journal::{SignalRecord, WaitBegun, WaitEnded};
use crate::engine::{Event, EventKind, RunStatus, now_ms};
use crate::flow::FlowError;
use crate::store::OutputRecord;
use crate::value::Value;
use crate::worker::subprocess::process::ChildLedger;
use crate::worker::subprocess::reaper::HostId;

/// How many journal writes may wait for the writer thread before the host waits for it, and
/// how far the writer must catch up before the host goes on. A host that journals faster than
/// SQLite applies would otherwise queue without end (what is durable is in the log already);
/// waiting for a whole stretch, not a slot at a time, keeps the two threads from waking each
/// other on every write.
const BACKLOG_HIGH: usize = 4096;
const BACKLOG_LOW: usize = 1024;

/// The writes sent and not yet applied, shared by the host and the writer thread.
#[derive(Default)]
struct Backlog {
    /// Writes queued, and hosts waiting for the writer.
    queued: Mutex<(usize, usize)>,
    drained: Condvar,
    /// The writer thread has stopped (it ended, or unwound): nobody will drain.
    stopped: AtomicBool,
}

impl Backlog {
    /// One more write queued; waits first while the writer is too far behind.
    fn add(&self) {
        let mut queued = self.queued.lock().unwrap_or_else(|e| e.into_inner());
        if queued.0 >= BACKLOG_HIGH {
            queued.1 += 1;
            while queued.0 > BACKLOG_LOW && !self.stopped.load(Ordering::Acquire) {
                queued = self.drained.wait(queued).unwrap_or_else(|e| e.into_inner());
            }
            queued.1 -= 1;
        }
        queued.0 += 1;
    }
}

/// Marks the writer stopped however its loop ends, so a host waiting on it goes on.
struct StopsBacklog<'a>(&'a Backlog);

impl Drop for StopsBacklog<'_> {
    fn drop(&mut self) {
        self.0.stopped.store(true, Ordering::Release);
        let _guard = self.0.queued.lock().unwrap_or_else(|e| e.into_inner());
        self.0.drained.notify_all();
    }
}

impl Backlog {
    /// `n` writes applied.
    fn applied(&self, n: usize) {
        let mut queued = self.queued.lock().unwrap_or_else(|e| e.into_inner());
        queued.0 = queued.0.saturating_sub(n);
        if queued.0 <= BACKLOG_LOW {
            self.drained.notify_all();
        }
    }
}

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
    backlog: Arc<Backlog>,
    thread: Option<JoinHandle<()>>,
    log: RefCell<LogFile>,
    /// Names the signals this journal writes, so it can tell those other processes wrote.
    origin: Arc<str>,
    /// Reads what other processes wrote (their signals), opened on first use.
    peer: RefCell<Option<PeerReader>>,
}

/// A read connection on the journal file, and how far it has read.
struct PeerReader {
    conn: Connection,
    /// SQLite's `data_version` when last read: it changes when another connection commits.
    data_version: i64,
    /// The last signal row read.
    last_signal: i64,
}

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
        let backlog = Arc::new(Backlog::default());
        let drained = backlog.clone();
        let thread = std::thread::Builder::new()
            .name("swarm-journal".into())
            .spawn(move || write_loop(conn, rx, dir, &drained))
            .map_err(|e| JournalError::new(path, e))?;
        Ok(SqliteJournal {
            path: path.to_path_buf(),
            tx: Some(tx),
            backlog,
            thread: Some(thread),
            log: RefCell::new(log),
            origin: crate::engine::wait::new_signal_uid(),
            peer: RefCell::new(None),
        })
    }

    /// The journal file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn send(&self, msg: Msg) -> bool {
        if matches!(msg, Msg::Write { .. }) {
            self.backlog.add();
        }
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
            write_ahead::OUTPUT,
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
            write_ahead::CHILD_STARTED,
            vec![Param::Int(host.pid), Param::Int(host.start), Param::Int(pgid), Param::Int(start)],
        );
        if let Err(e) = self.record(vec![stmt], true) {
            tracing::warn!("cannot journal child {pgid}: {e}");
        }
    }

    fn child_ended(&self, pgid: i64) {
        let stmt = Stmt::new(write_ahead::CHILD_ENDED, vec![Param::Int(HostId::current().pid), Param::Int(pgid)]);
        let _ = self.record(vec![stmt], false);
    }
}

impl Journal for SqliteJournal {
    fn run_started(&self, run: &RunStart) {
        let stmt = if run.resumed {
            Stmt::new(
                write_ahead::RUN_RESUMED,
                vec![(&*run.id).into(), Param::Int(i64::from(std::process::id())), (&*run.digest).into()],
            )
        } else {
            Stmt::new(
                write_ahead::RUN_INSERT,
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
            stmts.push(Stmt::new(write_ahead::TASK_CREATED, created));
        }
        stmts.push(Stmt::new(
            write_ahead::TASK_SETTLED,
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
            write_ahead::RUN_FINISHED,
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

    fn wait_began(&self, wait: &WaitBegun) -> Ack {
        let stmt = Stmt::new(
            write_ahead::WAIT_BEGAN,
            vec![
                (&*wait.run_id).into(),
                (&*wait.key.scope).into(),
                (&*wait.key.signal).into(),
                Param::Int(i64::from(wait.key.occurrence)),
                wait.pointer.as_deref().into(),
                wait.task_id.as_deref().into(),
                wait.question.as_ref().map(Value::to_json).into(),
                Param::Int(now_ms() as i64),
                wait.deadline_ms.map(|d| d as i64).into(),
            ],
        );
        match self.record(vec![stmt], true) {
            Ok(()) => Ack::done(),
            Err(e) => Ack::failed(e),
        }
    }

    fn wait_ended(&self, wait: &WaitEnded) -> Ack {
        let (status, value, error) = match &wait.outcome {
            Ok(v) => ("signalled", Param::Text(v.to_json()), Param::Null),
            Err(e) => (e.kind.name(), Param::Null, Param::Text(json(e))),
        };
        let mut stmts = vec![Stmt::new(
            write_ahead::WAIT_ENDED,
            vec![
                (&*wait.run_id).into(),
                (&*wait.key.scope).into(),
                (&*wait.key.signal).into(),
                Param::Int(i64::from(wait.key.occurrence)),
                status.into(),
                value,
                error,
                wait.signal_uid.as_deref().into(),
                Param::Int(now_ms() as i64),
            ],
        )];
        if let Some(uid) = &wait.signal_uid {
            stmts.push(Stmt::new(write_ahead::SIGNAL_TAKEN, vec![(&**uid).into()]));
        }
        match self.record(stmts, true) {
            Ok(()) => Ack::done(),
            Err(e) => Ack::failed(e),
        }
    }

    fn signal_arrived(&self, signal: &SignalRecord, from_journal: bool, taken: bool) {
        let now = Param::Int(now_ms() as i64);
        let stmt = if from_journal {
            Stmt::new(write_ahead::SIGNAL_DELIVERED, vec![(&*signal.uid).into(), now, Param::Int(i64::from(taken))])
        } else {
            Stmt::new(
                write_ahead::SIGNAL_SENT,
                vec![
                    (&*signal.uid).into(),
                    (&*signal.run_id).into(),
                    (&*signal.name).into(),
                    signal.value.to_json().into(),
                    Param::Int(signal.sent_ms as i64),
                    (&*self.origin).into(),
                    now,
                    Param::Int(i64::from(taken)),
                ],
            )
        };
        // Durable before the waits it reached go on: a signal is never lost to a crash.
        if let Err(e) = self.record(vec![stmt], true) {
            tracing::error!("cannot journal signal '{}' to run {}: {e}", signal.name, signal.run_id);
        }
    }

    fn run_waiting(&self, run_id: &Arc<str>, waiting: bool) {
        let status = if waiting { "waiting" } else { "running" };
        // Durable: a process killed while its run waits leaves it `waiting`, for the next one.
        if let Err(e) =
            self.record(vec![Stmt::new(write_ahead::RUN_STATUS, vec![(&**run_id).into(), status.into()])], true)
        {
            tracing::error!("cannot journal run {run_id} as {status}: {e}");
        }
    }

    fn foreign_signals(&self) -> Result<Vec<SignalRecord>, String> {
        let mut peer = self.peer.borrow_mut();
        if peer.is_none() {
            let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
            let conn = Connection::open_with_flags(&self.path, flags).map_err(|e| e.to_string())?;
            conn.busy_timeout(std::time::Duration::from_secs(1)).map_err(|e| e.to_string())?;
            *peer = Some(PeerReader { conn, data_version: -1, last_signal: 0 });
        }
        let peer = peer.as_mut().expect("just opened");
        let version: i64 = peer.conn.query_row("PRAGMA data_version", [], |r| r.get(0)).map_err(|e| e.to_string())?;
        if version == peer.data_version {
            return Ok(Vec::new());
        }
        let mut stmt = peer
            .conn
            .prepare_cached(
                "SELECT id, run_id, uid, name, value, sent_ms FROM signals WHERE id > ?1 AND origin != ?2 AND taken = 0 \
                 AND run_id IN (SELECT id FROM runs WHERE status IN ('running', 'waiting')) ORDER BY id",
            )
            .map_err(|e| e.to_string())?;
        let rows = stmt
            .query_map(params![peer.last_signal, &*self.origin], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, i64>(5)?,
                ))
            })
            .map_err(|e| e.to_string())?;
        let mut arrived = Vec::new();
        let mut last = peer.last_signal;
        for row in rows {
            let (id, run_id, uid, name, value, sent_ms) = row.map_err(|e| e.to_string())?;
            last = last.max(id);
            let Ok(value) = crate::value::from_json(&value) else {
                tracing::warn!(run = run_id, "skipping signal '{name}': its value does not decode");
                continue;
            };
            arrived.push(SignalRecord {
                run_id: run_id.into(),
                uid: uid.into(),
                name: name.into(),
                value,
                sent_ms: sent_ms as u64,
            });
        }
        drop(stmt);
        peer.last_signal = last;
        peer.data_version = version;
        Ok(arrived)
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
        write_ahead::EVENT,
        vec![run.clone(), Param::Int(event.seq as i64), at.clone(), event.kind.name().into(), json(event).into()],
    )];
    match &event.kind {
        EventKind::TaskCreated { task_id, agent, .. } => {
            stmts.push(Stmt::new(write_ahead::TASK_CREATED, vec![(&**task_id).into(), run, (&**agent).into(), at]));
        }
        EventKind::AttemptStarted { task_id, attempt, .. } => {
            let attempt = Param::Int(i64::from(*attempt));
            stmts.push(Stmt::new(write_ahead::ATTEMPT_STARTED, vec![(&**task_id).into(), attempt.clone(), run, at]));
            stmts.push(Stmt::new(write_ahead::TASK_ATTEMPTS, vec![(&**task_id).into(), attempt]));
        }
        EventKind::AttemptFinished { task_id, attempt, status, elapsed_ms, error, .. } => {
            stmts.push(Stmt::new(
                write_ahead::ATTEMPT_FINISHED,
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
            stmts.push(Stmt::new(write_ahead::TASK_CANCELLED, vec![(&**task_id).into(), at]));
        }
        _ => {}
    }
    stmts
}

fn write_loop(mut conn: Connection, rx: mpsc::Receiver<Msg>, dir: PathBuf, backlog: &Backlog) {
    // The first failure stops applying: the log keeps the rest, for whoever opens the journal
    // after this process (recovery applies it then).
    let _stops = StopsBacklog(backlog);
    let mut failed: Option<String> = None;
    let mut current: Option<Arc<str>> = None;
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        let writes = batch.iter().filter(|m| matches!(m, Msg::Write { .. })).count();
        if failed.is_none()
            && let Err(e) = write_batch(&mut conn, &batch)
        {
            tracing::error!("journal write failed: {e}");
            failed = Some(e.to_string());
        }
        backlog.applied(writes);
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
    fn a_host_past_the_backlog_waits_for_the_writer_to_catch_up() {
        let backlog = Arc::new(Backlog::default());
        for _ in 0..BACKLOG_HIGH {
            backlog.add();
        }
        let (done, waited) = mpsc::channel();
        let host = {
            let backlog = backlog.clone();
            std::thread::spawn(move || {
                backlog.add();
                done.send(()).unwrap();
            })
        };
        let waiting = || backlog.queued.lock().unwrap().1;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while waiting() == 0 {
            assert!(std::time::Instant::now() < deadline, "the host never waited");
            std::thread::yield_now();
        }
        // Not far enough: the host still waits.
        backlog.applied(BACKLOG_HIGH - BACKLOG_LOW - 1);
        assert_eq!(waiting(), 1, "the host went on too early");
        assert!(waited.try_recv().is_err());
        backlog.applied(1);
        waited.recv_timeout(std::time::Duration::from_secs(30)).expect("the host goes on once the writer caught up");
        host.join().unwrap();
        // A writer that stopped lets a waiting host go on.
        backlog.queued.lock().unwrap().0 = BACKLOG_HIGH;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let (done, waited) = mpsc::channel();
        let host = {
            let backlog = backlog.clone();
            std::thread::spawn(move || {
                backlog.add();
                done.send(()).unwrap();
            })
        };
        while waiting() == 0 {
            assert!(std::time::Instant::now() < deadline, "the host never waited");
            std::thread::yield_now();
        }
        drop(StopsBacklog(&backlog));
        waited.recv_timeout(std::time::Duration::from_secs(30)).expect("a stopped writer lets the host go on");
        host.join().unwrap();
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
        let logged = write_ahead::decode(&std::fs::read(&log).unwrap());
        assert_eq!(logged.last().unwrap().1[0].sql, write_ahead::TASK_SETTLED, "the last step's record is in the log");
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
