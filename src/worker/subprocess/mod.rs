//! `subprocess` agents (docs/agents.md): a program started for every attempt, or kept alive and fed
//! one request per line.
//!
//! Where things live: the spec and the factory are here; [`launch`] resolves the program and
//! builds its command; [`process`] owns a running child and kills its process group when it is
//! dropped; [`stderr`] keeps the bounded tail of what a child writes to stderr; [`stream`] cuts
//! stdout into items (NDJSON lines, SSE events, length-prefixed frames); [`output`] reads an item
//! as an output event; [`one_shot`] runs one attempt in a fresh process;
//! [`keep_alive`] serves attempts from a pool of long-lived children.
//!
//! # What a child must write
//!
//! - **Plain mode** (no `stream_mode`): anything. stdout parsed as JSON (any JSON, after
//!   trimming whitespace) is the value; otherwise the value is `{raw = <stdout>, stderr = <tail>}`,
//!   with bytes that are not UTF-8 replaced by U+FFFD. stdout is capped at 64 MiB.
//! - **Stream modes**: every item must be valid UTF-8, valid JSON, and a known output event
//!   with its fields of the right types (unknown extra fields are kept and passed on). The first
//!   item that is not fails the attempt at once, and the child's process group is killed; the
//!   message says where (`stdout line 3`, `stdout event at line 7`, `stdout frame 2`), what is
//!   wrong, and quotes the first 120 characters. Blank NDJSON lines are skipped; in SSE, `:`
//!   comments and `event:`, `id:`, `retry:` fields are ignored and any other field is an error.
//!   A line or frame over 16 MiB is an error, and so is a frame of length 0 or a stream that
//!   ends inside a frame.
//!
//! # How an attempt ends
//!
//! Plain mode passes when the child exits with 0; a stream passes when its last `final` says
//! `ok = true` and the child exits with 0. Otherwise it fails with a message naming the exit
//! code or signal and ending with the stderr tail (the last 8 KiB), and with the value the
//! child produced, if any, as the error's value. `timeout_ms` fails the attempt ("timed out
//! after N ms") and kills the process group; cancel and engine shutdown (the attempt's future
//! being dropped) kill it as well. When the child exits by itself, whatever it left running in
//! its group is killed too. With `use_stdin = false` the input is one argument, which Linux caps at
//! 128 KiB.
//!
//! # Keep-alive requests
//!
//! With `keep_alive = true`, each attempt writes one line to a child's stdin,
//! `{"agent":..,"attempt":..,"id":..,"input":..,"task_id":..,"token":..}` (compact JSON, keys
//! sorted), and reads output events (framed by `stream_mode`, NDJSON when none is given) up to
//! the first `final`, which is the attempt's result (`ok = false` fails it). `id` is a number
//! unique to the request, and every event of the answer must carry it back as `"id"`: an event
//! with another id or none fails the attempt (the child answered out of turn, and is replaced).
//! Children start on first use,
//! with `SWARM_AGENT` set (the rest of the metadata is per request); a child whose answer went
//! wrong (it exited, timed out, was cancelled, wrote garbage, more than its answer, or anything
//! between requests) is killed, and the next request starts a new one. `timeout_ms` bounds each
//! request; error messages carry the stderr the child wrote during the request.

pub mod keep_alive;
pub mod launch;
pub mod one_shot;
pub mod output;
pub mod process;
pub mod reaper;
pub mod stderr;
pub mod stream;

use std::rc::Rc;
use std::time::Duration;

use super::spec::SpecReader;
use super::{BuildContext, Spawner, SpawnerFactory};
use crate::schema::AgentDef;
use crate::value::Value;
use keep_alive::KeepAliveSpawner;
use launch::Launch;
use one_shot::ProcessSpawner;

/// How a child's stdout carries output events (docs/agents.md, "Subprocesses").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamMode {
    /// stdout is one JSON document (or raw text).
    Plain,
    /// One JSON event per line; blank lines are skipped.
    NdjsonLines,
    /// Server-Sent Events: `data:` lines joined, a blank line ends an event.
    SseEvents,
    /// A 4-byte big-endian length, then that many bytes of JSON.
    LengthPrefixed,
}

/// The environment variables the engine sets for every child; a spec may not set them.
/// `SWARM_OWNER` tags the child and everything it starts (see [`reaper`]).
pub const RESERVED_ENV: [&str; 6] =
    ["SWARM_TASK_ID", "SWARM_ATTEMPT", "SWARM_AGENT", "SWARM_TOKEN", API_ENV, reaper::OWNER_ENV];

/// Where a child reaches its host's API (`unix:PATH`), when the host listens for children.
pub const API_ENV: &str = "SWARM_API";
/// The most children a keep-alive agent may keep (each is a process; a semaphore holds the count).
pub const MAX_POOL_SIZE: u64 = 1024;

/// A checked `subprocess` spec.
#[derive(Clone, Debug, PartialEq)]
pub struct SubprocessSpec {
    /// The program, as written: a name looked up on `PATH`, or a path.
    pub program: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// The input goes as JSON on stdin; otherwise as the last argument.
    pub use_stdin: bool,
    /// How stdout carries output events.
    pub stream_mode: StreamMode,
    /// Extra environment variables, sorted by name; never one of [`RESERVED_ENV`].
    pub env: Vec<(String, String)>,
    /// The directory to run in, as written: relative to the blueprint's directory; `None` is the host's.
    pub cwd: Option<String>,
    /// Each attempt (or keep-alive request) is stopped after this long.
    pub timeout_ms: Option<u64>,
    /// Children stay running and serve one request per line.
    pub keep_alive: bool,
    /// With `keep_alive`, how many children serve requests at once.
    pub pool_size: u64,
}

impl SubprocessSpec {
    /// Reads and checks a spec; `Err` names the field that is wrong.
    pub fn parse(spec: &Value) -> Result<SubprocessSpec, String> {
        let mut r = SpecReader::new(spec, "{program = \"...\", args = {...}}")?;
        let program = r.required_string("program")?.to_string();
        let args = r.strings("args")?;
        let use_stdin = r.boolean("use_stdin")?.unwrap_or(true);
        let stream_mode = match r.string("stream_mode")? {
            None => StreamMode::Plain,
            Some("ndjson_lines") => StreamMode::NdjsonLines,
            Some("sse_events") => StreamMode::SseEvents,
            Some("length_prefixed") => StreamMode::LengthPrefixed,
            Some(other) => {
                return Err(format!(
                    "`stream_mode` must be ndjson_lines, sse_events or length_prefixed, got '{other}'"
                ));
            }
        };
        let env = r.string_map("env")?;
        let cwd = r.string("cwd")?.map(str::to_string);
        let timeout_ms = r.bounded("timeout_ms", crate::flow::ir::MAX_TIMEOUT_MS)?;
        let keep_alive = r.boolean("keep_alive")?.unwrap_or(false);
        let pool_size = r.bounded("pool_size", MAX_POOL_SIZE)?;
        r.finish()?;
        if pool_size.is_some() && !keep_alive {
            return Err("`pool_size` only applies with `keep_alive = true`".into());
        }
        if keep_alive && !use_stdin {
            return Err("`use_stdin = false` cannot go with `keep_alive = true`: requests arrive on stdin".into());
        }
        if let Some((name, _)) = env.iter().find(|(k, _)| RESERVED_ENV.contains(&k.as_str())) {
            return Err(format!("`env.{name}` is set by the engine for every attempt"));
        }
        Ok(SubprocessSpec {
            program,
            args,
            use_stdin,
            stream_mode,
            env,
            cwd,
            timeout_ms,
            keep_alive,
            pool_size: pool_size.unwrap_or(1),
        })
    }
}

/// Builds `subprocess` spawners. The program is resolved to an absolute path here, once, so a
/// missing program is a compile error and no attempt searches `PATH`.
pub struct SubprocessFactory;

impl SpawnerFactory for SubprocessFactory {
    fn build(&self, agent: &AgentDef, _hint: Option<&Value>, cx: &mut BuildContext) -> Result<Rc<dyn Spawner>, String> {
        let spec = SubprocessSpec::parse(&agent.spec)?;
        let launch = Launch::resolve(&spec, cx.base_dir)?;
        let timeout = spec.timeout_ms.map(Duration::from_millis);
        if spec.keep_alive {
            let pool_size = usize::try_from(spec.pool_size).unwrap_or(usize::MAX);
            let spawner = KeepAliveSpawner::new(launch, &agent.name, spec.stream_mode, pool_size, timeout);
            Ok(Rc::new(spawner))
        } else {
            Ok(Rc::new(ProcessSpawner::new(launch, spec.stream_mode, spec.use_stdin, timeout)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::from_json;

    #[test]
    fn parses_a_full_spec_and_defaults() {
        let spec = SubprocessSpec::parse(&from_json(r#"{"program":"cat"}"#).unwrap()).unwrap();
        assert!(spec.use_stdin && spec.stream_mode == StreamMode::Plain && spec.pool_size == 1);
        let full = r#"{"program":"/bin/sh","args":["-c","x"],"use_stdin":true,"stream_mode":"sse_events",
            "env":{"A":"1"},"cwd":"/tmp","timeout_ms":50,"keep_alive":true,"pool_size":2}"#;
        let spec = SubprocessSpec::parse(&from_json(full).unwrap()).unwrap();
        assert_eq!(spec.stream_mode, StreamMode::SseEvents);
        assert_eq!(spec.env, [("A".to_string(), "1".to_string())]);
        assert_eq!((spec.timeout_ms, spec.pool_size), (Some(50), 2));
    }

    #[test]
    fn rejects_bad_specs_with_the_field_named() {
        for (spec, needle) in [
            (r#"{}"#, "`program` is required"),
            (r#"{"program":"x","stream_mode":"lines"}"#, "stream_mode"),
            (r#"{"program":"x","args":[1]}"#, "`args`"),
            (r#"{"program":"x","timeout_ms":0}"#, "`timeout_ms`"),
            (r#"{"program":"x","pool_size":2}"#, "keep_alive"),
            (r#"{"program":"x","keep_alive":true,"use_stdin":false}"#, "requests arrive on stdin"),
            (r#"{"program":"x","env":{"SWARM_TOKEN":"t"}}"#, "`env.SWARM_TOKEN` is set by the engine"),
            (r#"{"program":"x","porgram":"y"}"#, "unknown field `porgram`"),
            (r#""cat""#, "must be an object"),
        ] {
            let err = SubprocessSpec::parse(&from_json(spec).unwrap()).unwrap_err();
            assert!(err.contains(needle), "{spec}: {err}");
        }
    }
}
