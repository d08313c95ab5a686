//! The rig the engine tests share: an engine, blueprints written as JSON, `probe` agents that
//! run closures the test registers, and controlled workers the test settles by hand.
//!
//! Every test runs on tokio's paused clock inside a `LocalSet` (the engine's home), under a
//! generous virtual-time limit ([`within`]): a test that would hang instead fails, because an
//! idle paused runtime jumps straight to the limit.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use futures::future::LocalBoxFuture;
use luaswarm::Value;
use luaswarm::blueprint::compile::Compiler;
use luaswarm::blueprint::{AgentDef, Blueprint};
use luaswarm::engine::{Engine, EngineConfig, Event, EventKind, RunHandle, RunStatus};
use luaswarm::flow::NoExterns;
use luaswarm::gate::{Grant, HeldToken, Role};
use luaswarm::worker::rust_fn::{RustFnFactory, RustFnRegistry};
use luaswarm::worker::{BuildContext, Job, Spawner, SpawnerFactory, Verdict, WorkerError, WorkerResult};
use serde_json::{Value as J, json};
use tokio::sync::{mpsc, oneshot};

pub use super::flow::{assert_json, fanout, lit, p, seq, step, try_catch};
pub use super::within;

/// What a `probe` agent does with one attempt.
pub type Behaviour = Rc<dyn Fn(Job) -> LocalBoxFuture<'static, WorkerResult>>;

/// Builds `probe` agents from the behaviours registered under their names.
struct ProbeFactory {
    behaviours: Rc<RefCell<HashMap<String, Behaviour>>>,
}

struct ProbeSpawner {
    behaviour: Behaviour,
}

impl Spawner for ProbeSpawner {
    fn spawn(&self, job: Job) -> LocalBoxFuture<'static, WorkerResult> {
        (self.behaviour)(job)
    }
}

impl SpawnerFactory for ProbeFactory {
    fn build(&self, agent: &AgentDef, _: Option<&Value>, _: &mut BuildContext) -> Result<Rc<dyn Spawner>, String> {
        let behaviour = self.behaviours.borrow().get(&agent.name).cloned();
        let behaviour = behaviour.ok_or_else(|| format!("the rig has no behaviour '{}'", agent.name))?;
        Ok(Rc::new(ProbeSpawner { behaviour }))
    }
}

/// An engine plus the agents the next blueprint will have.
pub struct Rig {
    pub engine: Engine,
    behaviours: Rc<RefCell<HashMap<String, Behaviour>>>,
    agents: RefCell<Vec<J>>,
}

impl Rig {
    pub fn new() -> Rig {
        Rig::with(EngineConfig::default())
    }

    /// An engine with `config` (the token secret is fixed so runs are reproducible).
    pub fn with(config: EngineConfig) -> Rig {
        let config = EngineConfig { token_secret: Some("engine-tests-secret".into()), ..config };
        let engine = Engine::new(config).expect("the engine starts");
        let rig = Rig { engine, behaviours: Rc::default(), agents: RefCell::default() };
        for fn_id in ["echo", "sleep", "fail", "block"] {
            rig.agent_def(json!({"name": fn_id, "kind": "rust_fn", "spec": {"fn_id": fn_id}}));
        }
        rig
    }

    /// Adds an agent definition as written.
    pub fn agent_def(&self, def: J) {
        self.agents.borrow_mut().push(def);
    }

    /// A `probe` agent `name` that runs `behaviour` for every attempt; `extra` fields (such as
    /// `profile`) are merged into its definition.
    pub fn agent_with(
        &self,
        name: &str,
        extra: J,
        behaviour: impl Fn(Job) -> LocalBoxFuture<'static, WorkerResult> + 'static,
    ) {
        self.behaviours.borrow_mut().insert(name.to_string(), Rc::new(behaviour));
        let mut def = json!({"name": name, "kind": "probe"});
        def.as_object_mut().unwrap().extend(extra.as_object().cloned().unwrap_or_default());
        self.agent_def(def);
    }

    pub fn agent(&self, name: &str, behaviour: impl Fn(Job) -> LocalBoxFuture<'static, WorkerResult> + 'static) {
        self.agent_with(name, json!({}), behaviour);
    }

    /// A controlled agent `name`: each attempt is handed to the test as a [`Call`].
    pub fn probe(&self, name: &str) -> Probe {
        self.probe_with(name, json!({}))
    }

    pub fn probe_with(&self, name: &str, extra: J) -> Probe {
        let (tx, rx) = mpsc::unbounded_channel();
        let counts = Rc::new(Counts::default());
        let shared = counts.clone();
        self.agent_with(name, extra, move |job| {
            let (tx, counts) = (tx.clone(), shared.clone());
            Box::pin(async move {
                counts.started.set(counts.started.get() + 1);
                let mut guard = Attempt { counts, done: false };
                let (reply, answer) = oneshot::channel();
                tx.send(Call { job, reply }).expect("the probe's test is gone");
                // A call dropped without a reply leaves its worker blocked for good.
                let result = match answer.await {
                    Ok(result) => result,
                    Err(_) => std::future::pending().await,
                };
                guard.done = true;
                result
            })
        });
        Probe { rx, counts }
    }

    /// Starts a run of one step on a new probe `p` (input null, result at `$.r`) and waits for
    /// its attempt: how most tests begin.
    pub async fn one_step(&self) -> (Probe, RunHandle, Call) {
        let mut probe = self.probe("p");
        let run = self.start(step("p", lit(json!(null)), "$.r"), json!({}));
        let call = probe.next().await;
        (probe, run, call)
    }

    /// Compiles a blueprint with `flow` and every agent added so far, and starts it over `ctx`.
    pub fn start(&self, flow: J, ctx: J) -> RunHandle {
        let bp = json!({"id": "engine-test", "flow": flow, "agents": *self.agents.borrow()});
        let bp: Blueprint = serde_json::from_value(bp).unwrap_or_else(|e| panic!("blueprint: {e}"));
        let mut compiler = Compiler::new();
        compiler
            .register("probe", ProbeFactory { behaviours: self.behaviours.clone() })
            .register("rust_fn", RustFnFactory { registry: Rc::new(RustFnRegistry::default()) });
        let compiled = compiler.compile(Rc::new(bp), None).unwrap_or_else(|e| panic!("compile: {e}"));
        self.engine.start(Rc::new(compiled), Value::from(ctx), Rc::new(NoExterns))
    }

    /// A token of `role` minted by the engine.
    pub fn token(&self, role: Role) -> HeldToken {
        self.engine.mint_held(Grant::new(role, format!("test-{role}")), luaswarm::engine::now_ms())
    }

    /// The run's events, from the trace.
    pub fn events(&self, run: &RunHandle) -> Vec<Event> {
        self.engine.trace(Some(&run.id))
    }

    /// The run's events, each shown as [`show`] does.
    pub fn story(&self, run: &RunHandle) -> Vec<String> {
        self.events(run).iter().map(show).collect()
    }
}

/// How many attempts a probe started, finished (its future returned) and lost (its future was
/// dropped before it returned: the worker was stopped).
#[derive(Default)]
pub struct Counts {
    pub started: Cell<usize>,
    pub finished: Cell<usize>,
    pub dropped: Cell<usize>,
}

struct Attempt {
    counts: Rc<Counts>,
    done: bool,
}

impl Drop for Attempt {
    fn drop(&mut self) {
        let count = if self.done { &self.counts.finished } else { &self.counts.dropped };
        count.set(count.get() + 1);
    }
}

/// The test's end of a controlled agent.
pub struct Probe {
    rx: mpsc::UnboundedReceiver<Call>,
    pub counts: Rc<Counts>,
}

impl Probe {
    /// The next attempt handed to this agent.
    pub async fn next(&mut self) -> Call {
        self.rx.recv().await.expect("the probe's agent is gone")
    }

    /// An attempt already waiting, if any.
    pub fn try_next(&mut self) -> Option<Call> {
        self.rx.try_recv().ok()
    }

    /// (started, finished, dropped).
    pub fn counts(&self) -> (usize, usize, usize) {
        (self.counts.started.get(), self.counts.finished.get(), self.counts.dropped.get())
    }
}

/// One attempt waiting for the test to decide how it ends. Dropping it without a reply leaves
/// the worker blocked forever.
pub struct Call {
    pub job: Job,
    reply: oneshot::Sender<WorkerResult>,
}

impl Call {
    pub fn task(&self) -> Arc<str> {
        self.job.task_id.clone()
    }

    /// The attempt's worker token, encoded.
    pub fn token(&self) -> String {
        self.job.host.token()
    }

    /// Ends the attempt with `result`; says whether the worker was still there to take it.
    pub fn reply(self, result: WorkerResult) -> bool {
        self.reply.send(result).is_ok()
    }

    pub fn pass(self, value: J) -> bool {
        self.reply(Ok(Verdict::Pass(Value::from(value))))
    }

    pub fn block(self, value: J) -> bool {
        self.reply(Ok(Verdict::Blocked(Value::from(value))))
    }

    pub fn fail(self, message: &str) -> bool {
        self.reply(Err(WorkerError::new(message)))
    }
}

// ---------------------------------------------------------------------------------------------
// Reading results.

pub fn status_name(status: RunStatus) -> &'static str {
    status.name()
}

/// An event in one line: its kind and the fields that tell events of a run apart. The task is
/// shown by its number within the run (`#3`).
pub fn show(event: &Event) -> String {
    let task = |id: &str| format!("#{}", id.rsplit('.').next().unwrap_or(id));
    match &event.kind {
        EventKind::RunStarted { blueprint } => format!("run_started {blueprint}"),
        EventKind::RunFinished { status, .. } => format!("run_finished {}", status_name(*status)),
        EventKind::TaskCreated { task_id, agent, depth, parent } => {
            let parent = parent.as_deref().map(|p| format!(" parent {}", task(p))).unwrap_or_default();
            format!("task_created {} {agent} depth {depth}{parent}", task(task_id))
        }
        EventKind::AttemptStarted { task_id, agent, attempt } => {
            format!("attempt_started {} {agent} {attempt}", task(task_id))
        }
        EventKind::AttemptFinished { task_id, agent, attempt, status, .. } => {
            format!("attempt_finished {} {agent} {attempt} {}", task(task_id), status.name())
        }
        EventKind::WorkerOutput { task_id, attempt, output } => {
            format!("worker_output {} {attempt} {}", task(task_id), output.to_json())
        }
        EventKind::TaskSuspended { task_id, reason } => format!("task_suspended {} {reason}", task(task_id)),
        EventKind::TaskResumed { task_id } => format!("task_resumed {}", task(task_id)),
        EventKind::TaskCancelled { task_id } => format!("task_cancelled {}", task(task_id)),
        EventKind::LayerNote { task_id, layer, .. } => format!("layer_note {} {layer}", task(task_id)),
        EventKind::RunWaiting { signals } => format!("run_waiting {}", signals.join(",")),
        EventKind::RunSignalled { signal, waits, .. } => format!("run_signalled {signal} {waits}"),
    }
}

/// Waits on a run's tap for the first event whose [`show`] starts with `prefix`.
pub async fn until(tap: &mut mpsc::UnboundedReceiver<Event>, prefix: &str) -> Event {
    loop {
        let event = tap.recv().await.unwrap_or_else(|| panic!("the tap closed before `{prefix}`"));
        if show(&event).starts_with(prefix) {
            return event;
        }
    }
}
