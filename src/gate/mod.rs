//! The capability gate (docs/engine.md): which role may call which engine verb, and the signed
//! capability tokens that carry a role to the engine.
//!
//! - [`Role`] and [`Verb`] (this file) are the vocabulary.
//! - [`Gate`] (`table.rs`) is the role × verb table every engine operation consults.
//! - [`CapToken`] and [`SigningKey`] (`token.rs`) are the HMAC-signed token and its key.
//! - [`TokenRegistry`] (`registry.rs`) mints tokens, keeps their server-side records and runs
//!   the full verification in a fixed order (docs/engine.md, "Tokens").
//! - [`scrub`](scrub::scrub) (`scrub.rs`) replaces tokens in text with their fingerprints.
//!
//! Secrets stay out of text: no error, `Debug` output or map key holds a token, nonce, signature
//! or key; diagnostics use [`CapToken::fingerprint`].

mod error;
pub mod registry;
pub mod scrub;
pub mod table;
pub mod token;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use registry::{Caller, Grant, HeldToken, TokenError, TokenRegistry, Verified, VerifyContext};
pub use table::Gate;
pub use token::{CapToken, KeyError, SigningKey};

/// A name that is not one of the known roles or verbs. The message lists the valid names, so a
/// typo in a config or a Lua call is fixed without opening the docs.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} `{given}`; expected one of: {}", .valid.join(", "))]
pub struct ParseNameError {
    /// `"role"` or `"verb"`.
    pub what: &'static str,
    /// The name that was given.
    pub given: String,
    /// Every valid name, in declaration order.
    pub valid: &'static [&'static str],
}

/// Declares a fieldless enum whose variants have fixed snake_case names, with `ALL`, `COUNT`,
/// `name()`, `Display` and `FromStr`. Role and Verb need exactly the same machinery; one macro
/// keeps the name tables and the serde names from drifting apart.
macro_rules! named_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $ty:ident as $what:literal {
            $( $(#[$vmeta:meta])* $variant:ident = $name:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        $vis enum $ty {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $ty {
            /// Every value, in declaration order (which is also the order of the discriminants,
            /// so `x as usize` indexes this array).
            pub const ALL: [$ty; [$($name),+].len()] = [$($ty::$variant),+];
            /// How many values there are.
            pub const COUNT: usize = Self::ALL.len();
            const NAMES: [&'static str; Self::COUNT] = [$($name),+];

            /// The snake_case name, as in docs/engine.md, serde and Lua.
            pub fn name(self) -> &'static str {
                Self::NAMES[self as usize]
            }

            /// The position in `ALL`, for table lookups.
            pub(crate) fn index(self) -> usize {
                self as usize
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }

        impl FromStr for $ty {
            type Err = ParseNameError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match Self::NAMES.iter().position(|n| *n == s) {
                    Some(i) => Ok(Self::ALL[i]),
                    None => Err(ParseNameError { what: $what, given: s.to_owned(), valid: &Self::NAMES }),
                }
            }
        }
    };
}

named_enum! {
    /// Who holds a token, and so which verbs it may call.
    pub enum Role as "role" {
        /// Drives a run: starts tasks, dispatches attempts, mints worker tokens, records verdicts.
        /// Not to be confused with an operator seat (`OperatorDef`), which an `operator` agent asks.
        Operator = "operator",
        /// Runs one attempt; may also start sub-tasks (a swarm of its own).
        Worker = "worker",
        /// Reads events and traces; changes nothing but can see task state.
        Observer = "observer",
        /// Answers operators' queries and may steer the loop.
        Senior = "senior",
    }
}

named_enum! {
    /// An engine operation. Every engine operation checks its verb against the [`Gate`].
    pub enum Verb as "verb" {
        /// Create a task (a sub-task, when a worker calls it).
        StartTask = "start_task",
        /// Run the next attempt of a task on its worker.
        DispatchAttempt = "dispatch_attempt",
        /// Mint a worker token bound to a task.
        MintWorkerToken = "mint_worker_token",
        /// Read a task's status and last result.
        ReadTaskState = "read_task_state",
        /// Cancel a task that has not finished.
        CancelTask = "cancel_task",
        /// Suspend a task on a question to a senior.
        QuerySenior = "query_senior",
        /// Record a pass verdict for a task.
        MarkPass = "mark_pass",
        /// Record a blocked verdict for a task.
        MarkBlocked = "mark_blocked",
        /// Attach an operator session.
        AttachSession = "attach_session",
        /// Detach an operator session.
        DetachSession = "detach_session",
        /// Keep an operator session attached.
        Heartbeat = "heartbeat",
        /// Wait for a task to change state.
        PollTask = "poll_task",
        /// Read the prompt of the worker's own attempt.
        FetchPrompt = "fetch_prompt",
        /// Read a named resource.
        FetchData = "fetch_data",
        /// Set the result of the worker's own attempt.
        PostResult = "post_result",
        /// Check a token (a worker checking the one it was given).
        VerifyToken = "verify_token",
        /// Append an output event (§7) to the worker's attempt.
        EmitOutput = "emit_output",
        /// Receive the engine's event stream.
        SubscribeEvents = "subscribe_events",
        /// Read the recorded trace of a run.
        ReadTrace = "read_trace",
        /// Answer a suspended task's question, resuming it.
        AnswerQuery = "answer_query",
        /// Replace a task's verdict.
        OverrideVerdict = "override_verdict",
        /// Pause the run loop.
        PauseLoop = "pause_loop",
        /// Resume a paused run loop.
        ResumeLoop = "resume_loop",
        /// Add a directive to a task's next attempt.
        InjectDirective = "inject_directive",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_is_in_discriminant_order() {
        for (i, role) in Role::ALL.iter().enumerate() {
            assert_eq!(role.index(), i);
        }
        for (i, verb) in Verb::ALL.iter().enumerate() {
            assert_eq!(verb.index(), i);
        }
        assert_eq!(Role::COUNT, 4);
        assert_eq!(Verb::COUNT, 24);
    }

    #[test]
    fn names_round_trip_through_from_str_display_and_serde() {
        for role in Role::ALL {
            assert_eq!(role.name().parse::<Role>(), Ok(role));
            assert_eq!(role.to_string(), role.name());
            assert_eq!(serde_json::to_string(&role).unwrap(), format!("\"{}\"", role.name()));
            assert_eq!(serde_json::from_str::<Role>(&format!("\"{role}\"")).unwrap(), role);
        }
        for verb in Verb::ALL {
            assert_eq!(verb.name().parse::<Verb>(), Ok(verb));
            assert_eq!(verb.to_string(), verb.name());
            assert_eq!(serde_json::to_string(&verb).unwrap(), format!("\"{}\"", verb.name()));
            assert_eq!(serde_json::from_str::<Verb>(&format!("\"{verb}\"")).unwrap(), verb);
        }
    }

    #[test]
    fn role_names_are_the_design_names() {
        // The verb names are pinned by the gate table's tests, which spell out every verb.
        let roles: Vec<&str> = Role::ALL.iter().map(|r| r.name()).collect();
        assert_eq!(roles, ["operator", "worker", "observer", "senior"]);
    }

    #[test]
    fn unknown_names_list_the_valid_ones() {
        let err = "admin".parse::<Role>().unwrap_err();
        assert_eq!(err.to_string(), "unknown role `admin`; expected one of: operator, worker, observer, senior");
        let err = "start".parse::<Verb>().unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("unknown verb `start`; expected one of: start_task, "), "{text}");
        assert!(text.ends_with("inject_directive"), "{text}");
        // Names are case-sensitive, as in serde and Lua.
        assert!("Operator".parse::<Role>().is_err());
    }
}
