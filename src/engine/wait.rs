//! Durable waits (docs/engine.md, "Waits and signals"): a strand of a run (the flow itself, or
//! a fanout lane) stops at a `wait` node, or an inline agent stops in `swarm.wait`, until a
//! signal of that name is delivered to the run.
//!
//! A signal delivered to a name that waits are waiting on reaches all of them; one delivered
//! while nothing waits on its name is buffered, first in first out per name, and the next wait
//! for the name takes it. The run is `waiting` while every strand of it waits: `run_waiting`
//! then names the signals, and the host may detach the run (`swarm run --detach`, a `swarm
//! serve` that stops) and leave it to whichever process delivers the signal.
//!
//! Everything a resumed run needs is journaled: a wait and its absolute deadline when it
//! begins, every signal when it arrives, and the wait's end (the value, or the timeout) before
//! the flow moves past it. A run resumed in another process finds its ended waits' values, its
//! begun waits' deadlines (a deadline that passed meanwhile fires at once) and the signals no
//! wait has taken yet. Signals sent to the journal by another process (`swarm runs signal`) are
//! picked up by polling it while waits are open.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::oneshot;

use super::event::EventKind;
use super::journal::{SignalRecord, WaitBegun, WaitEnded};
use super::ops::Auth;
use super::run::Run;
use super::{Engine, EngineError, now_ms};
use crate::flow::{ErrorKind, FlowError};
use crate::gate::Verb;
use crate::gate::registry::VerifyContext;
use crate::value::Value;

/// How often open waits look in the journal for signals another process sent.
const JOURNAL_POLL: Duration = Duration::from_millis(50);

/// A wait's identity in the journal, the same in every process that runs the run: where it is
/// (a `wait` node's pointer, or the scope of the task whose agent waits), the signal's name,
/// and how many waits of that scope and name came before it in the run.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct WaitKey {
    /// The `wait` node's pointer, or the waiting task's scope (see [`crate::engine::Task`]).
    pub scope: Arc<str>,
    /// The signal's name.
    pub signal: Arc<str>,
    /// Earlier waits of the same scope and name in the run.
    pub occurrence: u32,
}

/// What a resumed run knows of its waits from the journal.
#[derive(Debug, Default)]
pub struct WaitReplay {
    /// Waits that ended: the value they took, or their error (a timeout).
    pub ended: HashMap<WaitKey, Result<Value, FlowError>>,
    /// Waits that began and never ended: their absolute deadline, if they have one.
    pub begun: HashMap<WaitKey, Option<u64>>,
    /// Signals delivered to the run that no wait took, oldest first.
    pub buffered: Vec<SignalRecord>,
}

/// A wait of a run in flight, for a host listing what it could answer.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PendingWait {
    /// The waiting run.
    pub run_id: Arc<str>,
    /// The signal it waits for.
    pub signal: Arc<str>,
    /// The `wait` node's pointer, for a wait in the flow.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pointer: Option<Arc<str>>,
    /// The task whose agent waits, for a wait inside an agent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_id: Option<Arc<str>>,
    /// When the wait times out, in milliseconds since the Unix epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<u64>,
    /// What an operator seat or a senior was asked, when the wait is a question.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub question: Option<Value>,
}

/// Where a wait is, and what it asks.
#[derive(Clone, Debug, Default)]
pub struct WaitSite {
    /// Its key's scope: a `wait` node's pointer, or the waiting task's scope.
    pub scope: Arc<str>,
    /// The `wait` node's pointer, for a wait in the flow.
    pub pointer: Option<Arc<str>>,
    /// The waiting task, for a wait inside an agent: it is `suspended` meanwhile.
    pub task_id: Option<Arc<str>>,
    /// The question, when the wait is one (an operator seat's, a senior's).
    pub question: Option<Value>,
}

/// A signal on its way to a run.
#[derive(Clone, Debug)]
struct Signal {
    uid: Arc<str>,
    value: Value,
}

/// An open wait.
struct Waiter {
    signal: Arc<str>,
    deadline_ms: Option<u64>,
    site: WaitSite,
    deliver: oneshot::Sender<Signal>,
}

/// A run's waits, signals and strands (see the module docs).
pub(crate) struct RunWaits {
    /// Strands of the flow running: 1 for the flow, less one for each fanout paused at its
    /// join, plus one for each lane in flight.
    strands: isize,
    waiters: HashMap<u64, Box<Waiter>>,
    by_signal: HashMap<Arc<str>, Vec<u64>>,
    buffered: HashMap<Arc<str>, VecDeque<Signal>>,
    /// The signals delivered so far, so one the journal hands over again is not taken twice.
    seen: HashSet<Arc<str>>,
    occurrences: HashMap<(Arc<str>, Arc<str>), u32>,
    replay: WaitReplay,
    next_waiter: u64,
    /// Every strand waits (see [`Engine::recheck_waiting`]).
    all_waiting: bool,
    /// The run is being detached: its waits' ends are not its status changes.
    detaching: bool,
}

impl RunWaits {
    pub(crate) fn new(mut replay: WaitReplay) -> RunWaits {
        let mut waits = RunWaits {
            strands: 1,
            waiters: HashMap::new(),
            by_signal: HashMap::new(),
            buffered: HashMap::new(),
            seen: HashSet::new(),
            occurrences: HashMap::new(),
            replay: WaitReplay::default(),
            next_waiter: 1,
            all_waiting: false,
            detaching: false,
        };
        for signal in std::mem::take(&mut replay.buffered) {
            waits.seen.insert(signal.uid.clone());
            let buffered = Signal { uid: signal.uid, value: signal.value };
            waits.buffered.entry(signal.name).or_default().push_back(buffered);
        }
        waits.replay = replay;
        waits
    }

    fn open(&self) -> usize {
        self.waiters.len()
    }

    fn remove(&mut self, id: u64) -> Option<Box<Waiter>> {
        let waiter = self.waiters.remove(&id)?;
        if let Some(ids) = self.by_signal.get_mut(&waiter.signal) {
            ids.retain(|other| *other != id);
            if ids.is_empty() {
                self.by_signal.remove(&waiter.signal);
            }
        }
        Some(waiter)
    }

    /// Whether every strand waits, as last decided.
    pub(crate) fn is_all_waiting(&self) -> bool {
        self.all_waiting
    }

    /// The signals the run waits for while every strand waits.
    pub(crate) fn waiting_for(&self) -> Option<Vec<Arc<str>>> {
        self.all_waiting.then(|| self.signals())
    }

    /// Whether the run is being detached.
    pub(crate) fn is_detaching(&self) -> bool {
        self.detaching
    }

    /// The signals the open waits wait for, sorted, each once.
    fn signals(&self) -> Vec<Arc<str>> {
        let mut names: Vec<Arc<str>> = self.by_signal.keys().cloned().collect();
        names.sort();
        names
    }
}

/// Removes a wait that is given up (its strand dropped, cancelled, detached) from its run.
struct WaiterGuard {
    run: Rc<Run>,
    id: u64,
}

impl Drop for WaiterGuard {
    fn drop(&mut self) {
        if let Ok(mut waits) = self.run.waits.try_borrow_mut() {
            waits.remove(self.id);
        }
    }
}

/// A new signal id, unlikely to repeat across processes (it names journal rows).
pub(crate) fn new_signal_uid() -> Arc<str> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    thread_local! {
        static SALT: u64 = RandomState::new().build_hasher().finish();
    }
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mixed = SALT.with(|salt| super::run::splitmix(salt.wrapping_add(n)));
    format!("s-{mixed:016x}").into()
}

impl Engine {
    /// A strand of `run` started (`+1`: a fanout lane) or stopped (`-1`: a lane ended, or the
    /// flow paused at a fanout's join).
    pub(crate) fn strands_changed(&self, run: &Run, delta: isize) {
        run.waits.borrow_mut().strands += delta;
    }

    /// Whether every strand of `run` waits now; on a change the run becomes `waiting` (or
    /// `running` again), which is journaled, and on becoming `waiting` `run_waiting` names the
    /// signals. The run's driver calls it each time the flow stops to await something: only
    /// then do the counts hold still (a lane that ends and the next that starts, a fanout that
    /// pauses and the lanes it starts, move them in steps that would look like waiting).
    pub(crate) fn recheck_waiting(&self, run: &Run) {
        let (changed, now, signals) = {
            let mut waits = run.waits.borrow_mut();
            if waits.detaching {
                return;
            }
            let open = waits.open() as isize;
            let now = open > 0 && open >= waits.strands;
            let changed = now != waits.all_waiting;
            waits.all_waiting = now;
            (changed, now, if changed && now { waits.signals() } else { Vec::new() })
        };
        if !changed {
            return;
        }
        if let Some(j) = &run.journaling {
            j.journal.run_waiting(&run.id, now);
        }
        if now {
            self.publish(run.event(EventKind::RunWaiting { signals: signals.clone() }));
        }
        if let Some(waiting) = run.waiting.get() {
            waiting.send_replace(if now { Some(signals) } else { None });
        }
    }

    /// Waits for signal `signal` at `site` of `run`, for at most `timeout_ms` from when the wait
    /// first began (in this process or an earlier one); the signal's value, or a `timeout`.
    ///
    /// Written to keep its future small (a waiting run holds one per wait): what is only needed
    /// to begin the wait is dropped before it waits.
    pub(crate) async fn wait_for_signal(
        &self,
        run: &Rc<Run>,
        site: WaitSite,
        signal: Arc<str>,
        timeout_ms: Option<u64>,
    ) -> Result<Value, FlowError> {
        let task = site.task_id.clone();
        let (key, deadline_ms, delivered, guard) =
            match Box::pin(self.begin_wait(run, site, &signal, timeout_ms)).await? {
                Begun::Ended(outcome) => return outcome,
                Begun::Taken(key, taken) => return self.end_wait(run, key, Ok(taken)).await,
                Begun::Waiting { key, deadline_ms, delivered, guard } => (key, deadline_ms, delivered, guard),
            };
        let outcome = match deadline_ms {
            Some(deadline) => {
                let left = Duration::from_millis(deadline.saturating_sub(now_ms()));
                match tokio::time::timeout(left, delivered).await {
                    Ok(delivered) => delivered.map_err(|_| given_up()),
                    Err(_) => Err(timeout_error(&signal, timeout_ms, deadline_ms)),
                }
            }
            None => delivered.await.map_err(|_| given_up()),
        };
        // A delivered signal removed the waiter already; a timeout removes it here.
        drop(guard);
        if let Some(task) = &task {
            self.resume(run, task);
        }
        self.end_wait(run, key, outcome).await
    }

    /// Begins a wait: its key, its replayed end or a buffered signal it takes at once, or an
    /// open waiter (journaled, with its deadline) to await.
    async fn begin_wait(
        &self,
        run: &Rc<Run>,
        site: WaitSite,
        signal: &Arc<str>,
        timeout_ms: Option<u64>,
    ) -> Result<Begun, FlowError> {
        let key = {
            let mut waits = run.waits.borrow_mut();
            let n = waits.occurrences.entry((site.scope.clone(), signal.clone())).or_insert(0);
            *n += 1;
            WaitKey { scope: site.scope.clone(), signal: signal.clone(), occurrence: *n - 1 }
        };
        // A wait that ended before the run was resumed ends the same way again.
        let ended = run.waits.borrow_mut().replay.ended.remove(&key);
        if let Some(outcome) = ended {
            return Ok(Begun::Ended(outcome));
        }
        let begun = run.waits.borrow_mut().replay.begun.remove(&key);
        let deadline_ms = match begun {
            Some(deadline) => deadline,
            None => {
                let deadline = timeout_ms.map(|ms| now_ms().saturating_add(ms));
                self.journal_wait_began(run, &key, &site, deadline).await?;
                deadline
            }
        };
        let taken = {
            let mut waits = run.waits.borrow_mut();
            let next = waits.buffered.get_mut(signal).and_then(VecDeque::pop_front);
            if waits.buffered.get(signal).is_some_and(VecDeque::is_empty) {
                waits.buffered.remove(signal);
            }
            next
        };
        if let Some(taken) = taken {
            return Ok(Begun::Taken(key, taken));
        }
        if deadline_ms.is_some_and(|d| d <= now_ms()) {
            return Ok(Begun::Ended(
                self.end_wait(run, key, Err(timeout_error(signal, timeout_ms, deadline_ms))).await,
            ));
        }
        let (deliver, delivered) = oneshot::channel();
        let task = site.task_id.clone();
        let id = {
            let mut waits = run.waits.borrow_mut();
            let id = waits.next_waiter;
            waits.next_waiter += 1;
            waits.waiters.insert(id, Box::new(Waiter { signal: signal.clone(), deadline_ms, site, deliver }));
            waits.by_signal.entry(signal.clone()).or_insert_with(|| Vec::with_capacity(1)).push(id);
            id
        };
        let guard = WaiterGuard { run: run.clone(), id };
        if let Some(task) = &task {
            self.suspend(run, task, &format!("waiting for signal '{signal}'"));
        }
        self.poll_journal_while_waiting();
        Ok(Begun::Waiting { key, deadline_ms, delivered, guard })
    }

    async fn journal_wait_began(
        &self,
        run: &Run,
        key: &WaitKey,
        site: &WaitSite,
        deadline_ms: Option<u64>,
    ) -> Result<(), FlowError> {
        let Some(j) = &run.journaling else { return Ok(()) };
        let ack = j.journal.wait_began(&WaitBegun {
            run_id: run.id.clone(),
            key: key.clone(),
            pointer: site.pointer.clone(),
            task_id: site.task_id.clone(),
            question: site.question.clone(),
            deadline_ms,
        });
        ack.wait().await.map_err(journal_error)
    }

    /// Journals how a wait ended (durable before the flow moves on) and hands back its value.
    async fn end_wait(&self, run: &Run, key: WaitKey, outcome: Result<Signal, FlowError>) -> Result<Value, FlowError> {
        if let Some(j) = &run.journaling {
            let (signal_uid, result) = match &outcome {
                Ok(signal) => (Some(signal.uid.clone()), Ok(signal.value.clone())),
                Err(e) => (None, Err(e.clone())),
            };
            let ack = j.journal.wait_ended(&WaitEnded { run_id: run.id.clone(), key, outcome: result, signal_uid });
            ack.wait().await.map_err(journal_error)?;
        }
        outcome.map(|signal| signal.value)
    }

    /// `answer_query` for a run: delivers signal `name` with `value` to run `run_id` in flight
    /// on this engine; how many waits it reached (0: it is buffered for the next wait).
    pub fn signal_run(&self, auth: Auth<'_>, run_id: &str, name: &str, value: Value) -> Result<usize, EngineError> {
        let run = {
            let mut state = self.inner.state.borrow_mut();
            self.check(&mut state, auth, Verb::AnswerQuery, VerifyContext { task: None, max_depth: None })?;
            state.runs.get(run_id).cloned().ok_or_else(|| EngineError::NotWaiting(run_id.to_string()))?
        };
        if name.is_empty() {
            return Err(EngineError::BadSignal("a signal needs a name".into()));
        }
        let signal = Signal { uid: new_signal_uid(), value };
        Ok(self.deliver(&run, name.into(), signal, false))
    }

    /// Delivers a signal from inside `run` itself (a console operator's answer): no token, the
    /// run is the authority over its own waits.
    pub(crate) fn signal_own_run(&self, run: &Rc<Run>, name: &str, value: Value) {
        self.deliver(run, name.into(), Signal { uid: new_signal_uid(), value }, false);
    }

    /// Hands `signal` to the waits of `run` waiting on `name`, or buffers it; journals it
    /// (`from_journal`: it is in the journal already, sent by another process).
    fn deliver(&self, run: &Rc<Run>, name: Arc<str>, signal: Signal, from_journal: bool) -> usize {
        let waiters = {
            let mut waits = run.waits.borrow_mut();
            if !waits.seen.insert(signal.uid.clone()) {
                return 0;
            }
            let ids = waits.by_signal.remove(&name).unwrap_or_default();
            let waiters: Vec<Box<Waiter>> = ids.into_iter().filter_map(|id| waits.waiters.remove(&id)).collect();
            if waiters.is_empty() {
                waits.buffered.entry(name.clone()).or_default().push_back(signal.clone());
            }
            waiters
        };
        let reached = waiters.len();
        if let Some(j) = &run.journaling {
            let record = SignalRecord {
                run_id: run.id.clone(),
                uid: signal.uid.clone(),
                name: name.clone(),
                value: signal.value.clone(),
                sent_ms: now_ms(),
            };
            j.journal.signal_arrived(&record, from_journal, reached > 0);
        }
        for waiter in waiters {
            let _ = waiter.deliver.send(signal.clone());
        }
        self.publish(run.event(EventKind::RunSignalled { signal: name, waits: reached, value: signal.value }));
        reached
    }

    /// Whether run `run_id` is in flight here and every strand of it waits for a signal.
    pub fn is_waiting(&self, run_id: &str) -> bool {
        let run = self.inner.state.borrow().runs.get(run_id).cloned();
        run.is_some_and(|r| r.waits.borrow().is_all_waiting())
    }

    /// Every open wait of the runs in flight, oldest run first.
    pub fn pending_waits(&self) -> Vec<PendingWait> {
        let runs: Vec<Rc<Run>> = self.inner.state.borrow().runs.values().cloned().collect();
        let mut pending = Vec::new();
        for run in runs {
            let waits = run.waits.borrow();
            let mut ids: Vec<&u64> = waits.waiters.keys().collect();
            ids.sort();
            for id in ids {
                let w = &waits.waiters[id];
                pending.push(PendingWait {
                    run_id: run.id.clone(),
                    signal: w.signal.clone(),
                    pointer: w.site.pointer.clone(),
                    task_id: w.site.task_id.clone(),
                    deadline_ms: w.deadline_ms,
                    question: w.site.question.clone(),
                });
            }
        }
        pending.sort_by(|a, b| a.run_id.cmp(&b.run_id));
        pending
    }

    /// Marks `run` as detaching: from now on its waits ending are not status changes.
    pub(crate) fn start_detaching(&self, run: &Run) {
        run.waits.borrow_mut().detaching = true;
    }

    /// Starts, unless it runs already, the task that looks in the journal for signals other
    /// processes sent to runs in flight here; it stops once no wait is open.
    fn poll_journal_while_waiting(&self) {
        let Some(journal) = self.inner.config.journal.clone() else { return };
        if self.inner.polling.replace(true) {
            return;
        }
        let engine = self.clone();
        tokio::task::spawn_local(async move {
            loop {
                tokio::time::sleep(JOURNAL_POLL).await;
                let runs: Vec<Rc<Run>> = engine.inner.state.borrow().runs.values().cloned().collect();
                if runs.iter().all(|r| r.waits.borrow().open() == 0) {
                    break;
                }
                let arrived = match journal.0.foreign_signals() {
                    Ok(arrived) => arrived,
                    Err(e) => {
                        tracing::warn!("reading signals from the journal: {e}");
                        continue;
                    }
                };
                for record in arrived {
                    let Some(run) = runs.iter().find(|r| r.id == record.run_id) else { continue };
                    let signal = Signal { uid: record.uid, value: record.value };
                    engine.deliver(run, record.name, signal, true);
                }
            }
            engine.inner.polling.set(false);
        });
    }
}

/// How a wait began.
enum Begun {
    /// It had ended before the run was resumed: the same end again.
    Ended(Result<Value, FlowError>),
    /// It took a buffered signal at once.
    Taken(WaitKey, Signal),
    /// It waits.
    Waiting { key: WaitKey, deadline_ms: Option<u64>, delivered: oneshot::Receiver<Signal>, guard: WaiterGuard },
}

fn given_up() -> FlowError {
    // The sender goes only with its waiter, which only this wait removes.
    FlowError::new(ErrorKind::Cancelled, "the wait was given up")
}

fn journal_error(e: String) -> FlowError {
    FlowError::new(ErrorKind::Dispatch, format!("the journal cannot be written: {e}"))
}

fn timeout_error(signal: &str, timeout_ms: Option<u64>, deadline_ms: Option<u64>) -> FlowError {
    let after = match timeout_ms {
        Some(ms) => format!(" after {ms} ms"),
        None => deadline_ms.map(|d| format!(" (its deadline was {d} ms since the epoch)")).unwrap_or_default(),
    };
    FlowError::new(ErrorKind::Timeout, format!("the wait for signal '{signal}' timed out{after}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffered_signals_from_the_journal_are_seen_and_queued_per_name() {
        let record = |uid: &str, name: &str, n: i64| SignalRecord {
            run_id: "r".into(),
            uid: uid.into(),
            name: name.into(),
            value: Value::int(n),
            sent_ms: 0,
        };
        let replay = WaitReplay {
            buffered: vec![record("a", "approve", 1), record("b", "other", 2), record("c", "approve", 3)],
            ..WaitReplay::default()
        };
        let waits = RunWaits::new(replay);
        let approve: Vec<Value> = waits.buffered["approve"].iter().map(|s| s.value.clone()).collect();
        assert_eq!(approve, [Value::int(1), Value::int(3)], "first in, first out per name");
        assert!(waits.seen.contains("b"));
    }

    #[test]
    fn signal_ids_do_not_repeat() {
        let ids: HashSet<Arc<str>> = (0..1000).map(|_| new_signal_uid()).collect();
        assert_eq!(ids.len(), 1000);
    }
}
