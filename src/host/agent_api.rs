//! Host calls for Lua code in the host VM: `swarm.sleep`, `swarm.exec`, `swarm.extern` (pure
//! functions for `call_extern`) and `swarm.bridge` (also `host.<name>`). What inline agents
//! themselves receive (their `task`, `swarm.block`) is `crate::worker::lua_fn`.

use std::time::Duration;

use mlua::{Function, Lua, MultiValue, Table, Value as LuaValue, WeakLua};

use super::numbers::amount;
use crate::flow::Externs;
use crate::flow::ir::MAX_TIMEOUT_MS;
use crate::value::Value;
use crate::value::lua::lua_error_message;
use crate::value::lua::{from_lua, to_lua};

/// Registry key of the table of `swarm.extern` functions.
const EXTERNS: &str = "swarm.externs";

/// Installs `swarm.sleep`, `swarm.block`, `swarm.extern`, `swarm.bridge` and the `host` global.
pub(super) fn install(lua: &Lua, swarm: &Table) -> mlua::Result<()> {
    swarm.set(
        "sleep",
        lua.create_async_function(|lua, ms: LuaValue| async move {
            let ms = amount(&lua, "swarm.sleep", "ms", &ms, MAX_TIMEOUT_MS, "milliseconds")?;
            tokio::time::sleep(Duration::from_secs_f64(ms / 1000.0)).await;
            Ok(())
        })?,
    )?;

    crate::worker::lua_fn::install(lua, swarm)?;

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
    /// Externs looked up in `lua`'s `swarm.extern` table at call time. The VM is held weakly, so
    /// an engine that outlives it gets an error rather than keeping it alive.
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
