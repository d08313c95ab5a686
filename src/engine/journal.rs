//! The engine's journal port: what a run journal is told (a run's start and end, every event,
//! each settled step), and the recorded results a resumed run replays. The SQLite journal in
//! `crate::store::journal` implements it.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use tokio::sync::oneshot;

use super::wait::WaitKey;
use super::{Event, RunStatus};
use crate::flow::FlowError;
use crate::value::Value;

/// A recorded step's key: its node pointer and [`input_hash`].
pub type StepKey = (Arc<str>, Arc<str>);

/// Recorded step results by key, in occurrence order.
pub type Recorded = HashMap<StepKey, VecDeque<Value>>;

/// What the engine tells a journal.
pub trait Journal {
    /// Run `run.id` starts, or resumes under the same id when `run.resumed`.
    fn run_started(&self, run: &RunStart);
    /// Every engine event, in publication order.
    fn event(&self, event: &Event);
    /// A step settled; the ack resolves once the record is durable.
    fn step_closed(&self, step: StepRecord) -> Ack;
    /// A run ended with this ctx (final or partial); the ack resolves once durable.
    fn run_finished(&self, run_id: &Arc<str>, status: RunStatus, ctx: &Value, error: Option<&FlowError>) -> Ack;
    /// A wait began (its deadline is absolute); the ack resolves once the record is durable.
    fn wait_began(&self, _wait: &WaitBegun) -> Ack {
        Ack::done()
    }
    /// A wait ended with a signal's value or an error; the ack resolves once durable.
    fn wait_ended(&self, _wait: &WaitEnded) -> Ack {
        Ack::done()
    }
    /// A signal was delivered to a run, reaching some waits (`taken`) or buffered. With
    /// `from_journal` it was read from this journal ([`Journal::foreign_signals`]) and is
    /// recorded as delivered; otherwise it is recorded as sent.
    fn signal_arrived(&self, _signal: &SignalRecord, _from_journal: bool, _taken: bool) {}
    /// Every strand of a run waits (`true`: its status is `waiting`), or not any more.
    fn run_waiting(&self, _run_id: &Arc<str>, _waiting: bool) {}
    /// Signals that other processes put in the journal since the last call, for any run; a
    /// journal no other process writes has none.
    fn foreign_signals(&self) -> Result<Vec<SignalRecord>, String> {
        Ok(Vec::new())
    }
    /// The file the journal can be read back from (to resume its runs), if it has one.
    fn location(&self) -> Option<&Path> {
        None
    }
    /// Blocks until everything sent so far can be read back from [`Journal::location`].
    fn sync(&self) -> Result<(), String> {
        Ok(())
    }
}

/// How a run starts, as journaled.
#[derive(Clone, Debug)]
pub struct RunStart {
    /// The run's id.
    pub id: Arc<str>,
    /// The blueprint's id.
    pub blueprint: Arc<str>,
    /// The blueprint file, so `swarm runs resume` can load it again.
    pub file: Option<String>,
    /// The run's starting ctx.
    pub input: Value,
    /// The digest of the blueprint the run starts on (`Blueprint::digest`).
    pub digest: Arc<str>,
    /// The run continues a journaled run under the same id.
    pub resumed: bool,
}

/// One settled step.
#[derive(Clone, Debug)]
pub struct StepRecord {
    /// The run the step belongs to.
    pub run_id: Arc<str>,
    /// The step's task.
    pub task_id: Arc<str>,
    /// The agent that settled the step.
    pub agent: Arc<str>,
    /// The step's node pointer in the flow (`/children/2/body`).
    pub pointer: Arc<str>,
    /// [`input_hash`] of the step's input.
    pub input_hash: Arc<str>,
    /// How many earlier steps of this run had the same pointer and input hash.
    pub occurrence: u32,
    /// The step's value, or the error it raised.
    pub outcome: Result<Value, FlowError>,
    /// Replayed from the journal rather than dispatched (a rerun's steps before the cut).
    pub replayed: bool,
}

/// A wait that began.
#[derive(Clone, Debug)]
pub struct WaitBegun {
    /// The waiting run.
    pub run_id: Arc<str>,
    /// The wait's identity.
    pub key: WaitKey,
    /// The `wait` node's pointer, for a wait in the flow.
    pub pointer: Option<Arc<str>>,
    /// The waiting task, for a wait inside an agent.
    pub task_id: Option<Arc<str>>,
    /// The question, when the wait is one.
    pub question: Option<Value>,
    /// When it times out, in milliseconds since the Unix epoch.
    pub deadline_ms: Option<u64>,
}

/// A wait that ended.
#[derive(Clone, Debug)]
pub struct WaitEnded {
    /// The run.
    pub run_id: Arc<str>,
    /// The wait's identity.
    pub key: WaitKey,
    /// The signal's value, or why the wait failed (a timeout).
    pub outcome: Result<Value, FlowError>,
    /// The signal it took, if it took one.
    pub signal_uid: Option<Arc<str>>,
}

/// A signal to a run.
#[derive(Clone, Debug, PartialEq)]
pub struct SignalRecord {
    /// The run it is for.
    pub run_id: Arc<str>,
    /// Its id, unique across processes.
    pub uid: Arc<str>,
    /// Its name.
    pub name: Arc<str>,
    /// Its value.
    pub value: Value,
    /// When it was sent, in milliseconds since the Unix epoch.
    pub sent_ms: u64,
}

/// Resolves when a journal write is durable (or failed).
pub struct Ack(Option<oneshot::Receiver<Result<(), String>>>);

impl Ack {
    /// An ack that is already resolved: for journals with nothing to wait for.
    pub fn done() -> Ack {
        Ack(None)
    }

    /// An ack that resolves when the journal answers on `answer`.
    pub fn pending(answer: oneshot::Receiver<Result<(), String>>) -> Ack {
        Ack(Some(answer))
    }

    /// An ack that is already resolved with an error.
    pub fn failed(message: impl Into<String>) -> Ack {
        let (tx, rx) = oneshot::channel();
        let _ = tx.send(Err(message.into()));
        Ack(Some(rx))
    }

    /// Waits for the write to be durable, or for the reason it is not.
    pub async fn wait(self) -> Result<(), String> {
        match self.0 {
            None => Ok(()),
            Some(rx) => rx.await.unwrap_or_else(|_| Err("the journal writer stopped".into())),
        }
    }
}

pub(crate) fn hex16(digest: &[u8]) -> Arc<str> {
    let mut out = String::with_capacity(32);
    for b in &digest[..16] {
        out.push_str(&format!("{b:02x}"));
    }
    out.into()
}

/// The hash that keys a step's recorded result with its pointer: SHA-256 of the input's JSON,
/// the first 16 bytes in hex.
pub fn input_hash(input: &Value) -> Arc<str> {
    hex16(&Sha256::digest(input.to_json().as_bytes()))
}
