//! The role × verb table: which role may call which engine verb.

use std::fmt;

use super::{Role, Verb};

/// The role × verb table every engine operation consults.
///
/// A fixed-size bool matrix rather than a map of sets: `allows` runs on every engine step, and
/// here it is two array indexes with no hashing. `Gate::default()` is the documented table; a host
/// may replace it (build one from [`Gate::empty`] and [`Gate::set`]).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Gate {
    allowed: [[bool; Verb::COUNT]; Role::COUNT],
}

impl Gate {
    /// A table that allows nothing.
    pub const fn empty() -> Gate {
        Gate { allowed: [[false; Verb::COUNT]; Role::COUNT] }
    }

    /// Whether `role` may call `verb`.
    #[inline]
    pub fn allows(&self, role: Role, verb: Verb) -> bool {
        self.allowed[role.index()][verb.index()]
    }

    /// Allows or forbids one verb for one role.
    pub fn set(&mut self, role: Role, verb: Verb, allowed: bool) {
        self.allowed[role.index()][verb.index()] = allowed;
    }

    /// The verbs `role` may call, in [`Verb::ALL`] order.
    pub fn verbs_of(&self, role: Role) -> Vec<Verb> {
        Verb::ALL.into_iter().filter(|&verb| self.allows(role, verb)).collect()
    }

    fn with(mut self, role: Role, verbs: &[Verb]) -> Gate {
        for &verb in verbs {
            self.set(role, verb, true);
        }
        self
    }
}

impl Default for Gate {
    /// The table of docs/engine.md, "The gate".
    fn default() -> Gate {
        use Verb::*;
        Gate::empty()
            .with(
                Role::Operator,
                &[
                    StartTask,
                    DispatchAttempt,
                    MintWorkerToken,
                    ReadTaskState,
                    CancelTask,
                    QuerySenior,
                    MarkPass,
                    MarkBlocked,
                    AttachSession,
                    DetachSession,
                    Heartbeat,
                    PollTask,
                    // The operator owns its runs, so it also watches them and answers their
                    // waits: one owner token serves the CLI, the HTTP API and the web view.
                    SubscribeEvents,
                    ReadTrace,
                    AnswerQuery,
                ],
            )
            // A worker runs its own attempt (the first five) and may run a swarm of its own
            // (the rest), which is why it shares some operator verbs.
            .with(
                Role::Worker,
                &[
                    FetchPrompt,
                    FetchData,
                    PostResult,
                    VerifyToken,
                    EmitOutput,
                    StartTask,
                    DispatchAttempt,
                    ReadTaskState,
                    PollTask,
                    CancelTask,
                ],
            )
            .with(Role::Observer, &[SubscribeEvents, ReadTrace, ReadTaskState])
            .with(Role::Senior, &[AnswerQuery, OverrideVerdict, PauseLoop, ResumeLoop, InjectDirective])
    }
}

/// Lists each role's verbs by name; the raw matrix would be 96 unreadable booleans.
impl fmt::Debug for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for role in Role::ALL {
            let verbs: Vec<&str> = self.verbs_of(role).into_iter().map(Verb::name).collect();
            map.entry(&role.name(), &verbs);
        }
        map.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The documented table written out again by name, independently of `Gate::default`, so a typo
    /// in either one fails the matrix test.
    const DOCUMENTED: [(&str, &[&str]); 4] = [
        (
            "operator",
            &[
                "start_task",
                "dispatch_attempt",
                "mint_worker_token",
                "read_task_state",
                "cancel_task",
                "query_senior",
                "mark_pass",
                "mark_blocked",
                "attach_session",
                "detach_session",
                "heartbeat",
                "poll_task",
                "subscribe_events",
                "read_trace",
                "answer_query",
            ],
        ),
        (
            "worker",
            &[
                "fetch_prompt",
                "fetch_data",
                "post_result",
                "verify_token",
                "emit_output",
                "start_task",
                "dispatch_attempt",
                "read_task_state",
                "poll_task",
                "cancel_task",
            ],
        ),
        ("observer", &["subscribe_events", "read_trace", "read_task_state"]),
        ("senior", &["answer_query", "override_verdict", "pause_loop", "resume_loop", "inject_directive"]),
    ];

    #[test]
    fn default_matches_design_for_every_role_and_verb() {
        let gate = Gate::default();
        let mut checked = 0;
        for (role_name, verbs) in DOCUMENTED {
            let role: Role = role_name.parse().unwrap();
            for verb in Verb::ALL {
                let expected = verbs.contains(&verb.name());
                assert_eq!(gate.allows(role, verb), expected, "{role} × {verb}");
                checked += 1;
            }
        }
        assert_eq!(checked, Role::COUNT * Verb::COUNT);
        // Every name in the literal table is a real verb (else `contains` above could never match),
        // and every verb belongs to some role, so the table also pins the verb names.
        let named: Vec<Verb> =
            DOCUMENTED.iter().flat_map(|(_, verbs)| verbs.iter().map(|n| n.parse().unwrap())).collect();
        for verb in Verb::ALL {
            assert!(named.contains(&verb), "{verb} is in no role's list");
        }
    }

    #[test]
    fn empty_allows_nothing_and_set_toggles_one_cell() {
        let mut gate = Gate::empty();
        for role in Role::ALL {
            assert!(gate.verbs_of(role).is_empty());
        }
        gate.set(Role::Observer, Verb::MarkPass, true);
        assert!(gate.allows(Role::Observer, Verb::MarkPass));
        assert!(!gate.allows(Role::Worker, Verb::MarkPass));
        assert!(!gate.allows(Role::Observer, Verb::MarkBlocked));
        assert_eq!(gate.verbs_of(Role::Observer), vec![Verb::MarkPass]);
        gate.set(Role::Observer, Verb::MarkPass, false);
        assert_eq!(gate, Gate::empty());
    }

    #[test]
    fn verbs_of_follows_verb_order() {
        let gate = Gate::default();
        assert_eq!(gate.verbs_of(Role::Observer), vec![Verb::ReadTaskState, Verb::SubscribeEvents, Verb::ReadTrace]);
        assert_eq!(gate.verbs_of(Role::Operator).len(), 15);
        assert_eq!(gate.verbs_of(Role::Worker).len(), 10);
        assert_eq!(gate.verbs_of(Role::Senior).len(), 5);
    }

    #[test]
    fn debug_lists_verbs_by_name() {
        let text = format!("{:?}", Gate::default());
        assert!(text.contains("\"observer\": [\"read_task_state\", \"subscribe_events\", \"read_trace\"]"), "{text}");
    }
}
