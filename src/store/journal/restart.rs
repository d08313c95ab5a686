//! Making a journaled run go on: what `swarm runs resume`, `swarm runs rerun` and
//! `engine:resume` share. The journal says which blueprint and input the run had, and which step
//! results to replay; the caller loads the blueprint and starts the run with these options.

use std::path::Path;
use std::sync::Arc;

use super::{JournalError, Reader, Recorded};
use crate::engine::{Resume, WaitReplay};
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
    /// What a resumed run's waits did, and the signals no wait took yet.
    pub waits: WaitReplay,
}

/// Why a run cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum RestartError {
    /// The journal could not be read or written.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The journal has no run with this id.
    #[error("no run {0}")]
    NoSuchRun(String),
    /// The run is in the wrong state for what was asked (resume a finished run, rerun one that
    /// has not ended).
    #[error("{0}")]
    NotRestartable(String),
    /// A rerun's `--from` names no step the run had.
    #[error("run {run} has no step '{step}' (an agent name or a pointer)")]
    NoSuchStep {
        /// The run's id.
        run: String,
        /// The step as given.
        step: String,
    },
    /// Another live process owns the run (it is running it, or claimed it to resume first).
    #[error("run {run} is already running in process {pid}")]
    AlreadyRunning {
        /// The run's id.
        run: String,
        /// The process that owns it.
        pid: i64,
    },
}

impl RestartError {
    /// The `kind` a script sees.
    pub fn kind(&self) -> &'static str {
        match self {
            RestartError::Journal(_) => "journal",
            RestartError::NoSuchRun(_) => "no_such_run",
            RestartError::NotRestartable(_) => "not_resumable",
            RestartError::NoSuchStep { .. } => "no_such_step",
            RestartError::AlreadyRunning { .. } => "already_running",
        }
    }
}

/// Reads run `id` from the journal at `path` and prepares it to go on.
///
/// With `from` = `None` this is a resume: the run must be `interrupted` (left `running` by a
/// process that is gone) and goes on under its id, replaying every step that passed. The run
/// is claimed for this process at once, in one statement that checks its status and sets its
/// owner, so of two processes resuming it together exactly one wins; the other gets
/// [`RestartError::AlreadyRunning`] with the winner's pid. A caller that claimed a run and then
/// cannot start it gives it back with [`release`]. With
/// `from` = a step (an agent name or a node pointer) this is a rerun: the run must have ended,
/// and a new run on the same input replays the steps that started before the step's first
/// occurrence.
pub fn prepare(path: &Path, id: &str, from: Option<&str>) -> Result<Restart, RestartError> {
    let reader = Reader::open(path)?;
    let mut run = reader.run(id)?.ok_or_else(|| RestartError::NoSuchRun(id.to_string()))?;
    if from.is_none() {
        match reader.claim(id)? {
            Ok(()) => run.status = "interrupted".into(),
            Err(pid) if matches!(run.status.as_str(), "interrupted" | "running" | "waiting") => {
                return Err(RestartError::AlreadyRunning { run: id.to_string(), pid });
            }
            Err(_) => {}
        }
    }
    match (from, run.status.as_str()) {
        (None, "interrupted") | (Some(_), "finished" | "failed" | "cancelled") => {}
        (None, status) => {
            return Err(RestartError::NotRestartable(format!(
                "run {id} is {status}; only an interrupted run can be resumed (or one left waiting by a process that is gone)"
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
    let (resume, replay, waits) = match from {
        None => {
            let (last_seq, last_task) = reader.counters(id)?;
            let resume = Resume { run_id: Arc::from(id), last_seq, last_task };
            (Some(resume), reader.recorded(id)?, reader.wait_replay(id)?)
        }
        // A rerun is a new run: its waits wait again.
        Some(step) => match reader.recorded_until(id, step)? {
            Some(replay) => (None, replay, WaitReplay::default()),
            None => return Err(RestartError::NoSuchStep { run: id.to_string(), step: step.to_string() }),
        },
    };
    Ok(Restart { file: run.file, init, digest: run.digest, resume, replay, waits })
}

/// Gives back a run that [`prepare`] claimed for this process but that was not started after
/// all (its blueprint did not load): it is `interrupted` again, for the next resume.
pub fn release(path: &Path, id: &str) -> Result<(), RestartError> {
    Ok(Reader::open(path)?.release(id)?)
}
