//! One sandboxed VM: the frozen environment (built by `sandbox.lua`), the fresh globals of
//! each call, the cache of compiled scripts, and the reset between calls.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use mlua::chunk::ChunkMode;
use mlua::{Function, Lua, LuaOptions, LuaSerdeExt, LuaString, StdLib, Table, Value as LuaValue};
use tokio::sync::mpsc::UnboundedSender;

use super::limits::Meter;
use super::marshal::{marshal, outside_failure, raised_failure};
use super::{Call, Reply, Script, ScriptFailure, bridge};
use crate::value::Value;
use crate::value::lua::{ResultLimit, to_lua};
use crate::worker::subprocess::stderr::StderrTail;

const SANDBOX_LUA: &str = include_str!("sandbox.lua");

/// Compiled scripts a VM keeps; past this the cache starts over.
const CACHE_LIMIT: usize = 256;

/// Garbage a VM may carry from one call to the next before it collects in full; below it,
/// the incremental collector keeps up, and a full collection per call would cost more than
/// a small script.
const GC_SLACK: usize = 8 << 20;

/// What the VM's natives know about the call in progress.
pub(super) struct CallSlot {
    pub meter: Rc<Meter>,
    env: RefCell<Option<Table>>,
    reply: RefCell<Option<UnboundedSender<Reply>>>,
    agent: RefCell<Option<Arc<str>>>,
    /// The call seeded `math.random`; the VM reseeds before the next one.
    seeded: Cell<bool>,
    /// The VM's memory limit during the call (what it held when the call began, plus `max_memory`).
    memory_limit: Cell<usize>,
    /// The last of what the call printed: kept like a child's stderr, never written out as it comes.
    printed: RefCell<StderrTail>,
}

impl CallSlot {
    /// Where bridge requests for the current call go.
    pub fn reply(&self) -> Option<UnboundedSender<Reply>> {
        self.reply.borrow().clone()
    }

    fn set(&self, env: Table, reply: UnboundedSender<Reply>, agent: Arc<str>) {
        *self.env.borrow_mut() = Some(env);
        *self.reply.borrow_mut() = Some(reply);
        *self.agent.borrow_mut() = Some(agent);
    }

    fn clear(&self) {
        self.env.borrow_mut().take();
        self.reply.borrow_mut().take();
        self.agent.borrow_mut().take();
    }
}

/// The names of the per-call globals, interned once: a call sets them without hashing.
struct GlobalNames {
    g: LuaString,
    prompt: LuaString,
    ctx: LuaString,
    agent: LuaString,
    task_id: LuaString,
    attempt: LuaString,
    host: LuaString,
}

impl GlobalNames {
    fn new(lua: &Lua) -> mlua::Result<GlobalNames> {
        Ok(GlobalNames {
            g: lua.create_string("_G")?,
            prompt: lua.create_string("_PROMPT")?,
            ctx: lua.create_string("_CTX")?,
            agent: lua.create_string("_AGENT")?,
            task_id: lua.create_string("_TASK_ID")?,
            attempt: lua.create_string("_ATTEMPT")?,
            host: lua.create_string("host")?,
        })
    }
}

/// A VM with the sandbox installed.
pub(super) struct Sandbox {
    lua: Lua,
    slot: Rc<CallSlot>,
    names: GlobalNames,
    /// The last agent's name as a Lua string; consecutive calls mostly share it.
    agent: Option<(Arc<str>, LuaString)>,
    env_mt: Table,
    run: Function,
    make_host: Function,
    reseed: Function,
    /// `host` when no bridge is registered.
    empty_host: Table,
    /// The last `host` table built, and the bridge names it offers.
    host: Option<(Arc<[Arc<str>]>, Table)>,
    compiled: HashMap<u64, (Arc<Script>, Function)>,
    /// Memory in use after the last full collection.
    floor: usize,
    /// Set when the VM failed outside the script's own code; such a VM is replaced.
    poisoned: bool,
    /// Scripts compiled since the pool last asked.
    compiles: u64,
}

impl Sandbox {
    pub fn new() -> mlua::Result<Sandbox> {
        let libs = StdLib::COROUTINE | StdLib::TABLE | StdLib::STRING | StdLib::UTF8 | StdLib::MATH | StdLib::OS;
        let lua = Lua::new_with(libs, LuaOptions::new())?;
        let meter = Meter::install(&lua)?;
        let slot = Rc::new(CallSlot {
            meter: meter.clone(),
            env: RefCell::new(None),
            reply: RefCell::new(None),
            agent: RefCell::new(None),
            seeded: Cell::new(false),
            memory_limit: Cell::new(usize::MAX),
            printed: RefCell::new(StderrTail::default()),
        });

        let native = lua.create_table()?;
        native.set("tripped", lua.create_function(move |_, ()| meter.check())?)?;
        let current = slot.clone();
        native.set("current_env", lua.create_function(move |_, ()| Ok(current.env.borrow().clone()))?)?;
        let current = slot.clone();
        native.set(
            "write_line",
            lua.create_function(move |_, line: mlua::LuaString| {
                let mut printed = current.printed.borrow_mut();
                printed.push(&line.as_bytes());
                printed.push(b"\n");
                Ok(())
            })?,
        )?;
        let current = slot.clone();
        native.set(
            "memory_left",
            lua.create_function(
                move |lua, ()| Ok(current.memory_limit.get().saturating_sub(lua.used_memory()) as f64),
            )?,
        )?;
        let current = slot.clone();
        native.set(
            "note_seeded",
            lua.create_function(move |_, ()| {
                current.seeded.set(true);
                Ok(())
            })?,
        )?;
        let (env_mt, run, make_host, reseed): (Table, Function, Function, Function) =
            lua.load(SANDBOX_LUA).set_name("=[swarm sandbox]").call((lua.globals(), native))?;
        // Arrays in `_CTX` carry this metatable; unprotected, a script could give every later
        // call's arrays an `__index`.
        lua.array_metatable().raw_set("__metatable", false)?;
        // Nothing a script can reach leads here, and now nothing is here either.
        lua.globals().clear()?;
        let empty_host = make_host.call(lua.create_table()?)?;
        lua.gc_collect()?;
        let floor = lua.used_memory();
        Ok(Sandbox {
            names: GlobalNames::new(&lua)?,
            agent: None,
            lua,
            slot,
            env_mt,
            run,
            make_host,
            reseed,
            empty_host,
            host: None,
            compiled: HashMap::new(),
            floor,
            poisoned: false,
            compiles: 0,
        })
    }

    /// Runs one call within its limits.
    pub fn run(&mut self, call: &Call) -> Result<Value, ScriptFailure> {
        let limits = call.limits;
        if let Err(e) = self.slot.meter.begin(&self.lua, limits, call.control.clone()) {
            self.poisoned = true;
            return Err(ScriptFailure::new(format!("cannot arm the script's limits: {e}")));
        }
        // The budget counts from what the VM holds now, so garbage an earlier call left
        // behind is not charged to this one.
        let budget = usize::try_from(limits.max_memory).unwrap_or(usize::MAX);
        let memory_limit = self.lua.used_memory().saturating_add(budget);
        let _ = self.lua.set_memory_limit(memory_limit);
        self.slot.memory_limit.set(memory_limit);
        // What the script returns, raises or hands a bridge is converted within this.
        ResultLimit::install(&self.lua, limits.max_result_bytes);
        self.take_printed();
        let outcome = self.call(call);
        let breach = self.slot.meter.end();
        self.slot.clear();
        let _ = self.lua.set_memory_limit(0);
        match breach {
            Some(breach) => Err(breach.into()),
            None => outcome,
        }
    }

    fn call(&mut self, call: &Call) -> Result<Value, ScriptFailure> {
        let max_memory = call.limits.max_memory;
        let chunk = self.compiled(&call.script).map_err(|e| outside_failure(e, max_memory))?;
        let env = self.env(call).map_err(|e| outside_failure(e, max_memory))?;
        self.slot.set(env.clone(), call.reply.clone(), call.agent.clone());
        match self.run.call::<(bool, LuaValue)>((chunk, env)) {
            Ok((true, returned)) => marshal(&self.lua, returned),
            Ok((false, raised)) => Err(raised_failure(&self.lua, raised, max_memory)),
            Err(e) => {
                // The protected call itself failed: the VM ran out of room for its
                // arguments, or something below the script broke.
                self.poisoned = !matches!(e, mlua::Error::MemoryError(_));
                Err(outside_failure(e, max_memory))
            }
        }
    }

    /// The compiled chunk for `script`, compiling it on first use in this VM.
    fn compiled(&mut self, script: &Arc<Script>) -> mlua::Result<Function> {
        if let Some((cached, chunk)) = self.compiled.get(&script.key)
            && (Arc::ptr_eq(cached, script) || (cached.code == script.code && cached.chunk_name == script.chunk_name))
        {
            return Ok(chunk.clone());
        }
        if self.compiled.len() >= CACHE_LIMIT {
            self.compiled.clear();
        }
        let chunk =
            self.lua.load(&script.code).set_name(&script.chunk_name).set_mode(ChunkMode::Text).into_function()?;
        self.compiled.insert(script.key, (script.clone(), chunk.clone()));
        self.compiles += 1;
        Ok(chunk)
    }

    /// The call's own globals table, reading through to the frozen base.
    fn env(&mut self, call: &Call) -> mlua::Result<Table> {
        let host = self.host(&call.bridges)?;
        let agent = match &self.agent {
            Some((name, string)) if Arc::ptr_eq(name, &call.agent) => string.clone(),
            _ => {
                let string = self.lua.create_string(&*call.agent)?;
                self.agent = Some((call.agent.clone(), string.clone()));
                string
            }
        };
        let (lua, names) = (&self.lua, &self.names);
        let env = lua.create_table_with_capacity(0, 8)?;
        env.raw_set(&names.g, &env)?;
        let prompt = match &call.input {
            Value::String(text) => lua.create_string(&**text)?,
            other => lua.create_string(other.to_json())?,
        };
        env.raw_set(&names.prompt, prompt)?;
        env.raw_set(&names.ctx, to_lua(lua, &call.input)?)?;
        env.raw_set(&names.agent, agent)?;
        env.raw_set(&names.task_id, &*call.task_id)?;
        env.raw_set(&names.attempt, call.attempt)?;
        env.raw_set(&names.host, host)?;
        env.set_metatable(Some(self.env_mt.clone()))?;
        Ok(env)
    }

    /// The read-only `host` table offering `names`; rebuilt only when the names change.
    fn host(&mut self, names: &Arc<[Arc<str>]>) -> mlua::Result<Table> {
        if names.is_empty() {
            return Ok(self.empty_host.clone());
        }
        if let Some((cached, table)) = &self.host
            && (Arc::ptr_eq(cached, names) || cached[..] == names[..])
        {
            return Ok(table.clone());
        }
        let raw = self.lua.create_table()?;
        for name in names.iter() {
            raw.raw_set(&**name, bridge::raw_bridge(&self.lua, name.clone(), self.slot.clone())?)?;
        }
        let table: Table = self.make_host.call(raw)?;
        self.host = Some((names.clone(), table.clone()));
        Ok(table)
    }

    /// What the last call printed (its bounded tail), leaving it empty for the next.
    pub fn take_printed(&self) -> StderrTail {
        std::mem::take(&mut *self.slot.printed.borrow_mut())
    }

    /// Scripts compiled since the last time this was asked.
    pub fn take_compiles(&mut self) -> u64 {
        std::mem::take(&mut self.compiles)
    }

    /// Whether the next reset collects in full (the last call left much garbage).
    pub fn needs_collection(&self) -> bool {
        self.lua.used_memory() > self.floor.saturating_add(GC_SLACK)
    }

    /// Gets the VM ready for the next call; false if it cannot be trusted with one.
    pub fn reset(&mut self) -> bool {
        if self.poisoned {
            return false;
        }
        if self.slot.seeded.take() && self.reseed.call::<()>(()).is_err() {
            return false;
        }
        if self.needs_collection() {
            if self.lua.gc_collect().is_err() {
                return false;
            }
            self.floor = self.lua.used_memory();
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker::script::limits::{CallControl, Limits};

    /// A call of `source` on `input`, with `limits`.
    fn call(source: &str, input: Value, limits: Limits) -> Call {
        let (reply, _) = tokio::sync::mpsc::unbounded_channel();
        Call {
            script: Arc::new(Script::new("=[agent t]".into(), source).unwrap()),
            input,
            agent: Arc::from("t"),
            task_id: Arc::from("r-1.1"),
            attempt: 1,
            limits,
            bridges: Arc::from([]),
            control: Arc::new(CallControl::default()),
            reply,
        }
    }

    #[test]
    fn a_call_that_leaves_much_garbage_is_collected_before_the_next() {
        let mut sandbox = Sandbox::new().unwrap();
        let floor = sandbox.floor;
        let litter = call("local t = {} for i = 1, 2e5 do t[i] = {i} end return #t", Value::Null, Limits::default());
        assert_eq!(sandbox.run(&litter).unwrap(), Value::int(200_000));
        assert!(sandbox.lua.used_memory() > floor + GC_SLACK, "the call left its table behind");
        assert!(sandbox.reset());
        // The compiled script stays cached; the garbage is gone.
        assert!(sandbox.lua.used_memory() < floor + GC_SLACK / 4, "{} bytes in use", sandbox.lua.used_memory());
        assert_eq!(sandbox.take_compiles(), 1);
        assert_eq!(sandbox.run(&litter).unwrap(), Value::int(200_000));
        assert_eq!(sandbox.take_compiles(), 0, "the second call reuses the compiled chunk");
    }

    #[test]
    fn the_real_globals_are_empty_once_the_sandbox_is_built() {
        let sandbox = Sandbox::new().unwrap();
        assert_eq!(sandbox.lua.globals().pairs::<LuaValue, LuaValue>().count(), 0);
    }
}
