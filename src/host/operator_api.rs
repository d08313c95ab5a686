//! `swarm.operator(name, fn(input, info))`: Lua operators. `info` carries `operator`, `agent`,
//! `task_id`, `attempt`, `token` and the agent's rendered `system_prompt`.

use std::rc::Rc;

use futures::future::LocalBoxFuture;
use mlua::{Function, Lua, Table, Value as LuaValue, WeakLua};

use crate::value::lua::lua_error_message;
use crate::worker::lua_fn::call_agent;
use crate::worker::operator::{LuaOperatorLookup, OperatorSetup, render_prompt};
use crate::worker::{Job, Spawner, WorkerError, WorkerResult};

/// Registry key of the table of `swarm.operator` functions.
const OPERATORS: &str = "swarm.operators";

pub(super) fn install(lua: &Lua, swarm: &Table) -> mlua::Result<()> {
    let operators = lua.create_table()?;
    lua.set_named_registry_value(OPERATORS, &operators)?;
    swarm.set("operator", lua.create_function(move |_, (name, f): (String, Function)| operators.raw_set(name, f))?)
}

/// Resolves `lua` operators in this VM.
pub(super) fn lookup(lua: &Lua) -> Option<LuaOperatorLookup> {
    let operators: Table = lua.named_registry_value(OPERATORS).ok()?;
    let weak = lua.weak();
    Some(Rc::new(move |setup: &OperatorSetup| {
        let func: Function = operators.raw_get::<Option<Function>>(setup.operator.as_str()).ok().flatten()?;
        let spawner: Rc<dyn Spawner> = Rc::new(LuaOperator { lua: weak.clone(), func, setup: setup.clone() });
        Some(spawner)
    }))
}

struct LuaOperator {
    lua: WeakLua,
    func: Function,
    setup: OperatorSetup,
}

impl Spawner for LuaOperator {
    fn spawn(&self, job: Job) -> LocalBoxFuture<'static, WorkerResult> {
        let lua = self.lua.clone();
        let func = self.func.clone();
        let prompt = render_prompt(&self.setup, &job.input);
        let operator = self.setup.operator.clone();
        Box::pin(async move {
            let lua = lua.try_upgrade().ok_or_else(|| WorkerError::new("the Lua VM is gone"))?;
            let prompt = prompt.map_err(|e| WorkerError::new(format!("agent '{}': {e}", job.agent)))?;
            let info = (|| -> mlua::Result<Table> {
                let info = lua.create_table()?;
                info.set("operator", operator.as_str())?;
                info.set("agent", &*job.agent)?;
                info.set("task_id", &*job.task_id)?;
                info.set("attempt", job.attempt)?;
                info.set("token", job.host.token())?;
                info.set("system_prompt", prompt)?;
                Ok(info)
            })()
            .map_err(|e| WorkerError::new(lua_error_message(&e)))?;
            call_agent(&lua, &func, &job.input, LuaValue::Table(info)).await
        })
    }
}
