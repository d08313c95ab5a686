//! The engine's spawner port: what one attempt of a task hands a worker ([`Job`], with the
//! [`TaskHost`] it may call back), and what a worker answers ([`WorkerResult`]). Every agent
//! kind (`crate::worker`) and every middleware layer implements [`Spawner`].

use std::rc::Rc;
use std::sync::Arc;

use futures::future::LocalBoxFuture;

use crate::flow::FlowError;
use crate::value::Value;

/// One attempt of a task: what the worker gets, and what middleware layers see and may edit
/// on its way there (docs/layers.md: `{task_id, attempt, agent, runtime, operator}`).
#[derive(Clone)]
pub struct Job {
    /// The task the attempt belongs to.
    pub task_id: Arc<str>,
    /// The attempt's number, from 1.
    pub attempt: u32,
    /// The agent the attempt is routed to; a layer that changes it reroutes the attempt.
    pub agent: Arc<str>,
    /// The step's input.
    pub input: Value,
    /// Free-form hints that travel with the attempt to the worker (an object).
    pub runtime: Value,
    /// For an `operator` agent, the name of the operator seat it asks: one of the blueprint's
    /// `operators` ([`OperatorDef`](crate::blueprint::schema::OperatorDef)), filled by a Lua
    /// function or a person at the console. Not the gate's operator role. `None` for other agents.
    pub operator: Option<Arc<str>>,
    /// What the worker may ask of the engine during the attempt.
    pub host: Rc<dyn TaskHost>,
}

/// The engine, as a worker sees it during one attempt.
pub trait TaskHost {
    /// The attempt's worker token, encoded (for `task.token`, `SWARM_TOKEN`).
    fn token(&self) -> String;
    /// Publishes an output event (progress, partial, artifact, final) as `worker_output`.
    fn emit(&self, output: Value);
    /// Publishes a middleware layer's note as a `layer_note` event.
    fn note(&self, layer: &str, note: Value);
    /// The ids of the outputs stored so far in this run (for `input_inject`).
    fn output_refs(&self) -> Vec<Arc<str>>;
    /// Starts a sub-task on the same blueprint's agents and waits for its value.
    fn dispatch(&self, agent: &str, input: Value) -> LocalBoxFuture<'static, Result<Value, SubTaskError>>;
    /// Waits for signal `signal` to the attempt's run (the task is `suspended` meanwhile), for
    /// at most `timeout_ms`: the signal's value, or an error of kind `timeout`. `question`
    /// is what the wait asks, for the hosts that list open questions.
    fn wait(
        &self,
        signal: &str,
        _timeout_ms: Option<u64>,
        _question: Option<Value>,
    ) -> LocalBoxFuture<'static, Result<Value, FlowError>> {
        let message = format!("nothing here delivers signals (the wait for '{signal}')");
        Box::pin(async move { Err(FlowError::new(crate::flow::ErrorKind::Dispatch, message)) })
    }
    /// Delivers signal `signal` with `value` to the attempt's own run (a console operator's
    /// answer typed at the terminal reaches its wait this way).
    fn signal(&self, _signal: &str, _value: Value) {}
    /// The name under which a question this attempt asks `seat` waits for its answer: the same
    /// in every process that runs the run, so a signal sent by name reaches it after a resume.
    fn question_signal(&self, seat: &str) -> String {
        seat.to_string()
    }
    /// Where the host's API listens for this attempt's child (`SWARM_API`), if it does.
    fn api(&self) -> Option<Arc<str>> {
        None
    }
    /// Offers the attempt (`job`, as the layers left it) to remote workers on `queue`: the
    /// future ends only if the lease of the worker that claimed it runs out, since the worker's
    /// result settles the attempt from outside, as `post_result` does.
    fn offer(&self, job: &Job, _queue: &str, _lease_ms: u64) -> LocalBoxFuture<'static, WorkerResult> {
        let message = format!("agent '{}': nothing here hands work to remote workers", job.agent);
        Box::pin(async move { Err(WorkerError::new(message)) })
    }
}

/// Why a sub-task gave no value: its flow error, and when the engine refused to start it, the
/// refusal's own kind (`depth_exceeded`, `no_route`, ...) so a script need not parse the message.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{error}")]
pub struct SubTaskError {
    /// The sub-task's failure, or the refusal to start it.
    pub error: FlowError,
    /// The refusal's kind, when the engine refused to start the sub-task.
    pub refused: Option<&'static str>,
}

impl SubTaskError {
    /// The kind a script sees: the refusal's, else the flow error's.
    pub fn kind(&self) -> &'static str {
        self.refused.unwrap_or_else(|| self.error.kind.name())
    }
}

impl From<FlowError> for SubTaskError {
    fn from(error: FlowError) -> SubTaskError {
        SubTaskError { error, refused: None }
    }
}

/// How an attempt that did not fail ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// The step passed with this value.
    Pass(Value),
    /// The worker refused the step; the value says why.
    Blocked(Value),
}

/// An attempt that failed: a message and, when there is one, the value that goes with it.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct WorkerError {
    /// What went wrong.
    pub message: String,
    /// A value that goes with the failure, as the worker gave it.
    pub value: Option<Value>,
    /// The worker gave up because of its own time limit (a subprocess or script
    /// `timeout_ms`): the attempt counts as `timeout`, so `retry.on = {"timeout"}` applies.
    pub timed_out: bool,
}

impl WorkerError {
    /// A failure with only a message.
    pub fn new(message: impl Into<String>) -> WorkerError {
        WorkerError { message: message.into(), value: None, timed_out: false }
    }

    /// A failure that carries the value that goes with it.
    pub fn with_value(message: impl Into<String>, value: Value) -> WorkerError {
        WorkerError { message: message.into(), value: Some(value), timed_out: false }
    }

    /// The worker's own time limit ran out.
    pub fn timed_out(message: impl Into<String>) -> WorkerError {
        WorkerError { message: message.into(), value: None, timed_out: true }
    }
}

/// The outcome of one attempt.
pub type WorkerResult = Result<Verdict, WorkerError>;

/// Runs attempts for one agent. Dropping the returned future cancels the attempt.
pub trait Spawner {
    /// Starts one attempt; the future resolves with its outcome.
    fn spawn(&self, job: Job) -> LocalBoxFuture<'static, WorkerResult>;
}
