//! What the engine runs: a blueprint compiled (`crate::blueprint::compile`) into a routing
//! table of spawners and linked with its layers, and the warnings its compilation left.

use std::collections::HashMap;
use std::fmt;
use std::rc::Rc;
use std::sync::Arc;

use futures::future::LocalBoxFuture;

use super::spawner::{Job, Spawner, WorkerError, WorkerResult};
use crate::schema::{Blueprint, Location};

/// A finding that does not stop compilation.
#[derive(Clone, Debug, PartialEq)]
pub struct Warning {
    /// What was found, for people.
    pub message: String,
    /// The file and line that declared the part concerned, when known.
    pub location: Option<Location>,
    /// The blueprint's file, when no line is known.
    pub file: Option<String>,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.location, &self.file) {
            (Some(loc), _) => write!(f, "{loc}: ")?,
            (None, Some(file)) => write!(f, "{file}: ")?,
            (None, None) => {}
        }
        write!(f, "warning: {}", self.message)
    }
}

/// The routing table: a spawner that hands each attempt to its agent's spawner by the job's
/// `agent`, so a layer that rewrites the agent reroutes the attempt.
pub struct Router {
    pub(crate) routes: HashMap<String, Rc<dyn Spawner>>,
    pub(crate) default: Option<Rc<dyn Spawner>>,
}

impl Router {
    /// The spawner for agent `name`, falling back to the default spawner.
    pub fn route(&self, name: &str) -> Option<&Rc<dyn Spawner>> {
        self.routes.get(name).or(self.default.as_ref())
    }
}

impl Spawner for Router {
    fn spawn(&self, job: Job) -> LocalBoxFuture<'static, WorkerResult> {
        match self.route(&job.agent) {
            Some(spawner) => spawner.spawn(job),
            None => {
                let message = format!("no agent '{}' to route to (a layer rerouted the attempt there?)", job.agent);
                Box::pin(async move { Err(WorkerError::new(message)) })
            }
        }
    }
}

/// A compiled blueprint: the blueprint, its routing table, and that table wrapped in the
/// blueprint's layers, which is what every attempt is spawned on.
pub struct CompiledBlueprint {
    /// The blueprint as it was compiled.
    pub blueprint: Rc<Blueprint>,
    pub(crate) router: Rc<Router>,
    pub(crate) spawner: Rc<dyn Spawner>,
    /// Agent name → the name of the operator seat it asks ([`OperatorDef`](super::schema::OperatorDef)),
    /// for `operator` agents.
    pub(crate) operators: HashMap<String, Arc<str>>,
    /// Findings that did not stop compilation.
    pub warnings: Vec<Warning>,
    /// Every step of the flow with its node pointer, worked out for the first run that
    /// journals and shared by the runs after it.
    pub(crate) step_pointers: std::cell::OnceCell<Rc<HashMap<*const crate::flow::Step, Arc<str>>>>,
}

impl CompiledBlueprint {
    /// Every step of the flow with its node pointer (the journal's step keys).
    pub(crate) fn step_pointers(&self) -> Rc<HashMap<*const crate::flow::Step, Arc<str>>> {
        self.step_pointers
            .get_or_init(|| {
                let mut pointers = HashMap::new();
                self.blueprint.flow.walk(&mut |pointer, node| {
                    if let crate::flow::Node::Step(step) = node {
                        pointers.insert(step as *const crate::flow::Step, Arc::from(pointer));
                    }
                });
                Rc::new(pointers)
            })
            .clone()
    }

    /// The spawner for agent `name`, falling back to the default spawner.
    pub fn route(&self, name: &str) -> Option<&Rc<dyn Spawner>> {
        self.router.route(name)
    }

    /// The linked stack: layers around the routing table.
    pub fn spawner(&self) -> &Rc<dyn Spawner> {
        &self.spawner
    }

    /// The name of the operator seat ([`OperatorDef`](super::schema::OperatorDef)) an `operator`
    /// agent asks; `None` for other agents.
    pub fn operator_of(&self, agent: &str) -> Option<Arc<str>> {
        self.operators.get(agent).cloned()
    }

    /// The routed agent names, sorted.
    pub fn agent_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.router.routes.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }
}
