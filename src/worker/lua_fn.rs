//! Inline Lua agents: functions kept in the host VM (what an inline function in a Lua blueprint
//! becomes), each attempt a coroutine the interrupt hook may preempt. Also what such an agent
//! gets: its `task` (fields, `task.emit`, `task:dispatch`), `swarm.block(v)`, and the structured
//! error tables that `task:dispatch` and runs raise.

use std::rc::Rc;

use futures::future::LocalBoxFuture;
use mlua::{
    AnyUserData, Function, Lua, MultiValue, Table, UserData, UserDataFields, UserDataMethods, Value as LuaValue,
    WeakLua,
};

use crate::engine::spawner::{Job, Spawner, TaskHost, Verdict, WorkerError, WorkerResult};
use crate::flow::{ErrorKind, FlowError};
use crate::interrupt::{Limit, StopReason};
use crate::value::Value;
use crate::value::lua::{from_lua, lua_error_message, to_lua};
use crate::value::raised::{Raised, raised};

/// Registry key of the metatable that marks `swarm.block(v)` results.
const BLOCK_MT: &str = "swarm.block_mt";
/// Registry key of the `pcall` wrapper agents run under.
const PROTECTED_CALL: &str = "swarm.protected_call";
/// Registry key of the metatable of error tables.
const ERROR_MT: &str = "swarm.error_mt";
/// Registry key of `task.dispatch`.
const DISPATCH: &str = "swarm.task_dispatch";
/// Registry key of `task.wait`.
const WAIT: &str = "swarm.task_wait";

/// The `pcall` an agent runs under. An inline agent's task is kept, for as long as the agent
/// runs, under the coroutine running it, so `swarm.wait` (which takes no task) finds it.
const PROTECTED_CALL_LUA: &str = r#"
local pcall, running, type = pcall, coroutine.running, type
local current = setmetatable({}, { __mode = "k" })
local function call(f, a, b)
  if type(b) ~= "userdata" then
    return pcall(f, a, b)
  end
  local co = running()
  local outer = current[co]
  current[co] = b
  local ok, result = pcall(f, a, b)
  current[co] = outer
  return ok, result
end
return call, current
"#;

/// Turns a native answering `ok, value_or_error` into a Lua function that returns the value or
/// raises the error table itself (an error a Rust function raises reaches `pcall` as opaque
/// userdata), at its caller's line.
const RAISING_LUA: &str = r#"
local raw = ...
local error = error
return function(...)
  local ok, result = raw(...)
  if not ok then
    error(result, 2)
  end
  return result
end
"#;

/// `swarm.wait(name, opts)`: `task:wait` for the task whose agent is running.
const SWARM_WAIT_LUA: &str = r#"
local wait, current = ...
local error, running = error, coroutine.running
return function(name, opts)
  local task = current[running()]
  if task == nil then
    error("swarm.wait: only an inline agent can wait (in a flow, use F.wait)", 2)
  end
  return wait(task, name, opts)
end
"#;

/// Installs what inline agents rely on: `swarm.block`, the `pcall` wrapper they run under and
/// `task:dispatch`.
pub fn install(lua: &Lua, swarm: &Table) -> mlua::Result<()> {
    let block_mt = lua.create_table()?;
    block_mt.set("__name", "swarm.Blocked")?;
    lua.set_named_registry_value(BLOCK_MT, &block_mt)?;
    swarm.set(
        "block",
        lua.create_function(move |lua, value: LuaValue| {
            let t = lua.create_table()?;
            t.set("value", value)?;
            t.set_metatable(Some(block_mt.clone()))?;
            Ok(t)
        })?,
    )?;

    let (protected, current): (Function, Table) =
        lua.load(PROTECTED_CALL_LUA).set_name("=[swarm agent call]").call(())?;
    lua.set_named_registry_value(PROTECTED_CALL, protected)?;
    let raw_wait = lua.create_async_function(|lua, (task, name, opts): (LuaValue, LuaValue, LuaValue)| async move {
        match wait(&lua, task, name, opts).await? {
            Ok(value) => Ok((true, value)),
            Err(error) => Ok((false, LuaValue::Table(error))),
        }
    })?;
    let task_wait: Function = lua.load(RAISING_LUA).set_name("=[swarm task:wait]").call(raw_wait)?;
    let swarm_wait: Function = lua.load(SWARM_WAIT_LUA).set_name("=[swarm.wait]").call((&task_wait, current))?;
    lua.set_named_registry_value(WAIT, task_wait)?;
    swarm.set("wait", swarm_wait)?;
    let raw_dispatch =
        lua.create_async_function(|lua, (task, agent, input): (LuaValue, LuaValue, LuaValue)| async move {
            match dispatch(&lua, task, agent, input).await? {
                Ok(value) => Ok((true, value)),
                Err(error) => Ok((false, LuaValue::Table(error))),
            }
        })?;
    let dispatch: Function = lua.load(RAISING_LUA).set_name("=[swarm task:dispatch]").call(raw_dispatch)?;
    lua.set_named_registry_value(DISPATCH, dispatch)?;
    Ok(())
}

/// Runs an inline Lua function as a coroutine on the host VM.
pub struct LuaFnSpawner {
    /// The VM the function lives in, held weakly so a spawner kept by an engine does not keep the VM alive.
    pub lua: WeakLua,
    /// The agent's function.
    pub func: Function,
}

impl Spawner for LuaFnSpawner {
    fn spawn(&self, job: Job) -> LocalBoxFuture<'static, WorkerResult> {
        let lua = self.lua.clone();
        let func = self.func.clone();
        Box::pin(async move {
            let lua = lua.try_upgrade().ok_or_else(|| WorkerError::new("the Lua VM is gone"))?;
            let input = job.input.clone();
            let task = lua.create_userdata(LuaTask { job }).map_err(|e| WorkerError::new(lua_error_message(&e)))?;
            call_agent(&lua, &func, &input, LuaValue::UserData(task)).await
        })
    }
}

/// `pcall(f, a, b)` as a function the host calls with `call_async` (a Lua function, so a
/// raised table comes back as itself rather than as mlua's text of it).
pub fn protected_call(lua: &Lua) -> mlua::Result<Function> {
    lua.named_registry_value(PROTECTED_CALL)
}

/// Calls an agent-shaped Lua function `f(input, second)` as a coroutine and marshals what it
/// returns. It runs under a Lua `pcall`, so a raised table reaches here as itself (mlua would
/// make it the text `table: 0x…`): the attempt fails with its `message` and the table as its value.
pub async fn call_agent(lua: &Lua, func: &Function, input: &Value, second: LuaValue) -> WorkerResult {
    let fail = |e: mlua::Error| match crate::interrupt::lua::stopped(&e) {
        // Stopped where it could not yield, past its attempt's deadline: a timeout, so the
        // step's retry policy treats it as one.
        Some(reason @ StopReason::Deadline(Limit::Attempt, _)) => WorkerError::timed_out(reason.to_string()),
        _ => WorkerError::new(lua_error_message(&e)),
    };
    let input = to_lua(lua, input).map_err(fail)?;
    let protected = protected_call(lua).map_err(fail)?;
    let (ok, returned): (bool, LuaValue) =
        crate::interrupt::lua::call_async(lua, &protected, (func, input, second)).await.map_err(fail)?;
    match (ok, returned) {
        (true, returned) => marshal(lua, returned),
        // What the host raised (a limit, a cancellation): as if no pcall had caught it.
        (false, LuaValue::Error(e)) => Err(fail(*e)),
        (false, other) => {
            // A wait that timed out, not caught by the agent: the attempt timed out.
            let timed_out = is_error_table(lua, &other, "timeout");
            let Raised { message, value } = raised(lua, &other, "the agent");
            Err(WorkerError { message, value, timed_out })
        }
    }
}

/// A returned value passes; `swarm.block(v)` blocks with `v`.
fn marshal(lua: &Lua, returned: LuaValue) -> WorkerResult {
    let bad = |e: crate::value::lua::ConvertError| WorkerError::new(format!("the agent returned {e}"));
    if let LuaValue::Table(t) = &returned
        && let Some(mt) = t.metatable()
        && let Ok(block_mt) = lua.named_registry_value::<Table>(BLOCK_MT)
        && mt.to_pointer() == block_mt.to_pointer()
    {
        let value: LuaValue = t.raw_get("value").map_err(|e| WorkerError::new(e.to_string()))?;
        return Ok(Verdict::Blocked(from_lua(lua, &value).map_err(bad)?));
    }
    Ok(Verdict::Pass(from_lua(lua, &returned).map_err(bad)?))
}

/// The `task` an inline agent receives: `id`, `attempt`, `agent`, `token`, `runtime` (the
/// hints middleware added), `emit(event)`, `task:note(layer, value)` and `task:dispatch(agent, input)`.
struct LuaTask {
    job: Job,
}

impl UserData for LuaTask {
    fn add_fields<F: UserDataFields<Self>>(fields: &mut F) {
        fields.add_field_method_get("id", |_, this| Ok(this.job.task_id.to_string()));
        fields.add_field_method_get("attempt", |_, this| Ok(this.job.attempt));
        fields.add_field_method_get("agent", |_, this| Ok(this.job.agent.to_string()));
        fields.add_field_method_get("token", |_, this| Ok(this.job.host.token()));
        fields.add_field_method_get("runtime", |lua, this| to_lua(lua, &this.job.runtime));
        fields.add_field_method_get("operator", |_, this| Ok(this.job.operator.as_deref().map(str::to_string)));
        fields.add_field_method_get("dispatch", |lua, _| lua.named_registry_value::<Function>(DISPATCH));
        fields.add_field_method_get("wait", |lua, _| lua.named_registry_value::<Function>(WAIT));
        // `task.emit(event)` and `task:emit(event)` both work: a leading task is skipped.
        fields.add_field_method_get("emit", |lua, this| {
            let host: Rc<dyn TaskHost> = this.job.host.clone();
            lua.create_function(move |lua, args: MultiValue| {
                let mut args = args.into_iter();
                let mut event = args.next().unwrap_or(LuaValue::Nil);
                if let LuaValue::UserData(ud) = &event
                    && ud.is::<LuaTask>()
                {
                    event = args.next().unwrap_or(LuaValue::Nil);
                }
                let value = from_lua(lua, &event).map_err(|e| mlua::Error::runtime(format!("task.emit: {e}")))?;
                host.emit(value);
                Ok(())
            })
        });
    }

    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        // `task:note(layer, value)`: a `layer_note` event of the task, as a middleware layer
        // records one, for an agent that reports on itself (a model's token usage).
        methods.add_method("note", |lua, this, (layer, note): (String, LuaValue)| {
            if layer.is_empty() {
                return Err(mlua::Error::runtime("task:note: the layer's name must not be empty"));
            }
            let note = from_lua(lua, &note).map_err(|e| mlua::Error::runtime(format!("task:note: {e}")))?;
            this.job.host.note(&layer, note);
            Ok(())
        });
        methods.add_meta_method("__tostring", |_, this, ()| Ok(format!("swarm.Task({})", this.job.task_id)));
    }
}

/// Whether a userdata is an inline agent's task.
pub fn is_task(ud: &AnyUserData) -> bool {
    ud.is::<LuaTask>()
}

/// Runs `task:dispatch(agent, input)`: the sub-task's value, or the error table to raise,
/// `{kind, message, step, value?}` (kind `depth_exceeded`, `failed`, `timeout`, ...).
async fn dispatch(
    lua: &Lua,
    task: LuaValue,
    agent: LuaValue,
    input: LuaValue,
) -> mlua::Result<Result<LuaValue, Table>> {
    let refuse = |message: String| -> mlua::Result<Result<LuaValue, Table>> {
        let error = FlowError::new(ErrorKind::Dispatch, format!("task:dispatch: {message}"));
        Ok(Err(flow_error_table(lua, &error, None)?))
    };
    let host = match &task {
        LuaValue::UserData(ud) if ud.is::<LuaTask>() => ud.borrow::<LuaTask>()?.job.host.clone(),
        other => return refuse(format!("call it as task:dispatch(agent, input), not with a {}", other.type_name())),
    };
    let agent = match &agent {
        LuaValue::String(s) => s.to_string_lossy(),
        other => return refuse(format!("the agent must be a name (a string), got {}", other.type_name())),
    };
    let input = match from_lua(lua, &input) {
        Ok(input) => input,
        Err(e) => return refuse(format!("the input for '{agent}': {e}")),
    };
    match host.dispatch(&agent, input).await {
        Ok(value) => Ok(Ok(to_lua(lua, &value)?)),
        Err(e) => {
            let table = flow_error_table(lua, &e.error, None)?;
            table.set("kind", e.kind())?;
            table.set("message", format!("task:dispatch('{agent}'): {}", e.error.message))?;
            Ok(Err(table))
        }
    }
}

/// Runs `task:wait(name, {timeout_ms})`: the signal's value, or the error table to raise
/// (`{kind = "timeout", ...}` when it timed out).
async fn wait(lua: &Lua, task: LuaValue, name: LuaValue, opts: LuaValue) -> mlua::Result<Result<LuaValue, Table>> {
    let refuse = |message: String| -> mlua::Result<Result<LuaValue, Table>> {
        let error = FlowError::new(ErrorKind::Dispatch, format!("swarm.wait: {message}"));
        let table = flow_error_table(lua, &error, None)?;
        table.set("kind", "invalid_argument")?;
        Ok(Err(table))
    };
    let host = match &task {
        LuaValue::UserData(ud) if ud.is::<LuaTask>() => ud.borrow::<LuaTask>()?.job.host.clone(),
        other => return refuse(format!("call it as task:wait(name, opts), not with a {}", other.type_name())),
    };
    let name = match &name {
        LuaValue::String(s) if !s.as_bytes().is_empty() => s.to_string_lossy(),
        other => return refuse(format!("the signal's name must be a non-empty string, got {}", other.type_name())),
    };
    let timeout_ms = match &opts {
        LuaValue::Nil => None,
        LuaValue::Table(t) => {
            for pair in t.pairs::<LuaValue, LuaValue>() {
                let (key, _) = pair?;
                if !matches!(&key, LuaValue::String(k) if k.as_bytes() == b"timeout_ms") {
                    return refuse(format!("unknown option {} (options: timeout_ms)", key.to_string()?));
                }
            }
            match t.get::<LuaValue>("timeout_ms")? {
                LuaValue::Nil => None,
                ms => {
                    let max = crate::flow::ir::MAX_TIMEOUT_MS;
                    let whole = match ms {
                        LuaValue::Integer(n) => Some(n),
                        LuaValue::Number(f) if f.fract() == 0.0 && (1.0..9.0e15).contains(&f) => Some(f as i64),
                        _ => None,
                    };
                    match whole.filter(|n| (1..=max as i64).contains(n)) {
                        Some(n) => Some(n as u64),
                        None => return refuse(format!("timeout_ms must be a whole number of ms from 1 to {max}")),
                    }
                }
            }
        }
        other => return refuse(format!("opts must be a table, got {}", other.type_name())),
    };
    match host.wait(&name, timeout_ms, None).await {
        Ok(value) => Ok(Ok(to_lua(lua, &value)?)),
        Err(e) => Ok(Err(flow_error_table(lua, &e, None)?)),
    }
}

/// Whether `value` is one of the error tables the host raises, of `kind`.
fn is_error_table(lua: &Lua, value: &LuaValue, kind: &str) -> bool {
    let LuaValue::Table(t) = value else { return false };
    let ours = match (t.metatable(), lua.named_registry_value::<Table>(ERROR_MT)) {
        (Some(mt), Ok(error_mt)) => mt.to_pointer() == error_mt.to_pointer(),
        _ => false,
    };
    ours && t.raw_get::<Option<String>>("kind").ok().flatten().as_deref() == Some(kind)
}

/// The metatable of the error tables scripts catch: its `__tostring` reads
/// `file:line: kind in step 'x' at /pointer: message`. Made once per VM and kept in its registry.
pub fn error_metatable(lua: &Lua) -> mlua::Result<Table> {
    if let Ok(mt) = lua.named_registry_value::<Table>(ERROR_MT) {
        return Ok(mt);
    }
    let mt = lua.create_table()?;
    mt.set("__name", "swarm.Error")?;
    mt.set(
        "__tostring",
        lua.create_function(|_, t: Table| {
            let kind: String = t.get("kind")?;
            let message: String = t.get("message")?;
            let step: Option<String> = t.get("step")?;
            let pointer: Option<String> = t.get("pointer")?;
            let (file, line): (Option<String>, Option<u32>) = (t.get("file")?, t.get("line")?);
            let mut text = match (file, line) {
                (Some(file), Some(line)) => format!("{file}:{line}: {kind}"),
                _ => kind,
            };
            if let Some(step) = step {
                text.push_str(&format!(" in step '{step}'"));
            }
            if let Some(pointer) = pointer {
                text.push_str(&format!(" at {pointer}"));
            }
            Ok(format!("{text}: {message}"))
        })?,
    )?;
    lua.set_named_registry_value(ERROR_MT, &mt)?;
    Ok(mt)
}

/// A flow error as the structured table scripts catch: `{kind, message, step?, value?,
/// pointer?, file?, line?, run_id?}`.
pub fn flow_error_table(lua: &Lua, error: &FlowError, run_id: Option<&str>) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set("kind", error.kind.name())?;
    t.set("message", error.message.as_str())?;
    t.set("step", error.step.as_deref())?;
    t.set("pointer", error.pointer.as_deref())?;
    t.set("file", error.file.as_deref())?;
    t.set("line", error.line.map(|line| line.get()))?;
    if let Some(value) = &error.value {
        t.set("value", to_lua(lua, value)?)?;
    }
    t.set("run_id", run_id)?;
    t.set_metatable(Some(error_metatable(lua)?))?;
    Ok(t)
}
