//! The worker's verbs: what a worker asks of the engine during its attempt (its prompt and
//! data, its result, its outputs, a token check), and the sub-dispatch that runs a sub-task for
//! it. The task verbs a worker shares with the operator are in `operator.rs`.

use std::rc::Rc;
use std::sync::Arc;

use serde::Serialize;

use super::Auth;
use crate::engine::event::EventKind;
use crate::engine::journal::{StepRecord, input_hash};
use crate::engine::run::Run;
use crate::engine::spawner::{SubTaskError, Verdict};
use crate::engine::task::{HandedOutcome, Task};
use crate::engine::{Engine, EngineError, now_ms};
use crate::flow::{ErrorKind, FlowError};
use crate::gate::registry::{Grant, Verified, VerifyContext};
use crate::gate::{Role, Verb};
use crate::value::Value;

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

impl Engine {
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

    /// `post_result`: a worker reports its attempt's result through the engine instead of
    /// returning it (`ok = false` fails the attempt, with `value` as the reason).
    pub fn post_result(&self, auth: Auth<'_>, task_id: &str, value: Value, ok: bool) -> Result<(), EngineError> {
        let outcome = if ok {
            HandedOutcome::Verdict(Verdict::Pass(value))
        } else {
            let message = match &value {
                Value::String(s) => s.to_string(),
                other => other.to_json(),
            };
            HandedOutcome::Failed(message)
        };
        self.hand_over(auth, Verb::PostResult, task_id, outcome)
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

    /// `fetch_data` of a stored output: the value of output `id`. A worker token bound to a task
    /// reads only the outputs of its own run (`task_mismatch` otherwise).
    pub fn fetch_output(&self, auth: Auth<'_>, id: &str) -> Result<Value, EngineError> {
        let mut state = self.inner.state.borrow_mut();
        let caller = self.check(&mut state, auth, Verb::FetchData, VerifyContext { task: None, max_depth: None })?;
        let record = self.inner.outputs.get(id).ok_or_else(|| EngineError::NoSuchOutput(id.to_string()))?;
        if let Some(bound) = caller.task.as_deref() {
            let run_of_bound = Self::known_task(&state, bound).map(|(run, _)| run);
            if run_of_bound.as_deref() != Some(&*record.run_id) {
                return Err(EngineError::Token(crate::gate::TokenError::TaskMismatch));
            }
        }
        Ok(record.value)
    }

    /// `emit_output` for the attempt task `task_id` has in flight (a remote worker's events).
    pub fn emit_for_task(&self, auth: Auth<'_>, task_id: &str, output: Value) -> Result<(), EngineError> {
        let attempt = {
            let state = self.inner.state.borrow();
            match state.tasks.get(task_id) {
                Some(task) if task.running.is_some() => task.attempts,
                Some(task) => {
                    return Err(EngineError::NotRunning {
                        task: task_id.to_string(),
                        state: task.state.name(),
                        op: Verb::EmitOutput.name(),
                    });
                }
                None => 0,
            }
        };
        self.emit_output(auth, task_id, attempt, output)
    }

    /// A sub-task for a worker outside the process: `task_id` is the worker's own task.
    pub async fn dispatch_for(
        &self,
        auth: Auth<'_>,
        task_id: &str,
        agent: &str,
        input: Value,
    ) -> Result<Value, SubTaskError> {
        let found = {
            let state = self.inner.state.borrow();
            state.tasks.get(task_id).map(|t| (t.id.clone(), t.run_id.clone()))
        };
        let refuse = |e: EngineError| SubTaskError { refused: Some(e.kind()), error: e.into_flow().with_step(agent) };
        let Some((parent, run_id)) = found else {
            // A refusal for the caller's token comes before saying the task is gone.
            let mut state = self.inner.state.borrow_mut();
            let refusal = match self.check_on_task(&mut state, auth, Verb::StartTask, task_id) {
                Err(token) => token,
                Ok(_) => Self::not_live(&state, task_id),
            };
            return Err(refuse(refusal));
        };
        let run = Self::run_of(&self.inner.state.borrow(), &run_id).map_err(refuse)?;
        // `start_task` checks the token, the depth and the agent, in that order.
        self.sub_dispatch(&run, &parent, auth, agent, input).await
    }

    /// A worker's sub-dispatch: start a child task of `parent` and run one attempt of it.
    ///
    /// In a journaled run a sub-dispatch is keyed like a step: by its parent's key and agent
    /// (its "pointer"), its input's hash and how often that pair came before. Its result is
    /// durable before the worker gets it, and a resumed run's worker that dispatches the same
    /// again gets the recorded value back instead of running the sub-task twice (a model's tool
    /// loop replays the tool calls that finished).
    pub(crate) async fn sub_dispatch(
        &self,
        run: &Rc<Run>,
        parent: &Arc<str>,
        token: Auth<'_>,
        agent: &str,
        input: Value,
    ) -> Result<Value, SubTaskError> {
        let key = self.sub_task_key(run, parent, agent, &input);
        if let Some(j) = &run.journaling
            && let Some(e) = j.failed.borrow().as_ref()
        {
            let error = FlowError::new(ErrorKind::Dispatch, format!("the journal cannot be written: {e}"));
            return Err(SubTaskError { error: error.with_step(agent), refused: None });
        }
        if let Some((key, Some(value))) = key {
            let task_id = run.next_task_id();
            self.journal_sub_task(run, &task_id, agent, key, Ok(value.clone()), true).await;
            return Ok(value);
        }
        let child = self.start_task(token, &run.id, agent, input, Some(parent)).map_err(|e| {
            let refused = Some(e.kind());
            SubTaskError { error: e.into_flow().with_step(agent), refused }
        })?;
        if let Some((key, _)) = &key {
            // Waits and sub-dispatches inside the sub-task are known by its key on a resume.
            self.set_task_scope(&child, format!("{}#{}#{}", key.pointer, key.hash, key.occurrence).into());
        }
        let mut abandon = AbandonOnDrop { engine: self.clone(), run: run.clone(), task_id: child.clone(), armed: true };
        let outcome = self.dispatch_attempt(token, &child, 1).await;
        abandon.armed = false;
        self.settle(&child, &outcome);
        if let Some((key, _)) = key {
            self.journal_sub_task(run, &child, agent, key, outcome.clone(), false).await;
        }
        Ok(outcome?)
    }

    /// A journaled run's key for a sub-dispatch from `parent`, counting this occurrence, and
    /// the recorded result to replay if the journal holds one.
    fn sub_task_key(&self, run: &Run, parent: &str, agent: &str, input: &Value) -> Option<(SubTaskKey, Option<Value>)> {
        let j = run.journaling.as_ref()?;
        let scope = self.inner.state.borrow().tasks.get(parent)?.scope.clone();
        let pointer: Arc<str> = format!("{scope}>{agent}").into();
        let hash = input_hash(input);
        let occurrence = {
            let mut occurrences = j.occurrences.borrow_mut();
            let n = occurrences.entry((pointer.clone(), hash.clone())).or_insert(0);
            *n += 1;
            *n - 1
        };
        let recorded = j.replay.borrow_mut().get_mut(&(pointer.clone(), hash.clone())).and_then(|q| q.pop_front());
        Some((SubTaskKey { pointer, hash, occurrence }, recorded))
    }

    /// Records a settled (or replayed) sub-task, and waits until the record is durable.
    async fn journal_sub_task(
        &self,
        run: &Run,
        task_id: &Arc<str>,
        agent: &str,
        key: SubTaskKey,
        outcome: Result<Value, FlowError>,
        replayed: bool,
    ) {
        let Some(j) = &run.journaling else { return };
        // A resumed run's replayed sub-tasks are in the journal already.
        if replayed && j.resumed {
            return;
        }
        let record = StepRecord {
            run_id: run.id.clone(),
            task_id: task_id.clone(),
            agent: agent.into(),
            pointer: key.pointer,
            input_hash: key.hash,
            occurrence: key.occurrence,
            outcome,
            replayed,
        };
        if let Err(e) = j.journal.step_closed(record).wait().await {
            j.failed.borrow_mut().get_or_insert(e);
        }
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
}

/// A sub-dispatch's journal key (see [`Engine::sub_dispatch`]).
struct SubTaskKey {
    pointer: Arc<str>,
    hash: Arc<str>,
    occurrence: u32,
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
