//! What inline agents use: the `task` they receive, `swarm.sleep`, `swarm.block`,
//! `swarm.extern` (pure functions for `call_extern`) and `swarm.bridge` (also `host.<name>`).

use std::rc::Rc;
use std::time::Duration;

use futures::future::LocalBoxFuture;
use mlua::{
    AnyUserData, Function, Lua, MultiValue, Table, UserData, UserDataFields, UserDataMethods, Value as LuaValue,
    WeakLua,
};

use super::convert::{from_lua, to_lua};
use super::lua_error_message;
use crate::flow::Externs;
use crate::interrupt::{Limit, StopReason};
use crate::value::Value;
use crate::worker::{Job, Spawner, TaskHost, Verdict, WorkerError, WorkerResult};

/// Registry key of the metatable that marks `swarm.block(v)` results.
const BLOCK_MT: &str = "swarm.block_mt";
/// Registry key of the table of `swarm.extern` functions.
const EXTERNS: &str = "swarm.externs";

/// Installs `swarm.sleep`, `swarm.block`, `swarm.extern`, `swarm.bridge` and the `host` global.
pub(super) fn install(lua: &Lua, swarm: &Table) -> mlua::Result<()> {
    swarm.set(
        "sleep",
        lua.create_async_function(|_, ms: f64| async move {
            if !(ms >= 0.0 && ms.is_finite()) {
                return Err(mlua::Error::runtime(format!("swarm.sleep: expected milliseconds >= 0, got {ms}")));
            }
            tokio::time::sleep(Duration::from_secs_f64(ms / 1000.0)).await;
            Ok(())
        })?,
    )?;

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

    let externs = lua.create_table()?;
    lua.set_named_registry_value(EXTERNS, &externs)?;
    swarm.set("extern", lua.create_function(move |_, (name, f): (String, Function)| externs.raw_set(name, f))?)?;

    swarm.set("exec", lua.create_async_function(|lua, spec: Table| async move { exec(&lua, spec).await })?)?;

    let host = lua.create_table()?;
    lua.globals().set("host", &host)?;
    swarm.set("bridge", lua.create_function(move |_, (name, f): (String, Function)| host.raw_set(name, f))?)?;
    Ok(())
}

/// `swarm.exec{program=, args=, stdin=, env=, cwd=}`: runs a program without blocking the other
/// lanes and returns `{ok, code, stdout, stderr}`. stdin is written while stdout and stderr are
/// read, so a child that writes a lot before reading cannot deadlock; if the calling agent is
/// cancelled the child is killed.
async fn exec(lua: &Lua, spec: Table) -> mlua::Result<Table> {
    let bad = |m: String| mlua::Error::runtime(format!("swarm.exec: {m}"));
    for pair in spec.pairs::<String, LuaValue>() {
        let (key, _) = pair?;
        if !["program", "args", "stdin", "env", "cwd"].contains(&key.as_str()) {
            return Err(bad(format!("unknown field `{key}` (fields: program, args, stdin, env, cwd)")));
        }
    }
    let program: String = spec.get::<Option<String>>("program")?.ok_or_else(|| bad("`program` is required".into()))?;
    let mut command = tokio::process::Command::new(&program);
    if let Some(args) = spec.get::<Option<Table>>("args")? {
        for arg in args.sequence_values::<String>() {
            command.arg(arg?);
        }
    }
    if let Some(env) = spec.get::<Option<Table>>("env")? {
        for pair in env.pairs::<String, String>() {
            let (k, v) = pair?;
            command.env(k, v);
        }
    }
    if let Some(cwd) = spec.get::<Option<String>>("cwd")? {
        command.current_dir(cwd);
    }
    let stdin: Option<mlua::LuaString> = spec.get("stdin")?;
    command
        .stdin(if stdin.is_some() { std::process::Stdio::piped() } else { std::process::Stdio::null() })
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().map_err(|e| bad(format!("cannot start '{program}': {e}")))?;
    let pipe = child.stdin.take();
    let feed = async move {
        if let (Some(mut pipe), Some(bytes)) = (pipe, stdin.as_ref()) {
            use tokio::io::AsyncWriteExt;
            // A child that exits without reading its input closes the pipe; that is its business.
            let _ = pipe.write_all(&bytes.as_bytes()).await;
        }
    };
    let (_, output) = tokio::join!(feed, child.wait_with_output());
    let output = output.map_err(|e| bad(format!("'{program}': {e}")))?;
    let result = lua.create_table()?;
    result.set("ok", output.status.success())?;
    result.set("code", output.status.code())?;
    result.set("stdout", lua.create_string(&output.stdout)?)?;
    result.set("stderr", lua.create_string(&output.stderr)?)?;
    Ok(result)
}

/// The host VM's `swarm.extern` functions, for `call_extern`.
pub struct LuaExterns {
    lua: WeakLua,
}

impl LuaExterns {
    pub fn new(lua: &Lua) -> LuaExterns {
        LuaExterns { lua: lua.weak() }
    }
}

impl Externs for LuaExterns {
    fn call(&self, name: &str, args: &[Value]) -> Result<Value, String> {
        let lua = self.lua.try_upgrade().ok_or("the Lua VM is gone")?;
        let table: Table = lua.named_registry_value(EXTERNS).map_err(|e| e.to_string())?;
        let f: Option<Function> = table.raw_get(name).map_err(|e| e.to_string())?;
        let f = f.ok_or_else(|| format!("unknown extern '{name}' (register it with swarm.extern)"))?;
        let args =
            args.iter().map(|a| to_lua(&lua, a)).collect::<mlua::Result<MultiValue>>().map_err(|e| e.to_string())?;
        let result: LuaValue = f.call(args).map_err(|e| lua_error_message(&e))?;
        from_lua(&lua, &result).map_err(|e| e.to_string())
    }
}

/// Runs an inline Lua function as a coroutine on the host VM.
pub struct LuaFnSpawner {
    pub lua: WeakLua,
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

/// Calls an agent-shaped Lua function `f(input, second)` as a coroutine and marshals what it
/// returns; a raised error fails the attempt with its first line.
pub(super) async fn call_agent(lua: &Lua, func: &Function, input: &Value, second: LuaValue) -> WorkerResult {
    let fail = |e: mlua::Error| match super::preempt::stopped(&e) {
        // Stopped where it could not yield, past its attempt's deadline: a timeout, so the
        // step's retry policy treats it as one.
        Some(reason @ StopReason::Deadline(Limit::Attempt, _)) => WorkerError::timed_out(reason.to_string()),
        _ => WorkerError::new(lua_error_message(&e)),
    };
    let input = to_lua(lua, input).map_err(fail)?;
    let returned: LuaValue = super::preempt::call_async(lua, func, (input, second)).await.map_err(fail)?;
    marshal(lua, returned)
}

/// A returned value passes; `swarm.block(v)` blocks with `v`.
fn marshal(lua: &Lua, returned: LuaValue) -> WorkerResult {
    let bad = |e: crate::host::convert::ConvertError| WorkerError::new(format!("the agent returned {e}"));
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
/// hints middleware added), `emit(event)` and `task:dispatch(agent, input)`.
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
        methods.add_async_method("dispatch", |lua, this, (agent, input): (String, LuaValue)| async move {
            let input = from_lua(&lua, &input).map_err(|e| mlua::Error::runtime(format!("task:dispatch: {e}")))?;
            match this.job.host.dispatch(&agent, input).await {
                Ok(v) => to_lua(&lua, &v),
                Err(e) => Err(mlua::Error::runtime(format!("task:dispatch('{agent}'): {e}"))),
            }
        });
        methods.add_meta_method("__tostring", |_, this, ()| Ok(format!("swarm.Task({})", this.job.task_id)));
    }
}

/// Whether a userdata is an inline agent's task.
pub fn is_task(ud: &AnyUserData) -> bool {
    ud.is::<LuaTask>()
}
