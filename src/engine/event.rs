//! Engine events (docs/engine.md): a broadcast channel for live subscribers plus a bounded trace.
//! Every event carries its run's id and a per-run sequence number, and round-trips through
//! serde so a journal can store and replay it.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc};

use crate::flow::FlowError;
use crate::value::Value;

/// One engine event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The run the event belongs to.
    pub run_id: Arc<str>,
    /// Increases by one per event within a run, from 1.
    pub seq: u64,
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// What happened; its fields sit beside `run_id` and `seq` on the wire.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// What happened.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventKind {
    /// A run began.
    RunStarted {
        /// The blueprint's id.
        blueprint: Arc<str>,
    },
    /// A run ended; always a run's last event.
    RunFinished {
        /// How it ended.
        status: RunStatus,
        /// Why it failed, when it did.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<FlowError>,
    },
    /// A step or a sub-dispatch created a task.
    TaskCreated {
        /// The new task's id (`<run id>.<n>`).
        task_id: Arc<str>,
        /// The agent the task is routed to.
        agent: Arc<str>,
        /// 0 for a flow step; one more than its parent for a sub-task.
        depth: u32,
        /// The task that dispatched this one, for a sub-task.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        parent: Option<Arc<str>>,
    },
    /// An attempt was handed to its worker.
    AttemptStarted {
        /// The task the attempt belongs to.
        task_id: Arc<str>,
        /// The agent the attempt went to (a layer may have rerouted it).
        agent: Arc<str>,
        /// The attempt's number, from 1.
        attempt: u32,
    },
    /// An attempt ended.
    AttemptFinished {
        /// The task the attempt belongs to.
        task_id: Arc<str>,
        /// The agent that ran the attempt.
        agent: Arc<str>,
        /// The attempt's number, from 1.
        attempt: u32,
        /// How it ended.
        status: AttemptStatus,
        /// Wall time of the attempt, in milliseconds to the microsecond.
        elapsed_ms: f64,
        /// The failure message, for an attempt that did not pass or block.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// A worker emitted an output (progress, partial, artifact or final) during an attempt.
    WorkerOutput {
        /// The task the attempt belongs to.
        task_id: Arc<str>,
        /// The attempt's number, from 1.
        attempt: u32,
        /// The output as the worker gave it.
        output: Value,
    },
    /// A task was suspended and waits for `resume_task`.
    TaskSuspended {
        /// The suspended task.
        task_id: Arc<str>,
        /// Why, as the suspending caller gave it.
        reason: Arc<str>,
    },
    /// A suspended task runs again.
    TaskResumed {
        /// The resumed task.
        task_id: Arc<str>,
    },
    /// A task was cancelled before it settled.
    TaskCancelled {
        /// The cancelled task.
        task_id: Arc<str>,
    },
    /// Every strand of the run waits for a signal: the run is `waiting`.
    RunWaiting {
        /// The signals its waits wait for, each once.
        signals: Vec<Arc<str>>,
    },
    /// A signal was delivered to the run.
    RunSignalled {
        /// The signal's name.
        signal: Arc<str>,
        /// How many waits it reached; 0 when it is buffered for the next wait for its name.
        waits: usize,
        /// The signal's value.
        value: Value,
    },
    /// A middleware layer recorded something about an attempt.
    LayerNote {
        /// The task whose attempt the layer saw.
        task_id: Arc<str>,
        /// The layer's name.
        layer: Arc<str>,
        /// What the layer recorded.
        note: Value,
    },
}

impl Event {
    /// Replaces every token in the event's text with its fingerprint (see
    /// [`crate::gate::scrub`]): the engine publishes and journals no token.
    pub fn scrub_tokens(&mut self) {
        use crate::gate::scrub::{scrub, scrub_flow_error, scrub_string, scrub_value};
        match &mut self.kind {
            EventKind::RunFinished { error: Some(error), .. } => scrub_flow_error(error),
            EventKind::AttemptFinished { error: Some(error), .. } => scrub_string(error),
            EventKind::WorkerOutput { output, .. } => {
                scrub_value(output);
            }
            EventKind::LayerNote { note, .. } => {
                scrub_value(note);
            }
            EventKind::RunSignalled { value, .. } => {
                scrub_value(value);
            }
            EventKind::TaskSuspended { reason, .. } => {
                if let std::borrow::Cow::Owned(clean) = scrub(reason) {
                    *reason = clean.into();
                }
            }
            _ => {}
        }
    }
}

impl EventKind {
    /// The snake_case name carried in the `kind` field.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::RunStarted { .. } => "run_started",
            EventKind::RunFinished { .. } => "run_finished",
            EventKind::TaskCreated { .. } => "task_created",
            EventKind::AttemptStarted { .. } => "attempt_started",
            EventKind::AttemptFinished { .. } => "attempt_finished",
            EventKind::WorkerOutput { .. } => "worker_output",
            EventKind::TaskSuspended { .. } => "task_suspended",
            EventKind::TaskResumed { .. } => "task_resumed",
            EventKind::TaskCancelled { .. } => "task_cancelled",
            EventKind::LayerNote { .. } => "layer_note",
            EventKind::RunWaiting { .. } => "run_waiting",
            EventKind::RunSignalled { .. } => "run_signalled",
        }
    }
}

/// Milliseconds since `started`, to the microsecond. A decimal that short parses back to the
/// same `f64`; a full-precision one may not (serde_json, built without `float_roundtrip`, can
/// miss its last bit), and then an event would not round-trip through a journal.
pub(crate) fn elapsed_ms(started: Instant) -> f64 {
    (started.elapsed().as_secs_f64() * 1_000_000.0).round() / 1000.0
}

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// The flow ran to its end.
    Finished,
    /// The flow raised an error nothing caught.
    Failed,
    /// The run was cancelled.
    Cancelled,
    /// The run was left waiting for a signal (detached): it has not ended, and goes on in the
    /// process that delivers the signal. Never the status of a `run_finished` event.
    Waiting,
}

impl RunStatus {
    /// The snake_case name used on the wire and in the journal.
    pub fn name(self) -> &'static str {
        match self {
            RunStatus::Finished => "finished",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
            RunStatus::Waiting => "waiting",
        }
    }
}

/// How one attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptStatus {
    /// The worker passed the step.
    Pass,
    /// The worker refused the step with a verdict; not a fault, so not retried unless asked.
    Blocked,
    /// The worker failed.
    Failed,
    /// The step's or the worker's time limit ran out.
    Timeout,
    /// The attempt was cancelled with its task or run.
    Cancelled,
}

impl AttemptStatus {
    /// The snake_case name used on the wire and in the journal.
    pub fn name(self) -> &'static str {
        match self {
            AttemptStatus::Pass => "pass",
            AttemptStatus::Blocked => "blocked",
            AttemptStatus::Failed => "failed",
            AttemptStatus::Timeout => "timeout",
            AttemptStatus::Cancelled => "cancelled",
        }
    }
}

/// Where events go: live subscribers, taps on single runs, and a bounded trace of the most
/// recent ones.
pub struct EventBus {
    sender: broadcast::Sender<Event>,
    /// Unbounded per-run feeds: a run that never yields can publish thousands of events before
    /// a subscriber runs, and a tap must not lose any of them (a broadcast receiver would lag).
    taps: RefCell<Vec<(Arc<str>, mpsc::UnboundedSender<Event>)>>,
    trace: RefCell<VecDeque<Event>>,
    trace_capacity: usize,
}

impl EventBus {
    /// `channel_capacity` is how far a subscriber may lag before it misses events.
    pub fn new(channel_capacity: usize, trace_capacity: usize) -> EventBus {
        let (sender, _) = broadcast::channel(channel_capacity.max(1));
        EventBus { sender, taps: RefCell::new(Vec::new()), trace: RefCell::new(VecDeque::new()), trace_capacity }
    }

    /// Every event of run `run_id`, through its `run_finished`; the tap closes after that.
    pub fn tap(&self, run_id: Arc<str>) -> mpsc::UnboundedReceiver<Event> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.taps.borrow_mut().push((run_id, tx));
        rx
    }

    /// Sends `event` to its run's taps and to live subscribers, and keeps it in the trace.
    pub fn publish(&self, event: Event) {
        {
            let mut taps = self.taps.borrow_mut();
            if !taps.is_empty() {
                let last = matches!(event.kind, EventKind::RunFinished { .. });
                taps.retain(|(run, tx)| {
                    if *run != event.run_id {
                        return !tx.is_closed();
                    }
                    tx.send(event.clone()).is_ok() && !last
                });
            }
        }
        if self.sender.receiver_count() > 0 {
            // A send fails only when nobody listens, which was just ruled out or raced away.
            let _ = self.sender.send(event.clone());
        }
        if self.trace_capacity > 0 {
            let mut trace = self.trace.borrow_mut();
            if trace.len() == self.trace_capacity {
                trace.pop_front();
            }
            trace.push_back(event);
        }
    }

    /// Closes the taps of run `run_id` without a last event: a run left waiting.
    pub fn close_taps(&self, run_id: &str) {
        self.taps.borrow_mut().retain(|(run, _)| &**run != run_id);
    }

    /// A receiver of every event from now on; one that lags too far misses events.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.sender.subscribe()
    }

    /// The trace, oldest first; only the events of `run_id` when given.
    pub fn trace(&self, run_id: Option<&str>) -> Vec<Event> {
        self.trace.borrow().iter().filter(|e| run_id.is_none_or(|id| &*e.run_id == id)).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(seq: u64) -> Event {
        Event { run_id: "r".into(), seq, at_ms: 0, kind: EventKind::TaskResumed { task_id: "t".into() } }
    }

    #[test]
    fn events_serialize_flat_with_a_kind_tag_and_round_trip() {
        let e = Event {
            run_id: "r-1".into(),
            seq: 3,
            at_ms: 7,
            kind: EventKind::AttemptFinished {
                task_id: "r-1.1".into(),
                agent: "a".into(),
                attempt: 2,
                status: AttemptStatus::Timeout,
                elapsed_ms: 1.5,
                error: None,
            },
        };
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(
            json,
            r#"{"run_id":"r-1","seq":3,"at_ms":7,"kind":"attempt_finished","task_id":"r-1.1","agent":"a","attempt":2,"status":"timeout","elapsed_ms":1.5}"#
        );
        assert_eq!(serde_json::from_str::<Event>(&json).unwrap(), e);
    }

    #[test]
    fn the_trace_keeps_only_the_most_recent_events() {
        let bus = EventBus::new(4, 3);
        for seq in 1..=5 {
            bus.publish(event(seq));
        }
        let seqs: Vec<u64> = bus.trace(None).iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [3, 4, 5]);
        assert!(bus.trace(Some("other")).is_empty());
    }

    #[test]
    fn a_tap_gets_every_event_of_its_run_and_closes_after_run_finished() {
        let bus = EventBus::new(1, 0);
        let mut tap = bus.tap("r".into());
        for seq in 1..=100 {
            bus.publish(event(seq));
        }
        bus.publish(Event {
            run_id: "other".into(),
            seq: 1,
            at_ms: 0,
            kind: EventKind::TaskResumed { task_id: "t".into() },
        });
        bus.publish(Event {
            run_id: "r".into(),
            seq: 101,
            at_ms: 0,
            kind: EventKind::RunFinished { status: RunStatus::Finished, error: None },
        });
        let mut seqs = Vec::new();
        while let Ok(e) = tap.try_recv() {
            seqs.push(e.seq);
        }
        assert_eq!(seqs, (1..=101).collect::<Vec<_>>());
        assert!(tap.is_closed() || tap.try_recv().is_err());
        assert!(bus.taps.borrow().is_empty(), "the tap is dropped once its run finished");
    }

    #[test]
    fn subscribers_see_events_published_after_they_subscribe() {
        let bus = EventBus::new(8, 0);
        bus.publish(event(1));
        let mut rx = bus.subscribe();
        bus.publish(event(2));
        assert_eq!(rx.try_recv().unwrap().seq, 2);
        assert!(rx.try_recv().is_err());
    }
}
