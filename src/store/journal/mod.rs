//! The run journal (docs/engine.md): runs, tasks, attempts, events and outputs in SQLite, so a run
//! interrupted by a crash can be shown afterwards and resumed without re-running the steps that
//! finished.
//!
//! The engine sees only the [`Journal`] trait: the event bus feeds it every event, the run driver
//! reports a run's start and end, and the flow dispatcher reports each settled step and waits
//! for the returned [`Ack`] before the flow moves past the step. [`SqliteJournal`] makes a step
//! durable in a write-ahead log of its process (see `ahead`) and writes SQLite on a thread of
//! its own (see `writer`); [`Reader`] answers `swarm runs`.

mod ahead;
mod outputs;
mod reader;
mod restart;
mod schema;
mod writer;

use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use tokio::sync::oneshot;

use crate::blueprint::Blueprint;
use crate::engine::{Engine, EngineConfig, Event, JournalRef, RunStatus};
use crate::flow::FlowError;
use crate::value::Value;

pub use outputs::SqliteOutputStore;
pub use reader::{Reader, Recorded, RunRow, StepKey, StepRow};
pub use restart::{Restart, RestartError, prepare as prepare_restart, release as release_restart};
pub use schema::SCHEMA_VERSION;
pub use writer::SqliteJournal;

/// What the engine tells a journal.
pub trait Journal {
    /// Run `run.id` starts, or resumes under the same id when `run.resumed`.
    fn run_started(&self, run: &RunStart);
    /// Every engine event, in publication order.
    fn event(&self, event: &Event);
    /// A step settled; the ack resolves once the record is durable.
    fn step_closed(&self, step: StepRecord) -> Ack;
    /// A run ended with this ctx (final or partial); the ack resolves once durable.
    fn run_finished(&self, run_id: &Arc<str>, status: RunStatus, ctx: &Value, error: Option<&FlowError>) -> Ack;
    /// The file the journal can be read back from (to resume its runs), if it has one.
    fn location(&self) -> Option<&Path> {
        None
    }
    /// Blocks until everything sent so far can be read back from [`Journal::location`].
    fn sync(&self) -> Result<(), String> {
        Ok(())
    }
}

/// How a run starts, as journaled.
#[derive(Clone, Debug)]
pub struct RunStart {
    pub id: Arc<str>,
    pub blueprint: Arc<str>,
    /// The blueprint file, so `swarm runs resume` can load it again.
    pub file: Option<String>,
    pub input: Value,
    /// [`blueprint_digest`] of the blueprint the run starts on.
    pub digest: Arc<str>,
    pub resumed: bool,
}

/// One settled step.
#[derive(Clone, Debug)]
pub struct StepRecord {
    pub run_id: Arc<str>,
    pub task_id: Arc<str>,
    pub agent: Arc<str>,
    /// The step's node pointer in the flow (`/children/2/body`).
    pub pointer: Arc<str>,
    /// [`input_hash`] of the step's input.
    pub input_hash: Arc<str>,
    /// How many earlier steps of this run had the same pointer and input hash.
    pub occurrence: u32,
    pub outcome: Result<Value, FlowError>,
    /// Replayed from the journal rather than dispatched (a rerun's steps before the cut).
    pub replayed: bool,
}

/// Resolves when a journal write is durable (or failed).
pub struct Ack(Option<oneshot::Receiver<Result<(), String>>>);

impl Ack {
    /// An ack that is already resolved: for journals with nothing to wait for.
    pub fn done() -> Ack {
        Ack(None)
    }

    /// An ack that is already resolved with an error.
    pub fn failed(message: impl Into<String>) -> Ack {
        let (tx, rx) = oneshot::channel();
        let _ = tx.send(Err(message.into()));
        Ack(Some(rx))
    }

    pub async fn wait(self) -> Result<(), String> {
        match self.0 {
            None => Ok(()),
            Some(rx) => rx.await.unwrap_or_else(|_| Err("the journal writer stopped".into())),
        }
    }
}

/// An engine journaling to `journal`, with its large outputs stored in the same file: what
/// `swarm run`, `swarm serve` and `swarm.engine{state = PATH}` make. The error is ready to show.
pub fn journaled_engine(mut config: EngineConfig, journal: Rc<SqliteJournal>) -> Result<Engine, String> {
    // The children the engine's workers start are journaled while they run.
    let ledger: Rc<dyn crate::worker::subprocess::process::ChildLedger> = journal.clone();
    crate::worker::subprocess::process::add_ledger(&ledger);
    let outputs = SqliteOutputStore::new(journal.clone()).map_err(|e| format!("cannot open the journal {e}"))?;
    config.journal = Some(JournalRef(journal));
    Engine::with_output_store(config, Rc::new(outputs)).map_err(|e| e.to_string())
}

/// SHA-256 of a blueprint's canonical JSON (keys sorted), the first 16 bytes in hex.
pub fn blueprint_digest(blueprint: &Blueprint) -> Arc<str> {
    hex16(&Sha256::digest(blueprint.to_json_pretty().as_bytes()))
}

fn hex16(digest: &[u8]) -> Arc<str> {
    let mut out = String::with_capacity(32);
    for b in &digest[..16] {
        out.push_str(&format!("{b:02x}"));
    }
    out.into()
}

/// The hash that keys a step's recorded result with its pointer: SHA-256 of the input's JSON,
/// the first 16 bytes in hex.
pub fn input_hash(input: &Value) -> Arc<str> {
    hex16(&Sha256::digest(input.to_json().as_bytes()))
}

/// A journal error: the file cannot be opened, is not a journal, is locked, or a write failed.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct JournalError {
    pub path: String,
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
    match status {
        RunStatus::Finished => "finished",
        RunStatus::Failed => "failed",
        RunStatus::Cancelled => "cancelled",
    }
}
