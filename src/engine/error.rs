//! Engine errors. Each has a stable `kind` for scripts; token failures keep the gate's kinds.

use crate::flow::{ErrorKind, FlowError};
use crate::gate::{KeyError, TokenError};

/// Why an engine operation was refused or could not be done.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("token secret: {0}")]
    Key(#[from] KeyError),
    #[error("no task '{0}'")]
    NoSuchTask(String),
    #[error("no run '{0}'")]
    NoSuchRun(String),
    #[error("task '{task}' is {state}: {op} needs an attempt in flight")]
    NotRunning { task: String, state: &'static str, op: &'static str },
    #[error("task '{0}' is already settled")]
    Settled(String),
    #[error("no agent '{agent}' in blueprint '{blueprint}'")]
    NoRoute { agent: String, blueprint: String },
    #[error("no open query {0}")]
    NoSuchQuery(u64),
    #[error("no session '{0}'")]
    NoSuchSession(String),
    #[error("the query was dropped before a senior answered it")]
    QueryDropped,
}

impl EngineError {
    /// A stable name for the error, for scripts (`err.kind`).
    pub fn kind(&self) -> &'static str {
        match self {
            EngineError::Token(e) => e.kind(),
            EngineError::Key(_) => "bad_secret",
            EngineError::NoSuchTask(_) => "no_such_task",
            EngineError::NoSuchRun(_) => "no_such_run",
            EngineError::NotRunning { .. } => "not_running",
            EngineError::Settled(_) => "settled",
            EngineError::NoRoute { .. } => "no_route",
            EngineError::NoSuchQuery(_) => "no_such_query",
            EngineError::NoSuchSession(_) => "no_such_session",
            EngineError::QueryDropped => "query_dropped",
        }
    }

    /// The error as a flow error of kind `dispatch`: the step could not be dispatched.
    pub fn into_flow(self) -> FlowError {
        FlowError::new(ErrorKind::Dispatch, format!("{}: {self}", self.kind()))
    }
}
