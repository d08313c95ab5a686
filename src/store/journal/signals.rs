//! Signals from outside the process that runs a run (`swarm runs signal`): written straight to
//! the journal, where the run's process finds them (it polls while its waits are open), or
//! where whoever goes on with a run left waiting finds them when it resumes it.

use std::path::Path;
use std::sync::Arc;

use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::JournalError;
use super::open::open_retrying;
use crate::engine::now_ms;
use crate::engine::wait::new_signal_uid;
use crate::value::Value;

/// A signal in the journal, and who has its run.
#[derive(Clone, Debug)]
pub struct SentSignal {
    /// The signal's id.
    pub uid: Arc<str>,
    /// The run's status when the signal was written (`running`, `waiting`, `interrupted`).
    pub status: String,
    /// The process that last ran the run.
    pub pid: i64,
    /// Whether that process is alive (and may take the signal itself).
    pub owner_alive: bool,
}

/// Why a signal was refused.
#[derive(Debug, thiserror::Error)]
pub enum SignalError {
    /// The journal could not be read or written.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// No run has this id.
    #[error("no run {0}")]
    NoSuchRun(String),
    /// The run has ended: nothing will ever wait again.
    #[error("run {run} is {status}: it waits for no signal")]
    NotWaiting {
        /// The run's id.
        run: String,
        /// How it ended.
        status: String,
    },
}

impl SignalError {
    /// The `kind` a script or a client sees.
    pub fn kind(&self) -> &'static str {
        match self {
            SignalError::Journal(_) => "journal",
            SignalError::NoSuchRun(_) => "no_such_run",
            SignalError::NotWaiting { .. } => "not_waiting",
        }
    }
}

/// Writes signal `name` with `value` for run `run_id` into the journal at `path`, in one
/// transaction with the check that the run has not ended.
pub fn send(path: &Path, run_id: &str, name: &str, value: &Value) -> Result<SentSignal, SignalError> {
    let mut conn = open_retrying(path)?;
    let err = |e: rusqlite::Error| JournalError::new(path, e);
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(err)?;
    let run: Option<(String, i64)> = tx
        .query_row("SELECT status, pid FROM runs WHERE id = ?1", [run_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
        .map_err(err)?;
    let Some((status, pid)) = run else { return Err(SignalError::NoSuchRun(run_id.to_string())) };
    if matches!(status.as_str(), "finished" | "failed" | "cancelled") {
        return Err(SignalError::NotWaiting { run: run_id.to_string(), status });
    }
    let uid = new_signal_uid();
    let origin = format!("pid-{}", std::process::id());
    // A token pasted into a value is stored as its fingerprint, as everything the host stores.
    let mut text = value.to_json();
    crate::gate::scrub::scrub_string(&mut text);
    tx.execute(
        "INSERT INTO signals (uid, run_id, name, value, sent_ms, origin, taken) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0)",
        params![&*uid, run_id, name, text, now_ms() as i64, origin],
    )
    .map_err(err)?;
    tx.commit().map_err(err)?;
    let me = i64::from(std::process::id());
    let owner_alive = pid != me && super::recovery::alive(pid);
    Ok(SentSignal { uid, status, pid, owner_alive })
}

/// Whether the process running the signal's run has taken signal `uid` from the journal.
pub fn delivered(path: &Path, uid: &str) -> Result<bool, JournalError> {
    let conn = open_retrying(path)?;
    let at: Option<Option<i64>> = conn
        .query_row("SELECT delivered_ms FROM signals WHERE uid = ?1", [uid], |r| r.get(0))
        .optional()
        .map_err(|e| JournalError::new(path, e))?;
    Ok(at.flatten().is_some())
}

/// The status of run `run_id` and whether the process that has it is alive.
pub fn owner(path: &Path, run_id: &str) -> Result<Option<(String, bool)>, JournalError> {
    let conn = open_retrying(path)?;
    let run: Option<(String, i64)> = conn
        .query_row("SELECT status, pid FROM runs WHERE id = ?1", [run_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
        .map_err(|e| JournalError::new(path, e))?;
    let me = i64::from(std::process::id());
    Ok(run.map(|(status, pid)| (status, pid != me && super::recovery::alive(pid))))
}
