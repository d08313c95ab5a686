//! `swarm.layer(name, {before = fn(ctx), after = fn(ctx, result), wrap = fn(ctx, next)})`:
//! middleware written in Lua (docs/layers.md).
//!
//! `ctx` is `{task_id, attempt, agent, runtime, operator, input}`; what `before` (or `wrap`,
//! before it calls `next`) leaves in `ctx.agent` and `ctx.runtime` is what the attempt goes on
//! with, so a layer can reroute or add hints. A result is `{ok = true, value = v}`,
//! `{ok = false, blocked = true, value = v}` or `{ok = false, error = "…", value = v?}`; `after`
//! may return a replacement `{value, ok}`, and `wrap` returns whatever result it settles on.
//! Any error a layer raises fails the attempt, naming the layer.

use std::cell::RefCell;
use std::rc::Rc;

use futures::future::LocalBoxFuture;
use mlua::{Function, Lua, Table, Value as LuaValue, WeakLua};

use crate::blueprint::Blueprint;
use crate::interrupt::lua::call_async;
use crate::middleware::builtin::{self, Builtins, ResolveFn};
use crate::middleware::{LayerRegistry, SpawnerLayer, fixed};
use crate::value::Value;
use crate::value::lua::lua_error_message;
use crate::value::lua::{from_lua, to_lua};
use crate::worker::lua_fn::call_agent;
use crate::worker::operator::{ConsoleOperator, OperatorSetup};
use crate::worker::{Job, Spawner, Verdict, WorkerError, WorkerResult};

/// Registry keys of `swarm.resolver` and `swarm.senior` functions.
const RESOLVER: &str = "swarm.resolver";
const SENIOR: &str = "swarm.senior";

/// The VM's registry (created on first use, with the built-in layers).
pub(super) fn registry(lua: &Lua) -> Rc<RefCell<LayerRegistry>> {
    let state = super::state::state(lua);
    let layers = state.layers.get_or_init(|| {
        let mut registry = LayerRegistry::new();
        builtin::register(&mut registry, builtins(lua));
        Rc::new(RefCell::new(registry))
    });
    layers.clone()
}

/// The VM's resolver function and senior, for the built-in layers.
fn builtins(lua: &Lua) -> Builtins {
    let weak = lua.weak();
    let resolve = move || -> Option<ResolveFn> {
        let lua = weak.try_upgrade()?;
        let func: Function = lua.named_registry_value(RESOLVER).ok()?;
        let weak = lua.weak();
        Some(Rc::new(move |job: &Job| {
            let (func, weak, job) = (func.clone(), weak.clone(), job.clone());
            Box::pin(async move {
                let lua = weak.try_upgrade().ok_or("the Lua VM is gone")?;
                let ctx = ctx_table(&lua, &job).map_err(|e| lua_error_message(&e))?;
                let picked: Option<String> = call_async(&lua, &func, ctx).await.map_err(|e| lua_error_message(&e))?;
                Ok(picked)
            }) as LocalBoxFuture<'static, Result<Option<String>, String>>
        }))
    };
    let weak = lua.weak();
    let senior = move |bp: &Blueprint| -> Result<Rc<dyn Spawner>, String> {
        let lua = weak.try_upgrade().ok_or("the Lua VM is gone")?;
        let ask = bp.hints.global.get("senior_escalation").and_then(|s| s.get("ask")).and_then(Value::as_str);
        if ask == Some("console") {
            let setup = OperatorSetup { operator: "senior".into(), template: None };
            return Ok(Rc::new(ConsoleOperator { setup, io: super::console(&lua) }));
        }
        let func: Function = lua
            .named_registry_value(SENIOR)
            .map_err(|_| "no senior to ask: register one with swarm.senior(fn), or set hints.global.senior_escalation = {ask = \"console\"}".to_string())?;
        Ok(Rc::new(LuaSenior { lua: lua.weak(), func }))
    };
    Builtins { resolve: Rc::new(resolve), senior: Rc::new(senior) }
}

/// A senior written in Lua: `fn(question)` answers like an agent.
struct LuaSenior {
    lua: WeakLua,
    func: Function,
}

impl Spawner for LuaSenior {
    fn spawn(&self, job: Job) -> LocalBoxFuture<'static, WorkerResult> {
        let (lua, func) = (self.lua.clone(), self.func.clone());
        Box::pin(async move {
            let lua = lua.try_upgrade().ok_or_else(|| WorkerError::new("the Lua VM is gone"))?;
            call_agent(&lua, &func, &job.input, LuaValue::Nil).await
        })
    }
}

pub(super) fn install(lua: &Lua, swarm: &Table) -> mlua::Result<()> {
    swarm.set("resolver", lua.create_function(|lua, f: Function| lua.set_named_registry_value(RESOLVER, f))?)?;
    swarm.set("senior", lua.create_function(|lua, f: Function| lua.set_named_registry_value(SENIOR, f))?)?;
    let layers = registry(lua);
    swarm.set(
        "layer",
        lua.create_function(move |lua, (name, def, opts): (String, Table, Option<Table>)| {
            let layer = LuaLayer::from_table(lua, &name, &def)?;
            let base = match opts {
                Some(o) => o.get::<Option<bool>>("base")?.unwrap_or(false),
                None => false,
            };
            let mut registry = layers.borrow_mut();
            if base {
                registry.base(&name, fixed(Rc::new(layer)));
            } else {
                registry.hint(&name, fixed(Rc::new(layer)));
            }
            Ok(())
        })?,
    )
}

struct LuaLayer(Rc<LayerDef>);

struct LayerDef {
    name: String,
    lua: WeakLua,
    before: Option<Function>,
    after: Option<Function>,
    wrap: Option<Function>,
}

impl LuaLayer {
    fn from_table(lua: &Lua, name: &str, def: &Table) -> mlua::Result<LuaLayer> {
        let bad = |m: String| mlua::Error::runtime(format!("swarm.layer('{name}'): {m}"));
        for pair in def.pairs::<String, LuaValue>() {
            let (key, value) = pair?;
            if !["before", "after", "wrap"].contains(&key.as_str()) {
                return Err(bad(format!("unknown field `{key}` (fields: before, after, wrap)")));
            }
            if !matches!(value, LuaValue::Function(_)) {
                return Err(bad(format!("`{key}` must be a function, got {}", value.type_name())));
            }
        }
        let def = LayerDef {
            name: name.to_string(),
            lua: lua.weak(),
            before: def.get("before")?,
            after: def.get("after")?,
            wrap: def.get("wrap")?,
        };
        if def.before.is_none() && def.after.is_none() && def.wrap.is_none() {
            return Err(bad("give at least one of before, after, wrap".into()));
        }
        Ok(LuaLayer(Rc::new(def)))
    }
}

impl SpawnerLayer for LuaLayer {
    fn layer(&self, inner: Rc<dyn Spawner>) -> Rc<dyn Spawner> {
        Rc::new(LuaLayerSpawner { def: self.0.clone(), inner })
    }
}

struct LuaLayerSpawner {
    def: Rc<LayerDef>,
    inner: Rc<dyn Spawner>,
}

impl Spawner for LuaLayerSpawner {
    fn spawn(&self, job: Job) -> LocalBoxFuture<'static, WorkerResult> {
        let def = self.def.clone();
        let inner = self.inner.clone();
        Box::pin(async move {
            let lua = def.lua.try_upgrade().ok_or_else(|| WorkerError::new("the Lua VM is gone"))?;
            let failed = |phase: &str, e: mlua::Error| {
                WorkerError::new(format!("layer '{}' ({phase}): {}", def.name, lua_error_message(&e)))
            };
            let mut job = job;
            let ctx = ctx_table(&lua, &job).map_err(|e| failed("ctx", e))?;
            if let Some(before) = &def.before {
                call_async::<()>(&lua, before, &ctx).await.map_err(|e| failed("before", e))?;
                apply(&lua, &ctx, &mut job).map_err(|e| failed("before", e))?;
            }
            let result = match &def.wrap {
                Some(wrap) => {
                    let next = next_function(&lua, inner, job).map_err(|e| failed("wrap", e))?;
                    let settled: LuaValue =
                        call_async(&lua, wrap, (&ctx, next)).await.map_err(|e| failed("wrap", e))?;
                    result_from_lua(&lua, &settled)
                        .map_err(|m| WorkerError::new(format!("layer '{}' (wrap): {m}", def.name)))?
                }
                None => inner.spawn(job).await,
            };
            let Some(after) = &def.after else { return result };
            let shown = result_to_lua(&lua, &result).map_err(|e| failed("after", e))?;
            let replaced: LuaValue = call_async(&lua, after, (&ctx, shown)).await.map_err(|e| failed("after", e))?;
            match replaced {
                LuaValue::Nil => result,
                other => result_from_lua(&lua, &other)
                    .map_err(|m| WorkerError::new(format!("layer '{}' (after): {m}", def.name)))?,
            }
        })
    }
}

fn ctx_table(lua: &Lua, job: &Job) -> mlua::Result<Table> {
    let ctx = lua.create_table_with_capacity(0, 6)?;
    ctx.raw_set("task_id", &*job.task_id)?;
    ctx.raw_set("attempt", job.attempt)?;
    ctx.raw_set("agent", &*job.agent)?;
    let runtime = match to_lua(lua, &job.runtime)? {
        LuaValue::Table(t) => t,
        _ => lua.create_table()?,
    };
    ctx.raw_set("runtime", runtime)?;
    ctx.raw_set("operator", job.operator.as_deref())?;
    ctx.raw_set("input", to_lua(lua, &job.input)?)?;
    Ok(ctx)
}

/// Takes `ctx.agent` and `ctx.runtime` back into the job.
fn apply(lua: &Lua, ctx: &Table, job: &mut Job) -> mlua::Result<()> {
    let agent: String = ctx.get("agent").map_err(|_| mlua::Error::runtime("ctx.agent must be a string"))?;
    if *job.agent != *agent {
        job.agent = agent.into();
    }
    let runtime: LuaValue = ctx.get("runtime")?;
    job.runtime = match from_lua(lua, &runtime) {
        Ok(v @ Value::Object(_)) => v,
        Ok(Value::Null) => Value::object(),
        Ok(Value::Array(items)) if items.is_empty() => Value::object(),
        Ok(other) => {
            return Err(mlua::Error::runtime(format!("ctx.runtime must be a table, got {}", other.type_name())));
        }
        Err(e) => return Err(mlua::Error::runtime(format!("ctx.runtime: {e}"))),
    };
    Ok(())
}

/// Registry key of the function that makes a `next` closure over a [`NextHandle`].
const MAKE_NEXT: &str = "swarm.layer_make_next";

/// What one `next` closure spawns: the inner stack and the job as the layer got it.
struct NextHandle {
    inner: Rc<dyn Spawner>,
    job: Job,
}

impl mlua::UserData for NextHandle {}

/// `next(ctx)` for `wrap`: spawns the inner stack with the ctx's agent and runtime, and
/// returns its result table. It may be called any number of times (retry) or not at all.
/// The async native behind it is made once per VM (making one costs a chunk load); each
/// spawn only makes a small Lua closure over its handle.
fn next_function(lua: &Lua, inner: Rc<dyn Spawner>, job: Job) -> mlua::Result<Function> {
    let make: Function = match lua.named_registry_value::<Option<Function>>(MAKE_NEXT)? {
        Some(make) => make,
        None => {
            let native =
                lua.create_async_function(|lua, (handle, ctx): (mlua::AnyUserData, Option<Table>)| async move {
                    let (inner, mut job) = {
                        let handle = handle.borrow::<NextHandle>()?;
                        (handle.inner.clone(), handle.job.clone())
                    };
                    if let Some(ctx) = ctx {
                        apply(&lua, &ctx, &mut job)?;
                    }
                    let result = inner.spawn(job).await;
                    result_to_lua(&lua, &result)
                })?;
            let make: Function = lua
                .load("local native = ... return function(handle) return function(ctx) return native(handle, ctx) end end")
                .set_name("@[swarm]/next.lua")
                .call(native)?;
            lua.set_named_registry_value(MAKE_NEXT, &make)?;
            make
        }
    };
    make.call(lua.create_userdata(NextHandle { inner, job })?)
}

fn result_to_lua(lua: &Lua, result: &WorkerResult) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    match result {
        Ok(Verdict::Pass(v)) => {
            t.raw_set("ok", true)?;
            t.raw_set("value", to_lua(lua, v)?)?;
        }
        Ok(Verdict::Blocked(v)) => {
            t.raw_set("ok", false)?;
            t.raw_set("blocked", true)?;
            t.raw_set("value", to_lua(lua, v)?)?;
        }
        Err(e) => {
            t.raw_set("ok", false)?;
            t.raw_set("error", e.message.as_str())?;
            if let Some(v) = &e.value {
                t.raw_set("value", to_lua(lua, v)?)?;
            }
        }
    }
    Ok(t)
}

/// A result table back into a result: `ok ~= false` passes with `value`; `blocked` blocks;
/// otherwise it fails with `error` (or the value) as the message.
fn result_from_lua(lua: &Lua, v: &LuaValue) -> Result<WorkerResult, String> {
    let LuaValue::Table(t) = v else {
        return Err(format!("expected a result table {{value = ..., ok = ...}}, got {}", v.type_name()));
    };
    let get = |k: &str| t.raw_get::<LuaValue>(k).map_err(|e| e.to_string());
    let value = from_lua(lua, &get("value")?).map_err(|e| e.to_string())?;
    let ok = !matches!(get("ok")?, LuaValue::Boolean(false));
    if ok {
        return Ok(Ok(Verdict::Pass(value)));
    }
    if matches!(get("blocked")?, LuaValue::Boolean(true)) {
        return Ok(Ok(Verdict::Blocked(value)));
    }
    let message = match get("error")? {
        LuaValue::String(s) => s.to_string_lossy(),
        _ => match &value {
            Value::String(s) => s.to_string(),
            Value::Null => "failed".to_string(),
            other => other.to_json(),
        },
    };
    Ok(Err(match value {
        Value::Null => WorkerError::new(message),
        value => WorkerError::with_value(message, value),
    }))
}
