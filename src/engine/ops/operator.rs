//! The operator's verbs: starting, dispatching, cancelling and settling tasks, putting
//! questions to the seniors, and operator sessions. A worker may call the task verbs too
//! (`start_task`, `dispatch_attempt`, `read_task_state`, `poll_task`, `cancel_task`): it may
//! run a swarm of its own.

use std::rc::Rc;
use std::sync::Arc;

use tokio::sync::watch;

use super::Auth;
use crate::engine::event::EventKind;
use crate::engine::run::Run;
use crate::engine::spawner::Verdict;
use crate::engine::task::{HandedOutcome, Task, TaskSnapshot};
use crate::engine::{Engine, EngineError, TaskState, now_ms};
use crate::flow::FlowError;
use crate::gate::registry::VerifyContext;
use crate::gate::token::CapToken;
use crate::gate::{Role, TokenError, Verb};
use crate::value::Value;

/// A question an operator put to the seniors.
pub(crate) struct Query {
    pub task_id: Arc<str>,
    pub question: Value,
    pub(super) answer: watch::Sender<Option<Value>>,
}

/// An attached operator session.
pub(crate) struct Session {
    pub agent_id: String,
    pub last_seen_ms: u64,
}

impl Engine {
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
        // A task for an agent the blueprint lacks could never run: refused here, by kind, so a
        // worker's sub-dispatch (in process or over the API) is told `no_route`.
        if run.compiled.route(agent).is_none() {
            let blueprint = run.compiled.blueprint.id.clone();
            return Err(EngineError::NoRoute { agent: agent.to_string(), blueprint });
        }
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
        let mut task = Task::new(id.clone(), run.id.clone(), agent.clone(), input, depth, parent.clone());
        if let Some(parent) = parent.as_deref().and_then(|p| state.tasks.get(p)) {
            task.scope = format!("{}>{agent}", parent.scope).into();
        }
        state.tasks.insert(id.clone(), task);
        drop(state);
        self.publish(run.event(EventKind::TaskCreated { task_id: id.clone(), agent, depth, parent }));
        Ok(id)
    }

    /// Names the waits of task `task_id`'s agent in the journal (see [`Task::scope`]).
    pub(crate) fn set_task_scope(&self, task_id: &str, scope: Arc<str>) {
        if let Some(task) = self.inner.state.borrow_mut().tasks.get_mut(task_id) {
            task.scope = scope;
        }
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
        if !task.transition(TaskState::Cancelled) {
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
        self.hand_over(auth, Verb::MarkPass, task_id, HandedOutcome::Verdict(Verdict::Pass(value)))
    }

    /// `mark_blocked`: an operator settles the task's in-flight attempt as blocked.
    pub fn mark_blocked(&self, auth: Auth<'_>, task_id: &str, value: Value) -> Result<(), EngineError> {
        self.hand_over(auth, Verb::MarkBlocked, task_id, HandedOutcome::Verdict(Verdict::Blocked(value)))
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
