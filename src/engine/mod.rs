//! The engine (docs/engine.md): runs, tasks and attempts behind the role × verb gate.
//!
//! Everything lives on the host thread (a `LocalSet`), so state is a `RefCell` borrowed in
//! short, synchronous sections: no borrow is ever held across an `.await` or a call into a
//! worker, which is what makes "locks" here unable to deadlock or panic on contention.
//! Finished tasks leave the live table at once (a bounded ring keeps the recent ones for
//! `read_task_state`), and a worker token's record is forgotten when its attempt ends, so
//! memory does not grow with the number of finished steps.

mod attempt;
pub mod compiled;
mod dispatch;
mod error;
pub mod event;
pub mod journal;
mod ops;
pub mod outputs;
mod run;
pub mod spawner;
pub mod task;
pub mod wait;
pub mod work;

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

use crate::gate::Gate;
use crate::gate::registry::TokenRegistry;
use crate::gate::token::SigningKey;
use journal::Journal;
use outputs::{MemoryOutputStore, OutputStore};

pub use error::EngineError;
pub use event::{AttemptStatus, Event, EventBus, EventKind, RunStatus};
pub use ops::{Auth, Prompt};
pub use run::{Resume, RunHandle, RunOptions, RunOutcome};
pub use task::{HandedOutcome, Task, TaskSnapshot, TaskState};
pub use wait::{PendingWait, WaitKey, WaitReplay, WaitSite};
pub use work::{Claim, Claimed};

/// How an engine is set up.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// The HMAC secret; else `SWARM_TOKEN_SECRET`; else random per process.
    pub token_secret: Option<String>,
    /// A sub-task deeper than this is refused (`depth_exceeded`).
    pub max_spawn_depth: u32,
    /// How long a worker token lives; `None` lets it live until its attempt ends, when it is
    /// forgotten anyway (a fixed TTL shorter than a long step is a bug the peer had).
    pub worker_token_ttl_ms: Option<u64>,
    /// Events kept for `read_trace`.
    pub trace_capacity: usize,
    /// How far a live subscriber may lag before it misses events.
    pub event_capacity: usize,
    /// Finished tasks kept for `read_task_state`.
    pub recent_tasks: usize,
    /// Which role may call which verb; the default is the documented table.
    pub gate: Gate,
    /// A step output whose JSON is longer than this goes to the output store, and the ctx gets
    /// `{ref = "out-…", size = N}` instead; 0 keeps every output in the ctx.
    pub offload_bytes: usize,
    /// Where runs, steps and events are journaled; `None` journals nothing.
    pub journal: Option<JournalRef>,
}

/// The engine's journal: fed every event, told of runs starting and ending and of every
/// settled step (see [`crate::store::journal`]).
#[derive(Clone)]
pub struct JournalRef(pub Rc<dyn Journal>);

impl std::fmt::Debug for JournalRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JournalRef(..)")
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            token_secret: None,
            max_spawn_depth: 8,
            worker_token_ttl_ms: None,
            trace_capacity: 4096,
            event_capacity: 4096,
            recent_tasks: 1024,
            gate: Gate::default(),
            offload_bytes: 64 * 1024,
            journal: None,
        }
    }
}

/// A long-lived engine; cloning it is cheap and shares everything.
#[derive(Clone)]
pub struct Engine {
    inner: Rc<Inner>,
}

struct Inner {
    state: RefCell<State>,
    bus: EventBus,
    /// `true` while a senior has paused new dispatches.
    paused: watch::Sender<bool>,
    config: EngineConfig,
    outputs: Rc<dyn OutputStore>,
    /// Whether a task looks in the journal for signals other processes sent (see `wait`).
    polling: Cell<bool>,
    /// Where this process's API listens for its children (`unix:PATH`), if it does: handed to
    /// subprocess agents as `SWARM_API`.
    api: RefCell<Option<Arc<str>>>,
}

struct State {
    tokens: TokenRegistry,
    tasks: HashMap<Arc<str>, Task>,
    recent: VecDeque<TaskSnapshot>,
    runs: HashMap<Arc<str>, Rc<run::Run>>,
    queries: HashMap<u64, ops::Query>,
    sessions: HashMap<Arc<str>, ops::Session>,
    next_query: u64,
    next_session: u64,
    work: work::WorkBoard,
}

impl Engine {
    /// An engine whose large outputs are kept in memory.
    pub fn new(config: EngineConfig) -> Result<Engine, EngineError> {
        Engine::with_output_store(config, Rc::new(MemoryOutputStore::new()))
    }

    /// An engine whose large outputs go to `outputs`.
    pub fn with_output_store(config: EngineConfig, outputs: Rc<dyn OutputStore>) -> Result<Engine, EngineError> {
        let key = SigningKey::from_config(config.token_secret.as_deref()).map_err(EngineError::Key)?;
        let tokens = TokenRegistry::new(key, config.gate);
        let state = State {
            tokens,
            tasks: HashMap::new(),
            recent: VecDeque::new(),
            runs: HashMap::new(),
            queries: HashMap::new(),
            sessions: HashMap::new(),
            next_query: 1,
            next_session: 1,
            work: work::WorkBoard::default(),
        };
        let bus = EventBus::new(config.event_capacity, config.trace_capacity);
        let (paused, _) = watch::channel(false);
        let polling = Cell::new(false);
        let api = RefCell::new(None);
        Ok(Engine { inner: Rc::new(Inner { state: RefCell::new(state), bus, paused, config, outputs, polling, api }) })
    }

    /// Sets where the host's API listens for the children of this engine's attempts
    /// (`unix:PATH`), or that it does not; see [`Engine::api`].
    pub fn set_api(&self, address: Option<Arc<str>>) {
        *self.inner.api.borrow_mut() = address;
    }

    /// Where the host's API listens for children, handed to subprocess agents as `SWARM_API`.
    pub fn api(&self) -> Option<Arc<str>> {
        self.inner.api.borrow().clone()
    }

    /// The configuration the engine was built with.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// Where large outputs are kept.
    pub fn outputs(&self) -> &Rc<dyn OutputStore> {
        &self.inner.outputs
    }

    /// The task, live or recently finished.
    pub fn task_snapshot(&self, task_id: &str) -> Option<TaskSnapshot> {
        let state = self.inner.state.borrow();
        match state.tasks.get(task_id) {
            Some(task) => Some(task.snapshot()),
            None => state.recent.iter().rev().find(|t| &*t.id == task_id).cloned(),
        }
    }

    /// How many tasks are live (not yet settled).
    pub fn live_tasks(&self) -> usize {
        self.inner.state.borrow().tasks.len()
    }

    /// How many token records the engine holds.
    pub fn token_records(&self) -> usize {
        self.inner.state.borrow().tokens.len()
    }

    /// The trace without a token: for the host itself (the CLI, tests). Scripts go through
    /// `read_trace`, which needs an observer token.
    pub fn trace(&self, run_id: Option<&str>) -> Vec<Event> {
        self.inner.bus.trace(run_id)
    }

    fn publish(&self, mut event: Event) {
        // Whatever a worker wrote reaches events through here: no token goes further.
        event.scrub_tokens();
        if let Some(journal) = &self.inner.config.journal {
            journal.0.event(&event);
        }
        self.inner.bus.publish(event);
    }

    /// Moves a settled task from the live table to the bounded ring of recent ones.
    fn retire(&self, state: &mut State, task_id: &str) {
        if let Some(task) = state.tasks.remove(task_id) {
            for token in &task.minted {
                state.tokens.forget_held(token);
            }
            if state.recent.len() >= self.inner.config.recent_tasks.max(1) {
                state.recent.pop_front();
            }
            state.recent.push_back(task.snapshot());
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}
