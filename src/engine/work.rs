//! The work board: attempts of `remote` agents offered to workers outside the process
//! (docs/api.md, "Remote workers").
//!
//! An attempt is offered on its agent's queue. A worker's claim takes the oldest offer of the
//! queues it names, or waits for one (a long-poll): an offer made while claims wait goes straight
//! to the claim that has waited longest for its queue. A claimed attempt holds a lease; any call
//! the worker makes with the attempt's token renews it, and an attempt whose lease runs out
//! fails with kind `timeout` ("lease expired"), so the step's retry policy applies. The attempt
//! ends as any other: with the result the worker posts (`post_result`), or cancelled, or timed
//! out by its step; its offer is then withdrawn, and the board remembers the attempt's token for
//! a while, so a late or second result is told the attempt is settled (409) rather than that the
//! token is unknown.
//!
//! Everything here happens on the host thread, in one borrow of the engine state.

use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::LocalBoxFuture;
use serde::Serialize;
use tokio::sync::{Notify, oneshot};

use super::ops::Auth;
use super::spawner::{Job, WorkerError, WorkerResult};
use super::{Engine, EngineError};
use crate::gate::Verb;
use crate::gate::registry::{VerifyContext, ledger_key};
use crate::gate::token::CapToken;
use crate::value::Value;

/// How many ended attempts' tokens the board remembers, to answer their late calls with 409.
const ENDED_KEPT: usize = 4096;

/// What a worker gets when it claims an attempt.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Claim {
    /// The task the attempt belongs to.
    pub task_id: Arc<str>,
    /// The attempt's number, from 1.
    pub attempt: u32,
    /// The agent the attempt is routed to.
    pub agent: Arc<str>,
    /// The step's input, as the middleware layers left it.
    pub input: Value,
    /// The agent's profile `system_prompt`, if it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// The output refs `input_inject` handed the attempt (`runtime.input_refs`), else `[]`.
    pub input_refs: Value,
    /// The attempt's worker token: every task route of the attempt takes it.
    pub token: String,
    /// How long the lease lasts after each call of the attempt.
    pub lease_ms: u64,
}

/// An attempt on the board.
struct Offer {
    queue: Arc<str>,
    claim: Claim,
    /// The ledger key of the attempt's token, to know the token after the attempt has ended.
    token_key: String,
    /// When the lease runs out; `None` while nobody holds the attempt.
    lease: Cell<Option<Instant>>,
    /// Told when a worker claims the attempt.
    claimed: Notify,
    /// `false` once the attempt has ended: a claim handed this offer must not take it.
    live: Cell<bool>,
}

impl Offer {
    fn lease_for(&self) -> Duration {
        Duration::from_millis(self.claim.lease_ms)
    }
}

/// A claim waiting for an offer.
struct Waiter {
    queues: Vec<Arc<str>>,
    hand: oneshot::Sender<Rc<Offer>>,
}

/// The offered, claimed and recently ended attempts of `remote` agents.
#[derive(Default)]
pub(crate) struct WorkBoard {
    /// Offers nobody holds, oldest first, by queue.
    queued: HashMap<Arc<str>, VecDeque<Rc<Offer>>>,
    /// Claims waiting for an offer, longest waiting first.
    waiters: VecDeque<Waiter>,
    /// Claimed attempts, by task.
    leased: HashMap<Arc<str>, Rc<Offer>>,
    /// The tokens of attempts that ended after a worker claimed them: key → (task, attempt).
    ended: HashMap<String, (Arc<str>, u32)>,
    ended_order: VecDeque<String>,
}

impl WorkBoard {
    /// Puts `offer` where a claim gets it: to the longest-waiting claim for its queue, else at
    /// the back of the queue (the front when it comes back from a claim that never reached its
    /// worker).
    fn place(&mut self, offer: Rc<Offer>, front: bool) {
        let mut offer = offer;
        while let Some(at) = self.waiters.iter().position(|w| w.queues.contains(&offer.queue)) {
            let waiter = self.waiters.remove(at).expect("found above");
            match waiter.hand.send(offer) {
                Ok(()) => return,
                // That claim gave up waiting; the next one may still be there.
                Err(back) => offer = back,
            }
        }
        let queue = self.queued.entry(offer.queue.clone()).or_default();
        if front { queue.push_front(offer) } else { queue.push_back(offer) }
    }

    /// The oldest offer of the first of `queues` that has one.
    fn take(&mut self, queues: &[Arc<str>]) -> Option<Rc<Offer>> {
        queues.iter().find_map(|q| self.queued.get_mut(q).and_then(VecDeque::pop_front))
    }

    /// Waits for the next offer on any of `queues`.
    fn wait(&mut self, queues: Vec<Arc<str>>) -> oneshot::Receiver<Rc<Offer>> {
        // Claims that gave up are dropped here, so the list stays as long as the claims waiting.
        self.waiters.retain(|w| !w.hand.is_closed());
        let (hand, offered) = oneshot::channel();
        self.waiters.push_back(Waiter { queues, hand });
        offered
    }

    fn lease(&mut self, offer: &Rc<Offer>) {
        offer.lease.set(Some(Instant::now() + offer.lease_for()));
        self.leased.insert(offer.claim.task_id.clone(), offer.clone());
        offer.claimed.notify_one();
    }

    /// The worker of task `task_id`'s attempt called: its lease starts again.
    pub(crate) fn renew(&mut self, task_id: &str) {
        // Every check of a bound token comes here; with no remote attempt claimed (the usual
        // case in process) that costs nothing.
        if self.leased.is_empty() {
            return;
        }
        if let Some(offer) = self.leased.get(task_id) {
            offer.lease.set(Some(Instant::now() + offer.lease_for()));
        }
    }

    /// The attempt has ended: its offer leaves the board.
    fn withdraw(&mut self, offer: &Rc<Offer>) {
        offer.live.set(false);
        if let Some(queue) = self.queued.get_mut(&offer.queue) {
            queue.retain(|o| !Rc::ptr_eq(o, offer));
            if queue.is_empty() {
                self.queued.remove(&offer.queue);
            }
        }
        let held = self.leased.get(&offer.claim.task_id).is_some_and(|o| Rc::ptr_eq(o, offer));
        if held {
            self.leased.remove(&offer.claim.task_id);
        }
        if held || offer.lease.get().is_some() {
            if self.ended_order.len() >= ENDED_KEPT
                && let Some(oldest) = self.ended_order.pop_front()
            {
                self.ended.remove(&oldest);
            }
            self.ended.insert(offer.token_key.clone(), (offer.claim.task_id.clone(), offer.claim.attempt));
            self.ended_order.push_back(offer.token_key.clone());
        }
    }

    /// The task and attempt of an ended, claimed attempt whose token is `token`.
    pub(crate) fn ended(&self, token: &CapToken) -> Option<&(Arc<str>, u32)> {
        if self.ended.is_empty() {
            return None;
        }
        self.ended.get(&ledger_key(token))
    }

    /// How many attempts are offered and not claimed, and how many are claimed.
    fn counts(&self) -> (usize, usize) {
        (self.queued.values().map(VecDeque::len).sum(), self.leased.len())
    }
}

/// A claimed attempt, as the claim that took it holds it until its worker has it.
pub struct Claimed {
    /// What the worker gets.
    pub claim: Claim,
    offer: Rc<Offer>,
}

/// Withdraws an attempt's offer when the attempt's future goes (it settled, was cancelled or
/// timed out).
struct Withdraw {
    engine: Engine,
    offer: Rc<Offer>,
}

impl Drop for Withdraw {
    fn drop(&mut self) {
        match self.engine.inner.state.try_borrow_mut() {
            Ok(mut state) => state.work.withdraw(&self.offer),
            Err(_) => {
                tracing::warn!(task = %self.offer.claim.task_id, "offer withdrawn while the engine state was busy")
            }
        }
    }
}

impl Engine {
    /// Offers `job` to remote workers on `queue`; the future ends only when the lease of the
    /// worker that claimed it runs out (the worker's result reaches the attempt as an outcome
    /// handed over, like `post_result`). Dropping the future withdraws the offer.
    pub(crate) fn offer_work(
        &self,
        job: &Job,
        system: Option<String>,
        queue: &str,
        lease_ms: u64,
    ) -> LocalBoxFuture<'static, WorkerResult> {
        let token = job.host.token();
        let token_key = CapToken::decode(&token).map(|t| ledger_key(&t)).unwrap_or_default();
        let input_refs = match job.runtime.get("input_refs") {
            Some(refs @ Value::Array(_)) => refs.clone(),
            _ => Value::Array(Vec::new().into()),
        };
        let claim = Claim {
            task_id: job.task_id.clone(),
            attempt: job.attempt,
            agent: job.agent.clone(),
            input: job.input.clone(),
            system,
            input_refs,
            token,
            lease_ms,
        };
        let offer = Rc::new(Offer {
            queue: queue.into(),
            claim,
            token_key,
            lease: Cell::new(None),
            claimed: Notify::new(),
            live: Cell::new(true),
        });
        self.inner.state.borrow_mut().work.place(offer.clone(), false);
        let guard = Withdraw { engine: self.clone(), offer };
        Box::pin(async move {
            let offer = guard.offer.clone();
            let _guard = guard;
            loop {
                match offer.lease.get() {
                    None => offer.claimed.notified().await,
                    Some(deadline) if Instant::now() >= deadline => {
                        return Err(WorkerError::timed_out(format!(
                            "agent '{}': lease expired (the remote worker that claimed attempt {} made no call for {} ms)",
                            offer.claim.agent, offer.claim.attempt, offer.claim.lease_ms
                        )));
                    }
                    Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
                }
            }
        })
    }

    /// `poll_task` for remote workers: claims the oldest attempt offered on `queues`, waiting up
    /// to `wait` for one to be offered; `None` if none was. The claim's lease starts now.
    pub async fn claim_work(
        &self,
        auth: Auth<'_>,
        queues: &[String],
        wait: Duration,
    ) -> Result<Option<Claimed>, EngineError> {
        let queues: Vec<Arc<str>> = queues.iter().map(|q| Arc::from(q.as_str())).collect();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let offered = {
                let mut state = self.inner.state.borrow_mut();
                self.check(&mut state, auth, Verb::PollTask, VerifyContext { task: None, max_depth: None })?;
                if let Some(offer) = state.work.take(&queues) {
                    state.work.lease(&offer);
                    return Ok(Some(Claimed { claim: offer.claim.clone(), offer }));
                }
                if tokio::time::Instant::now() >= deadline {
                    return Ok(None);
                }
                state.work.wait(queues.clone())
            };
            match tokio::time::timeout_at(deadline, offered).await {
                Ok(Ok(offer)) if offer.live.get() && offer.lease.get().is_none() => {
                    self.inner.state.borrow_mut().work.lease(&offer);
                    return Ok(Some(Claimed { claim: offer.claim.clone(), offer }));
                }
                // The attempt ended on its way here: wait on for the next.
                Ok(Ok(_)) => {}
                Ok(Err(_)) | Err(_) => return Ok(None),
            }
        }
    }

    /// A claim whose worker never got it (its request went away): the attempt is offered
    /// again, first in its queue.
    pub fn unclaim(&self, claimed: Claimed) {
        let offer = claimed.offer;
        if !offer.live.get() {
            return;
        }
        let mut state = self.inner.state.borrow_mut();
        offer.lease.set(None);
        state.work.leased.remove(&offer.claim.task_id);
        state.work.place(offer, true);
    }

    /// How many attempts of remote agents are offered and not claimed, and how many are claimed.
    pub fn work_counts(&self) -> (usize, usize) {
        self.inner.state.borrow().work.counts()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(queue: &str, task: &str) -> Rc<Offer> {
        Rc::new(Offer {
            queue: queue.into(),
            claim: Claim {
                task_id: task.into(),
                attempt: 1,
                agent: "a".into(),
                input: Value::Null,
                system: None,
                input_refs: Value::Null,
                token: String::new(),
                lease_ms: 1000,
            },
            token_key: format!("key-{task}"),
            lease: Cell::new(None),
            claimed: Notify::new(),
            live: Cell::new(true),
        })
    }

    #[test]
    fn offers_go_to_the_longest_waiting_claim_for_their_queue_else_to_the_queue() {
        let mut board = WorkBoard::default();
        let mut gone = board.wait(vec!["q".into()]);
        gone.close();
        let mut other = board.wait(vec!["other".into()]);
        let mut first = board.wait(vec!["x".into(), "q".into()]);
        let mut second = board.wait(vec!["q".into()]);
        board.place(offer("q", "t1"), false);
        assert_eq!(&*first.try_recv().unwrap().claim.task_id, "t1", "the closed claim was passed over");
        assert!(second.try_recv().is_err() && other.try_recv().is_err());
        board.place(offer("q", "t2"), false);
        assert_eq!(&*second.try_recv().unwrap().claim.task_id, "t2");
        board.place(offer("q", "t3"), false);
        board.place(offer("q", "t4"), true);
        let order: Vec<_> = std::iter::from_fn(|| board.take(&["q".into()])).map(|o| o.claim.task_id.clone()).collect();
        assert_eq!(order, [Arc::from("t4"), Arc::from("t3")]);
    }

    #[test]
    fn a_withdrawn_claimed_offer_leaves_its_token_behind_and_the_oldest_are_forgotten() {
        let mut board = WorkBoard::default();
        let unclaimed = offer("q", "never");
        board.place(unclaimed.clone(), false);
        board.withdraw(&unclaimed);
        assert!(board.take(&["q".into()]).is_none() && board.ended.is_empty(), "nobody held it");
        for n in 0..ENDED_KEPT + 1 {
            let o = offer("q", &format!("t{n}"));
            board.place(o.clone(), false);
            let taken = board.take(&["q".into()]).unwrap();
            board.lease(&taken);
            board.withdraw(&o);
            assert!(!o.live.get());
        }
        assert_eq!(board.ended.len(), ENDED_KEPT);
        assert!(!board.ended.contains_key("key-t0") && board.ended.contains_key(&format!("key-t{ENDED_KEPT}")));
        assert_eq!(board.counts(), (0, 0));
    }
}
