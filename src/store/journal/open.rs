//! Opening a journal's SQLite file: telling a journal from any other file, waiting out other
//! processes' locks, migrating the schema, and recovering from the processes that died with the
//! journal open (see `recovery`) before anything else is written.

use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use super::{JournalError, recovery, schema};

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
    recovery::apply_dead_logs(&mut conn, path).map_err(|e| opening(path, e))?;
    // Before any of their runs can be resumed, what dead hosts left running is killed.
    recovery::kill_leftover_children(&conn).map_err(|e| JournalError::new(path, e))?;
    recovery::mark_interrupted(&conn).map_err(|e| JournalError::new(path, e))?;
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
