//! The observer's verbs: the event stream and the trace. `read_task_state`, which observers
//! share with operators and workers, is in `operator.rs`.

use tokio::sync::{broadcast, mpsc};

use super::Auth;
use crate::engine::event::Event;
use crate::engine::{Engine, EngineError, now_ms};
use crate::gate::registry::{Grant, VerifyContext};
use crate::gate::{Role, Verb};

impl Engine {
    /// `subscribe_events`: every event from now on.
    pub fn subscribe_events(&self, auth: Auth<'_>) -> Result<broadcast::Receiver<Event>, EngineError> {
        let mut state = self.inner.state.borrow_mut();
        self.check(&mut state, auth, Verb::SubscribeEvents, VerifyContext { task: None, max_depth: None })?;
        Ok(self.inner.bus.subscribe())
    }

    /// `subscribe_events` for one run: every event of `run_id` through its `run_finished`,
    /// none lost however fast the run goes.
    pub fn subscribe_run(&self, auth: Auth<'_>, run_id: &str) -> Result<mpsc::UnboundedReceiver<Event>, EngineError> {
        let mut state = self.inner.state.borrow_mut();
        self.check(&mut state, auth, Verb::SubscribeEvents, VerifyContext { task: None, max_depth: None })?;
        let run = Self::run_of(&state, run_id)?;
        Ok(self.inner.bus.tap(run.id.clone()))
    }

    /// `read_trace`: the recent events, of one run or all.
    pub fn read_trace(&self, auth: Auth<'_>, run_id: Option<&str>) -> Result<Vec<Event>, EngineError> {
        let mut state = self.inner.state.borrow_mut();
        self.check(&mut state, auth, Verb::ReadTrace, VerifyContext { task: None, max_depth: None })?;
        Ok(self.inner.bus.trace(run_id))
    }

    /// Every event of run `run_id`, for the host itself (the CLI's progress lines, a script's
    /// `on_event`): it subscribes with a one-use observer token, so the gate still decides.
    pub fn follow_run(&self, run_id: &str) -> Result<mpsc::UnboundedReceiver<Event>, EngineError> {
        let grant = Grant {
            role: Role::Observer,
            agent_id: "host".into(),
            scopes: Vec::new(),
            ttl_ms: None,
            max_uses: Some(1),
            task: None,
            depth: 0,
        };
        let observer = self.mint_held(grant, now_ms());
        let events = self.subscribe_run(Auth::Held(&observer), run_id);
        self.forget_held(&observer);
        events
    }

    /// Every event from now on, for the host itself (the API's operator seats, which look
    /// again at the open questions when something happens): as [`Engine::follow_run`], through
    /// a one-use observer token.
    pub fn follow_all(&self) -> Result<broadcast::Receiver<Event>, EngineError> {
        let grant = Grant::new(Role::Observer, "host").with_max_uses(1);
        let observer = self.mint_held(grant, now_ms());
        let events = self.subscribe_events(Auth::Held(&observer));
        self.forget_held(&observer);
        events
    }
}
