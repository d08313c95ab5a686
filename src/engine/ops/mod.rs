//! The engine's operations: one per verb of the gate table (docs/engine.md), each checking its
//! verb against the caller's token before it does anything. They are filed by the role that
//! calls them (see `Gate::default`):
//!
//! - [`operator`]: starting, dispatching, cancelling and settling tasks, queries to the seniors,
//!   operator sessions. A worker shares the task verbs (it may run a swarm of its own).
//! - [`worker`]: what a worker asks of the engine during its attempt, and its sub-dispatches.
//! - [`observer`]: events and traces.
//! - [`senior`]: answering queries, overriding verdicts, pausing the loop, directives.
//!
//! This file holds what they share: the credential, the token checks, and the host-level
//! operations that need no token because the host itself is the authority.
//!
//! A worker token is bound to the task its attempt runs; it may act on that task and on the
//! sub-tasks that task started (their parent), nothing else.

mod observer;
mod operator;
mod senior;
mod worker;

use std::rc::Rc;
use std::sync::Arc;

use super::run::Run;
use super::task::{HandedOutcome, Task};
use super::{Engine, EngineError, State, now_ms};
use crate::gate::registry::{Caller, Grant, HeldToken, Verified, VerifyContext};
use crate::gate::token::CapToken;
use crate::gate::{Role, TokenError, Verb};

pub(crate) use operator::{Query, Session};
pub use worker::Prompt;

/// The credential an operation is called with: a token the engine holds (the hot path) or
/// one presented as text from outside.
#[derive(Clone, Copy)]
pub enum Auth<'a> {
    /// A token the engine minted and holds, checked without decoding.
    Held(&'a HeldToken),
    /// A token as text, decoded and verified.
    Encoded(&'a str),
}

impl Engine {
    pub(super) fn check(
        &self,
        state: &mut State,
        auth: Auth<'_>,
        verb: Verb,
        ctx: VerifyContext<'_>,
    ) -> Result<Caller, EngineError> {
        let now = now_ms();
        let caller = match auth {
            Auth::Held(token) => state.tokens.verify_held(token, verb, ctx, now),
            Auth::Encoded(text) => state.tokens.verify(text, verb, ctx, now).map(Caller::from),
        };
        match caller {
            Ok(caller) => {
                // Any call of a remote worker's attempt renews the attempt's lease.
                if let Some(task) = &caller.task {
                    state.work.renew(task);
                }
                Ok(caller)
            }
            // The token of a remote attempt that has ended: what the caller wants to act on
            // is settled, which says more than that the token is unknown.
            Err(TokenError::UnknownToken) => {
                let ended = match auth {
                    Auth::Encoded(text) => CapToken::decode(text).ok().and_then(|t| state.work.ended(&t).cloned()),
                    Auth::Held(_) => None,
                };
                Err(match ended {
                    Some((task, attempt)) => EngineError::AttemptEnded { task: task.to_string(), attempt },
                    None => EngineError::Token(TokenError::UnknownToken),
                })
            }
            Err(e) => Err(EngineError::Token(e)),
        }
    }

    /// Checks `verb` and that a worker token is bound to `task` or to its parent.
    fn check_on_task(
        &self,
        state: &mut State,
        auth: Auth<'_>,
        verb: Verb,
        task_id: &str,
    ) -> Result<Caller, EngineError> {
        let verified = self.check(state, auth, verb, VerifyContext { task: None, max_depth: None })?;
        if verified.role == Role::Worker
            && let Some(bound) = verified.task.as_deref()
        {
            let parent = Self::known_task(state, task_id).and_then(|(_, parent)| parent);
            if bound != task_id && parent.as_deref() != Some(bound) {
                return Err(EngineError::Token(TokenError::TaskMismatch));
            }
        }
        Ok(verified)
    }

    /// The run and the parent of a task, live or recently finished.
    fn known_task(state: &State, task_id: &str) -> Option<(Arc<str>, Option<Arc<str>>)> {
        match state.tasks.get(task_id) {
            Some(t) => Some((t.run_id.clone(), t.parent.clone())),
            None => state.recent.iter().rev().find(|t| &*t.id == task_id).map(|t| (t.run_id.clone(), t.parent.clone())),
        }
    }

    fn live_task<'s>(state: &'s mut State, task_id: &str) -> Result<&'s mut Task, EngineError> {
        state.tasks.get_mut(task_id).ok_or_else(|| EngineError::NoSuchTask(task_id.to_string()))
    }

    /// Why a task that is not live cannot be acted on: `Settled` if it finished (it is in the
    /// recent ring), else unknown. Verbs that change a task say so rather than "no such task",
    /// which would suggest a wrong id.
    fn not_live(state: &State, task_id: &str) -> EngineError {
        if state.recent.iter().any(|t| &*t.id == task_id) {
            EngineError::Settled(task_id.to_string())
        } else {
            EngineError::NoSuchTask(task_id.to_string())
        }
    }

    fn run_of(state: &State, run_id: &str) -> Result<Rc<Run>, EngineError> {
        state.runs.get(run_id).cloned().ok_or_else(|| EngineError::NoSuchRun(run_id.to_string()))
    }

    /// Hands `outcome` to the task's attempt in flight, which settles with it (`mark_pass`,
    /// `mark_blocked`, `override_verdict`, `post_result`: the verbs of three roles end here).
    fn hand_over(&self, auth: Auth<'_>, verb: Verb, task_id: &str, outcome: HandedOutcome) -> Result<(), EngineError> {
        let mut state = self.inner.state.borrow_mut();
        self.check_on_task(&mut state, auth, verb, task_id)?;
        if !state.tasks.contains_key(task_id) {
            return Err(Self::not_live(&state, task_id));
        }
        let task = Self::live_task(&mut state, task_id)?;
        // A cancelled task's attempt may still be unwinding; a verdict now would be dropped
        // without a word, so the caller is told the task is settled.
        if task.state.is_terminal() {
            return Err(EngineError::Settled(task_id.to_string()));
        }
        if task.running.is_none() {
            return Err(EngineError::NotRunning {
                task: task_id.to_string(),
                state: task.state.name(),
                op: verb.name(),
            });
        }
        task.handed = Some(outcome);
        let run_id = task.run_id.clone();
        let run = Self::run_of(&state, &run_id)?;
        drop(state);
        run.poke();
        Ok(())
    }

    // Host-level operations: the host itself is the authority, so no token is asked for.

    /// Mints a token for `grant`, to hand out.
    pub fn mint(&self, grant: Grant, now_ms: u64) -> CapToken {
        self.inner.state.borrow_mut().tokens.mint(grant, now_ms)
    }

    /// Mints a token the host keeps in memory and presents with [`Auth::Held`].
    pub fn mint_held(&self, grant: Grant, now_ms: u64) -> HeldToken {
        self.inner.state.borrow_mut().tokens.mint_held(grant, now_ms)
    }

    /// Drops a held token's record once the host is done with it.
    pub fn forget_held(&self, token: &HeldToken) {
        self.inner.state.borrow_mut().tokens.forget_held(token);
    }

    /// Verifies a presented token for `verb` (and, for worker tokens, task `task`).
    pub fn verify(&self, token: &str, verb: Verb, task: Option<&str>) -> Result<Verified, EngineError> {
        let mut state = self.inner.state.borrow_mut();
        let ctx = VerifyContext { task, max_depth: None };
        state.tokens.verify(token, verb, ctx, now_ms()).map_err(EngineError::Token)
    }

    /// Takes tokens minted by another process with this engine's key from `ledger`
    /// (`swarm token mint` records them in the journal).
    pub fn set_token_ledger(&self, ledger: Option<Box<dyn crate::gate::registry::TokenLedger>>) {
        self.inner.state.borrow_mut().tokens.set_ledger(ledger);
    }

    /// Revokes a token; later uses fail with `revoked`.
    pub fn revoke(&self, token: &str) -> Result<(), EngineError> {
        self.inner.state.borrow_mut().tokens.revoke(token).map_err(EngineError::Token)
    }
}
