//! The senior's verbs: answering the operators' queries, overriding a verdict, pausing and
//! resuming the loop, and injecting directives into a task's prompt.

use std::sync::Arc;

use super::Auth;
use crate::engine::spawner::Verdict;
use crate::engine::task::HandedOutcome;
use crate::engine::{Engine, EngineError};
use crate::gate::Verb;
use crate::gate::registry::VerifyContext;
use crate::value::Value;

impl Engine {
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

    /// `override_verdict`: a senior settles the task's in-flight attempt with any verdict.
    pub fn override_verdict(&self, auth: Auth<'_>, task_id: &str, verdict: Verdict) -> Result<(), EngineError> {
        self.hand_over(auth, Verb::OverrideVerdict, task_id, HandedOutcome::Verdict(verdict))
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
