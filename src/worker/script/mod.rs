//! Script agents (`{source = "..."}` or `{file = "path.lua"}`, docs/agents.md): untrusted Lua run
//! in sandboxed VMs, each on its own thread, taken from a warm pool so a step never pays for a
//! fresh VM.
//!
//! The host thread hands a `Call` to the pool and awaits `Reply`s on a channel of its own:
//! the result, a request to run a bridge (bridges are host-VM functions, so they run here, in
//! the attempt's future), or the watchdog's word that the call overran its time. Dropping the
//! attempt's future cancels the call; the VM stops at its next instruction count.

mod bridge;
mod limits;
mod marshal;
mod pool;
mod sandbox;
mod watchdog;

use std::hash::{Hash, Hasher};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::LocalBoxFuture;
use mlua::chunk::ChunkMode;
use mlua::{Lua, LuaOptions, StdLib};
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};

use super::{Job, Spawner, Verdict, WorkerError, WorkerResult};
use crate::value::Value;
pub use bridge::HostBridges;
use bridge::{BridgeRequest, BridgeServe};
pub use limits::Limits;
use limits::{Breach, CallControl};
pub use pool::{PoolConfig, PoolStats, ScriptPool};

/// A script ready to run: the name its errors carry, and its code as the VMs compile it.
#[derive(Debug)]
pub struct Script {
    /// Identifies the code in each VM's cache of compiled chunks.
    key: u64,
    chunk_name: String,
    code: String,
}

impl Script {
    /// Checks that `source` compiles. `chunk_name` is `@path` for a file (errors read
    /// `path:line: message`) or `=[agent name]`.
    pub fn new(chunk_name: String, source: &str) -> Result<Script, String> {
        // The chunk receives its environment as its argument, so a VM binds each call's own
        // globals table without touching the compiled function. On the first line, so line
        // numbers stay the script's; a `#!` line is dropped as `lua` would.
        let body = match source.strip_prefix('#') {
            Some(rest) => rest.find('\n').map_or("", |at| &rest[at..]),
            None => source,
        };
        let code = format!("local _ENV = ...; {body}");
        let checker = Lua::new_with(StdLib::NONE, LuaOptions::new()).map_err(|e| e.to_string())?;
        checker.load(&code).set_name(&chunk_name).set_mode(ChunkMode::Text).into_function().map_err(|e| match e {
            mlua::Error::SyntaxError { message, .. } => format!("the script does not compile: {message}"),
            other => format!("the script does not compile: {other}"),
        })?;
        let mut hasher = std::hash::DefaultHasher::new();
        (&chunk_name, &code).hash(&mut hasher);
        Ok(Script { key: hasher.finish(), chunk_name, code })
    }

    /// The name the script's errors and tracebacks carry.
    pub fn chunk_name(&self) -> &str {
        &self.chunk_name
    }
}

/// One call, as a VM receives it.
struct Call {
    script: Arc<Script>,
    input: Value,
    agent: Arc<str>,
    task_id: Arc<str>,
    attempt: u32,
    limits: Limits,
    /// The names `host.<name>` offers: the host VM's bridges when the attempt began.
    bridges: Arc<[Arc<str>]>,
    control: Arc<CallControl>,
    reply: UnboundedSender<Reply>,
}

/// What a VM (or the watchdog) tells the attempt waiting for a call.
enum Reply {
    /// The call's outcome, and the tail of what it printed when it passed.
    Done(Result<Value, ScriptFailure>, Option<String>),
    Bridge(BridgeRequest),
    /// The call overran `timeout_ms` (the value); the VM is being stopped.
    TimedOut(u64),
}

/// A call that failed: the message and, when there is one, the value that goes with it.
#[derive(Debug)]
struct ScriptFailure {
    message: String,
    value: Option<Value>,
}

impl ScriptFailure {
    fn new(message: impl Into<String>) -> ScriptFailure {
        ScriptFailure { message: message.into(), value: None }
    }
}

impl From<Breach> for ScriptFailure {
    fn from(breach: Breach) -> ScriptFailure {
        ScriptFailure { message: breach.message(), value: breach.value() }
    }
}

impl From<ScriptFailure> for WorkerError {
    fn from(f: ScriptFailure) -> WorkerError {
        // The time limit, whether the hook or the watchdog caught it, carries
        // `{limit = "timeout_ms", max = N}`: it counts as a timeout, for `retry.on`.
        let timed_out = f.value.as_ref().and_then(|v| v.get("limit")).and_then(Value::as_str) == Some("timeout_ms");
        WorkerError { message: f.message, value: f.value, timed_out }
    }
}

/// What script agents take from their host: its VM pool and its bridges.
#[derive(Clone)]
pub struct ScriptRuntime {
    /// The VM threads script attempts run on.
    pub pool: Rc<ScriptPool>,
    /// The host functions scripts may call as `host.<name>`.
    pub bridges: Rc<HostBridges>,
}

/// Runs one script agent's attempts on the pool.
pub struct ScriptSpawner {
    script: Arc<Script>,
    limits: Limits,
    runtime: ScriptRuntime,
}

impl ScriptSpawner {
    /// A spawner running `script` under `limits` on `runtime`.
    pub fn new(script: Script, limits: Limits, runtime: ScriptRuntime) -> ScriptSpawner {
        ScriptSpawner { script: Arc::new(script), limits, runtime }
    }
}

impl Spawner for ScriptSpawner {
    fn spawn(&self, job: Job) -> LocalBoxFuture<'static, WorkerResult> {
        let script = self.script.clone();
        let limits = self.limits;
        let runtime = self.runtime.clone();
        Box::pin(async move {
            let (reply, mut replies) = mpsc::unbounded_channel();
            let host = job.host.clone();
            let control = Arc::new(CallControl::default());
            let call = Call {
                script,
                input: job.input,
                agent: job.agent,
                task_id: job.task_id,
                attempt: job.attempt,
                limits,
                bridges: runtime.bridges.names(),
                control,
                reply,
            };
            // Cancels the call if this future is dropped before the VM answers.
            let flight = runtime.pool.submit(call).map_err(WorkerError::new)?;
            let mut next = if flight.alone() { spin_for_reply(&mut replies, runtime.pool.config().spin) } else { None };
            loop {
                let reply = match next.take() {
                    Some(reply) => reply,
                    None => replies
                        .recv()
                        .await
                        .ok_or_else(|| WorkerError::new("the script VM stopped without answering"))?,
                };
                match reply {
                    Reply::Done(result, printed) => {
                        if let Some(text) = printed {
                            host.emit(Value::from_pairs([
                                ("type", Value::string("progress")),
                                ("stage", Value::string("print")),
                                ("note", Value::string(text.as_str())),
                            ]));
                        }
                        return result.map(Verdict::Pass).map_err(WorkerError::from);
                    }
                    Reply::TimedOut(ms) => return Err(ScriptFailure::from(Breach::Time(ms)).into()),
                    Reply::Bridge(request) => match runtime.bridges.serve(request, &mut replies).await {
                        BridgeServe::Answered => {}
                        BridgeServe::Interrupted(reply) => next = reply,
                    },
                }
            }
        })
    }
}

/// Waits for a reply by polling, for at most `budget`: a small script answers in a few
/// microseconds, sooner than parking the host thread and being woken through the runtime.
/// It yields between polls, so on a busy machine the VM thread can have the core.
fn spin_for_reply(replies: &mut UnboundedReceiver<Reply>, budget: Duration) -> Option<Reply> {
    if budget.is_zero() {
        return None;
    }
    let started = Instant::now();
    loop {
        match replies.try_recv() {
            Ok(reply) => return Some(reply),
            Err(mpsc::error::TryRecvError::Disconnected) => return None,
            Err(mpsc::error::TryRecvError::Empty) if started.elapsed() >= budget => return None,
            Err(mpsc::error::TryRecvError::Empty) => std::thread::yield_now(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_are_checked_and_keep_their_line_numbers() {
        let err = Script::new("=[agent s]".into(), "local a = 1\n\nlocal = 2").unwrap_err();
        assert_eq!(err, "the script does not compile: [agent s]:3: <name> expected near '='");
        let script = Script::new("@a.lua".into(), "#!/usr/bin/env lua\nreturn 1").unwrap();
        assert_eq!(script.code, "local _ENV = ...; \nreturn 1");
        let other = Script::new("@b.lua".into(), "#!/usr/bin/env lua\nreturn 1").unwrap();
        assert_ne!(script.key, other.key, "the chunk name is part of the key");
    }
}
