//! The remote operator: a seat nobody in this process fills. Each attempt's question is a wait
//! for its signal (see [`super::ask`]), answered from outside: `swarm runs signal` from another
//! terminal, `engine:signal` from a script, a client of the host. The answer is the signal's
//! value.

use futures::future::LocalBoxFuture;

use super::{OperatorSetup, render_prompt};
use crate::worker::{Job, Spawner, Verdict, WorkerError, WorkerResult};

/// Waits for the answer to each attempt's question.
pub struct RemoteOperator {
    /// The seat and its prompt template.
    pub setup: OperatorSetup,
}

impl Spawner for RemoteOperator {
    fn spawn(&self, job: Job) -> LocalBoxFuture<'static, WorkerResult> {
        let prompt = render_prompt(&self.setup, &job.input);
        let operator = self.setup.operator.clone();
        Box::pin(async move {
            let prompt = prompt.map_err(|e| WorkerError::new(format!("agent '{}': {e}", job.agent)))?;
            let (_signal, wait) = super::ask(&job, &operator, prompt.as_deref());
            wait.await.map(Verdict::Pass).map_err(|e| WorkerError::new(e.message))
        })
    }
}
