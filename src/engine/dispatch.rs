//! The flow evaluator's [`Dispatcher`] over the engine: one task per step, attempts of that
//! task for retries, and a step abandoned mid-flight (a cancelled run, a losing fanout lane)
//! cancels its task.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;

use super::Engine;
use super::ops::Auth;
use super::run::Run;
use crate::flow::{Dispatcher, FlowError, Step};
use crate::value::Value;

pub(crate) struct EngineDispatcher {
    pub engine: Engine,
    pub run: Rc<Run>,
}

/// A step's task, as the evaluator holds it between attempts.
pub(crate) struct StepTask {
    engine: Engine,
    run: Rc<Run>,
    id: Arc<str>,
    closed: Cell<bool>,
}

impl Drop for StepTask {
    fn drop(&mut self) {
        if !self.closed.get() {
            self.engine.abandon(&self.run, &self.id);
        }
    }
}

impl Dispatcher for EngineDispatcher {
    type Task = StepTask;

    async fn open(&self, step: &Step, input: Value) -> Result<StepTask, FlowError> {
        let id = self
            .engine
            .start_task(Auth::Held(&self.run.op_token), &self.run.id, &step.agent, input, None)
            .map_err(|e| e.into_flow().with_step(step.agent.as_str()))?;
        Ok(StepTask { engine: self.engine.clone(), run: self.run.clone(), id, closed: Cell::new(false) })
    }

    async fn attempt(&self, task: &StepTask, attempt: u32) -> Result<Value, FlowError> {
        self.engine.dispatch_attempt(Auth::Held(&self.run.op_token), &task.id, attempt).await
    }

    fn attempt_timed_out(&self, task: &StepTask, attempt: u32) {
        self.engine.attempt_timed_out(&self.run, &task.id, attempt);
    }

    fn close(&self, task: StepTask, outcome: &Result<Value, FlowError>) {
        task.closed.set(true);
        self.engine.settle(&task.id, outcome);
    }
}
