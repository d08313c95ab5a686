//! The run journal (docs/engine.md): runs, tasks, attempts, events and outputs in SQLite, so a run
//! interrupted by a crash can be shown afterwards and resumed without re-running the steps that
//! finished.
//!
//! The engine sees only its [`Journal`] port: the event bus feeds it every event, the run driver
//! reports a run's start and end, and the flow dispatcher reports each settled step and waits
//! for the returned [`Ack`] before the flow moves past the step. [`SqliteJournal`] makes a step
//! durable in a write-ahead log of its process (see `write_ahead`) and writes SQLite on a thread
//! of its own (see `writer`); [`Reader`] answers `swarm runs`. Opening the file (see `open`)
//! first puts right what processes that died with it open left behind (see `recovery`).

mod open;
mod outputs;
mod reader;
mod recovery;
mod restart;
mod schema;
pub mod signals;
pub mod tokens;
mod write_ahead;
mod writer;

use std::path::Path;

use crate::engine::RunStatus;

pub use crate::engine::journal::{Ack, Journal, Recorded, RunStart, StepKey, StepRecord, input_hash};

pub use outputs::SqliteOutputStore;
pub use reader::{Reader, RunRow, SignalRow, StepRow, WaitRow};
pub use restart::{Restart, RestartError, prepare as prepare_restart, release as release_restart};
pub use schema::SCHEMA_VERSION;
pub use writer::SqliteJournal;

/// A journal error: the file cannot be opened, is not a journal, is locked, or a write failed.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct JournalError {
    /// The journal file.
    pub path: String,
    /// What went wrong.
    pub message: String,
    /// Another process held a lock: trying again shortly may succeed.
    pub locked: bool,
}

impl JournalError {
    fn new(path: &Path, message: impl std::fmt::Display) -> JournalError {
        let message = message.to_string();
        // rusqlite's text for SQLITE_BUSY / SQLITE_LOCKED, however the error travelled here.
        let locked = message.contains("database is locked") || message.contains("database table is locked");
        JournalError { path: path.display().to_string(), message, locked }
    }
}

/// The status string of a run in the journal: the engine's, plus `running` and `interrupted`.
pub fn status_name(status: RunStatus) -> &'static str {
    status.name()
}
