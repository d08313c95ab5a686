//! Workers: what runs one attempt of a task. Each agent kind has a [`SpawnerFactory`] that
//! checks the agent's spec when the blueprint compiles and builds the [`Spawner`] the engine
//! calls for every attempt.

pub mod lua_agent;
pub mod lua_fn;
pub mod operator;
pub mod remote;
pub mod rust_fn;
pub mod script;
pub mod spec;
pub mod subprocess;
pub mod template;

use std::path::Path;
use std::rc::Rc;

use futures::future::LocalBoxFuture;

use crate::schema::{AgentDef, Blueprint};
use crate::value::Value;

/// The spawner port is the engine's: every worker kind implements [`Spawner`].
pub use crate::engine::spawner::{Job, Spawner, SubTaskError, TaskHost, Verdict, WorkerError, WorkerResult};

/// What a factory may look at while building a spawner.
pub struct BuildContext<'a> {
    /// The blueprint being compiled.
    pub blueprint: &'a Blueprint,
    /// The directory relative paths in specs resolve against (the blueprint file's).
    pub base_dir: Option<&'a Path>,
    /// Non-fatal findings, reported by `swarm check` and kept on the compiled blueprint.
    pub warnings: Vec<String>,
}

/// Builds spawners for one agent kind. The compiler knows no kind's spec: what a kind refers to
/// elsewhere in the blueprint and which operator seat it asks are its factory's to say.
pub trait SpawnerFactory {
    /// Checks `agent.spec` and builds its spawner; `Err` is the `invalid_spec` message.
    fn build(&self, agent: &AgentDef, hint: Option<&Value>, cx: &mut BuildContext) -> Result<Rc<dyn Spawner>, String>;

    /// A reference in `agent`'s spec to a declaration `blueprint` lacks (an operator agent's
    /// `operator_ref`): the message of the `unresolved_operator_ref` error, which outranks every
    /// other error about the agent.
    fn unresolved_ref(&self, _agent: &AgentDef, _blueprint: &Blueprint) -> Option<String> {
        None
    }

    /// What is wrong with the declarations of `blueprint` this kind owns (operators of an
    /// unknown kind, for operator agents): each message an `unknown_kind` error.
    fn check_declarations(&self, _blueprint: &Blueprint) -> Vec<String> {
        Vec::new()
    }

    /// The operator seat `agent`'s attempts are asked of, for kinds that have one.
    fn operator_seat(&self, _agent: &AgentDef) -> Option<std::sync::Arc<str>> {
        None
    }
}

/// The spawner of an agent kind whose backend this build cannot run yet: its spec is checked
/// at compile time, and every attempt fails saying so.
pub struct UnavailableSpawner {
    /// What this build lacks, named in every attempt's failure.
    pub what: &'static str,
}

impl Spawner for UnavailableSpawner {
    fn spawn(&self, job: Job) -> LocalBoxFuture<'static, WorkerResult> {
        let message = format!("agent '{}': {} agents cannot run in this build yet", job.agent, self.what);
        Box::pin(async move { Err(WorkerError::new(message)) })
    }
}
