//! One attempt: mint the worker token, run the agent's spawner, and settle the attempt, while
//! watching for the task being cancelled or handed a verdict from outside.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use futures::future::LocalBoxFuture;
use sha2::{Digest, Sha256};

use super::event::{AttemptStatus, EventKind, elapsed_ms};
use super::ops::Auth;
use super::outputs::exceeds;
use super::run::Run;
use super::spawner::{Job, Spawner, SubTaskError, TaskHost, Verdict, WorkerResult};
use super::task::{HandedOutcome, TaskState};
use super::wait::WaitSite;
use super::{Engine, EngineError, now_ms};
use crate::flow::{ErrorKind, FlowError};
use crate::gate::registry::HeldToken;
use crate::value::Value;

/// What `begin_attempt` hands back: the job for the worker and what settling it needs.
struct AttemptStart {
    job: Job,
    spawner: Rc<dyn Spawner>,
    token: Rc<HeldToken>,
    agent: Arc<str>,
}

/// How an attempt ended before its result is recorded.
enum Ending {
    Worker(WorkerResult),
    /// Settled by an outcome handed over from outside the worker.
    Handed(HandedOutcome),
    Cancelled,
}

/// Marks the attempt interrupted if its future is dropped before it settles (a timeout, or
/// the step being abandoned); what that means is decided by whoever dropped it.
struct AttemptGuard {
    engine: Engine,
    task_id: Arc<str>,
    attempt: u32,
    token: Rc<HeldToken>,
    armed: bool,
}

impl Drop for AttemptGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let Ok(mut state) = self.engine.inner.state.try_borrow_mut() else {
            tracing::warn!(task = %self.task_id, "attempt dropped while the engine state was busy");
            return;
        };
        state.tokens.forget_held(&self.token);
        if let Some(task) = state.tasks.get_mut(&*self.task_id) {
            task.running = None;
            task.interrupted = Some(self.attempt);
        }
    }
}

impl Engine {
    /// Runs attempt `attempt` of `task_id`; the caller has been authorized.
    pub(crate) async fn run_attempt(
        &self,
        run: &Rc<Run>,
        task_id: &Arc<str>,
        attempt: u32,
    ) -> Result<Value, FlowError> {
        self.hold_while_paused(run, task_id).await;
        let AttemptStart { job, spawner, token, agent } = self.begin_attempt(run, task_id, attempt)?;
        let started = Instant::now();
        let mut guard =
            AttemptGuard { engine: self.clone(), task_id: task_id.clone(), attempt, token: token.clone(), armed: true };
        let mut signal = run.generation();
        let ending = {
            let mut work = spawner.spawn(job);
            loop {
                if let Some(ending) = self.interruption(task_id) {
                    break ending;
                }
                tokio::select! {
                    biased;
                    // A worker that posted its result and then ended (a child that exits after
                    // `POST /result`) is settled by what it posted, not by how it exited.
                    result = &mut work => break self.interruption(task_id).unwrap_or(Ending::Worker(result)),
                    _ = signal.changed() => {}
                }
            }
            // Leaving the block drops the worker's future: a cancelled or overridden attempt
            // stops its worker here.
        };
        guard.armed = false;
        self.finish_attempt(run, task_id, &agent, attempt, ending, started, &token)
    }

    /// Waits while a senior has paused dispatching, with the task `suspended` meanwhile.
    async fn hold_while_paused(&self, run: &Run, task_id: &Arc<str>) {
        if !*self.inner.paused.borrow() {
            return;
        }
        self.suspend(run, task_id, "paused");
        let mut paused = self.inner.paused.subscribe();
        // A cancel pokes the run's signal: a cancelled task stops waiting for the loop to
        // resume at once, and `begin_attempt` then refuses it as cancelled.
        let mut signal = run.generation();
        while *paused.borrow_and_update() && !self.is_settled(task_id) {
            // Both senders outlive this call (the engine's and the run's), so neither errs.
            tokio::select! {
                _ = paused.changed() => {}
                _ = signal.changed() => {}
            }
        }
        self.resume(run, task_id);
    }

    /// Whether the task is terminal or already retired.
    fn is_settled(&self, task_id: &str) -> bool {
        self.inner.state.borrow().tasks.get(task_id).is_none_or(|t| t.state.is_terminal())
    }

    fn begin_attempt(&self, run: &Rc<Run>, task_id: &Arc<str>, attempt: u32) -> Result<AttemptStart, FlowError> {
        let mut state = self.inner.state.borrow_mut();
        let state = &mut *state;
        let task = state.tasks.get_mut(&**task_id).ok_or_else(|| cancelled_error(task_id))?;
        if task.state.is_terminal() {
            return Err(cancelled_error(task_id));
        }
        if let Some(running) = task.running {
            // One attempt at a time: attempts share the task's in-flight slot and its verdict
            // from outside, so a second would take the first one's verdict, or lose its own.
            let message = format!("task '{task_id}' already has attempt {running} in flight");
            return Err(FlowError::new(ErrorKind::Dispatch, message).with_step(&*task.agent));
        }
        // The agent must exist before anything is minted; a layer may still reroute later.
        run.compiled.route(&task.agent).ok_or_else(|| {
            EngineError::NoRoute { agent: task.agent.to_string(), blueprint: run.compiled.blueprint.id.clone() }
                .into_flow()
                .with_step(&*task.agent)
        })?;
        let token = Rc::new(state.tokens.mint_held(self.worker_grant(task), now_ms()));
        task.transition(TaskState::Running);
        task.attempts = attempt;
        task.running = Some(attempt);
        task.interrupted = None;
        task.handed = None;
        task.attempt_started = Some(Instant::now());
        let agent = task.agent.clone();
        let host = Rc::new(AttemptContext {
            engine: self.clone(),
            run: run.clone(),
            task_id: task_id.clone(),
            attempt,
            token: token.clone(),
        });
        let job = Job {
            task_id: task_id.clone(),
            attempt,
            agent: agent.clone(),
            input: task.input.clone(),
            runtime: Value::object(),
            operator: run.compiled.operator_of(&agent),
            host,
        };
        self.publish(run.event(EventKind::AttemptStarted { task_id: task_id.clone(), agent: agent.clone(), attempt }));
        let spawner = run.compiled.spawner().clone();
        Ok(AttemptStart { job, spawner, token, agent })
    }

    /// Whether the task was cancelled or handed a verdict since the attempt began.
    fn interruption(&self, task_id: &str) -> Option<Ending> {
        let mut state = self.inner.state.borrow_mut();
        // A task retired under a running attempt was swept when its run ended: cancelled.
        let Some(task) = state.tasks.get_mut(task_id) else { return Some(Ending::Cancelled) };
        if task.state == TaskState::Cancelled {
            return Some(Ending::Cancelled);
        }
        task.handed.take().map(Ending::Handed)
    }

    #[allow(clippy::too_many_arguments)]
    fn finish_attempt(
        &self,
        run: &Run,
        task_id: &Arc<str>,
        agent: &Arc<str>,
        attempt: u32,
        ending: Ending,
        started: Instant,
        token: &HeldToken,
    ) -> Result<Value, FlowError> {
        let mut state = self.inner.state.borrow_mut();
        state.tokens.forget_held(token);
        let Some(task) = state.tasks.get_mut(&**task_id) else {
            // Retired while the attempt ran: its run ended, and the sweep that retired the task
            // reported this attempt as cancelled already (`retire_leftovers`).
            return Err(cancelled_error(task_id).with_step(&**agent));
        };
        task.running = None;
        let cancelled = task.state == TaskState::Cancelled;
        // What the worker gave back may quote its token (a child printing its environment):
        // the ctx, the journal and every message get the fingerprint instead.
        let ending = scrub_ending(ending);
        let (status, result) = if cancelled {
            (AttemptStatus::Cancelled, Err(cancelled_error(task_id)))
        } else {
            match ending {
                Ending::Cancelled => (AttemptStatus::Cancelled, Err(cancelled_error(task_id))),
                Ending::Worker(Ok(verdict)) | Ending::Handed(HandedOutcome::Verdict(verdict)) => {
                    let verdict = self.offload(run, task_id, attempt, agent, verdict);
                    verdict_result(verdict)
                }
                Ending::Worker(Err(e)) => {
                    let (kind, status) = if e.timed_out {
                        (ErrorKind::Timeout, AttemptStatus::Timeout)
                    } else {
                        (ErrorKind::Failed, AttemptStatus::Failed)
                    };
                    let mut err = FlowError::new(kind, e.message);
                    err.value = e.value;
                    (status, Err(err))
                }
                Ending::Handed(HandedOutcome::Failed(message)) => {
                    (AttemptStatus::Failed, Err(FlowError::new(ErrorKind::Failed, message)))
                }
            }
        };
        if let Some(task) = state.tasks.get_mut(&**task_id) {
            task.result = match &result {
                Ok(v) => Some(v.clone()),
                Err(e) => e.value.clone(),
            };
        }
        drop(state);
        self.publish(run.event(EventKind::AttemptFinished {
            task_id: task_id.clone(),
            agent: agent.clone(),
            attempt,
            status,
            elapsed_ms: elapsed_ms(started),
            error: result.as_ref().err().map(|e| e.message.clone()),
        }));
        result.map_err(|e| e.with_step(&**agent))
    }

    /// A passing value too large for the ctx goes to the output store; the ctx gets its ref.
    fn offload(&self, run: &Run, task_id: &Arc<str>, attempt: u32, agent: &Arc<str>, verdict: Verdict) -> Verdict {
        let limit = self.inner.config.offload_bytes;
        match verdict {
            Verdict::Pass(value) if limit > 0 && exceeds(&value, limit) => {
                let size = value.to_json().len();
                let id = self.inner.outputs.append(&run.id, task_id, attempt, agent, value, size);
                Verdict::Pass(Value::from_pairs([("ref", Value::from(&*id)), ("size", Value::int(size as i64))]))
            }
            other => other,
        }
    }

    /// The evaluator gave up on an interrupted attempt because of its step's timeout.
    pub(crate) fn attempt_timed_out(&self, run: &Run, task_id: &Arc<str>, attempt: u32) {
        let mut state = self.inner.state.borrow_mut();
        let Some(task) = state.tasks.get_mut(&**task_id) else { return };
        if task.interrupted != Some(attempt) {
            return;
        }
        task.interrupted = None;
        let elapsed_ms = task.attempt_started.map_or(0.0, elapsed_ms);
        let agent = task.agent.clone();
        drop(state);
        self.publish(run.event(EventKind::AttemptFinished {
            task_id: task_id.clone(),
            agent,
            attempt,
            status: AttemptStatus::Timeout,
            elapsed_ms,
            error: Some(format!("attempt {attempt} timed out")),
        }));
    }

    /// A step was dropped before it settled: its task is cancelled.
    pub(crate) fn abandon(&self, run: &Run, task_id: &Arc<str>) {
        let Ok(mut state) = self.inner.state.try_borrow_mut() else {
            tracing::warn!(task = %task_id, "step dropped while the engine state was busy");
            return;
        };
        let Some(task) = state.tasks.get_mut(&**task_id) else { return };
        let interrupted = task.interrupted.take();
        if run.waits.try_borrow().is_ok_and(|w| w.is_detaching()) {
            // A detached run has not ended: its tasks are left as the journal has them, to be
            // run again where the run goes on.
            self.retire(&mut state, task_id);
            return;
        }
        let newly = task.transition(TaskState::Cancelled);
        let agent = task.agent.clone();
        let elapsed_ms = task.attempt_started.map_or(0.0, elapsed_ms);
        self.retire(&mut state, task_id);
        drop(state);
        if let Some(attempt) = interrupted {
            self.publish(run.event(EventKind::AttemptFinished {
                task_id: task_id.clone(),
                agent,
                attempt,
                status: AttemptStatus::Cancelled,
                elapsed_ms,
                error: Some("cancelled".into()),
            }));
        }
        if newly {
            self.publish(run.event(EventKind::TaskCancelled { task_id: task_id.clone() }));
        }
    }

    /// The evaluator is done with a step: record its final state and retire it.
    pub(crate) fn settle(&self, task_id: &Arc<str>, outcome: &Result<Value, FlowError>) {
        let mut state = self.inner.state.borrow_mut();
        let Some(task) = state.tasks.get_mut(&**task_id) else { return };
        let next = match outcome {
            Ok(_) => TaskState::Pass,
            Err(e) => match e.kind {
                ErrorKind::Blocked => TaskState::Blocked,
                ErrorKind::Timeout => TaskState::Timeout,
                ErrorKind::Cancelled => TaskState::Cancelled,
                ErrorKind::Failed | ErrorKind::Dispatch | ErrorKind::Eval => TaskState::Failed,
            },
        };
        task.transition(next);
        self.retire(&mut state, task_id);
    }

    pub(crate) fn suspend(&self, run: &Run, task_id: &Arc<str>, reason: &str) {
        let moved = {
            let mut state = self.inner.state.borrow_mut();
            state.tasks.get_mut(&**task_id).is_some_and(|t| t.transition(TaskState::Suspended))
        };
        if moved {
            self.publish(run.event(EventKind::TaskSuspended { task_id: task_id.clone(), reason: reason.into() }));
        }
    }

    pub(crate) fn resume(&self, run: &Run, task_id: &Arc<str>) {
        let moved = {
            let mut state = self.inner.state.borrow_mut();
            state
                .tasks
                .get_mut(&**task_id)
                .is_some_and(|t| t.state == TaskState::Suspended && t.transition(TaskState::Running))
        };
        if moved {
            self.publish(run.event(EventKind::TaskResumed { task_id: task_id.clone() }));
        }
    }
}

fn scrub_ending(ending: Ending) -> Ending {
    use crate::gate::scrub::{scrub_string, scrub_value};
    match ending {
        Ending::Worker(Ok(Verdict::Pass(mut v))) => {
            scrub_value(&mut v);
            Ending::Worker(Ok(Verdict::Pass(v)))
        }
        Ending::Worker(Ok(Verdict::Blocked(mut v))) => {
            scrub_value(&mut v);
            Ending::Worker(Ok(Verdict::Blocked(v)))
        }
        Ending::Worker(Err(mut e)) => {
            scrub_string(&mut e.message);
            if let Some(v) = &mut e.value {
                scrub_value(v);
            }
            Ending::Worker(Err(e))
        }
        other => other,
    }
}

fn verdict_result(verdict: Verdict) -> (AttemptStatus, Result<Value, FlowError>) {
    match verdict {
        Verdict::Pass(v) => (AttemptStatus::Pass, Ok(v)),
        Verdict::Blocked(v) => {
            let message = format!("blocked: {}", v.preview(200));
            (AttemptStatus::Blocked, Err(FlowError::new(ErrorKind::Blocked, message).with_value(v)))
        }
    }
}

fn cancelled_error(task_id: &str) -> FlowError {
    FlowError::new(ErrorKind::Cancelled, format!("task '{task_id}' was cancelled"))
}

/// What a worker may do during its attempt: read its token, emit output events, and
/// dispatch sub-tasks on its blueprint's agents (gated by its worker token).
struct AttemptContext {
    engine: Engine,
    run: Rc<Run>,
    task_id: Arc<str>,
    attempt: u32,
    token: Rc<HeldToken>,
}

impl TaskHost for AttemptContext {
    fn token(&self) -> String {
        self.token.encode()
    }

    fn api(&self) -> Option<Arc<str>> {
        self.engine.api()
    }

    fn offer(&self, job: &Job, queue: &str, lease_ms: u64) -> LocalBoxFuture<'static, WorkerResult> {
        let profile = self.run.compiled.blueprint.agent(&job.agent).and_then(|a| a.profile.as_ref());
        let system = profile.and_then(|p| p.system_prompt.clone());
        self.engine.offer_work(job, system, queue, lease_ms)
    }

    fn emit(&self, output: Value) {
        // The attempt's own token was checked when it was minted; it is still live while the
        // attempt runs, so this cannot be refused except by a gate that forbids emit_output.
        if let Err(e) = self.engine.emit_output(Auth::Held(&self.token), &self.task_id, self.attempt, output) {
            tracing::warn!(task = %self.task_id, "emit refused: {e}");
        }
    }

    fn output_refs(&self) -> Vec<Arc<str>> {
        self.engine.inner.outputs.refs_for_run(&self.run.id)
    }

    fn note(&self, layer: &str, note: Value) {
        self.engine.publish(self.run.event(EventKind::LayerNote {
            task_id: self.task_id.clone(),
            layer: layer.into(),
            note,
        }));
    }

    fn dispatch(&self, agent: &str, input: Value) -> LocalBoxFuture<'static, Result<Value, SubTaskError>> {
        let engine = self.engine.clone();
        let run = self.run.clone();
        let parent = self.task_id.clone();
        let token = self.token.clone();
        let agent = agent.to_string();
        Box::pin(async move { engine.sub_dispatch(&run, &parent, Auth::Held(&token), &agent, input).await })
    }

    fn wait(
        &self,
        signal: &str,
        timeout_ms: Option<u64>,
        question: Option<Value>,
    ) -> LocalBoxFuture<'static, Result<Value, FlowError>> {
        let (engine, run) = (self.engine.clone(), self.run.clone());
        let site = WaitSite { scope: self.scope(), pointer: None, task_id: Some(self.task_id.clone()), question };
        let signal: Arc<str> = signal.into();
        Box::pin(async move { engine.wait_for_signal(&run, site, signal, timeout_ms).await })
    }

    fn signal(&self, signal: &str, value: Value) {
        self.engine.signal_own_run(&self.run, signal, value);
    }

    fn question_signal(&self, seat: &str) -> String {
        // The scope is the step's journal key, so the name survives a resume; the attempt
        // tells a retry's question from the first one's.
        let digest = Sha256::digest(format!("{}@{}", self.scope(), self.attempt).as_bytes());
        let hex: String = digest[..3].iter().map(|b| format!("{b:02x}")).collect();
        format!("{seat}.{hex}")
    }
}

impl AttemptContext {
    fn scope(&self) -> Arc<str> {
        let state = self.engine.inner.state.borrow();
        state.tasks.get(&*self.task_id).map_or_else(|| self.task_id.clone(), |t| t.scope.clone())
    }
}
