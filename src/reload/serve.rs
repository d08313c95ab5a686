//! A served script (`swarm serve FILE`): what it registers, and the Lua API that only a served
//! VM has: `swarm.every(ms, fn)`, `swarm.state` and `swarm.on_reload(fn)`.
//!
//! Each version of the script runs in its own VM. Its timers start when the version goes live
//! (not while it loads, so a script that fails halfway starts nothing) and stop when it is
//! retired; `swarm.state` is copied out of the old VM as plain data and into the new one before
//! the script runs again. So that the copy cannot fail on a later save, `swarm.state` refuses
//! what is not plain data when it is stored (an error at the script's line naming the key and
//! the type); a value slipped in later, inside a stored table, fails that reload with its key
//! path, and the old version stays live with its state.

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use mlua::{Function, Lua, Table, UserData, UserDataMethods, Value as LuaValue};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::flow::ir::MAX_TIMEOUT_MS;
use crate::interrupt::lua::call_async;

use super::{Loaded, files_of};
use crate::blueprint::compile::CompiledBlueprint;
use crate::engine::{Engine, RunStatus};
use crate::flow::{Path as CtxPath, Segment};
use crate::host::engine_api::{resume_left_waiting, runs_in_flight, set_default_engine};
use crate::host::load::{add_module_dir, call_module, load_error};
use crate::host::{Host, lua_error_message};
use crate::value::Value;
use crate::value::lua::{from_lua, to_lua};

/// How long a stopping host waits for timer and hook bodies after cancelling the runs they
/// wait on, before it abandons them.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// One loaded version of a served script.
pub struct ScriptVersion {
    /// The VM the script was loaded in; its timers and hooks run there.
    pub host: Host,
}

/// What a served VM registered, in its app data.
#[derive(Default)]
struct Served {
    live: Cell<bool>,
    timers: RefCell<Vec<Rc<Timer>>>,
    hooks: RefCell<Vec<Function>>,
    /// Running `on_reload` hooks.
    tasks: RefCell<Vec<JoinHandle<()>>>,
    /// `swarm.state` as installed: the proxy the script sees, and the table holding its values.
    state: RefCell<Option<(Table, Table)>>,
    /// `swarm.expose(bp [, name])`: what the HTTP API may start, by name, in exposing order.
    exposed: RefCell<Vec<(String, Rc<CompiledBlueprint>)>>,
}

/// `swarm.every(ms, fn)`: runs `fn` as a coroutine every `ms`; a slow body delays the next
/// tick rather than overlapping it.
struct Timer {
    every: Duration,
    func: Function,
    stop: watch::Sender<bool>,
    task: RefCell<Option<JoinHandle<()>>>,
}

/// What Lua holds of a timer.
struct TimerHandle(Rc<Timer>);

impl UserData for TimerHandle {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method("cancel", |_, this, ()| {
            this.0.stop.send_replace(true);
            Ok(())
        });
        methods.add_meta_method("__tostring", |_, this, ()| {
            Ok(format!("swarm.Timer(every {} ms)", this.0.every.as_millis()))
        });
    }
}

impl Timer {
    fn start(self: &Rc<Timer>, lua: &Lua) {
        let mut stopped = self.stop.subscribe();
        if *stopped.borrow() {
            return;
        }
        let (func, every, lua) = (self.func.clone(), self.every, lua.weak());
        let task = tokio::task::spawn_local(async move {
            let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    biased;
                    _ = stopped.wait_for(|stop| *stop) => break,
                    _ = ticks.tick() => {}
                }
                // The VM outlives its timers (the serving loop keeps retired versions until
                // they are idle); this only guards against a host torn down early.
                let Some(vm) = lua.try_upgrade() else { break };
                if let Err(e) = call_async::<()>(&vm, &func, ()).await {
                    eprintln!("timer: {}", lua_error_message(&e));
                }
            }
        });
        *self.task.borrow_mut() = Some(task);
    }

    fn is_running(&self) -> bool {
        self.task.borrow().as_ref().is_some_and(|t| !t.is_finished())
    }
}

fn served(lua: &Lua) -> mlua::AppDataRef<'_, Served> {
    lua.app_data_ref::<Served>().expect("installed with the VM")
}

/// Installs `swarm.every`, `swarm.on_reload` and `swarm.state` (holding `state`).
fn install(lua: &Lua, state: &Value) -> mlua::Result<()> {
    lua.set_app_data(Served::default());
    let swarm: Table = lua.globals().get::<Table>("package")?.get::<Table>("loaded")?.get("swarm")?;
    swarm.set(
        "every",
        lua.create_function(|lua, (ms, func): (LuaValue, Function)| {
            let ms = crate::host::numbers::amount(lua, "swarm.every", "ms", &ms, MAX_TIMEOUT_MS, "milliseconds")?;
            if ms < 1.0 {
                return Err(mlua::Error::runtime(format!("swarm.every: expected milliseconds >= 1, got {ms}")));
            }
            let timer = Rc::new(Timer {
                every: Duration::from_secs_f64(ms / 1000.0),
                func,
                stop: watch::channel(false).0,
                task: RefCell::new(None),
            });
            let served = served(lua);
            served.timers.borrow_mut().push(timer.clone());
            if served.live.get() {
                timer.start(lua);
            }
            Ok(TimerHandle(timer))
        })?,
    )?;
    swarm.set(
        "expose",
        lua.create_function(|lua, (bp, name): (LuaValue, Option<String>)| {
            // Raised with the caller's file:line, as `error(msg, 2)` would.
            let at = |message: String| {
                let site = crate::host::caller_site(lua).map(|s| format!("{s}: ")).unwrap_or_default();
                mlua::Error::runtime(format!("{site}{message}"))
            };
            let compiled = match crate::host::load::compile_value(lua, bp)? {
                Ok(compiled) => compiled,
                Err(error) => return Err(at(error_text(&error))),
            };
            let name = name.unwrap_or_else(|| compiled.blueprint.id.to_string());
            if name.is_empty() {
                return Err(at("swarm.expose: the name is empty".into()));
            }
            // `swarm.expose(require("m"))` passes require's second value, the module's file.
            if name.contains('/') || name.ends_with(".lua") {
                return Err(at(format!(
                    "swarm.expose: the name `{name}` looks like a file path (require returns the module's file as a \
                     second value: write swarm.expose((require(\"m\"))) or swarm.expose(require(\"m\"), \"name\"))"
                )));
            }
            let served = served(lua);
            let mut exposed = served.exposed.borrow_mut();
            if exposed.iter().any(|(n, _)| *n == name) {
                return Err(at(format!(
                    "swarm.expose: `{name}` is exposed already (pass another name: swarm.expose(bp, \"name\"))"
                )));
            }
            exposed.push((name, compiled));
            Ok(())
        })?,
    )?;
    swarm.set(
        "on_reload",
        lua.create_function(|lua, func: Function| {
            served(lua).hooks.borrow_mut().push(func);
            Ok(())
        })?,
    )?;
    let (proxy, values) = state_table(lua, state)?;
    swarm.set("state", &proxy)?;
    *served(lua).state.borrow_mut() = Some((proxy, values));
    Ok(())
}

/// `swarm.state`: a proxy whose assignments are checked (see [`plain_data_problem`]) before
/// they land in the table of values, which `pairs` and `#` read through.
fn state_table(lua: &Lua, state: &Value) -> mlua::Result<(Table, Table)> {
    let values = match to_lua(lua, state)? {
        LuaValue::Table(t) => t,
        _ => lua.create_table()?,
    };
    let check =
        lua.create_function(|lua, (key, value): (LuaValue, LuaValue)| Ok(plain_data_problem(lua, &key, &value)))?;
    // In Lua, so that `error(..., 2)` puts the assigning line of the script in front.
    let proxy: Table = lua
        .load(
            r#"local check, values = ...
            return setmetatable({}, {
              __name = "swarm.state",
              __index = values,
              __newindex = function(_, key, value)
                local problem = check(key, value)
                if problem then error(problem, 2) end
                values[key] = value
              end,
              __pairs = function() return next, values, nil end,
              __len = function() return #values end,
            })"#,
        )
        .set_name("@[swarm]/state.lua")
        .call((check, &values))?;
    Ok((proxy, values))
}

/// Why `value` cannot be kept in `swarm.state` under `key`, or `None` when it can: keys are
/// strings, values plain data (nil, booleans, numbers, strings, and tables of them), the only
/// things a reload can carry into the next VM.
fn plain_data_problem(lua: &Lua, key: &LuaValue, value: &LuaValue) -> Option<String> {
    let LuaValue::String(name) = key else {
        return Some(format!("swarm.state: keys are names (strings), got a {}", key.type_name()));
    };
    let name = name.to_string_lossy();
    let error = from_lua(lua, value).err()?;
    Some(format!(
        "{}: {}; swarm.state keeps only plain data (nil, booleans, numbers, strings and tables of them), \
         which a reload can carry over",
        state_path(Some(&name), &error.at),
        error.reason
    ))
}

/// The Lua expression for the value at `at` (a ctx path such as `$.t.f` or `$[2]`, indexes
/// from 0) inside the value stored under `key` (none: `swarm.state` itself), as a script
/// would write it: `swarm.state.t.f`, `swarm.state.list[3]`.
fn state_path(key: Option<&str>, at: &str) -> String {
    let mut text = String::from("swarm.state");
    let key_segment = |key: &str, text: &mut String| {
        let plain = key.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if plain {
            text.push('.');
            text.push_str(key);
        } else {
            text.push_str(&format!("[{key:?}]"));
        }
    };
    if let Some(key) = key {
        key_segment(key, &mut text);
    }
    match at.parse::<CtxPath>() {
        Ok(path) => {
            for segment in path.segments() {
                match segment {
                    Segment::Key(k) => key_segment(k, &mut text),
                    Segment::Index(i) => text.push_str(&format!("[{}]", i + 1)),
                }
            }
        }
        Err(_) => text.push_str(at.trim_start_matches('$')),
    }
    text
}

/// Loads `file` as a served script in a fresh VM whose default engine is `engine`, with
/// `swarm.state` holding `state`; the script's main chunk may run for `load_timeout`.
/// Nothing it registered runs until [`ScriptVersion::go_live`].
pub fn load_script(file: &Path, engine: &Engine, state: &Value, load_timeout: Duration) -> Loaded<ScriptVersion> {
    let host = match Host::new() {
        Ok(host) => host,
        Err(e) => return Loaded { result: Err(format!("cannot start the Lua VM: {e}")), files: vec![file.into()] },
    };
    set_default_engine(host.lua(), engine.clone());
    // A script that fails halfway may have registered timers; they never start, since only
    // `go_live` starts them, and the VM is dropped here.
    let result = run_script(&host, file, state, load_timeout);
    let files = files_of(&host, file);
    Loaded { result: result.map(|()| ScriptVersion { host }), files }
}

fn run_script(host: &Host, file: &Path, state: &Value, load_timeout: Duration) -> Result<(), String> {
    let lua = host.lua();
    let shown = file.display().to_string();
    let text = std::fs::read_to_string(file).map_err(|e| format!("{shown}: {e}"))?;
    let lua_err = |e: mlua::Error| lua_error_message(&e);
    install(lua, state).map_err(lua_err)?;
    add_module_dir(lua, file).map_err(lua_err)?;
    call_module::<()>(lua.load(text.as_str()).set_name(format!("@{shown}")), load_timeout)
        .map_err(|e| load_error(&shown, &e).to_string())
}

/// A compile error table's message, for `swarm.expose` to raise as text.
fn error_text(error: &Table) -> String {
    let message: Option<String> = error.get("message").ok().flatten();
    format!("swarm.expose: {}", message.unwrap_or_else(|| "the blueprint does not compile".into()))
}

impl ScriptVersion {
    /// The blueprints the script exposed to the HTTP API (`swarm.expose`), by name.
    pub fn exposed(&self) -> Vec<(String, Rc<CompiledBlueprint>)> {
        served(self.host.lua()).exposed.borrow().clone()
    }

    /// `swarm.state` as plain data, to carry into the next version. A value that is not
    /// plain data (put inside a stored table after it was stored) is an error naming its key
    /// path; the caller then keeps this version live.
    pub fn state(&self) -> Result<Value, String> {
        let lua = self.host.lua();
        let mut state: LuaValue = self.host.swarm().and_then(|s| s.get("state")).map_err(|e| lua_error_message(&e))?;
        // The proxy holds nothing itself; its values are what to carry.
        if let (LuaValue::Table(t), Some((proxy, values))) = (&state, &*served(lua).state.borrow())
            && t == proxy
        {
            state = LuaValue::Table(values.clone());
        }
        match state {
            LuaValue::Nil => Ok(Value::object()),
            other => from_lua(lua, &other).map_err(|e| {
                format!(
                    "{}: {}; a reload carries only plain data, so this version stays live with its state",
                    state_path(None, &e.at),
                    e.reason
                )
            }),
        }
    }

    /// Starts the timers; after a reload (`changed` names the files) runs the `on_reload` hooks.
    pub fn go_live(&self, changed: Option<&[PathBuf]>) {
        let lua = self.host.lua();
        let served = served(lua);
        served.live.set(true);
        for timer in served.timers.borrow().iter() {
            timer.start(lua);
        }
        let Some(changed) = changed else { return };
        let info = lua.create_table().and_then(|t| {
            let files: Vec<Value> = changed.iter().map(|f| Value::from(f.display().to_string())).collect();
            t.set("changed", to_lua(lua, &Value::array(files))?)?;
            Ok(t)
        });
        let Ok(info) = info else { return };
        for hook in served.hooks.borrow().iter() {
            let (hook, info, weak) = (hook.clone(), info.clone(), lua.weak());
            served.tasks.borrow_mut().push(tokio::task::spawn_local(async move {
                let Some(vm) = weak.try_upgrade() else { return };
                if let Err(e) = call_async::<()>(&vm, &hook, info).await {
                    eprintln!("on_reload: {}", lua_error_message(&e));
                }
            }));
        }
    }

    /// Picks up the runs a dead process left waiting in the engine's journal (see
    /// [`resume_left_waiting`]); one line for each.
    pub fn pick_up_waiting(&self) -> Vec<String> {
        let lua = self.host.lua();
        match crate::host::engine_api::default_engine(lua) {
            Ok(engine) => resume_left_waiting(lua, &engine),
            Err(e) => vec![format!("cannot pick up waiting runs: {e}")],
        }
    }

    /// Stops the timers. A body already running finishes; runs it started go on.
    pub fn retire(&self) {
        let served = served(self.host.lua());
        served.live.set(false);
        for timer in served.timers.borrow().iter() {
            timer.stop.send_replace(true);
        }
    }

    /// How many timers are registered and not cancelled.
    pub fn timers(&self) -> usize {
        served(self.host.lua()).timers.borrow().iter().filter(|t| !*t.stop.borrow()).count()
    }

    /// Whether nothing of this version runs any more: no timer or hook body, no run in flight.
    /// A retired version is dropped (and its VM closed) once it is idle.
    pub fn is_idle(&self) -> bool {
        let lua = self.host.lua();
        let served = served(lua);
        let busy = served.timers.borrow().iter().any(|t| t.is_running())
            || served.tasks.borrow().iter().any(|t| !t.is_finished());
        !busy && runs_in_flight(lua).is_empty()
    }

    /// Retires the version, cancels its runs in flight (their tasks end `cancelled`) and waits
    /// for them, then for the timer and hook bodies that were waiting on them.
    pub async fn stop(&self) {
        self.retire();
        let lua = self.host.lua();
        let runs = runs_in_flight(lua);
        for run in &runs {
            // A run that only waits is left to the journal, for the next process to pick up;
            // anything else is cancelled.
            if !run.detach() {
                run.cancel();
            }
        }
        for run in runs {
            let outcome = run.wait().await;
            let status = match outcome.status {
                RunStatus::Waiting => "left waiting",
                other => other.name(),
            };
            eprintln!("run {} {status}", outcome.run_id);
        }
        let mut bodies: Vec<JoinHandle<()>> = served(lua).tasks.borrow_mut().drain(..).collect();
        bodies.extend(served(lua).timers.borrow().iter().filter_map(|t| t.task.borrow_mut().take()));
        let aborts: Vec<_> = bodies.iter().map(|b| b.abort_handle()).collect();
        if tokio::time::timeout(STOP_GRACE, futures::future::join_all(bodies)).await.is_err() {
            for abort in aborts {
                abort.abort();
            }
        }
    }
}
