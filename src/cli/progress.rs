//! What `swarm run` prints on stderr while a run goes (without `--events`): one line per
//! finished attempt (agent, status, attempt, ms), whether or not stderr is a terminal, so CI
//! logs and pipes see them too. On a terminal a live `n/N steps, elapsed` line sits below
//! them, rewritten in place and cleared before anything else is printed.

use std::collections::HashSet;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::engine::{Event, EventKind};
use crate::flow::Node;

/// How often the live line's clock is redrawn.
pub const TICK: Duration = Duration::from_millis(200);

/// Erases the terminal line the cursor is on and returns to its start.
const CLEAR_LINE: &str = "\r\x1b[2K";

/// The progress of one run.
pub struct Progress {
    /// Draw the live line (stderr is a terminal).
    live: bool,
    /// How many steps the flow has, when each runs at most once (no loop or fanout).
    total: Option<usize>,
    /// The flow's own steps (not tasks that agents dispatched) that have not finished an
    /// attempt yet, and how many have: only those in flight are kept, so a long run's
    /// progress holds nothing per finished step.
    steps: HashSet<Arc<str>>,
    done: usize,
    started: Instant,
    /// The live line is on the screen.
    shown: bool,
}

impl Progress {
    /// Progress for a run of `flow`; `live` when stderr is a terminal.
    pub fn new(flow: &Node, live: bool) -> Progress {
        Progress {
            live,
            total: step_count(flow),
            steps: HashSet::new(),
            done: 0,
            started: Instant::now(),
            shown: false,
        }
    }

    /// Whether there is a live line to keep redrawing.
    pub fn is_live(&self) -> bool {
        self.live
    }

    /// Takes in one event: an attempt line for a finished attempt, and the live line redrawn.
    pub fn event(&mut self, event: &Event) {
        match &event.kind {
            EventKind::TaskCreated { task_id, depth: 0, .. } => {
                self.steps.insert(task_id.clone());
            }
            EventKind::AttemptFinished { task_id, agent, attempt, status, elapsed_ms, error } => {
                if self.steps.remove(task_id) {
                    self.done += 1;
                }
                let note = error.as_deref().map(|e| format!("  {e}")).unwrap_or_default();
                let line = format!("  {agent:<20} {:<9} #{attempt:<3} {elapsed_ms:>9.1} ms{note}", status.name());
                self.line(&line);
            }
            EventKind::RunWaiting { signals } => self.line(&format!("  waiting for {}", signals.join(", "))),
            EventKind::RunSignalled { signal, waits, .. } => {
                let note = if *waits == 0 { "  (buffered: nothing waits on it yet)" } else { "" };
                self.line(&format!("  signal {signal:<13} delivered{note}"));
            }
            _ => return,
        }
        self.tick();
    }

    /// Redraws the live line (its clock moved).
    pub fn tick(&mut self) {
        if !self.live {
            return;
        }
        let n = self.done;
        let steps = match self.total {
            Some(total) if n <= total => format!("{n}/{total} steps"),
            _ => format!("{n} steps"),
        };
        let elapsed = self.started.elapsed().as_secs_f64();
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "{CLEAR_LINE}  {steps}, {elapsed:.1} s");
        let _ = err.flush();
        self.shown = true;
    }

    /// Clears the live line, so what comes next starts on a clean line.
    pub fn clear(&mut self) {
        if self.shown {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "{CLEAR_LINE}");
            let _ = err.flush();
            self.shown = false;
        }
    }

    /// Prints a line above the live one. A stderr that cannot be written has nowhere to be
    /// reported, so the line is dropped.
    fn line(&mut self, text: &str) {
        self.clear();
        let _ = writeln!(std::io::stderr(), "{text}");
    }
}

/// How many steps `flow` runs at most, or `None` when a loop or fanout repeats some.
fn step_count(flow: &Node) -> Option<usize> {
    let mut repeats = false;
    flow.walk(&mut |_, node| {
        repeats |= matches!(node, Node::Loop { .. } | Node::Fanout(_));
    });
    if repeats {
        return None;
    }
    let mut steps = 0;
    flow.for_each_step(&mut |_| steps += 1);
    Some(steps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_counted_unless_a_loop_or_fanout_repeats_them() {
        let step = r#"{"kind":"step","ref":"a","in":{"op":"path","at":"$"},"out":{"op":"path","at":"$.a"}}"#;
        let seq: Node = serde_json::from_str(&format!(r#"{{"kind":"seq","children":[{step},{step}]}}"#)).unwrap();
        assert_eq!(step_count(&seq), Some(2));
        let looped: Node = serde_json::from_str(&format!(
            r#"{{"kind":"loop","counter":{{"op":"path","at":"$.i"}},"cond":{{"op":"lit","value":true}},"max":3,"body":{step}}}"#
        ))
        .unwrap();
        assert_eq!(step_count(&looped), None);
    }
}
