//! Tasks: one per dispatched step (or sub-dispatch), each with attempts, and the state machine
//! (docs/engine.md): `pending → running → pass | blocked | failed | timeout`, `running ⇄ suspended`,
//! any non-terminal state → `cancelled`. A terminal state is never left again, so a late
//! result cannot overwrite `cancelled`.

use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use crate::engine::spawner::Verdict;
use crate::gate::HeldToken;
use crate::value::Value;

/// Where a task is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Created, no attempt started yet.
    Pending,
    /// An attempt is in flight.
    Running,
    /// Paused from outside; waits for `resume_task`.
    Suspended,
    /// Settled: the worker passed it.
    Pass,
    /// Settled: the worker refused it with a verdict.
    Blocked,
    /// Settled: the last attempt failed.
    Failed,
    /// Settled: the last attempt ran out of time.
    Timeout,
    /// Settled: cancelled before it settled otherwise.
    Cancelled,
}

impl TaskState {
    /// Whether the state is settled; a settled task never changes state again.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskState::Pass | TaskState::Blocked | TaskState::Failed | TaskState::Timeout | TaskState::Cancelled
        )
    }

    /// The snake_case name used on the wire.
    pub fn name(self) -> &'static str {
        match self {
            TaskState::Pending => "pending",
            TaskState::Running => "running",
            TaskState::Suspended => "suspended",
            TaskState::Pass => "pass",
            TaskState::Blocked => "blocked",
            TaskState::Failed => "failed",
            TaskState::Timeout => "timeout",
            TaskState::Cancelled => "cancelled",
        }
    }
}

/// An outcome handed over to a running attempt from outside its worker's return value (an
/// operator's `mark_pass` or `mark_blocked`, a senior's `override_verdict`, a worker's
/// `post_result`): the attempt settles with it and stops waiting for the worker.
#[derive(Clone, Debug, PartialEq)]
pub enum HandedOutcome {
    /// Settle the attempt with this verdict.
    Verdict(Verdict),
    /// Fail the attempt with this message (`post_result` with `ok = false`).
    Failed(String),
}

/// A live task.
pub struct Task {
    /// The task's id, `<run id>.<n>`.
    pub id: Arc<str>,
    /// The run the task belongs to.
    pub run_id: Arc<str>,
    /// The agent the task is routed to.
    pub agent: Arc<str>,
    /// The step's input.
    pub input: Value,
    /// Where the task is in its life.
    pub state: TaskState,
    /// 0 for a flow step; one more than its parent for a sub-task.
    pub depth: u32,
    /// The task that dispatched this one, for a sub-task.
    pub parent: Option<Arc<str>>,
    /// Attempts started so far.
    pub attempts: u32,
    /// The attempt in flight, if any.
    pub running: Option<u32>,
    /// An attempt whose future was dropped before it finished; settled by a timeout report
    /// or by the step being abandoned.
    pub interrupted: Option<u32>,
    /// A verdict or failure handed over for the attempt in flight, taken when the attempt settles.
    pub handed: Option<HandedOutcome>,
    /// Directives injected by a senior; every later `fetch_prompt` sees them.
    pub directives: Vec<Value>,
    /// The last attempt's result, once there is one.
    pub result: Option<Value>,
    /// When the latest attempt started, for its elapsed time.
    pub attempt_started: Option<Instant>,
    /// Worker tokens an operator minted for this task; forgotten when it retires.
    pub minted: Vec<HeldToken>,
    /// What names the task's agent's waits in the journal, the same in every process that
    /// runs the run: a flow step's journal key (pointer, input hash, occurrence), a
    /// sub-task's parent scope and agent; the task id when the run journals nothing.
    pub scope: Arc<str>,
}

impl Task {
    /// A new task, `pending`.
    pub fn new(
        id: Arc<str>,
        run_id: Arc<str>,
        agent: Arc<str>,
        input: Value,
        depth: u32,
        parent: Option<Arc<str>>,
    ) -> Task {
        Task {
            scope: id.clone(),
            id,
            run_id,
            agent,
            input,
            state: TaskState::Pending,
            depth,
            parent,
            attempts: 0,
            running: None,
            interrupted: None,
            handed: None,
            directives: Vec::new(),
            result: None,
            attempt_started: None,
            minted: Vec::new(),
        }
    }

    /// Moves to `next` unless the task is already terminal; says whether it moved.
    pub fn transition(&mut self, next: TaskState) -> bool {
        if self.state.is_terminal() {
            return false;
        }
        self.state = next;
        true
    }

    /// A copy of what a caller may read about the task.
    pub fn snapshot(&self) -> TaskSnapshot {
        TaskSnapshot {
            id: self.id.clone(),
            run_id: self.run_id.clone(),
            agent: self.agent.clone(),
            state: self.state,
            attempts: self.attempts,
            depth: self.depth,
            parent: self.parent.clone(),
            result: self.result.clone(),
        }
    }
}

/// What `read_task_state` and `poll_task` report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TaskSnapshot {
    /// The task's id.
    pub id: Arc<str>,
    /// The run the task belongs to.
    pub run_id: Arc<str>,
    /// The agent the task is routed to.
    pub agent: Arc<str>,
    /// Where the task is in its life.
    pub state: TaskState,
    /// Attempts started so far.
    pub attempts: u32,
    /// 0 for a flow step; one more than its parent for a sub-task.
    pub depth: u32,
    /// The task that dispatched this one, for a sub-task.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<Arc<str>>,
    /// The last attempt's result, once there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_states_are_never_left() {
        let mut task = Task::new("t".into(), "r".into(), "a".into(), Value::Null, 0, None);
        assert!(task.transition(TaskState::Running));
        assert!(task.transition(TaskState::Suspended));
        assert!(task.transition(TaskState::Running));
        assert!(task.transition(TaskState::Cancelled));
        assert!(!task.transition(TaskState::Pass), "a late result must not overwrite cancelled");
        assert_eq!(task.state, TaskState::Cancelled);
    }
}
