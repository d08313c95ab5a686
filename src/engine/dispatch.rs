//! The flow evaluator's [`Dispatcher`] over the engine: one task per step, attempts of that
//! task for retries, and a step abandoned mid-flight (a cancelled run, a losing fanout lane)
//! cancels its task.
//!
//! With a journal, every step is keyed by its node pointer, its input's hash and how often that
//! key came before in the run; a settled step's result is journaled and the flow moves on only
//! once the record is durable. A key with a recorded result (a resumed run's finished steps, a
//! rerun's steps before its cut) is replayed: its result is taken from the journal and nothing
//! is dispatched.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;

use super::Engine;
use super::journal::{StepRecord, input_hash};
use super::ops::Auth;
use super::run::Run;
use super::wait::WaitSite;
use crate::flow::{Dispatcher, ErrorKind, FlowError, Step};
use crate::value::Value;

pub(crate) struct EngineDispatcher {
    pub engine: Engine,
    pub run: Rc<Run>,
}

/// A step's journal key: pointer, input hash, occurrence.
struct JournalKey {
    pointer: Arc<str>,
    hash: Arc<str>,
    occurrence: u32,
}

/// A step's task, as the evaluator holds it between attempts.
pub(crate) struct StepTask {
    engine: Engine,
    run: Rc<Run>,
    id: Arc<str>,
    agent: Arc<str>,
    closed: Cell<bool>,
    key: Option<JournalKey>,
    /// The recorded result, for a replayed step (which has no engine task).
    replayed: Option<Value>,
}

impl Drop for StepTask {
    fn drop(&mut self) {
        if !self.closed.get() && self.replayed.is_none() {
            self.engine.abandon(&self.run, &self.id);
        }
    }
}

impl EngineDispatcher {
    /// The step's key, counting this occurrence, and its recorded result if there is one.
    fn key(&self, step: &Step, input: &Value) -> Option<(JournalKey, Option<Value>)> {
        let j = self.run.journaling.as_ref()?;
        let pointer = j.pointers.get(&(step as *const Step))?.clone();
        let hash = input_hash(input);
        let occurrence = {
            let mut occurrences = j.occurrences.borrow_mut();
            let n = occurrences.entry((pointer.clone(), hash.clone())).or_insert(0);
            *n += 1;
            *n - 1
        };
        let recorded = j.replay.borrow_mut().get_mut(&(pointer.clone(), hash.clone())).and_then(|q| q.pop_front());
        Some((JournalKey { pointer, hash, occurrence }, recorded))
    }
}

impl Dispatcher for EngineDispatcher {
    type Task = StepTask;

    async fn open(&self, step: &Step, input: Value) -> Result<StepTask, FlowError> {
        let (key, recorded) = match self.key(step, &input) {
            Some((key, recorded)) => (Some(key), recorded),
            None => (None, None),
        };
        if let Some(j) = &self.run.journaling
            && let Some(e) = j.failed.borrow().as_ref()
        {
            return Err(FlowError::new(ErrorKind::Dispatch, format!("the journal cannot be written: {e}"))
                .with_step(step.agent.as_str()));
        }
        let agent: Arc<str> = step.agent.as_str().into();
        // A step the journal already holds takes a task id but opens no task: it replays.
        let id = match recorded {
            Some(_) => self.run.next_task_id(),
            None => {
                let id = self
                    .engine
                    .start_task(Auth::Held(&self.run.op_token), &self.run.id, &step.agent, input, None)
                    .map_err(|e| e.into_flow().with_step(step.agent.as_str()))?;
                // Waits in its agent are known by the step's key, the same when the run is
                // resumed in another process (the task id is not).
                if let Some(key) = &key {
                    let scope = format!("{}#{}#{}", key.pointer, key.hash, key.occurrence);
                    self.engine.set_task_scope(&id, scope.into());
                }
                id
            }
        };
        Ok(StepTask {
            engine: self.engine.clone(),
            run: self.run.clone(),
            id,
            agent,
            closed: Cell::new(false),
            key,
            replayed: recorded,
        })
    }

    async fn attempt(&self, task: &StepTask, attempt: u32) -> Result<Value, FlowError> {
        if let Some(value) = &task.replayed {
            return Ok(value.clone());
        }
        self.engine.dispatch_attempt(Auth::Held(&self.run.op_token), &task.id, attempt).await
    }

    fn attempt_timed_out(&self, task: &StepTask, attempt: u32) {
        if task.replayed.is_none() {
            self.engine.attempt_timed_out(&self.run, &task.id, attempt);
        }
    }

    async fn wait(&self, pointer: &str, signal: Arc<str>, timeout_ms: Option<u64>) -> Result<Value, FlowError> {
        let pointer: Arc<str> = pointer.into();
        let site = WaitSite { scope: pointer.clone(), pointer: Some(pointer), task_id: None, question: None };
        self.engine.wait_for_signal(&self.run, site, signal, timeout_ms).await
    }

    fn strands(&self, delta: isize) {
        self.engine.strands_changed(&self.run, delta);
    }

    async fn close(&self, task: StepTask, outcome: &Result<Value, FlowError>) {
        task.closed.set(true);
        let replayed = task.replayed.is_some();
        if !replayed {
            self.engine.settle(&task.id, outcome);
        }
        let (Some(j), Some(key)) = (&self.run.journaling, &task.key) else { return };
        // A resumed run's replayed steps are in the journal already.
        if replayed && j.resumed {
            return;
        }
        let record = StepRecord {
            run_id: self.run.id.clone(),
            task_id: task.id.clone(),
            agent: task.agent.clone(),
            pointer: key.pointer.clone(),
            input_hash: key.hash.clone(),
            occurrence: key.occurrence,
            outcome: outcome.clone(),
            replayed,
        };
        if let Err(e) = j.journal.step_closed(record).wait().await {
            j.failed.borrow_mut().get_or_insert(e);
        }
    }
}
