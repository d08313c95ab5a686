//! The engine's operations: one per verb of the gate table (docs/engine.md), each checking its
//! verb against the caller's token before it does anything.
//!
//! A worker token is bound to the task its attempt runs; it may act on that task and on the
//! sub-tasks that task started (their parent), nothing else.

use std::rc::Rc;
use std::sync::Arc;

use serde::Serialize;
use tokio::sync::{broadcast, mpsc, watch};

use super::event::{Event, EventKind};
use super::run::Run;
use super::spawner::{SubTaskError, Verdict};
use super::task::{External, Task, TaskSnapshot};
use super::{Engine, EngineError, State, now_ms};
use crate::flow::FlowError;
use crate::gate::registry::{Caller, Grant, HeldToken, Verified, VerifyContext};
use crate::gate::token::CapToken;
use crate::gate::{Role, TokenError, Verb};
use crate::value::Value;

/// The credential an operation is called with: a token the engine holds (the hot path) or
/// one presented as text from outside.
#[derive(Clone, Copy)]
pub enum Auth<'a> {
    /// A token the engine minted and holds, checked without decoding.
    Held(&'a HeldToken),
    /// A token as text, decoded and verified.
    Encoded(&'a str),
}

/// What `fetch_prompt` gives a worker.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Prompt {
    /// The task the attempt belongs to.
    pub task_id: Arc<str>,
    /// The agent the attempt is routed to.
    pub agent: Arc<str>,
    /// The attempt's number, from 1.
    pub attempt: u32,
    /// The step's input.
    pub input: Value,
    /// The agent's profile `system_prompt`, as written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_prompt: Option<String>,
    /// Every directive a senior injected so far, oldest first.
    pub directives: Vec<Value>,
}

/// A question an operator put to the seniors.
pub(crate) struct Query {
    pub task_id: Arc<str>,
    pub question: Value,
    answer: watch::Sender<Option<Value>>,
}

/// An attached operator session.
pub(crate) struct Session {
    pub agent_id: String,
    pub last_seen_ms: u64,
}

impl Engine {
    fn check(
        &self,
        state: &mut State,
        auth: Auth<'_>,
        verb: Verb,
        ctx: VerifyContext<'_>,
    ) -> Result<Caller, EngineError> {
        let now = now_ms();
        let caller = match auth {
            Auth::Held(token) => state.tokens.verify_held(token, verb, ctx, now),
            Auth::Encoded(text) => state.tokens.verify(text, verb, ctx, now).map(Caller::from),
        };
        caller.map_err(EngineError::Token)
    }

    /// Checks `verb` and that a worker token is bound to `task` or to its parent.
    fn check_on_task(
        &self,
        state: &mut State,
        auth: Auth<'_>,
        verb: Verb,
        task_id: &str,
    ) -> Result<Caller, EngineError> {
        let verified = self.check(state, auth, verb, VerifyContext { task: None, max_depth: None })?;
        if verified.role == Role::Worker
            && let Some(bound) = verified.task.as_deref()
        {
            let parent =
                state.tasks.get(task_id).and_then(|t| t.parent.as_deref()).or_else(|| {
                    state.recent.iter().rev().find(|t| &*t.id == task_id).and_then(|t| t.parent.as_deref())
                });
            if bound != task_id && parent != Some(bound) {
                return Err(EngineError::Token(TokenError::TaskMismatch));
            }
        }
        Ok(verified)
    }

    fn live_task<'s>(state: &'s mut State, task_id: &str) -> Result<&'s mut Task, EngineError> {
        state.tasks.get_mut(task_id).ok_or_else(|| EngineError::NoSuchTask(task_id.to_string()))
    }

    /// Why a task that is not live cannot be acted on: `Settled` if it finished (it is in the
    /// recent ring), else unknown. Verbs that change a task say so rather than "no such task",
    /// which would suggest a wrong id.
    fn not_live(state: &State, task_id: &str) -> EngineError {
        if state.recent.iter().any(|t| &*t.id == task_id) {
            EngineError::Settled(task_id.to_string())
        } else {
            EngineError::NoSuchTask(task_id.to_string())
        }
    }

    fn run_of(state: &State, run_id: &str) -> Result<Rc<Run>, EngineError> {
        state.runs.get(run_id).cloned().ok_or_else(|| EngineError::NoSuchRun(run_id.to_string()))
    }

    // Host-level operations: the host itself is the authority, so no token is asked for.

    /// Mints a token for `grant`, to hand out.
    pub fn mint(&self, grant: Grant, now_ms: u64) -> CapToken {
        self.inner.state.borrow_mut().tokens.mint(grant, now_ms)
    }

    /// Mints a token the host keeps in memory and presents with [`Auth::Held`].
    pub fn mint_held(&self, grant: Grant, now_ms: u64) -> HeldToken {
        self.inner.state.borrow_mut().tokens.mint_held(grant, now_ms)
    }

    /// Drops a held token's record once the host is done with it.
    pub fn forget_held(&self, token: &HeldToken) {
        self.inner.state.borrow_mut().tokens.forget_held(token);
    }

    /// Verifies a presented token for `verb` (and, for worker tokens, task `task`).
    pub fn verify(&self, token: &str, verb: Verb, task: Option<&str>) -> Result<Verified, EngineError> {
        let mut state = self.inner.state.borrow_mut();
        let ctx = VerifyContext { task, max_depth: None };
        state.tokens.verify(token, verb, ctx, now_ms()).map_err(EngineError::Token)
    }

    /// Revokes a token; later uses fail with `revoked`.
    pub fn revoke(&self, token: &str) -> Result<(), EngineError> {
        self.inner.state.borrow_mut().tokens.revoke(token).map_err(EngineError::Token)
    }

    // Operator and worker verbs.

    /// `start_task`: a new task for `agent` in run `run_id`. With a worker token the task is a
    /// sub-task of `parent` (the token's task), one level deeper, refused past
    /// `max_spawn_depth`.
    pub fn start_task(
        &self,
        auth: Auth<'_>,
        run_id: &str,
        agent: &str,
        input: Value,
        parent: Option<&str>,
    ) -> Result<Arc<str>, EngineError> {
        let mut state = self.inner.state.borrow_mut();
        let max_depth = parent.map(|_| self.inner.config.max_spawn_depth);
        let verified = self.check(&mut state, auth, Verb::StartTask, VerifyContext { task: parent, max_depth })?;
        // A task a worker starts is a sub-task of the worker's own, named or not: otherwise
        // leaving `parent` out would start a top-level task and slip past `max_spawn_depth`.
        let implied = match (parent, verified.role) {
            (None, Role::Worker) => verified.task.clone(),
            _ => None,
        };
        if implied.is_some() {
            let (depth, max) = (verified.depth.saturating_add(1), self.inner.config.max_spawn_depth);
            if depth >= max {
                return Err(EngineError::Token(TokenError::DepthExceeded { depth, max }));
            }
        }
        let parent = parent.or(implied.as_deref());
        let run = Self::run_of(&state, run_id)?;
        let (depth, parent) = match parent {
            Some(p) => {
                if !state.tasks.contains_key(p) {
                    return Err(EngineError::NoSuchTask(p.to_string()));
                }
                (verified.depth + 1, Some(Arc::<str>::from(p)))
            }
            None => (0, None),
        };
        let id = run.next_task_id();
        let agent: Arc<str> = agent.into();
        let task = Task::new(id.clone(), run.id.clone(), agent.clone(), input, depth, parent.clone());
        state.tasks.insert(id.clone(), task);
        drop(state);
        self.publish(run.event(EventKind::TaskCreated { task_id: id.clone(), agent, depth, parent }));
        Ok(id)
    }

    /// `dispatch_attempt`: runs attempt `attempt` of a task on its agent's worker.
    pub async fn dispatch_attempt(&self, auth: Auth<'_>, task_id: &Arc<str>, attempt: u32) -> Result<Value, FlowError> {
        let run = {
            let mut state = self.inner.state.borrow_mut();
            self.check_on_task(&mut state, auth, Verb::DispatchAttempt, task_id).map_err(EngineError::into_flow)?;
            let run_id = Self::live_task(&mut state, task_id).map_err(EngineError::into_flow)?.run_id.clone();
            Self::run_of(&state, &run_id).map_err(EngineError::into_flow)?
        };
        self.run_attempt(&run, task_id, attempt).await
    }

    /// A worker's sub-dispatch: start a child task of `parent` and run one attempt of it.
    pub(crate) async fn sub_dispatch(
        &self,
        run: &Rc<Run>,
        parent: &Arc<str>,
        token: &HeldToken,
        agent: &str,
        input: Value,
    ) -> Result<Value, SubTaskError> {
        let child = self.start_task(Auth::Held(token), &run.id, agent, input, Some(parent)).map_err(|e| {
            let refused = Some(e.kind());
            SubTaskError { error: e.into_flow().with_step(agent), refused }
        })?;
        let mut abandon = AbandonOnDrop { engine: self.clone(), run: run.clone(), task_id: child.clone(), armed: true };
        let outcome = self.dispatch_attempt(Auth::Held(token), &child, 1).await;
        abandon.armed = false;
        self.settle(&child, &outcome);
        Ok(outcome?)
    }

    /// `mint_worker_token`: a worker token bound to a task.
    pub fn mint_worker_token(&self, auth: Auth<'_>, task_id: &str) -> Result<CapToken, EngineError> {
        let mut state = self.inner.state.borrow_mut();
        self.check(&mut state, auth, Verb::MintWorkerToken, VerifyContext { task: None, max_depth: None })?;
        let grant = self.worker_grant(Self::live_task(&mut state, task_id)?);
        let held = state.tokens.mint_held(grant, now_ms());
        let token = held.token().clone();
        // The token is good while its task lives; retiring the task forgets it.
        Self::live_task(&mut state, task_id)?.minted.push(held);
        Ok(token)
    }

    /// What a worker token for `task` grants: the worker role, bound to the task and its depth.
    pub(crate) fn worker_grant(&self, task: &Task) -> Grant {
        Grant {
            role: Role::Worker,
            agent_id: task.agent.to_string(),
            scopes: Vec::new(),
            ttl_ms: self.inner.config.worker_token_ttl_ms,
            max_uses: None,
            task: Some(task.id.to_string()),
            depth: task.depth,
        }
    }

    /// Every event of run `run_id`, for the host itself (the CLI's progress lines, a script's
    /// `on_event`): it subscribes with a one-use observer token, so the gate still decides.
    pub fn follow_run(&self, run_id: &str) -> Result<mpsc::UnboundedReceiver<Event>, EngineError> {
        let grant = Grant {
            role: Role::Observer,
            agent_id: "host".into(),
            scopes: Vec::new(),
            ttl_ms: None,
            max_uses: Some(1),
            task: None,
            depth: 0,
        };
        let observer = self.mint_held(grant, now_ms());
        let events = self.subscribe_run(Auth::Held(&observer), run_id);
        self.forget_held(&observer);
        events
    }

    /// `read_task_state`: a task's state, live or recently finished.
    pub fn read_task_state(&self, auth: Auth<'_>, task_id: &str) -> Result<TaskSnapshot, EngineError> {
        {
            let mut state = self.inner.state.borrow_mut();
            self.check_on_task(&mut state, auth, Verb::ReadTaskState, task_id)?;
        }
        self.task_snapshot(task_id).ok_or_else(|| EngineError::NoSuchTask(task_id.to_string()))
    }

    /// `poll_task`: the same report as `read_task_state`, for the roles that poll.
    pub fn poll_task(&self, auth: Auth<'_>, task_id: &str) -> Result<TaskSnapshot, EngineError> {
        {
            let mut state = self.inner.state.borrow_mut();
            self.check_on_task(&mut state, auth, Verb::PollTask, task_id)?;
        }
        self.task_snapshot(task_id).ok_or_else(|| EngineError::NoSuchTask(task_id.to_string()))
    }

    /// `cancel_task`: the task becomes `cancelled` and its in-flight attempt is stopped.
    pub fn cancel_task(&self, auth: Auth<'_>, task_id: &str) -> Result<(), EngineError> {
        let mut state = self.inner.state.borrow_mut();
        self.check_on_task(&mut state, auth, Verb::CancelTask, task_id)?;
        if !state.tasks.contains_key(task_id) {
            return Err(Self::not_live(&state, task_id));
        }
        let task = Self::live_task(&mut state, task_id)?;
        if !task.transition(super::TaskState::Cancelled) {
            return Err(EngineError::Settled(task_id.to_string()));
        }
        let (id, run_id) = (task.id.clone(), task.run_id.clone());
        let run = Self::run_of(&state, &run_id)?;
        drop(state);
        self.publish(run.event(EventKind::TaskCancelled { task_id: id }));
        run.poke();
        Ok(())
    }

    /// `mark_pass`: an operator settles the task's in-flight attempt as passed with `value`.
    pub fn mark_pass(&self, auth: Auth<'_>, task_id: &str, value: Value) -> Result<(), EngineError> {
        self.hand_over(auth, Verb::MarkPass, task_id, External::Verdict(Verdict::Pass(value)))
    }

    /// `mark_blocked`: an operator settles the task's in-flight attempt as blocked.
    pub fn mark_blocked(&self, auth: Auth<'_>, task_id: &str, value: Value) -> Result<(), EngineError> {
        self.hand_over(auth, Verb::MarkBlocked, task_id, External::Verdict(Verdict::Blocked(value)))
    }

    /// `override_verdict`: a senior settles the task's in-flight attempt with any verdict.
    pub fn override_verdict(&self, auth: Auth<'_>, task_id: &str, verdict: Verdict) -> Result<(), EngineError> {
        self.hand_over(auth, Verb::OverrideVerdict, task_id, External::Verdict(verdict))
    }

    /// `post_result`: a worker reports its attempt's result through the engine instead of
    /// returning it (`ok = false` fails the attempt, with `value` as the reason).
    pub fn post_result(&self, auth: Auth<'_>, task_id: &str, value: Value, ok: bool) -> Result<(), EngineError> {
        let external = if ok {
            External::Verdict(Verdict::Pass(value))
        } else {
            let message = match &value {
                Value::String(s) => s.to_string(),
                other => other.to_json(),
            };
            External::Failed(message)
        };
        self.hand_over(auth, Verb::PostResult, task_id, external)
    }

    fn hand_over(&self, auth: Auth<'_>, verb: Verb, task_id: &str, external: External) -> Result<(), EngineError> {
        let mut state = self.inner.state.borrow_mut();
        self.check_on_task(&mut state, auth, verb, task_id)?;
        if !state.tasks.contains_key(task_id) {
            return Err(Self::not_live(&state, task_id));
        }
        let task = Self::live_task(&mut state, task_id)?;
        // A cancelled task's attempt may still be unwinding; a verdict now would be dropped
        // without a word, so the caller is told the task is settled.
        if task.state.is_terminal() {
            return Err(EngineError::Settled(task_id.to_string()));
        }
        if task.running.is_none() {
            return Err(EngineError::NotRunning {
                task: task_id.to_string(),
                state: task.state.name(),
                op: verb.name(),
            });
        }
        task.external = Some(external);
        let run_id = task.run_id.clone();
        let run = Self::run_of(&state, &run_id)?;
        drop(state);
        run.poke();
        Ok(())
    }

    /// `query_senior`: asks the seniors a question about a task and waits for the answer; the
    /// task is `suspended` meanwhile.
    pub async fn query_senior(&self, auth: Auth<'_>, task_id: &str, question: Value) -> Result<Value, EngineError> {
        let (id, run, task, mut answer) = {
            let mut state = self.inner.state.borrow_mut();
            self.check_on_task(&mut state, auth, Verb::QuerySenior, task_id)?;
            let task = Self::live_task(&mut state, task_id)?;
            let (task_arc, run_id) = (task.id.clone(), task.run_id.clone());
            let run = Self::run_of(&state, &run_id)?;
            let id = state.next_query;
            state.next_query += 1;
            let (answer, rx) = watch::channel(None);
            state.queries.insert(id, Query { task_id: task_arc.clone(), question, answer });
            (id, run, task_arc, rx)
        };
        self.suspend(&run, &task, "query_senior");
        let _withdraw = WithdrawQuery { engine: self.clone(), run, task, id };
        let result = answer.wait_for(Option::is_some).await.map(|a| a.clone().unwrap_or(Value::Null));
        result.map_err(|_| EngineError::QueryDropped)
    }

    /// The open queries, for a senior deciding what to answer: `(id, task, question)`.
    pub fn open_queries(&self) -> Vec<(u64, Arc<str>, Value)> {
        let state = self.inner.state.borrow();
        let mut open: Vec<_> =
            state.queries.iter().map(|(id, q)| (*id, q.task_id.clone(), q.question.clone())).collect();
        open.sort_by_key(|q| q.0);
        open
    }

    /// `answer_query`: a senior answers an open query.
    pub fn answer_query(&self, auth: Auth<'_>, query_id: u64, answer: Value) -> Result<(), EngineError> {
        let mut state = self.inner.state.borrow_mut();
        self.check(&mut state, auth, Verb::AnswerQuery, VerifyContext { task: None, max_depth: None })?;
        let query = state.queries.get(&query_id).ok_or(EngineError::NoSuchQuery(query_id))?;
        query.answer.send_replace(Some(answer));
        Ok(())
    }

    /// `attach_session`: an operator session for `agent_id`; returns its id.
    pub fn attach_session(&self, auth: Auth<'_>, agent_id: &str) -> Result<Arc<str>, EngineError> {
        let mut state = self.inner.state.borrow_mut();
        self.check(&mut state, auth, Verb::AttachSession, VerifyContext { task: None, max_depth: None })?;
        let id: Arc<str> = format!("s-{}", state.next_session).into();
        state.next_session += 1;
        state.sessions.insert(id.clone(), Session { agent_id: agent_id.to_string(), last_seen_ms: now_ms() });
        Ok(id)
    }

    /// `detach_session`.
    pub fn detach_session(&self, auth: Auth<'_>, session: &str) -> Result<(), EngineError> {
        let mut state = self.inner.state.borrow_mut();
        self.check(&mut state, auth, Verb::DetachSession, VerifyContext { task: None, max_depth: None })?;
        state.sessions.remove(session).map(|_| ()).ok_or_else(|| EngineError::NoSuchSession(session.to_string()))
    }

    /// `heartbeat`: marks a session as seen now; returns the agent it is attached for.
    pub fn heartbeat(&self, auth: Auth<'_>, session: &str) -> Result<String, EngineError> {
        let mut state = self.inner.state.borrow_mut();
        self.check(&mut state, auth, Verb::Heartbeat, VerifyContext { task: None, max_depth: None })?;
        let s = state.sessions.get_mut(session).ok_or_else(|| EngineError::NoSuchSession(session.to_string()))?;
        s.last_seen_ms = now_ms();
        Ok(s.agent_id.clone())
    }

    /// `fetch_prompt`: the task's input, its agent's system prompt and the injected directives.
    pub fn fetch_prompt(&self, auth: Auth<'_>, task_id: &str) -> Result<Prompt, EngineError> {
        let mut state = self.inner.state.borrow_mut();
        self.check_on_task(&mut state, auth, Verb::FetchPrompt, task_id)?;
        let task = Self::live_task(&mut state, task_id)?;
        let (id, agent, attempt, input, directives) =
            (task.id.clone(), task.agent.clone(), task.attempts, task.input.clone(), task.directives.clone());
        let run_id = task.run_id.clone();
        let run = Self::run_of(&state, &run_id)?;
        let system_prompt =
            run.compiled.blueprint.agent(&agent).and_then(|a| a.profile.as_ref()).and_then(|p| p.system_prompt.clone());
        Ok(Prompt { task_id: id, agent, attempt, input, system_prompt, directives })
    }

    /// `fetch_data`: the task's input value.
    pub fn fetch_data(&self, auth: Auth<'_>, task_id: &str) -> Result<Value, EngineError> {
        let mut state = self.inner.state.borrow_mut();
        self.check_on_task(&mut state, auth, Verb::FetchData, task_id)?;
        Ok(Self::live_task(&mut state, task_id)?.input.clone())
    }

    /// `verify_token`: a worker asks whether `token` (usually its own) is good for `verb`.
    pub fn verify_token(&self, auth: Auth<'_>, token: &str, verb: Verb) -> Result<Verified, EngineError> {
        let mut state = self.inner.state.borrow_mut();
        self.check(&mut state, auth, Verb::VerifyToken, VerifyContext { task: None, max_depth: None })?;
        state
            .tokens
            .verify(token, verb, VerifyContext { task: None, max_depth: None }, now_ms())
            .map_err(EngineError::Token)
    }

    /// `emit_output`: an output event from a worker, published as `worker_output`.
    pub fn emit_output(&self, auth: Auth<'_>, task_id: &str, attempt: u32, output: Value) -> Result<(), EngineError> {
        let run = {
            let mut state = self.inner.state.borrow_mut();
            self.check_on_task(&mut state, auth, Verb::EmitOutput, task_id)?;
            let run_id = Self::live_task(&mut state, task_id)?.run_id.clone();
            Self::run_of(&state, &run_id)?
        };
        let task_id: Arc<str> = task_id.into();
        self.publish(run.event(EventKind::WorkerOutput { task_id, attempt, output }));
        Ok(())
    }

    /// `subscribe_events`: every event from now on.
    pub fn subscribe_events(&self, auth: Auth<'_>) -> Result<broadcast::Receiver<Event>, EngineError> {
        let mut state = self.inner.state.borrow_mut();
        self.check(&mut state, auth, Verb::SubscribeEvents, VerifyContext { task: None, max_depth: None })?;
        Ok(self.inner.bus.subscribe())
    }

    /// `subscribe_events` for one run: every event of `run_id` through its `run_finished`,
    /// none lost however fast the run goes.
    pub fn subscribe_run(&self, auth: Auth<'_>, run_id: &str) -> Result<mpsc::UnboundedReceiver<Event>, EngineError> {
        let mut state = self.inner.state.borrow_mut();
        self.check(&mut state, auth, Verb::SubscribeEvents, VerifyContext { task: None, max_depth: None })?;
        let run = Self::run_of(&state, run_id)?;
        Ok(self.inner.bus.tap(run.id.clone()))
    }

    /// `read_trace`: the recent events, of one run or all.
    pub fn read_trace(&self, auth: Auth<'_>, run_id: Option<&str>) -> Result<Vec<Event>, EngineError> {
        let mut state = self.inner.state.borrow_mut();
        self.check(&mut state, auth, Verb::ReadTrace, VerifyContext { task: None, max_depth: None })?;
        Ok(self.inner.bus.trace(run_id))
    }

    /// `pause_loop`: new attempts wait (their tasks `suspended`) until `resume_loop`.
    pub fn pause_loop(&self, auth: Auth<'_>) -> Result<(), EngineError> {
        let mut state = self.inner.state.borrow_mut();
        self.check(&mut state, auth, Verb::PauseLoop, VerifyContext { task: None, max_depth: None })?;
        self.inner.paused.send_replace(true);
        Ok(())
    }

    /// `resume_loop`.
    pub fn resume_loop(&self, auth: Auth<'_>) -> Result<(), EngineError> {
        let mut state = self.inner.state.borrow_mut();
        self.check(&mut state, auth, Verb::ResumeLoop, VerifyContext { task: None, max_depth: None })?;
        self.inner.paused.send_replace(false);
        Ok(())
    }

    /// Whether a senior has paused new dispatches (`pause_loop`).
    pub fn is_paused(&self) -> bool {
        *self.inner.paused.borrow()
    }

    /// `inject_directive`: a directive every later `fetch_prompt` of the task sees.
    pub fn inject_directive(&self, auth: Auth<'_>, task_id: &str, directive: Value) -> Result<(), EngineError> {
        let mut state = self.inner.state.borrow_mut();
        self.check(&mut state, auth, Verb::InjectDirective, VerifyContext { task: None, max_depth: None })?;
        Self::live_task(&mut state, task_id)?.directives.push(directive);
        Ok(())
    }
}

/// Closes a query however `query_senior` ends, including when its caller stops waiting and
/// drops the call: otherwise the query would stay open with nobody to read the answer, and its
/// task would stay `suspended`.
struct WithdrawQuery {
    engine: Engine,
    run: Rc<Run>,
    task: Arc<str>,
    id: u64,
}

impl Drop for WithdrawQuery {
    fn drop(&mut self) {
        let Ok(mut state) = self.engine.inner.state.try_borrow_mut() else {
            tracing::warn!(task = %self.task, "query dropped while the engine state was busy");
            return;
        };
        state.queries.remove(&self.id);
        drop(state);
        self.engine.resume(&self.run, &self.task);
    }
}

/// Cancels a sub-task whose dispatch was dropped before it settled.
struct AbandonOnDrop {
    engine: Engine,
    run: Rc<Run>,
    task_id: Arc<str>,
    armed: bool,
}

impl Drop for AbandonOnDrop {
    fn drop(&mut self) {
        if self.armed {
            self.engine.abandon(&self.run, &self.task_id);
        }
    }
}
