//! Engine errors. Each has a stable `kind` for scripts; token failures keep the gate's kinds.

use crate::flow::{ErrorKind, FlowError};
use crate::gate::{KeyError, TokenError};

/// Why an engine operation was refused or could not be done.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum EngineError {
    /// A token was missing, forged, expired, revoked or not allowed the verb.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The configured token secret is unusable.
    #[error("token secret: {0}")]
    Key(#[from] KeyError),
    /// The task id names no live or recently finished task.
    #[error("no task '{0}'")]
    NoSuchTask(String),
    /// The id names no stored output.
    #[error("no output '{0}'")]
    NoSuchOutput(String),
    /// The run id names no run in flight.
    #[error("no run '{0}'")]
    NoSuchRun(String),
    /// The operation acts on an attempt, and the task has none in flight.
    #[error("task '{task}' is {state}: {op} needs an attempt in flight")]
    NotRunning {
        /// The task the operation named.
        task: String,
        /// The task's state, as [`super::TaskState::name`] spells it.
        state: &'static str,
        /// The operation that was refused.
        op: &'static str,
    },
    /// The task has a terminal state already, and a terminal state is never left.
    #[error("task '{0}' is already settled")]
    Settled(String),
    /// The token is a remote worker's for an attempt that has ended (its result came, it was
    /// cancelled, timed out, or its lease ran out); the outcome recorded then stands.
    #[error("attempt {attempt} of task '{task}' has ended: its recorded outcome stands")]
    AttemptEnded {
        /// The attempt's task.
        task: String,
        /// The attempt's number.
        attempt: u32,
    },
    /// A sub-task names an agent its run's blueprint does not define.
    #[error("no agent '{agent}' in blueprint '{blueprint}'")]
    NoRoute {
        /// The agent a sub-task asked for.
        agent: String,
        /// The blueprint whose agents were searched.
        blueprint: String,
    },
    /// The query id names no open query (answered, dropped, or never asked).
    #[error("no open query {0}")]
    NoSuchQuery(u64),
    /// The session id names no open session.
    #[error("no session '{0}'")]
    NoSuchSession(String),
    /// The asker stopped waiting before the query was answered.
    #[error("the query was dropped before a senior answered it")]
    QueryDropped,
    /// A signal names a run that is not in flight here (it ended, or never started here).
    #[error("run '{0}' is not waiting for signals (it is not in flight)")]
    NotWaiting(String),
    /// A signal without a usable name.
    #[error("bad signal: {0}")]
    BadSignal(String),
}

impl EngineError {
    /// A stable name for the error, for scripts (`err.kind`).
    pub fn kind(&self) -> &'static str {
        match self {
            EngineError::Token(e) => e.kind(),
            EngineError::Key(_) => "bad_secret",
            EngineError::NoSuchTask(_) => "no_such_task",
            EngineError::NoSuchRun(_) => "no_such_run",
            EngineError::NoSuchOutput(_) => "no_such_output",
            EngineError::NotRunning { .. } => "not_running",
            EngineError::Settled(_) | EngineError::AttemptEnded { .. } => "settled",
            EngineError::NoRoute { .. } => "no_route",
            EngineError::NoSuchQuery(_) => "no_such_query",
            EngineError::NoSuchSession(_) => "no_such_session",
            EngineError::QueryDropped => "query_dropped",
            EngineError::NotWaiting(_) => "not_waiting",
            EngineError::BadSignal(_) => "invalid_argument",
        }
    }

    /// The error as a flow error of kind `dispatch`: the step could not be dispatched.
    pub fn into_flow(self) -> FlowError {
        FlowError::new(ErrorKind::Dispatch, format!("{}: {self}", self.kind()))
    }
}
