//! The journal's write-ahead log: what makes a step durable without waiting for SQLite.
//!
//! Every journal write becomes a few SQL statements ([`Stmt`]). The host thread appends them,
//! encoded, to a log file of its own process (`state.db-log-PID-NONCE-GEN`) and hands them to
//! the writer thread, which applies them to SQLite in group commits and records, in the same
//! transaction, how far into the log it has applied (table `logs`). A step is durable once its
//! record is written to the log: one `write`, no thread hand-off, no commit to wait for. SQLite
//! catches up a moment later.
//!
//! This log is ours and sits in front of SQLite; it is not SQLite's own WAL file
//! (`state.db-wal`), which SQLite keeps for its transactions underneath.
//!
//! A process that dies leaves its log behind. Whoever opens the journal next applies the part
//! SQLite does not have yet (`recovery::apply_dead_logs`), exactly once (the applied position
//! moves in the same transaction), then deletes the file. A log file is retired once SQLite has all of it, on a
//! clean exit or when it grows past [`ROTATE_BYTES`].
//!
//! A record is `[payload length: u32][checksum: u64][payload]`, little-endian; the payload is
//! the statements, each `[statement: u8][parameter count: u8]` then tagged parameters. A torn
//! last record (the process died inside the `write`) fails its length or checksum and is
//! ignored: it was never acknowledged.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, ToSql};

/// A log file is retired and a new one started once it is this long.
pub(super) const ROTATE_BYTES: u64 = 64 << 20;

/// The statements the journal writes, by index.
pub(super) const SQL: &[&str] = &[
    // RUN_INSERT: id, blueprint, file, input, started_ms, pid, digest
    "INSERT INTO runs (id, blueprint, file, input, status, started_ms, pid, digest) \
     VALUES (?1, ?2, ?3, ?4, 'running', ?5, ?6, ?7)",
    // RUN_RESUMED: id, pid, digest
    "UPDATE runs SET status = 'running', pid = ?2, finished_ms = NULL, ctx = NULL, error = NULL, digest = ?3 \
     WHERE id = ?1",
    // EVENT: run_id, seq, at_ms, kind, body
    "INSERT OR REPLACE INTO events (run_id, seq, at_ms, kind, body) VALUES (?1, ?2, ?3, ?4, ?5)",
    // TASK_CREATED: id, run_id, agent, started_ms
    "INSERT OR IGNORE INTO tasks (id, run_id, agent, status, started_ms) VALUES (?1, ?2, ?3, 'running', ?4)",
    // ATTEMPT_STARTED: task_id, attempt, run_id, started_ms
    "INSERT OR REPLACE INTO attempts (task_id, attempt, run_id, status, started_ms) VALUES (?1, ?2, ?3, 'running', ?4)",
    // TASK_ATTEMPTS: task_id, attempts
    "UPDATE tasks SET attempts = ?2 WHERE id = ?1",
    // ATTEMPT_FINISHED: task_id, attempt, status, elapsed_ms, error
    "UPDATE attempts SET status = ?3, elapsed_ms = ?4, error = ?5 WHERE task_id = ?1 AND attempt = ?2",
    // TASK_CANCELLED: task_id, finished_ms
    "UPDATE tasks SET status = 'cancelled', finished_ms = ?2 WHERE id = ?1 AND status = 'running'",
    // TASK_SETTLED: id, status, finished_ms, pointer, input_hash, occurrence, output, error, replayed
    "UPDATE tasks SET status = ?2, finished_ms = ?3, pointer = ?4, input_hash = ?5, occurrence = ?6, \
     output = ?7, error = ?8, replayed = ?9 WHERE id = ?1",
    // RUN_FINISHED: id, status, finished_ms, ctx, error
    "UPDATE runs SET status = ?2, finished_ms = ?3, ctx = ?4, error = ?5 WHERE id = ?1",
    // OUTPUT: id, run_id, task_id, attempt, producer, value, size
    "INSERT OR REPLACE INTO outputs (id, run_id, task_id, attempt, producer, value, size) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    // CHILD_STARTED: host_pid, host_start, pgid, leader_start
    "INSERT OR REPLACE INTO children (host_pid, host_start, pgid, leader_start) VALUES (?1, ?2, ?3, ?4)",
    // CHILD_ENDED: host_pid, pgid
    "DELETE FROM children WHERE host_pid = ?1 AND pgid = ?2",
    // WAIT_BEGAN: run_id, scope, signal, occurrence, pointer, task_id, question, started_ms, deadline_ms
    // (a resumed run's wait keeps its first start and deadline)
    "INSERT INTO waits (run_id, scope, signal, occurrence, pointer, task_id, question, started_ms, deadline_ms, status) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'waiting') \
     ON CONFLICT (run_id, scope, signal, occurrence) DO UPDATE SET task_id = excluded.task_id",
    // WAIT_ENDED: run_id, scope, signal, occurrence, status, value, error, signal_uid, finished_ms
    "UPDATE waits SET status = ?5, value = ?6, error = ?7, signal_uid = ?8, finished_ms = ?9 \
     WHERE run_id = ?1 AND scope = ?2 AND signal = ?3 AND occurrence = ?4",
    // SIGNAL_SENT: uid, run_id, name, value, sent_ms, origin, delivered_ms, taken
    "INSERT OR IGNORE INTO signals (uid, run_id, name, value, sent_ms, origin, delivered_ms, taken) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    // SIGNAL_DELIVERED: uid, delivered_ms, taken
    "UPDATE signals SET delivered_ms = ?2, taken = MAX(taken, ?3) WHERE uid = ?1",
    // SIGNAL_TAKEN: uid
    "UPDATE signals SET taken = 1 WHERE uid = ?1",
    // RUN_STATUS: id, status (`waiting` or `running`, for a run in flight)
    "UPDATE runs SET status = ?2 WHERE id = ?1 AND status IN ('running', 'waiting')",
];

pub(super) const RUN_INSERT: u8 = 0;
pub(super) const RUN_RESUMED: u8 = 1;
pub(super) const EVENT: u8 = 2;
pub(super) const TASK_CREATED: u8 = 3;
pub(super) const ATTEMPT_STARTED: u8 = 4;
pub(super) const TASK_ATTEMPTS: u8 = 5;
pub(super) const ATTEMPT_FINISHED: u8 = 6;
pub(super) const TASK_CANCELLED: u8 = 7;
pub(super) const TASK_SETTLED: u8 = 8;
pub(super) const RUN_FINISHED: u8 = 9;
pub(super) const OUTPUT: u8 = 10;
pub(super) const CHILD_STARTED: u8 = 11;
pub(super) const CHILD_ENDED: u8 = 12;
pub(super) const WAIT_BEGAN: u8 = 13;
pub(super) const WAIT_ENDED: u8 = 14;
pub(super) const SIGNAL_SENT: u8 = 15;
pub(super) const SIGNAL_DELIVERED: u8 = 16;
pub(super) const SIGNAL_TAKEN: u8 = 17;
pub(super) const RUN_STATUS: u8 = 18;

/// A statement parameter.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Param {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
}

impl ToSql for Param {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self {
            Param::Null => ValueRef::Null,
            Param::Int(n) => ValueRef::Integer(*n),
            Param::Real(x) => ValueRef::Real(*x),
            Param::Text(s) => ValueRef::Text(s.as_bytes()),
        }))
    }
}

impl From<&str> for Param {
    fn from(s: &str) -> Param {
        Param::Text(s.to_string())
    }
}

impl From<String> for Param {
    fn from(s: String) -> Param {
        Param::Text(s)
    }
}

impl From<i64> for Param {
    fn from(n: i64) -> Param {
        Param::Int(n)
    }
}

impl<T: Into<Param>> From<Option<T>> for Param {
    fn from(v: Option<T>) -> Param {
        v.map_or(Param::Null, Into::into)
    }
}

/// One statement of [`SQL`] with its parameters.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Stmt {
    pub sql: u8,
    pub params: Vec<Param>,
}

impl Stmt {
    pub fn new(sql: u8, params: Vec<Param>) -> Stmt {
        Stmt { sql, params }
    }

    pub fn execute(&self, conn: &Connection) -> rusqlite::Result<()> {
        let mut stmt = conn.prepare_cached(SQL[self.sql as usize])?;
        stmt.execute(rusqlite::params_from_iter(self.params.iter()))?;
        Ok(())
    }
}

const HEADER: usize = 12;

/// Appends the record of `stmts` to `buf`.
pub(super) fn encode(stmts: &[Stmt], buf: &mut Vec<u8>) {
    let start = buf.len();
    buf.extend_from_slice(&[0; HEADER]);
    for stmt in stmts {
        buf.push(stmt.sql);
        buf.push(u8::try_from(stmt.params.len()).expect("statements take few parameters"));
        for param in &stmt.params {
            match param {
                Param::Null => buf.push(0),
                Param::Int(n) => {
                    buf.push(1);
                    buf.extend_from_slice(&n.to_le_bytes());
                }
                Param::Real(x) => {
                    buf.push(2);
                    buf.extend_from_slice(&x.to_le_bytes());
                }
                Param::Text(s) => {
                    buf.push(3);
                    buf.extend_from_slice(&(s.len() as u32).to_le_bytes());
                    buf.extend_from_slice(s.as_bytes());
                }
            }
        }
    }
    let payload = &buf[start + HEADER..];
    let len = (payload.len() as u32).to_le_bytes();
    let sum = checksum(payload).to_le_bytes();
    buf[start..start + 4].copy_from_slice(&len);
    buf[start + 4..start + HEADER].copy_from_slice(&sum);
}

/// The records in `bytes`, each with the position just after it; stops at a torn or damaged
/// record.
pub(super) fn decode(bytes: &[u8]) -> Vec<(u64, Vec<Stmt>)> {
    let mut records = Vec::new();
    let mut at = 0;
    while bytes.len() - at >= HEADER {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        let sum = u64::from_le_bytes(bytes[at + 4..at + HEADER].try_into().expect("8 bytes"));
        let Some(payload) = bytes.get(at + HEADER..at + HEADER + len) else { break };
        if checksum(payload) != sum {
            break;
        }
        let Some(stmts) = decode_payload(payload) else { break };
        at += HEADER + len;
        records.push((at as u64, stmts));
    }
    records
}

fn decode_payload(mut p: &[u8]) -> Option<Vec<Stmt>> {
    fn take<'a>(p: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (head, rest) = (p.get(..n)?, p.get(n..)?);
        *p = rest;
        Some(head)
    }
    let mut stmts = Vec::new();
    while !p.is_empty() {
        let head = take(&mut p, 2)?;
        let (sql, count) = (head[0], head[1]);
        if sql as usize >= SQL.len() {
            return None;
        }
        let mut params = Vec::with_capacity(count as usize);
        for _ in 0..count {
            params.push(match take(&mut p, 1)?[0] {
                0 => Param::Null,
                1 => Param::Int(i64::from_le_bytes(take(&mut p, 8)?.try_into().ok()?)),
                2 => Param::Real(f64::from_le_bytes(take(&mut p, 8)?.try_into().ok()?)),
                3 => {
                    let len = u32::from_le_bytes(take(&mut p, 4)?.try_into().ok()?) as usize;
                    Param::Text(String::from_utf8(take(&mut p, len)?.to_vec()).ok()?)
                }
                _ => return None,
            });
        }
        stmts.push(Stmt { sql, params });
    }
    Some(stmts)
}

/// A 64-bit checksum (FNV-1a over 8-byte words), enough to tell a torn write.
fn checksum(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut words = bytes.chunks_exact(8);
    for w in &mut words {
        h = (h ^ u64::from_le_bytes(w.try_into().expect("8 bytes"))).wrapping_mul(0x0000_0100_0000_01b3);
        h = h.rotate_left(29);
    }
    for &b in words.remainder() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^ bytes.len() as u64
}

/// This process's log file, appended to by the host thread.
pub(super) struct LogFile {
    file: File,
    dir: PathBuf,
    stem: String,
    pub name: std::sync::Arc<str>,
    pub generation: u32,
    /// The length at which the file is retired for a new one.
    pub rotate_at: u64,
    /// Bytes of records so far, written or still in `buf`.
    pub end: u64,
    buf: Vec<u8>,
}

/// The directory the log files of journal `db` live in: the journal's own.
pub(super) fn log_dir(db: &Path) -> PathBuf {
    match db.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// The log files of journal `db` start with this.
pub(super) fn prefix(db: &Path) -> String {
    format!("{}-log-", db.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default())
}

impl LogFile {
    /// A new log for this process beside the journal `db`.
    pub fn create(db: &Path) -> std::io::Result<LogFile> {
        let dir = log_dir(db);
        // Unique among this process's journals (a counter) and across reuses of its pid (the clock).
        static OPENED: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let nonce = (nanos as u64 & 0xffff_ffff_ffff) << 8 | (OPENED.fetch_add(1, Ordering::Relaxed) & 0xff);
        let stem = format!("{}{}-{nonce:x}", prefix(db), std::process::id());
        let (file, name) = open_generation(&dir, &stem, 0)?;
        Ok(LogFile {
            file,
            dir,
            stem,
            name,
            generation: 0,
            rotate_at: ROTATE_BYTES,
            end: 0,
            buf: Vec::with_capacity(64 << 10),
        })
    }

    pub fn path_of(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Buffers the record of `stmts`; the position after it.
    pub fn append(&mut self, stmts: &[Stmt]) -> u64 {
        let before = self.buf.len();
        encode(stmts, &mut self.buf);
        self.end += (self.buf.len() - before) as u64;
        self.end
    }

    /// Writes what is buffered: from here on it survives the process.
    pub fn write(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let written = self.file.write_all(&self.buf);
        self.buf.clear();
        written
    }

    /// Once the file is past `rotate_at` (and written), starts the next one; the retired
    /// file's name.
    pub fn rotate(&mut self) -> std::io::Result<Option<std::sync::Arc<str>>> {
        if self.end < self.rotate_at || !self.buf.is_empty() {
            return Ok(None);
        }
        let (file, name) = open_generation(&self.dir, &self.stem, self.generation + 1)?;
        self.generation += 1;
        self.file = file;
        self.end = 0;
        Ok(Some(std::mem::replace(&mut self.name, name)))
    }
}

fn open_generation(dir: &Path, stem: &str, generation: u32) -> std::io::Result<(File, std::sync::Arc<str>)> {
    let name = format!("{stem}-{generation}");
    let file = std::fs::OpenOptions::new().create_new(true).append(true).open(dir.join(&name))?;
    Ok((file, name.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Stmt> {
        vec![
            Stmt::new(EVENT, vec!["r-1".into(), Param::Int(-7), Param::Real(1.5), Param::Null, "é{}\n".into()]),
            Stmt::new(TASK_ATTEMPTS, vec!["r-1.1".into(), Param::Int(i64::MAX)]),
        ]
    }

    #[test]
    fn records_round_trip_and_a_torn_or_damaged_tail_is_dropped() {
        let mut buf = Vec::new();
        encode(&sample(), &mut buf);
        let first = buf.len() as u64;
        encode(&sample()[1..], &mut buf);
        let records = decode(&buf);
        assert_eq!(records, vec![(first, sample()), (buf.len() as u64, sample()[1..].to_vec())]);
        // The process died inside the second write.
        assert_eq!(decode(&buf[..buf.len() - 3]), vec![(first, sample())]);
        assert_eq!(decode(&buf[..first as usize + 5]), vec![(first, sample())]);
        // A flipped byte fails the checksum.
        let mut damaged = buf.clone();
        damaged[first as usize + HEADER + 3] ^= 0x40;
        assert_eq!(decode(&damaged), vec![(first, sample())]);
        assert!(decode(&[]).is_empty());
    }
}
