//! What the evaluator needs from the outside world: a [`Dispatcher`] that runs steps on agents,
//! and [`Externs`], the pure functions `call_extern` may call.

use std::collections::HashMap;
use std::sync::Arc;

use super::error::{ErrorKind, FlowError};
use super::ir::Step;
use crate::value::Value;

/// Runs steps. One step is one task; each try at it is an attempt of that task.
///
/// The evaluator drives everything on one thread (the host's `LocalSet`), so the futures here
/// need not be `Send`; that is why the trait uses plain `async fn`.
#[allow(async_fn_in_trait)]
pub trait Dispatcher {
    /// What the dispatcher keeps for a step between its attempts (for the engine: the task).
    type Task;

    /// Opens a step whose input has been evaluated.
    async fn open(&self, step: &Step, input: Value) -> Result<Self::Task, FlowError>;

    /// Runs attempt `attempt` (from 1). Dropping the future cancels the attempt.
    async fn attempt(&self, task: &Self::Task, attempt: u32) -> Result<Value, FlowError>;

    /// The evaluator gave up on an attempt because it ran past the step's `timeout_ms`; the
    /// attempt's future has been dropped.
    fn attempt_timed_out(&self, _task: &Self::Task, _attempt: u32) {}

    /// The step is settled with the outcome of its last attempt. The flow moves past the step
    /// only when this returns, so a dispatcher that journals results can make them durable
    /// first.
    async fn close(&self, _task: Self::Task, _outcome: &Result<Value, FlowError>) {}

    /// A `wait` node at `pointer` waits for signal `signal`, for at most `timeout_ms`: the
    /// signal's value, or an error of kind `timeout`. Dropping the future gives the wait up.
    async fn wait(&self, _pointer: &str, signal: Arc<str>, _timeout_ms: Option<u64>) -> Result<Value, FlowError> {
        Err(FlowError::new(ErrorKind::Dispatch, format!("nothing here delivers signals (the wait for '{signal}')")))
    }

    /// The strands of the flow changed by `delta`: `+1` when a fanout lane starts, `-1` when
    /// it ends or when the flow pauses at a fanout's join (and `+1` when it goes on). With the
    /// waits it counts, a dispatcher can tell when every strand of the flow waits.
    fn strands(&self, _delta: isize) {}
}

/// Pure functions callable from `call_extern`. They must not yield: they run inline in an
/// expression.
pub trait Externs {
    /// Calls extern `name`; `Err` carries a message the evaluator turns into an `eval` error.
    fn call(&self, name: &str, args: &[Value]) -> Result<Value, String>;
}

/// No externs at all: every `call_extern` is an error naming the extern.
pub struct NoExterns;

impl Externs for NoExterns {
    fn call(&self, name: &str, _args: &[Value]) -> Result<Value, String> {
        Err(format!("unknown extern '{name}'"))
    }
}

/// An extern implemented by a Rust closure.
pub type ExternFn = Box<dyn Fn(&[Value]) -> Result<Value, String>>;

/// A name → closure table of externs.
#[derive(Default)]
pub struct ExternTable {
    fns: HashMap<String, ExternFn>,
}

impl ExternTable {
    /// An empty table.
    pub fn new() -> ExternTable {
        ExternTable::default()
    }

    /// Registers `f` as extern `name`, replacing any extern of that name; an `Err` becomes an `eval` error.
    pub fn insert(&mut self, name: impl Into<String>, f: impl Fn(&[Value]) -> Result<Value, String> + 'static) {
        self.fns.insert(name.into(), Box::new(f));
    }
}

impl Externs for ExternTable {
    fn call(&self, name: &str, args: &[Value]) -> Result<Value, String> {
        match self.fns.get(name) {
            Some(f) => f(args),
            None => Err(format!("unknown extern '{name}'")),
        }
    }
}
