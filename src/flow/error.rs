//! The structured error every flow failure becomes: `{kind, message, step?, value?, pointer?,
//! file?, line?}`. It is what `try.err_at` receives and what `swarm run` prints when a flow
//! fails.

use std::fmt;
use std::num::NonZeroU32;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::path::PathError;
use crate::value::Value;

/// What went wrong, coarsely; retry policies and `try` catch on these.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The flow itself is wrong for this ctx: a missing path, a type error, a bad extern call.
    Eval,
    /// The agent returned a blocked verdict.
    Blocked,
    /// The agent failed.
    Failed,
    /// An attempt ran past its `timeout_ms`.
    Timeout,
    /// The run or the step was cancelled.
    Cancelled,
    /// The step could not be dispatched (no such agent, the engine refused).
    Dispatch,
}

impl ErrorKind {
    /// The snake_case name used on the wire and by retry policies.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Eval => "eval",
            ErrorKind::Blocked => "blocked",
            ErrorKind::Failed => "failed",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::Dispatch => "dispatch",
        }
    }
}

/// A structured flow error.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowError {
    /// What went wrong, coarsely.
    pub kind: ErrorKind,
    /// What went wrong, for people.
    pub message: String,
    /// The step (its agent ref) the error arose in, when it arose in one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// The value that goes with the error: a blocked verdict, the offending operand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    /// Where in the flow an `eval` error arose: the node's pointer, and for an expression or
    /// path the field it sits in (`/children/2/cond`, `/children/0/out`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pointer: Option<Arc<str>>,
    /// The file and line that built that node (Lua blueprints; see the blueprint's source map).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<Arc<str>>,
    /// Never 0 (lines count from 1), which keeps the error small.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<NonZeroU32>,
}

impl FlowError {
    /// An error with only a kind and a message.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> FlowError {
        FlowError { kind, message: message.into(), step: None, value: None, pointer: None, file: None, line: None }
    }

    /// An `eval` error: the flow is wrong for this ctx.
    pub fn eval(message: impl Into<String>) -> FlowError {
        FlowError::new(ErrorKind::Eval, message)
    }

    /// A type error in operator `op`.
    pub fn type_error(op: &str, message: impl fmt::Display) -> FlowError {
        FlowError::eval(format!("type error in {op}: {message}"))
    }

    /// Names the step the error arose in, unless one is named already (the innermost step wins).
    pub fn with_step(mut self, step: impl Into<String>) -> FlowError {
        self.step.get_or_insert_with(|| step.into());
        self
    }

    /// Attaches the value that goes with the error.
    pub fn with_value(mut self, value: Value) -> FlowError {
        self.value = Some(value);
        self
    }

    /// Places an `eval` error at `pointer` unless a node nearer to where it arose already did.
    /// Other kinds come from a step's agent, and `step` names it.
    pub fn with_pointer(mut self, pointer: impl FnOnce() -> String) -> FlowError {
        if self.kind == ErrorKind::Eval && self.pointer.is_none() {
            self.pointer = Some(pointer().into());
        }
        self
    }

    /// The file and line that built the node the error arose in, unless already known.
    pub fn with_source(mut self, file: &str, line: u32) -> FlowError {
        if self.file.is_none() {
            self.file = Some(file.into());
            self.line = NonZeroU32::new(line);
        }
        self
    }

    /// The error as a ctx value, for `try.err_at` and `all_settled`.
    pub fn to_value(&self) -> Value {
        let mut pairs =
            vec![("kind", Value::string(self.kind.name())), ("message", Value::string(self.message.as_str()))];
        if let Some(step) = &self.step {
            pairs.push(("step", Value::string(step.as_str())));
        }
        if let Some(value) = &self.value {
            pairs.push(("value", value.clone()));
        }
        if let Some(pointer) = &self.pointer {
            pairs.push(("pointer", Value::string(&**pointer)));
        }
        if let (Some(file), Some(line)) = (&self.file, self.line) {
            pairs.push(("file", Value::string(&**file)));
            pairs.push(("line", Value::int(i64::from(line.get()))));
        }
        Value::from_pairs(pairs)
    }
}

impl fmt::Display for FlowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let (Some(file), Some(line)) = (&self.file, self.line) {
            write!(f, "{file}:{line}: ")?;
        }
        write!(f, "{}", self.kind.name())?;
        if let Some(step) = &self.step {
            write!(f, " in step '{step}'")?;
        }
        if let Some(pointer) = &self.pointer {
            write!(f, " at {pointer}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for FlowError {}

impl From<PathError> for FlowError {
    fn from(e: PathError) -> FlowError {
        FlowError::eval(e.to_string())
    }
}
