//! Making a journaled run go on: what `swarm runs resume`, `swarm runs rerun` and
//! `engine:resume` share. The journal says which blueprint and input the run had, and which step
//! results to replay; the caller loads the blueprint and starts the run with these options.

use std::path::Path;
use std::sync::Arc;

use super::{JournalError, Reader, Recorded};
use crate::engine::Resume;
use crate::value::{Value, from_json};

/// A run made ready to go on.
pub struct Restart {
    /// The blueprint file the run was started from (absolute), if it came from a file.
    pub file: Option<String>,
    /// The run's input ctx.
    pub init: Value,
    /// The digest of the blueprint the run started on, to report a changed blueprint.
    pub digest: Option<String>,
    /// Set when resuming: the run goes on under its own id.
    pub resume: Option<Resume>,
    /// The step results to replay instead of dispatching.
    pub replay: Recorded,
}

/// Why a run cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum RestartError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("no run {0}")]
    NoSuchRun(String),
    /// The run is in the wrong state for what was asked (resume a finished run, rerun one that
    /// has not ended).
    #[error("{0}")]
    NotRestartable(String),
    /// A rerun's `--from` names no step the run had.
    #[error("run {run} has no step '{step}' (an agent name or a pointer)")]
    NoSuchStep { run: String, step: String },
}

impl RestartError {
    /// The `kind` a script sees.
    pub fn kind(&self) -> &'static str {
        match self {
            RestartError::Journal(_) => "journal",
            RestartError::NoSuchRun(_) => "no_such_run",
            RestartError::NotRestartable(_) => "not_resumable",
            RestartError::NoSuchStep { .. } => "no_such_step",
        }
    }
}

/// Reads run `id` from the journal at `path` and prepares it to go on.
///
/// With `from` = `None` this is a resume: the run must be `interrupted` (left `running` by a
/// process that is gone) and goes on under its id, replaying every step that passed. With
/// `from` = a step (an agent name or a node pointer) this is a rerun: the run must have ended,
/// and a new run on the same input replays the steps that started before the step's first
/// occurrence.
pub fn prepare(path: &Path, id: &str, from: Option<&str>) -> Result<Restart, RestartError> {
    let reader = Reader::open(path)?;
    let run = reader.run(id)?.ok_or_else(|| RestartError::NoSuchRun(id.to_string()))?;
    match (from, run.status.as_str()) {
        (None, "interrupted") | (Some(_), "finished" | "failed" | "cancelled") => {}
        (None, status) => {
            return Err(RestartError::NotRestartable(format!(
                "run {id} is {status}; only an interrupted run can be resumed"
            )));
        }
        (Some(_), status) => {
            return Err(RestartError::NotRestartable(format!(
                "run {id} is {status}; only a run that ended can be rerun"
            )));
        }
    }
    let init = match run.input.as_ref().map(|v| from_json(&v.to_string())) {
        Some(Ok(init)) => init,
        _ => return Err(RestartError::NotRestartable(format!("run {id}: its input does not decode"))),
    };
    let (resume, replay) = match from {
        None => {
            let (last_seq, last_task) = reader.counters(id)?;
            (Some(Resume { run_id: Arc::from(id), last_seq, last_task }), reader.recorded(id)?)
        }
        Some(step) => match reader.recorded_until(id, step)? {
            Some(replay) => (None, replay),
            None => return Err(RestartError::NoSuchStep { run: id.to_string(), step: step.to_string() }),
        },
    };
    Ok(Restart { file: run.file, init, digest: run.digest, resume, replay })
}
