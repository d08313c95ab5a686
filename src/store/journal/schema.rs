//! The journal's schema and its migrations, versioned by `PRAGMA user_version`.

use rusqlite::{Connection, TransactionBehavior};

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = 6;

/// Each migration takes the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE runs (
    id TEXT PRIMARY KEY,
    blueprint TEXT NOT NULL,
    file TEXT,
    input TEXT NOT NULL,
    status TEXT NOT NULL,
    started_ms INTEGER NOT NULL,
    finished_ms INTEGER,
    ctx TEXT,
    error TEXT,
    pid INTEGER NOT NULL
);
CREATE TABLE tasks (
    id TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,
    agent TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    started_ms INTEGER NOT NULL,
    finished_ms INTEGER,
    pointer TEXT,
    input_hash TEXT,
    occurrence INTEGER,
    output TEXT,
    error TEXT,
    replayed INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX tasks_by_run ON tasks(run_id);
CREATE TABLE attempts (
    task_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    run_id TEXT NOT NULL,
    status TEXT NOT NULL,
    started_ms INTEGER NOT NULL,
    elapsed_ms REAL,
    error TEXT,
    PRIMARY KEY (task_id, attempt)
);
CREATE TABLE events (
    run_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    at_ms INTEGER NOT NULL,
    kind TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
);
CREATE TABLE outputs (
    id TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,
    task_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    producer TEXT NOT NULL,
    value TEXT NOT NULL,
    size INTEGER NOT NULL
);
CREATE INDEX outputs_by_producer ON outputs(producer);
CREATE INDEX outputs_by_run ON outputs(run_id);
"#,
    // 2: the digest of the blueprint a run started on, so resume can tell it changed.
    "ALTER TABLE runs ADD COLUMN digest TEXT;",
    // 3: how far SQLite has applied each process's write-ahead log (see `write_ahead`).
    "CREATE TABLE logs (name TEXT PRIMARY KEY, applied INTEGER NOT NULL);",
    // 4: the process groups of the children a host is running (pid and start time of host and
    // group leader), so the next process to open the journal kills what a dead host left.
    "CREATE TABLE children (host_pid INTEGER NOT NULL, host_start INTEGER NOT NULL, pgid INTEGER NOT NULL, \
     leader_start INTEGER NOT NULL, PRIMARY KEY (host_pid, pgid));",
    // 5: durable waits. A wait is known by its scope (a `wait` node's pointer, or the waiting
    // task's scope), its signal and its occurrence; signals arrive in `id` order, from this
    // process or another (`origin`), and are `taken` once a wait has their value.
    r#"
CREATE TABLE waits (
    run_id TEXT NOT NULL,
    scope TEXT NOT NULL,
    signal TEXT NOT NULL,
    occurrence INTEGER NOT NULL,
    pointer TEXT,
    task_id TEXT,
    question TEXT,
    started_ms INTEGER NOT NULL,
    deadline_ms INTEGER,
    status TEXT NOT NULL,
    value TEXT,
    error TEXT,
    signal_uid TEXT,
    finished_ms INTEGER,
    PRIMARY KEY (run_id, scope, signal, occurrence)
);
CREATE TABLE signals (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    uid TEXT NOT NULL UNIQUE,
    run_id TEXT NOT NULL,
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    sent_ms INTEGER NOT NULL,
    origin TEXT NOT NULL,
    delivered_ms INTEGER,
    taken INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX signals_by_run ON signals(run_id);
"#,
    // 6: tokens minted by `swarm token mint` for the hosts on this journal: kept under the
    // digest of their nonce (never the token), with a fingerprint to name and revoke them by.
    r#"
CREATE TABLE tokens (
    key TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    role TEXT NOT NULL,
    agent TEXT NOT NULL,
    issued_ms INTEGER NOT NULL,
    expire_ms INTEGER,
    max_uses INTEGER,
    revoked INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX tokens_by_fingerprint ON tokens(fingerprint);
"#,
];

/// Brings `conn` up to [`SCHEMA_VERSION`]; refuses a file written by a newer build. Each step
/// runs in an immediate transaction that reads the version again, so processes opening a new
/// file together migrate it once.
pub fn migrate(conn: &mut Connection) -> Result<(), String> {
    loop {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| e.to_string())?;
        let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(|e| e.to_string())?;
        if version > SCHEMA_VERSION {
            return Err(format!("schema version {version} is newer than this build's ({SCHEMA_VERSION})"));
        }
        if version == SCHEMA_VERSION {
            return Ok(());
        }
        let sql = MIGRATIONS[version as usize];
        tx.execute_batch(sql).map_err(|e| format!("migration to version {}: {e}", version + 1))?;
        tx.pragma_update(None, "user_version", version + 1).map_err(|e| e.to_string())?;
        tx.commit().map_err(|e| e.to_string())?;
    }
}
