//! Runs: one evaluation of a compiled blueprint's flow, driven on the host thread, with a
//! handle to wait for it or cancel it.

use std::cell::{Cell, OnceCell, RefCell};
use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{Notify, watch};

use super::compiled::CompiledBlueprint;
use super::dispatch::EngineDispatcher;
use super::event::{AttemptStatus, Event, EventKind, RunStatus, elapsed_ms};
use super::journal::{Journal, Recorded, RunStart, StepKey};
use super::task::TaskState;
use super::wait::{RunWaits, WaitReplay};
use super::{Engine, now_ms};
use crate::flow::{ErrorKind, Evaluator, Externs, FlowError, Step};
use crate::gate::Role;
use crate::gate::registry::Grant;
use crate::gate::registry::HeldToken;
use crate::schema::{Location, SourceMap};
use crate::value::Value;

/// How a run starts beyond its blueprint and ctx.
#[derive(Default)]
pub struct RunOptions {
    /// The blueprint's file, journaled so the run can be resumed.
    pub file: Option<String>,
    /// Continue a journaled run under its own id.
    pub resume: Option<Resume>,
    /// Step results to replay instead of dispatching, by (pointer, input hash), each list in
    /// occurrence order.
    pub replay: Recorded,
    /// What a resumed run's waits did before: ended waits, begun waits' deadlines, and the
    /// signals no wait took yet.
    pub waits: WaitReplay,
}

/// Where a resumed run picks up: its id, and the last event seq and task number it journaled.
pub struct Resume {
    /// The journaled run's id, kept so the run's rows stay together.
    pub run_id: Arc<str>,
    /// The last event sequence number journaled; new events continue after it.
    pub last_seq: u64,
    /// The last task number journaled; new task ids continue after it.
    pub last_task: u64,
}

/// What a run keeps to journal and replay its steps.
pub(crate) struct Journaling {
    pub journal: Rc<dyn Journal>,
    /// Step address → node pointer, for the steps of this run's flow (shared by its runs).
    pub pointers: Rc<HashMap<*const Step, Arc<str>>>,
    /// Opens so far per (pointer, input hash).
    pub occurrences: RefCell<HashMap<StepKey, u32>>,
    pub replay: RefCell<Recorded>,
    /// A resumed run: replayed steps are journaled already.
    pub resumed: bool,
    /// A journal write failed: the next step fails rather than run unjournaled.
    pub failed: RefCell<Option<String>>,
}

/// A run in flight.
pub(crate) struct Run {
    pub id: Arc<str>,
    pub compiled: Rc<CompiledBlueprint>,
    pub externs: Rc<dyn Externs>,
    /// The run's operator token: every step's `start_task` and `dispatch_attempt` present it.
    pub op_token: HeldToken,
    seq: Cell<u64>,
    next_task: Cell<u64>,
    /// Bumped whenever a task of this run is cancelled or handed a verdict from outside, so
    /// attempts waiting on their worker re-check their task (a generation counter: a bump
    /// between a check and the wait is not lost). Made when an attempt first needs it: a run
    /// that only waits for signals never does.
    signal: OnceCell<watch::Sender<u64>>,
    /// Set to cancel the run, or to leave it waiting (see [`RunHandle::detach`]).
    stop: watch::Sender<Stop>,
    /// Follows whether every strand waits (see [`RunHandle::waiting`]), once someone asks.
    pub waiting: OnceCell<watch::Sender<Option<Vec<Arc<str>>>>>,
    /// Its waits, signals and strands.
    pub waits: RefCell<RunWaits>,
    pub journaling: Option<Journaling>,
    file: Option<String>,
}

impl Run {
    /// A new event of this run, with the next sequence number.
    pub fn event(&self, kind: EventKind) -> Event {
        let seq = self.seq.get() + 1;
        self.seq.set(seq);
        Event { run_id: self.id.clone(), seq, at_ms: now_ms(), kind }
    }

    pub fn next_task_id(&self) -> Arc<str> {
        let n = self.next_task.get() + 1;
        self.next_task.set(n);
        format!("{}.{n}", self.id).into()
    }

    /// Wakes every attempt of this run to re-check its task.
    pub fn poke(&self) {
        if let Some(signal) = self.signal.get() {
            signal.send_modify(|g| *g = g.wrapping_add(1));
        }
    }

    /// Follows the generation [`Run::poke`] bumps.
    pub fn generation(&self) -> watch::Receiver<u64> {
        self.signal.get_or_init(|| watch::channel(0).0).subscribe()
    }

    /// Asks the driver to stop: a cancel is never turned into a detach.
    fn request(&self, stop: Stop) {
        self.stop.send_if_modified(|now| {
            let take = *now == Stop::Go || (stop == Stop::Cancel && *now == Stop::Detach);
            if take {
                *now = stop;
            }
            take
        });
    }

    fn cancelled(&self) -> bool {
        *self.stop.borrow() == Stop::Cancel
    }

    /// Whether every strand of the run waits for a signal now.
    fn all_waiting(&self) -> bool {
        self.waits.borrow().is_all_waiting()
    }
}

/// What the driver of a run is asked to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    Go,
    Cancel,
    Detach,
}

/// A run's outcome once it has one, for every handle to wait on.
struct Done {
    outcome: RefCell<Option<RunOutcome>>,
    reported: Notify,
}

/// How a run ended: its final (or partial) ctx, and the error if it failed.
#[derive(Clone, Debug, PartialEq)]
pub struct RunOutcome {
    /// The run's id.
    pub run_id: Arc<str>,
    /// How the run ended.
    pub status: RunStatus,
    /// The ctx when the run ended: final when it finished, partial when it failed or was cancelled.
    pub ctx: Value,
    /// The error that failed the run, if it failed.
    pub error: Option<FlowError>,
}

/// A started run.
#[derive(Clone)]
pub struct RunHandle {
    /// The run's id.
    pub id: Arc<str>,
    run: Rc<Run>,
    done: Rc<Done>,
}

impl RunHandle {
    /// Waits for the run to end.
    pub async fn wait(&self) -> RunOutcome {
        // The driver always reports before it goes, even when it panics (see DoneGuard).
        loop {
            let reported = self.done.reported.notified();
            tokio::pin!(reported);
            // Registered before the check, so a report between the two is not missed.
            reported.as_mut().enable();
            if let Some(outcome) = &*self.done.outcome.borrow() {
                return outcome.clone();
            }
            reported.await;
        }
    }

    /// Cancels the run: in-flight attempts stop and their tasks become `cancelled`.
    pub fn cancel(&self) {
        self.run.request(Stop::Cancel);
    }

    /// Follows whether every strand of the run waits for a signal: `Some(signals)` while it
    /// does, `None` while anything else runs.
    pub fn waiting(&self) -> watch::Receiver<Option<Vec<Arc<str>>>> {
        let now = self.run.waits.borrow().waiting_for();
        self.run.waiting.get_or_init(|| watch::channel(now).0).subscribe()
    }

    /// Leaves a run that waits to whoever delivers its signal: the run stops here without
    /// ending (its journal keeps it `waiting`, its waits and their deadlines), and
    /// [`RunHandle::wait`] reports [`RunStatus::Waiting`]. A run not waiting is not detached;
    /// `false` then.
    pub fn detach(&self) -> bool {
        if !self.run.all_waiting() || self.is_finished() {
            return false;
        }
        self.run.request(Stop::Detach);
        true
    }

    /// How many replayable step results the run has not used (so far): after a resume, results
    /// recorded for steps whose blueprint or input changed since.
    pub fn unreplayed(&self) -> usize {
        self.run.journaling.as_ref().map_or(0, |j| j.replay.borrow().values().map(|q| q.len()).sum())
    }

    /// Whether the run has ended.
    pub fn is_finished(&self) -> bool {
        self.done.outcome.borrow().is_some()
    }
}

static RUN_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A run id unlikely to repeat across processes (it names journal rows later).
fn new_run_id() -> Arc<str> {
    thread_local! {
        static SALT: u64 = RandomState::new().build_hasher().finish();
    }
    let n = RUN_COUNTER.fetch_add(1, Ordering::Relaxed);
    let mixed = SALT.with(|salt| splitmix(salt.wrapping_add(n)));
    format!("r-{:012x}", mixed & 0xffff_ffff_ffff).into()
}

pub(crate) fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Reports a run's end exactly once, even if the driver unwinds.
struct DoneGuard {
    engine: Engine,
    run: Rc<Run>,
    done: Rc<Done>,
}

impl DoneGuard {
    fn report(&self, outcome: RunOutcome) {
        if outcome.status == RunStatus::Waiting {
            // Not ended: its journal keeps it, and its event feeds close without a last event.
            self.engine.retire_leftovers(&self.run);
            self.engine.inner.bus.close_taps(&self.run.id);
        } else {
            self.engine.retire_leftovers(&self.run);
            self.engine.publish(
                self.run.event(EventKind::RunFinished { status: outcome.status, error: outcome.error.clone() }),
            );
        }
        self.engine.end_run(&self.run);
        *self.done.outcome.borrow_mut() = Some(outcome);
        self.done.reported.notify_waiters();
    }
}

impl Drop for DoneGuard {
    fn drop(&mut self) {
        if self.done.outcome.borrow().is_none() {
            let error = FlowError::eval("the run driver stopped unexpectedly (an internal error)");
            if let Some(j) = &self.run.journaling {
                // Not awaited (a destructor cannot): the writer still commits it in order.
                drop(j.journal.run_finished(&self.run.id, RunStatus::Failed, &Value::Null, Some(&error)));
            }
            self.report(RunOutcome {
                run_id: self.run.id.clone(),
                status: RunStatus::Failed,
                ctx: Value::Null,
                error: Some(error),
            });
        }
    }
}

impl Engine {
    /// Starts evaluating `compiled`'s flow over `init`. Must be called inside a `LocalSet`.
    pub fn start(&self, compiled: Rc<CompiledBlueprint>, init: Value, externs: Rc<dyn Externs>) -> RunHandle {
        self.start_with(compiled, init, externs, RunOptions::default())
    }

    /// [`Engine::start`] with a journaled file, a resumed run's id, or results to replay.
    pub fn start_with(
        &self,
        compiled: Rc<CompiledBlueprint>,
        init: Value,
        externs: Rc<dyn Externs>,
        options: RunOptions,
    ) -> RunHandle {
        let (id, seq, next_task) = match &options.resume {
            Some(r) => (r.run_id.clone(), r.last_seq, r.last_task),
            None => (new_run_id(), 0, 0),
        };
        let journaling = self.inner.config.journal.as_ref().map(|j| Journaling {
            journal: j.0.clone(),
            pointers: compiled.step_pointers(),
            occurrences: RefCell::new(HashMap::new()),
            replay: RefCell::new(options.replay),
            resumed: options.resume.is_some(),
            failed: RefCell::new(None),
        });
        let op_token = self.mint_held(
            Grant {
                role: Role::Operator,
                agent_id: format!("run:{id}"),
                scopes: Vec::new(),
                ttl_ms: None,
                max_uses: None,
                task: None,
                depth: 0,
            },
            now_ms(),
        );
        let (stop, _) = watch::channel(Stop::Go);
        let run = Rc::new(Run {
            id: id.clone(),
            compiled,
            externs,
            op_token,
            seq: Cell::new(seq),
            next_task: Cell::new(next_task),
            signal: OnceCell::new(),
            stop,
            waiting: OnceCell::new(),
            waits: RefCell::new(RunWaits::new(options.waits)),
            journaling,
            file: options.file,
        });
        self.inner.state.borrow_mut().runs.insert(id.clone(), run.clone());
        let done = Rc::new(Done { outcome: RefCell::new(None), reported: Notify::new() });
        let guard = DoneGuard { engine: self.clone(), run: run.clone(), done: done.clone() };
        tokio::task::spawn_local(drive(guard, init));
        RunHandle { id, run, done }
    }

    /// The ids of the runs in flight, in no particular order.
    pub fn running(&self) -> Vec<Arc<str>> {
        self.inner.state.borrow().runs.keys().cloned().collect()
    }

    /// Cancels run `run_id` as [`RunHandle::cancel`] does, for a host that holds only the id
    /// (the REPL's Ctrl-C stops runs that a Lua chunk started); `false` when it is not in flight.
    pub fn cancel_run(&self, run_id: &str) -> bool {
        let run = self.inner.state.borrow().runs.get(run_id).cloned();
        match run {
            Some(run) => {
                run.request(Stop::Cancel);
                true
            }
            None => false,
        }
    }

    /// Detaches run `run_id` as [`RunHandle::detach`] does; `false` when it is not in flight or
    /// not waiting.
    pub fn detach_run(&self, run_id: &str) -> bool {
        let run = self.inner.state.borrow().runs.get(run_id).cloned();
        match run {
            Some(run) if run.all_waiting() => {
                run.request(Stop::Detach);
                true
            }
            _ => false,
        }
    }

    /// Retires the tasks a finished run leaves in the live table. The flow settles or abandons
    /// every task it opened, so these were started with `start_task` from outside it, and
    /// nothing else would ever remove them. Without the run nobody can dispatch them, so any
    /// not yet settled is cancelled; an attempt still in flight is reported as cancelled here,
    /// before `run_finished` closes the run's events, and its worker is stopped.
    fn retire_leftovers(&self, run: &Run) {
        let mut events = Vec::new();
        {
            let mut state = self.inner.state.borrow_mut();
            let mut left: Vec<Arc<str>> =
                state.tasks.values().filter(|t| t.run_id == run.id).map(|t| t.id.clone()).collect();
            // In a fixed order, so the events read the same on every run.
            left.sort_unstable();
            for task_id in left {
                let Some(task) = state.tasks.get_mut(&*task_id) else { continue };
                if let Some(attempt) = task.running {
                    events.push(EventKind::AttemptFinished {
                        task_id: task_id.clone(),
                        agent: task.agent.clone(),
                        attempt,
                        status: AttemptStatus::Cancelled,
                        elapsed_ms: task.attempt_started.map_or(0.0, elapsed_ms),
                        error: Some("cancelled: the run ended".into()),
                    });
                }
                if task.transition(TaskState::Cancelled) {
                    events.push(EventKind::TaskCancelled { task_id: task_id.clone() });
                }
                self.retire(&mut state, &task_id);
            }
        }
        if events.is_empty() {
            return;
        }
        for kind in events {
            self.publish(run.event(kind));
        }
        run.poke();
    }

    /// Forgets a finished run's operator token and its entry.
    fn end_run(&self, run: &Run) {
        let mut state = self.inner.state.borrow_mut();
        state.tokens.forget_held(&run.op_token);
        state.runs.remove(&run.id);
    }
}

async fn drive(guard: DoneGuard, init: Value) {
    let engine = guard.engine.clone();
    let run = guard.run.clone();
    if let Some(j) = &run.journaling {
        j.journal.run_started(&RunStart {
            id: run.id.clone(),
            blueprint: run.compiled.blueprint.id.as_str().into(),
            file: run.file.clone(),
            input: init.clone(),
            digest: run.compiled.blueprint.digest(),
            resumed: j.resumed,
        });
    }
    engine.publish(run.event(EventKind::RunStarted { blueprint: run.compiled.blueprint.id.as_str().into() }));
    let mut ctx = init;
    let result = {
        let dispatcher = EngineDispatcher { engine: engine.clone(), run: run.clone() };
        let evaluator = Evaluator::new(&dispatcher, &*run.externs);
        let mut cancelled = run.stop.subscribe();
        let mut detached = run.stop.subscribe();
        let mut evaluation = std::pin::pin!(evaluator.run(&run.compiled.blueprint.flow, &mut ctx));
        // Each time the flow stops to await something, its strands hold still: whether they
        // all wait for signals is decided then.
        let evaluation = std::future::poll_fn(|cx| {
            let polled = evaluation.as_mut().poll(cx);
            if polled.is_pending() {
                engine.recheck_waiting(&run);
            }
            polled
        });
        tokio::select! {
            result = evaluation => Some(result),
            _ = cancelled.wait_for(|s| *s == Stop::Cancel) => {
                Some(Err(FlowError::new(ErrorKind::Cancelled, "the run was cancelled")))
            }
            _ = detached.wait_for(|s| *s == Stop::Detach) => {
                engine.start_detaching(&run);
                None
            }
        }
        // Leaving this block drops the evaluation: steps still in flight cancel their tasks,
        // and a detached run's waits are given up without ending.
    };
    let Some(result) = result else {
        // Its journal says `waiting` already, with its waits and their deadlines.
        guard.report(RunOutcome { run_id: run.id.clone(), status: RunStatus::Waiting, ctx, error: None });
        return;
    };
    let result = result.map_err(|e| locate(e, &run.compiled.blueprint.sources));
    let status = match &result {
        Ok(()) => RunStatus::Finished,
        Err(e) if e.kind == ErrorKind::Cancelled && run.cancelled() => RunStatus::Cancelled,
        Err(_) => RunStatus::Failed,
    };
    if let Some(j) = &run.journaling
        && let Err(e) = j.journal.run_finished(&run.id, status, &ctx, result.as_ref().err()).wait().await
    {
        tracing::error!(run = %run.id, "cannot journal the run's end: {e}");
    }
    guard.report(RunOutcome { run_id: run.id.clone(), status, ctx, error: result.err() });
}

/// Adds to `error` the file and line that built the node it arose in, from the blueprint's
/// source map: the node at its pointer or, for a field such as `/children/2/cond`, the node
/// holding the field. Blueprints from JSON have no map, and their errors keep only the pointer.
fn locate(error: FlowError, sources: &SourceMap) -> FlowError {
    let Some(pointer) = error.pointer.as_deref() else { return error };
    let node = pointer.rsplit_once('/').map_or("", |(parent, _)| parent);
    match sources.nodes.get(pointer).or_else(|| sources.nodes.get(node)) {
        Some(site) => {
            let Location { file, line } = site.clone();
            error.with_source(&file, line)
        }
        None => error,
    }
}
