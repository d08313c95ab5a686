//! The async node evaluator (docs/flows.md, "Nodes").
//!
//! The ctx is mutated in place: a step evaluates its input, awaits the dispatcher and writes
//! the result at `out` without ever copying the ctx, so a flow of N steps costs O(N), not the
//! O(N²) of copying a growing ctx per step. Where a copy is part of the semantics (`try`
//! snapshots, fanout lanes) it is a `Value` clone, which only bumps a reference count; the
//! writes that follow copy just the containers they touch.
//!
//! Everything runs on the caller's thread: fanout lanes are futures polled together, not
//! spawned tasks, so dropping a fanout's join cancels its lanes.

use std::cell::Cell;
use std::time::Duration;

use futures::future::LocalBoxFuture;

use super::at::At;
use super::dispatch::{Dispatcher, Externs};
use super::error::{ErrorKind, FlowError};
use super::expr::{PREVIEW, eval_expr};
use super::ir::{Expr, Node, PathExpr, Retry, RetryOn, SignalName, Step, Wait};
use crate::interrupt::{self, Limit};
use crate::value::Value;

/// The evaluator yields to the runtime after this many nodes, so a flow that never dispatches
/// (a long `loop` of `assign`) still lets timers, signals and a cancel reach it.
const NODES_PER_YIELD: u32 = 256;

/// Evaluates flows, dispatching their steps to `D`.
pub struct Evaluator<'a, D: Dispatcher> {
    pub(super) dispatcher: &'a D,
    pub(super) externs: &'a dyn Externs,
    /// Nodes entered since the last yield.
    nodes: Cell<u32>,
}

impl<'a, D: Dispatcher> Evaluator<'a, D> {
    /// An evaluator over `dispatcher`, with `externs` for `call_extern`.
    pub fn new(dispatcher: &'a D, externs: &'a dyn Externs) -> Self {
        Evaluator { dispatcher, externs, nodes: Cell::new(0) }
    }

    /// Runs `node` over `ctx`. On error, `ctx` holds the writes made before the failure (minus
    /// those a `try` rolled back), so the caller can inspect or journal it; the error's
    /// `pointer` names the node (and field) it arose in.
    pub async fn run(&self, node: &Node, ctx: &mut Value) -> Result<(), FlowError> {
        self.node(node, ctx, &At::ROOT).await
    }

    /// `expr`, whose errors are placed at `at` (the field holding it).
    pub(super) fn expr(&self, expr: &Expr, ctx: &Value, at: &At<'_>) -> Result<Value, FlowError> {
        eval_expr(expr, ctx, self.externs).map_err(|e| e.with_pointer(|| at.pointer()))
    }

    /// One node, at `at` in the flow. Boxed because nodes nest, and a recursive `async fn` has
    /// no finite size.
    pub(super) fn node<'s>(
        &'s self,
        node: &'s Node,
        ctx: &'s mut Value,
        at: &'s At<'s>,
    ) -> LocalBoxFuture<'s, Result<(), FlowError>> {
        Box::pin(async move {
            let entered = self.nodes.get() + 1;
            self.nodes.set(entered % NODES_PER_YIELD);
            if entered == NODES_PER_YIELD {
                tokio::task::yield_now().await;
            }
            // The step and the wait have futures of their own size: each node's future is
            // boxed at the size of its largest kind, so a waiting lane or a fanout of many
            // lanes would otherwise hold a step's worth of state at every level.
            let result = match node {
                Node::Step(step) => Box::pin(self.step(step, ctx, at)).await.map_err(|e| e.with_step(&step.agent)),
                Node::Seq { children } => {
                    for (i, child) in children.iter().enumerate() {
                        self.node(child, ctx, &at.child(i)).await?;
                    }
                    Ok(())
                }
                Node::Branch { cond, then_branch, else_branch } => {
                    let cond_at = at.field("cond");
                    match self.expr(cond, ctx, &cond_at)? {
                        Value::Bool(true) => self.node(then_branch, ctx, &at.field("then")).await,
                        Value::Bool(false) => self.node(else_branch, ctx, &at.field("else")).await,
                        other => Err(FlowError::eval(format!(
                            "branch cond must be a boolean, got {}: {}",
                            other.type_name(),
                            other.preview(PREVIEW)
                        ))
                        .with_value(other)
                        .with_pointer(|| cond_at.pointer())),
                    }
                }
                Node::Loop { counter, cond, max, body } => {
                    let (counter_at, cond_at, body_at) = (at.field("counter"), at.field("cond"), at.field("body"));
                    write(counter, ctx, Value::int(0), &counter_at)?;
                    let mut n = 0;
                    while n < *max && self.expr(cond, ctx, &cond_at)?.truthy() {
                        self.node(body, ctx, &body_at).await?;
                        n += 1;
                        write(counter, ctx, Value::int(i64::from(n)), &counter_at)?;
                    }
                    Ok(())
                }
                Node::Fanout(fanout) => Box::pin(self.fanout(fanout, ctx, at)).await,
                Node::Try { body, catch, err_at } => {
                    let snapshot = ctx.clone();
                    let Err(err) = self.node(body, ctx, &at.field("body")).await else { return Ok(()) };
                    *ctx = snapshot;
                    if let Some(path) = err_at {
                        write(path, ctx, err.to_value(), &at.field("err_at"))?;
                    }
                    self.node(catch, ctx, &at.field("catch")).await
                }
                Node::Assign { at: path, value } => {
                    let value = self.expr(value, ctx, &at.field("value"))?;
                    write(path, ctx, value, &at.field("at"))
                }
                Node::Wait(wait) => Box::pin(self.wait(wait, ctx, at)).await,
            };
            result.map_err(|e| e.with_pointer(|| at.pointer()))
        })
    }

    /// A step: evaluate the input, open the task, run its attempts, close it, write the result.
    async fn step(&self, step: &Step, ctx: &mut Value, at: &At<'_>) -> Result<(), FlowError> {
        let input = self.expr(&step.input, ctx, &at.field("in"))?;
        let task = self.dispatcher.open(step, input).await?;
        let outcome = self.attempts(step, &task).await;
        self.dispatcher.close(task, &outcome).await;
        write(&step.out, ctx, outcome?, &at.field("out"))
    }

    /// A wait: evaluate the signal's name, wait for the signal, write its value.
    async fn wait(&self, wait: &Wait, ctx: &mut Value, at: &At<'_>) -> Result<(), FlowError> {
        let name: std::sync::Arc<str> = match &wait.signal {
            SignalName::Name(name) => name.as_str().into(),
            SignalName::Expr(expr) => {
                let signal_at = at.field("signal");
                match self.expr(expr, ctx, &signal_at)? {
                    Value::String(name) if !name.is_empty() => name,
                    other => {
                        return Err(FlowError::eval(format!(
                            "wait signal must be a name (a non-empty string), got {}: {}",
                            other.type_name(),
                            other.preview(PREVIEW)
                        ))
                        .with_value(other)
                        .with_pointer(|| signal_at.pointer()));
                    }
                }
            }
        };
        let pointer = at.pointer();
        // A wait's failure (a timeout) names the wait node, as an eval error names its node.
        let value = self.dispatcher.wait(&pointer, name, wait.timeout_ms).await.map_err(|mut e| {
            e.pointer.get_or_insert_with(|| pointer.as_str().into());
            e
        })?;
        match &wait.out {
            Some(out) => write(out, ctx, value, &at.field("out")),
            None => Ok(()),
        }
    }

    /// Attempts 1, 2, … until one succeeds or the retry policy gives up.
    async fn attempts(&self, step: &Step, task: &D::Task) -> Result<Value, FlowError> {
        let mut attempt = 1;
        loop {
            let outcome = self.attempt(step, task, attempt).await;
            let (Err(err), Some(retry)) = (&outcome, &step.retry) else { return outcome };
            if attempt >= retry.max_attempts || !retries(retry, err.kind) {
                return outcome;
            }
            let delay = backoff(retry, attempt);
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            attempt += 1;
        }
    }

    async fn attempt(&self, step: &Step, task: &D::Task, attempt: u32) -> Result<Value, FlowError> {
        let Some(ms) = step.timeout_ms else { return self.dispatcher.attempt(task, attempt).await };
        let limit = Duration::from_millis(ms);
        // The timer fires between polls; the deadline scope stops Lua that cannot yield
        // inside one.
        // Owned by the timeout, so the attempt is dropped (cancelled) as soon as it fires.
        let running = Box::pin(self.dispatcher.attempt(task, attempt));
        match tokio::time::timeout(limit, interrupt::deadline_scoped(Limit::Attempt, limit, running)).await {
            Ok(outcome) => outcome,
            Err(_elapsed) => {
                self.dispatcher.attempt_timed_out(task, attempt);
                Err(FlowError::new(ErrorKind::Timeout, format!("attempt {attempt} timed out after {ms} ms")))
            }
        }
    }
}

/// Writes `value` at `path`; a failure is placed at `at` (the field holding the path).
pub(super) fn write(path: &PathExpr, ctx: &mut Value, value: Value, at: &At<'_>) -> Result<(), FlowError> {
    path.0.write(ctx, value).map_err(|e| FlowError::from(e).with_pointer(|| at.pointer()))
}

/// Whether `retry` retries an attempt that failed with `kind`; eval, dispatch and cancelled
/// errors are never retried, as another attempt cannot change them.
fn retries(retry: &Retry, kind: ErrorKind) -> bool {
    let on = match kind {
        ErrorKind::Failed => RetryOn::Failed,
        ErrorKind::Blocked => RetryOn::Blocked,
        ErrorKind::Timeout => RetryOn::Timeout,
        ErrorKind::Eval | ErrorKind::Dispatch | ErrorKind::Cancelled => return false,
    };
    retry.on.contains(&on)
}

/// The wait after failed attempt `attempt`: `backoff_ms * backoff_factor^(attempt - 1)`. A
/// negative or NaN product waits nothing; an overflowing one waits "forever" (tokio clamps).
fn backoff(retry: &Retry, attempt: u32) -> Duration {
    let exponent = i32::try_from(attempt - 1).unwrap_or(i32::MAX);
    let ms = retry.backoff_ms as f64 * retry.backoff_factor.powi(exponent);
    if ms.is_nan() || ms <= 0.0 {
        return Duration::ZERO;
    }
    Duration::try_from_secs_f64(ms / 1000.0).unwrap_or(Duration::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(backoff_ms: u64, backoff_factor: f64) -> Retry {
        Retry { max_attempts: 5, backoff_ms, backoff_factor, on: vec![RetryOn::Failed] }
    }

    #[test]
    fn backoff_grows_geometrically_and_tolerates_odd_factors() {
        let p = policy(100, 2.0);
        let waits: Vec<u128> = (1..=4).map(|n| backoff(&p, n).as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 800]);
        assert_eq!(backoff(&policy(100, -1.0), 2), Duration::ZERO);
        assert_eq!(backoff(&policy(100, f64::NAN), 2), Duration::ZERO);
        assert_eq!(backoff(&policy(u64::MAX, 1e300), 3), Duration::MAX);
        assert_eq!(backoff(&policy(0, 2.0), 3), Duration::ZERO);
    }

    #[test]
    fn only_listed_agent_outcomes_are_retried() {
        let p = policy(0, 1.0);
        assert!(retries(&p, ErrorKind::Failed));
        for kind in [ErrorKind::Blocked, ErrorKind::Timeout, ErrorKind::Eval, ErrorKind::Dispatch, ErrorKind::Cancelled]
        {
            assert!(!retries(&p, kind), "{kind:?}");
        }
    }
}
