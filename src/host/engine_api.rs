//! What scripts see of the engine: `swarm.engine{...}`, `swarm.default_engine()`,
//! `engine:start`, `run:wait`, `run:cancel`, `swarm.run`, `engine:mint/verify/revoke`.
//!
//! The natives return `ok, value_or_error` pairs; `lua/engine.lua` wraps them so failures
//! raise structured error tables (a Rust callback can only raise strings).

use crate::worker::lua_fn::{error_metatable, flow_error_table};
use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use mlua::{Function, Lua, Table, UserData, UserDataFields, UserDataMethods, Value as LuaValue};
use tokio::task::JoinHandle;

use super::agent_api::LuaExterns;
use super::numbers::{amount, whole};
use crate::blueprint::compile::CompiledBlueprint;
use crate::engine::{Engine, EngineConfig, EngineError, Event, RunHandle, RunOptions, RunStatus, now_ms};
use crate::gate::{Grant, Role, Verb};
use crate::store::journal::{self, SqliteJournal, prepare_restart};
use crate::value::Value;
use crate::value::lua::lua_error_message;
use crate::value::lua::{from_lua, to_lua};

/// The VM's default engine, created on first use.
pub fn default_engine(lua: &Lua) -> mlua::Result<Engine> {
    let state = super::state::state(lua);
    let mut engine = state.engine.borrow_mut();
    if engine.is_none() {
        *engine = Some(Engine::new(EngineConfig::default()).map_err(mlua::Error::external)?);
    }
    Ok(engine.clone().expect("just created"))
}

/// Makes `engine` the VM's default engine (the CLI does this with its configured engine).
pub fn set_default_engine(lua: &Lua, engine: Engine) {
    *super::state::state(lua).engine.borrow_mut() = Some(engine);
}

/// The runs started from `lua` (with `engine:start` or `swarm.run`) that have not finished.
pub fn runs_in_flight(lua: &Lua) -> Vec<RunHandle> {
    let state = super::state::state(lua);
    let mut runs = state.started.borrow_mut();
    runs.retain(|r| !r.is_finished());
    runs.clone()
}

/// Starts `compiled` on `engine` for a host that is not Lua (the HTTP API): its externs are
/// `lua`'s, and the run counts among `lua`'s runs in flight, so stopping the served version
/// cancels it and waits for it as it does runs a script started.
pub fn start_run(lua: &Lua, engine: &Engine, compiled: Rc<CompiledBlueprint>, init: Value) -> RunHandle {
    let handle = engine.start_with(compiled, init, Rc::new(LuaExterns::new(lua)), RunOptions::default());
    remember_run(lua, &handle);
    handle
}

/// Resumes the interrupted run `id` of `engine`'s journal with `compiled` (see
/// `engine:resume`), as [`start_run`] starts one; a refusal is its `(kind, message)`.
pub fn resume_run(
    lua: &Lua,
    engine: &Engine,
    id: &str,
    compiled: Rc<CompiledBlueprint>,
) -> mlua::Result<Result<RunHandle, (String, String)>> {
    let bp = LuaValue::UserData(lua.create_userdata(super::load::LuaCompiled(compiled))?);
    match resume(lua, engine, id, bp, None)? {
        Ok(run) => Ok(Ok(run.handle.clone())),
        Err(error) => {
            let kind: String = error.get::<Option<String>>("kind")?.unwrap_or_else(|| "resume".into());
            let message: String = error.get::<Option<String>>("message")?.unwrap_or_default();
            Ok(Err((kind, message)))
        }
    }
}

fn remember_run(lua: &Lua, handle: &RunHandle) {
    let state = super::state::state(lua);
    let mut runs = state.started.borrow_mut();
    runs.retain(|r| !r.is_finished());
    runs.push(handle.clone());
}

/// An engine as a Lua value.
pub struct LuaEngine(pub Engine);

/// A started run as a Lua value.
pub struct LuaRun {
    handle: RunHandle,
    engine: Engine,
    /// The `on_event` pump; `wait` lets it drain before returning.
    events: RefCell<Option<JoinHandle<()>>>,
}

pub(super) fn install(lua: &Lua, native: &Table) -> mlua::Result<()> {
    native.set(
        "engine",
        lua.create_function(|lua, opts: Option<Table>| {
            let (config, state) = engine_config(lua, opts)?;
            let failed = |e: &dyn std::fmt::Display| mlua::Error::runtime(format!("swarm.engine: {e}"));
            let engine = match state {
                None => Engine::new(config).map_err(|e| failed(&e))?,
                Some(path) => journaled_engine(config, &path)?,
            };
            Ok(LuaEngine(engine))
        })?,
    )?;
    native.set("default_engine", lua.create_function(|lua, ()| Ok(LuaEngine(default_engine(lua)?)))?)?;
    Ok(())
}

/// `swarm.output.get(ref)`: a stored output of the default engine, or nil.
pub(super) fn install_output(lua: &Lua, swarm: &Table) -> mlua::Result<()> {
    let output = lua.create_table()?;
    output.set(
        "get",
        lua.create_function(|lua, id: String| match default_engine(lua)?.outputs().get(&id) {
            Some(record) => to_lua(lua, &record.value),
            None => Ok(LuaValue::Nil),
        })?,
    )?;
    swarm.set("output", output)
}

/// An engine journaling to the SQLite file at `path` (created if missing), with its large
/// outputs in the same file. Runs that a dead process left `running` there become
/// `interrupted`, ready for `engine:resume`.
fn journaled_engine(config: EngineConfig, path: &Path) -> mlua::Result<Engine> {
    let journal = SqliteJournal::open(path)
        .map_err(|e| mlua::Error::runtime(format!("swarm.engine: cannot open the journal {e}")))?;
    super::journaled_engine(config, Rc::new(journal)).map_err(|e| mlua::Error::runtime(format!("swarm.engine: {e}")))
}

/// The engine's options, and the journal file `state` names (`None` for `"memory"`).
fn engine_config(lua: &Lua, opts: Option<Table>) -> mlua::Result<(EngineConfig, Option<PathBuf>)> {
    let mut config = EngineConfig::default();
    let mut state = None;
    let Some(opts) = opts else { return Ok((config, state)) };
    for pair in opts.pairs::<String, LuaValue>() {
        let (key, value) = pair?;
        match (key.as_str(), value) {
            ("token_secret", LuaValue::String(s)) => config.token_secret = Some(s.to_str()?.to_string()),
            ("max_spawn_depth", n @ (LuaValue::Integer(_) | LuaValue::Number(_))) => {
                let n = whole(lua, "swarm.engine", "max_spawn_depth", &n, 1, u32::MAX.into())?;
                config.max_spawn_depth = u32::try_from(n).expect("checked against u32::MAX");
            }
            ("offload_bytes", n @ (LuaValue::Integer(_) | LuaValue::Number(_))) => {
                let n = whole(lua, "swarm.engine", "offload_bytes", &n, 0, MAX_OFFLOAD_BYTES)?;
                config.offload_bytes = usize::try_from(n).unwrap_or(usize::MAX);
            }
            ("state", LuaValue::String(s)) => match &*s.to_str()? {
                "memory" => state = None,
                "" => {
                    return Err(mlua::Error::runtime("swarm.engine: `state` is empty (a journal file, or \"memory\")"));
                }
                path => state = Some(PathBuf::from(path)),
            },
            (key, value) => {
                return Err(mlua::Error::runtime(format!(
                    "swarm.engine: bad option `{key}` = {} (options: token_secret = string, max_spawn_depth = integer >= 1, offload_bytes = integer >= 0, state = \"memory\" or a journal file)",
                    value.type_name()
                )));
            }
        }
    }
    Ok((config, state))
}

impl UserData for LuaEngine {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        // Never raises: a wrong argument comes back as an error table too, which `engine.lua`
        // raises (an error a Rust function raises reaches `pcall` as opaque userdata).
        methods.add_method("start", |lua, this, (bp, init, opts): (LuaValue, LuaValue, LuaValue)| {
            start_method(lua, this, bp, init, opts).or_else(|e| {
                let t = lua.create_table()?;
                t.set("kind", "invalid_argument")?;
                t.set("message", lua_error_message(&e))?;
                t.set_metatable(Some(error_metatable(lua)?))?;
                Ok((false, LuaValue::Table(t)))
            })
        });
        methods.add_method("resume", |lua, this, (id, bp, opts): (String, LuaValue, Option<Table>)| {
            let on_event: Option<Function> = match &opts {
                Some(o) => o.get("on_event")?,
                None => None,
            };
            match resume(lua, &this.0, &id, bp, on_event)? {
                Ok(run) => Ok((true, LuaValue::UserData(lua.create_userdata(run)?))),
                Err(error) => Ok((false, LuaValue::Table(error))),
            }
        });
        methods.add_method("mint", |lua, this, grant: Table| {
            let grant = grant_from_lua(lua, &grant)?;
            Ok(this.0.mint(grant, now_ms()).encode())
        });
        methods.add_method("verify", |lua, this, (token, verb, task): (String, String, Option<String>)| {
            let verb: Verb = verb.parse().map_err(|e| mlua::Error::runtime(format!("engine:verify: {e}")))?;
            match this.0.verify(&token, verb, task.as_deref()) {
                Ok(_) => Ok((true, LuaValue::Nil)),
                Err(e) => Ok((false, LuaValue::Table(engine_error_table(lua, &e)?))),
            }
        });
        methods.add_method("output", |lua, this, id: String| match this.0.outputs().get(&id) {
            Some(record) => to_lua(lua, &record.value),
            None => Ok(LuaValue::Nil),
        });
        methods.add_method("signal", |lua, this, (run_id, name, value): (String, String, LuaValue)| {
            signal(lua, &this.0, &run_id, &name, &value)
        });
        methods.add_method("pending", |lua, this, ()| {
            let pending = serde_json::to_value(this.0.pending_waits()).map_err(mlua::Error::external)?;
            to_lua(lua, &Value::from(pending))
        });
        methods.add_method("revoke", |lua, this, token: String| match this.0.revoke(&token) {
            Ok(()) => Ok((true, LuaValue::Nil)),
            Err(e) => Ok((false, LuaValue::Table(engine_error_table(lua, &e)?))),
        });
        methods.add_meta_method("__tostring", |_, _, ()| Ok("swarm.Engine"));
    }
}

/// `engine:start(bp, init, opts)`: `true, run` or `false, error table`.
fn start_method(
    lua: &Lua,
    this: &LuaEngine,
    bp: LuaValue,
    init: LuaValue,
    opts: LuaValue,
) -> mlua::Result<(bool, LuaValue)> {
    let opts = match opts {
        LuaValue::Nil => None,
        LuaValue::Table(t) => Some(t),
        other => {
            return Err(mlua::Error::runtime(format!("engine:start: opts must be a table, got {}", other.type_name())));
        }
    };
    let compiled = match super::load::compile_value(lua, bp)? {
        Ok(compiled) => compiled,
        Err(error) => return Ok((false, LuaValue::Table(error))),
    };
    let init = match &init {
        LuaValue::Nil => Value::object(),
        LuaValue::Table(_) => match from_lua(lua, &init) {
            Ok(v @ Value::Object(_)) => v,
            Ok(Value::Array(items)) if items.is_empty() => Value::object(),
            Ok(other) => {
                return Err(mlua::Error::runtime(format!(
                    "engine:start: the init ctx must be a table with keys (a JSON object), got {}",
                    other.type_name()
                )));
            }
            Err(e) => return Err(mlua::Error::runtime(format!("engine:start: init ctx: {e}"))),
        },
        other => {
            // `engine:start(require("bp"))` passes require's second result, the path.
            let hint = match other {
                LuaValue::String(_) => " (require returns the module and its path: wrap it, (require(\"bp\")))",
                _ => "",
            };
            return Err(mlua::Error::runtime(format!(
                "engine:start: the init ctx must be a table (a JSON object), got {}{hint}",
                other.type_name()
            )));
        }
    };
    let on_event: Option<Function> = match &opts {
        Some(o) => o.get("on_event")?,
        None => None,
    };
    let run = start(lua, &this.0, compiled, init, on_event, RunOptions::default())?;
    Ok((true, LuaValue::UserData(lua.create_userdata(run)?)))
}

/// `engine:resume(run_id [, bp] [, opts])`: continues an interrupted run of the engine's journal
/// under its id; the steps that passed are replayed, not dispatched again. The blueprint is `bp`
/// when given, else the file the run was started from, loaded in this VM. A blueprint that
/// changed since the run started is reported on stderr; its steps whose pointer or input no
/// longer match run again.
fn resume(
    lua: &Lua,
    engine: &Engine,
    id: &str,
    bp: LuaValue,
    on_event: Option<Function>,
) -> mlua::Result<Result<LuaRun, Table>> {
    let refused = |kind: &str, message: String| -> mlua::Result<Result<LuaRun, Table>> {
        let t = lua.create_table()?;
        t.set("kind", kind)?;
        t.set("message", format!("engine:resume: {message}"))?;
        t.set("run_id", id)?;
        t.set_metatable(Some(error_metatable(lua)?))?;
        Ok(Err(t))
    };
    let journal = engine.config().journal.as_ref().map(|j| &j.0);
    let Some(path) = journal.and_then(|j| j.location()) else {
        return refused("no_journal", "this engine journals nothing (make it with swarm.engine{state = PATH})".into());
    };
    // What this engine journaled is read back from the file: let the writer catch up first.
    if let Some(Err(e)) = journal.map(|j| j.sync()) {
        return refused("journal", e);
    }
    if engine.running().iter().any(|r| &**r == id) {
        return refused("not_resumable", format!("run {id} is running on this engine"));
    }
    let restart = match prepare_restart(path, id, None) {
        Ok(r) => r,
        Err(journal::RestartError::AlreadyRunning { run, pid }) => {
            let error = journal::RestartError::AlreadyRunning { run, pid };
            let refusal = refused(error.kind(), error.to_string())?;
            if let Err(t) = &refusal {
                t.set("pid", pid)?;
            }
            return Ok(refusal);
        }
        Err(e) => return refused(e.kind(), e.to_string()),
    };
    // The run is claimed for this process now: until it starts, any way out gives it back.
    let release = || {
        if let Err(e) = journal::release_restart(path, id) {
            tracing::warn!("engine:resume: cannot give run {id} back: {e}");
        }
    };
    let compiled = match (&bp, &restart.file) {
        (LuaValue::Nil, Some(file)) => super::load::compile_file(lua, Path::new(file)),
        (LuaValue::Nil, None) => {
            release();
            return refused(
                "invalid_blueprint",
                format!("run {id} was not started from a blueprint file; pass its blueprint: engine:resume(id, bp)"),
            );
        }
        _ => super::load::compile_value(lua, bp),
    };
    let compiled = match compiled {
        Ok(Ok(c)) => c,
        Ok(Err(error)) => {
            release();
            return Ok(Err(error));
        }
        Err(e) => {
            release();
            return Err(e);
        }
    };
    if restart.digest.as_deref().is_some_and(|d| *d != *compiled.blueprint.digest()) {
        eprintln!(
            "swarm: the blueprint of run {id} changed since it started; steps whose pointer or input no longer match run again"
        );
    }
    let options =
        RunOptions { file: restart.file, resume: restart.resume, replay: restart.replay, waits: restart.waits };
    start(lua, engine, compiled, restart.init, on_event, options).map(Ok)
}

/// Picks up, in this VM, the runs of `engine`'s journal that a process now gone left waiting
/// (a `swarm serve` restarted on its journal): each goes on from the journal, its waits with
/// their deadlines, on the blueprint of its file or, for a run started from a script, the
/// blueprint this VM built under its id. One line per run says what became of it.
pub fn resume_left_waiting(lua: &Lua, engine: &Engine) -> Vec<String> {
    let Some(journal) = engine.config().journal.as_ref().map(|j| j.0.clone()) else { return Vec::new() };
    let Some(path) = journal.location().map(Path::to_path_buf) else { return Vec::new() };
    if let Err(e) = journal.sync() {
        return vec![format!("cannot read the journal to pick up waiting runs: {e}")];
    }
    let left = match journal::Reader::open(&path).and_then(|r| r.left_waiting()) {
        Ok(left) => left,
        Err(e) => return vec![format!("cannot read the journal to pick up waiting runs: {e}")],
    };
    let mut report = Vec::new();
    for run in left {
        let bp = match &run.file {
            Some(_) => LuaValue::Nil,
            None => match known_blueprint(lua, &run.blueprint) {
                Some(bp) => bp,
                None => {
                    report.push(format!(
                        "run {} waits on blueprint '{}', which this script does not build; left waiting",
                        run.id, run.blueprint
                    ));
                    continue;
                }
            },
        };
        match resume(lua, engine, &run.id, bp, None) {
            Ok(Ok(_run)) => report.push(format!("picked up run {} ({}), waiting", run.id, run.blueprint)),
            Ok(Err(error)) => {
                let message: String = error.get("message").unwrap_or_default();
                report.push(format!("run {} left waiting: {message}", run.id));
            }
            Err(e) => report.push(format!("run {} left waiting: {}", run.id, lua_error_message(&e))),
        }
    }
    report
}

/// The blueprint this VM last built under `id` (`swarm.blueprint{id = ...}`).
fn known_blueprint(lua: &Lua, id: &str) -> Option<LuaValue> {
    let by_id: Table = lua.named_registry_value(super::BLUEPRINTS_KEY).ok()?;
    by_id.get::<Option<Table>>(id).ok().flatten().map(LuaValue::Table)
}

fn start(
    lua: &Lua,
    engine: &Engine,
    compiled: Rc<CompiledBlueprint>,
    init: Value,
    on_event: Option<Function>,
    options: RunOptions,
) -> mlua::Result<LuaRun> {
    let handle = engine.start_with(compiled, init, Rc::new(LuaExterns::new(lua)), options);
    remember_run(lua, &handle);
    let events = match on_event {
        Some(callback) => Some(pump_events(lua, engine, &handle, callback)?),
        None => None,
    };
    Ok(LuaRun { handle, engine: engine.clone(), events: RefCell::new(events) })
}

/// Feeds the run's events to `callback` in order. A failing callback is reported and the run
/// goes on: a broken script must not take the engine down.
fn pump_events(lua: &Lua, engine: &Engine, handle: &RunHandle, callback: Function) -> mlua::Result<JoinHandle<()>> {
    let mut events = engine.follow_run(&handle.id).map_err(mlua::Error::external)?;
    let lua = lua.weak();
    Ok(tokio::task::spawn_local(async move {
        while let Some(event) = events.recv().await {
            let Some(lua) = lua.try_upgrade() else { return };
            let delivered = match event_to_lua(&lua, &event) {
                Ok(table) => crate::interrupt::lua::call_async::<()>(&lua, &callback, table).await,
                Err(e) => Err(e),
            };
            if let Err(e) = delivered {
                eprintln!("on_event: {}", lua_error_message(&e));
            }
        }
    }))
}

/// An event as a Lua table (the same fields as its JSON).
pub fn event_to_lua(lua: &Lua, event: &Event) -> mlua::Result<LuaValue> {
    let json = serde_json::to_value(event).map_err(mlua::Error::external)?;
    to_lua(lua, &Value::from(json))
}

impl UserData for LuaRun {
    fn add_fields<F: UserDataFields<Self>>(fields: &mut F) {
        fields.add_field_method_get("id", |_, this| Ok(this.handle.id.to_string()));
    }

    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_async_method("wait", |lua, this, ()| async move {
            let outcome = this.handle.wait().await;
            let pump = this.events.borrow_mut().take();
            if let Some(pump) = pump {
                // The tap closes after run_finished, so the pump ends once it has delivered all.
                let _ = pump.await;
            }
            match (outcome.status, outcome.error) {
                (RunStatus::Finished, _) | (_, None) => Ok((true, to_lua(&lua, &outcome.ctx)?)),
                (_, Some(error)) => {
                    Ok((false, LuaValue::Table(flow_error_table(&lua, &error, Some(&outcome.run_id))?)))
                }
            }
        });
        methods.add_method("cancel", |_, this, ()| {
            this.handle.cancel();
            Ok(())
        });
        methods.add_method("signal", |lua, this, (name, value): (String, LuaValue)| {
            signal(lua, &this.engine, &this.handle.id, &name, &value)
        });
        methods.add_method("finished", |_, this, ()| Ok(this.handle.is_finished()));
        methods.add_meta_method("__tostring", |_, this, ()| Ok(format!("swarm.Run({})", this.handle.id)));
    }
}

/// `run:signal(name, value)` and `engine:signal(run_id, name, value)`: `true, waits reached`
/// or `false, error table` (`not_waiting` for a run that is not in flight).
fn signal(lua: &Lua, engine: &Engine, run_id: &str, name: &str, value: &LuaValue) -> mlua::Result<(bool, LuaValue)> {
    let value = match from_lua(lua, value) {
        Ok(v) => v,
        Err(e) => {
            let error = EngineError::BadSignal(format!("the value of signal '{name}': {e}"));
            return Ok((false, LuaValue::Table(engine_error_table(lua, &error)?)));
        }
    };
    // The host holds the engine, so it answers with an owner's token of its own.
    let grant = Grant::new(Role::Operator, "host").with_max_uses(1);
    let owner = engine.mint_held(grant, now_ms());
    let result = engine.signal_run(crate::engine::Auth::Held(&owner), run_id, name, value);
    engine.forget_held(&owner);
    match result {
        Ok(reached) => Ok((true, LuaValue::Integer(reached as i64))),
        Err(e) => {
            let t = engine_error_table(lua, &e)?;
            t.set("run_id", run_id)?;
            Ok((false, LuaValue::Table(t)))
        }
    }
}

/// An engine error as `{kind, message}`; token failures keep their kinds (`expired`, ...).
pub fn engine_error_table(lua: &Lua, error: &EngineError) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set("kind", error.kind())?;
    t.set("message", error.to_string())?;
    t.set_metatable(Some(error_metatable(lua)?))?;
    Ok(t)
}

/// The longest `ttl` a minted token may have: ten years, in seconds.
const MAX_TTL_SECS: u64 = 10 * 365 * 24 * 3600;

/// The largest `offload_bytes`: 4 GiB (a value that large is kept in the ctx anyway).
const MAX_OFFLOAD_BYTES: u64 = 4 << 30;

/// `engine:mint{role=, agent_id=, scopes=, ttl=, max_uses=, task=}`; `ttl` is in seconds.
fn grant_from_lua(lua: &Lua, t: &Table) -> mlua::Result<Grant> {
    let bad = |m: String| mlua::Error::runtime(format!("engine:mint: {m}"));
    for pair in t.pairs::<String, LuaValue>() {
        let (key, _) = pair?;
        if !["role", "agent_id", "scopes", "ttl", "max_uses", "task", "depth"].contains(&key.as_str()) {
            return Err(bad(format!(
                "unknown field `{key}` (fields: role, agent_id, scopes, ttl, max_uses, task, depth)"
            )));
        }
    }
    let role: String = t.get::<Option<String>>("role")?.ok_or_else(|| bad("`role` is required".into()))?;
    let role: Role = role.parse().map_err(|e| bad(format!("{e}")))?;
    let agent_id: String = t.get::<Option<String>>("agent_id")?.unwrap_or_else(|| "lua".into());
    let scopes: Vec<String> = match t.get::<LuaValue>("scopes")? {
        LuaValue::Nil => Vec::new(),
        other => match from_lua(lua, &other).map_err(|e| bad(e.to_string()))? {
            Value::Array(items) => items
                .iter()
                .map(|v| v.as_str().map(str::to_string).ok_or_else(|| bad("`scopes` must be a list of strings".into())))
                .collect::<mlua::Result<_>>()?,
            Value::Object(m) if m.is_empty() => Vec::new(),
            _ => return Err(bad("`scopes` must be a list of strings".into())),
        },
    };
    let ttl_ms = match t.get::<LuaValue>("ttl")? {
        LuaValue::Nil => None,
        // Seconds, fractions allowed; at most ten years.
        secs => Some((amount(lua, "engine:mint", "ttl", &secs, MAX_TTL_SECS, "seconds")? * 1000.0).round() as u64),
    };
    let max_uses = match t.get::<LuaValue>("max_uses")? {
        LuaValue::Nil => None,
        n => Some(whole(lua, "engine:mint", "max_uses", &n, 0, i64::MAX as u64)?),
    };
    let task: Option<String> = t.get("task")?;
    let depth = match t.get::<LuaValue>("depth")? {
        LuaValue::Nil => 0,
        n => u32::try_from(whole(lua, "engine:mint", "depth", &n, 0, u32::MAX.into())?)
            .expect("checked against u32::MAX"),
    };
    Ok(Grant { role, agent_id, scopes, ttl_ms, max_uses, task, depth })
}
