//! Loading blueprints: a Lua module that returns one, a JSON file, or a table handed to
//! `swarm.compile`. Every failure names the file and, where there is one, the line.

use std::collections::HashMap;
use std::path::Path;
use std::rc::Rc;
use std::time::Duration;

use mlua::{Function, Lua, Table, UserData, UserDataFields, UserDataMethods, Value as LuaValue};

use super::{SOURCES_KEY, compiler_for, lua_error_message};
use crate::blueprint::compile::{CompileErrors, CompiledBlueprint};
use crate::blueprint::{Blueprint, Location, SourceMap};
use crate::interrupt::{self, Limit};
use crate::value::Value;
use crate::value::lua::{from_lua, to_lua};

/// Why a file or table did not yield a blueprint.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why it could not be read.
        source: std::io::Error,
    },
    /// The file is not valid JSON, or not a blueprint's JSON.
    #[error("{path}:{line}:{column}: {message}")]
    Json {
        /// The file.
        path: String,
        /// The line of the error, from 1.
        line: usize,
        /// The column of the error, from 1.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// A Lua syntax or runtime error; the message carries `file:line` already.
    #[error("{0}")]
    Lua(String),
    /// The value is not shaped like a blueprint.
    #[error("{origin}: {message}")]
    Shape {
        /// The file or call the value came from.
        origin: String,
        /// What is wrong with its shape.
        message: String,
    },
}

/// How long a blueprint module or served script may run while it loads, unless
/// `--load-timeout` says otherwise.
pub const DEFAULT_LOAD_TIMEOUT: Duration = Duration::from_secs(10);

/// Loads the blueprint in `path`: JSON by extension, otherwise a Lua module returning one,
/// which may run for `load_timeout` (see [`call_module`]).
pub fn load_file(lua: &Lua, path: &Path, load_timeout: Duration) -> Result<Blueprint, LoadError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Io { path: shown.clone(), source })?;
    let mut bp = if path.extension().is_some_and(|e| e == "json") {
        Blueprint::from_json(&text).map_err(|e| LoadError::Json {
            path: shown.clone(),
            line: e.line(),
            column: e.column(),
            message: e.to_string().split(" at line ").next().unwrap_or_default().to_string(),
        })?
    } else {
        add_module_dir(lua, path).map_err(|e| LoadError::Lua(lua_error_message(&e)))?;
        let chunk = lua.load(text.as_str()).set_name(format!("@{shown}"));
        let value: LuaValue = call_module(chunk, load_timeout).map_err(|e| load_error(&shown, &e))?;
        blueprint_from_lua(lua, value, &shown)?
    };
    bp.sources.file = Some(shown);
    Ok(bp)
}

/// A failed load: a stop by the time limit or a signal names the file, as a Lua error does.
pub fn load_error(file: &str, err: &mlua::Error) -> LoadError {
    match crate::interrupt::lua::stopped(err) {
        Some(reason) => LoadError::Lua(format!("{file}: {reason}")),
        None => LoadError::Lua(lua_error_message(err)),
    }
}

/// Runs the main chunk of a file being loaded (a blueprint module, a served script) and
/// returns what it returns. Every load from a file goes through here: Lua that loops at the
/// top level is stopped once `load_timeout` (`--load-timeout`) passes, or when SIGINT or
/// SIGTERM arrives, by the VM's interrupt hook.
pub fn call_module<R: mlua::FromLuaMulti>(chunk: mlua::chunk::Chunk<'_>, load_timeout: Duration) -> mlua::Result<R> {
    interrupt::with_deadline(Limit::Load, load_timeout, || chunk.call(()))
}

/// `require` looks beside the script file first.
pub fn add_module_dir(lua: &Lua, path: &Path) -> mlua::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.display().to_string(),
        _ => ".".to_string(),
    };
    let package: Table = lua.globals().get("package")?;
    let current: String = package.get("path")?;
    let ours = format!("{dir}/?.lua;{dir}/?/init.lua;");
    if !current.starts_with(&ours) {
        package.set("path", format!("{ours}{current}"))?;
    }
    Ok(())
}

/// Turns a table (built by `swarm.blueprint` or written by hand) into a [`Blueprint`].
/// `origin` names where it came from in errors.
pub fn blueprint_from_lua(lua: &Lua, value: LuaValue, origin: &str) -> Result<Blueprint, LoadError> {
    let shape = |message: String| LoadError::Shape { origin: origin.to_string(), message };
    let LuaValue::Table(table) = value else {
        return Err(shape(format!("expected a blueprint table (swarm.blueprint{{...}}), got {}", value.type_name())));
    };
    let lua_err = |e: mlua::Error| LoadError::Lua(lua_error_message(&e));
    let swarm: Table = lua.globals().get::<Table>("package").and_then(|p| p.get::<Table>("loaded")).map_err(lua_err)?;
    let swarm: Table = swarm.get("swarm").map_err(lua_err)?;
    let normalize: Function = swarm.get("blueprint").map_err(lua_err)?;
    // Errors raised here name the script line that built the offending part; when the host
    // itself normalizes a returned table there is no such line, so name the origin.
    let built: Table = normalize.call(table).map_err(|e| {
        let message = lua_error_message(&e);
        if message.starts_with(origin) { LoadError::Lua(message) } else { shape(message) }
    })?;
    let sources_of: Function = lua.named_registry_value(SOURCES_KEY).map_err(lua_err)?;
    let sites: Option<Table> = sources_of.call(&built).map_err(lua_err)?;

    let data = from_lua(lua, &LuaValue::Table(built)).map_err(|e| shape(e.to_string()))?;
    let json = serde_json::Value::from(&data);
    let mut bp: Blueprint = serde_json::from_value(json).map_err(|e| shape(format!("not a valid blueprint: {e}")))?;
    if let Some(sites) = sites {
        bp.sources = source_map(&sites).map_err(lua_err)?;
    }
    Ok(bp)
}

fn source_map(sites: &Table) -> mlua::Result<SourceMap> {
    let mut nodes = HashMap::new();
    if let Some(t) = sites.get::<Option<Table>>("nodes")? {
        for pair in t.pairs::<String, String>() {
            let (pointer, site) = pair?;
            if let Some(loc) = parse_site(&site) {
                nodes.insert(pointer, loc);
            }
        }
    }
    let mut agents = Vec::new();
    if let Some(t) = sites.get::<Option<Table>>("agents")? {
        for pair in t.pairs::<usize, String>() {
            let (index, site) = pair?;
            if index >= 1 {
                if agents.len() < index {
                    agents.resize(index, None);
                }
                agents[index - 1] = parse_site(&site);
            }
        }
    }
    Ok(SourceMap {
        file: None,
        blueprint: sites.get::<Option<String>>("blueprint")?.as_deref().and_then(parse_site),
        agents,
        nodes,
    })
}

fn parse_site(site: &str) -> Option<Location> {
    let (file, line) = site.rsplit_once(':')?;
    Some(Location { file: file.to_string(), line: line.parse().ok()? })
}

/// A compiled blueprint as Lua sees it.
pub struct LuaCompiled(pub Rc<CompiledBlueprint>);

impl UserData for LuaCompiled {
    fn add_fields<F: UserDataFields<Self>>(fields: &mut F) {
        fields.add_field_method_get("id", |_, this| Ok(this.0.blueprint.id.clone()));
        fields.add_field_method_get("agents", |lua, this| {
            let names: Vec<Value> = this.0.agent_names().into_iter().map(Value::from).collect();
            to_lua(lua, &Value::array(names))
        });
        fields.add_field_method_get("warnings", |lua, this| {
            let warnings: Vec<Value> = this.0.warnings.iter().map(|w| Value::from(w.to_string())).collect();
            to_lua(lua, &Value::array(warnings))
        });
    }

    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method("to_json", |_, this, ()| Ok(this.0.blueprint.to_json_pretty()));
        methods.add_meta_method("__tostring", |_, this, ()| Ok(format!("swarm.Compiled({})", this.0.blueprint.id)));
    }
}

/// Compiles a blueprint table (or passes a compiled one through); a failure comes back as the
/// structured error table to raise.
pub(crate) fn compile_value(lua: &Lua, value: LuaValue) -> mlua::Result<Result<Rc<CompiledBlueprint>, Table>> {
    if let LuaValue::UserData(ud) = &value
        && let Ok(compiled) = ud.borrow::<LuaCompiled>()
    {
        return Ok(Ok(compiled.0.clone()));
    }
    let origin = caller_file(lua);
    let bp = match blueprint_from_lua(lua, value, &origin) {
        Ok(bp) => bp,
        Err(e) => return Ok(Err(load_error_table(lua, &e)?)),
    };
    match compiler_for(lua).compile(Rc::new(bp), None) {
        Ok(compiled) => Ok(Ok(Rc::new(compiled))),
        Err(errors) => Ok(Err(compile_error_table(lua, &errors)?)),
    }
}

/// Loads and compiles the blueprint file at `path` in this VM (a JSON file with the detached
/// compiler); a failure comes back as the structured error table to raise.
pub(super) fn compile_file(lua: &Lua, path: &Path) -> mlua::Result<Result<Rc<CompiledBlueprint>, Table>> {
    let bp = match load_file(lua, path, DEFAULT_LOAD_TIMEOUT) {
        Ok(bp) => bp,
        Err(e) => return Ok(Err(load_error_table(lua, &e)?)),
    };
    let compiler = if path.extension().is_some_and(|e| e == "json") {
        super::detached_compiler_for(lua)
    } else {
        compiler_for(lua)
    };
    match compiler.compile(Rc::new(bp), path.parent()) {
        Ok(compiled) => Ok(Ok(Rc::new(compiled))),
        Err(errors) => Ok(Err(compile_error_table(lua, &errors)?)),
    }
}

/// Installs `swarm.compile(bp)`: returns the compiled blueprint or raises a structured error
/// table `{kind, message, agent?, step?, pointer?, file?, line?, errors = {...}}`.
pub(super) fn install_compile(lua: &Lua, swarm: &Table) -> mlua::Result<()> {
    let native = lua.create_function(move |lua, value: LuaValue| {
        if let LuaValue::UserData(ud) = &value
            && ud.is::<LuaCompiled>()
        {
            return Ok((Some(value), None));
        }
        match compile_value(lua, value)? {
            Ok(compiled) => Ok((Some(LuaValue::UserData(lua.create_userdata(LuaCompiled(compiled))?)), None)),
            Err(error) => Ok((None, Some(error))),
        }
    })?;
    let wrapper: Function = lua
        .load(
            "local native = ...
             return function(bp)
               local compiled, err = native(bp)
               if compiled == nil then error(err, 2) end
               return compiled
             end",
        )
        .set_name("@[swarm]/compile.lua")
        .call(native)?;
    swarm.set("compile", wrapper)
}

fn caller_file(lua: &Lua) -> String {
    lua.inspect_stack(2, |d| d.source().short_src.map(|s| s.into_owned()))
        .flatten()
        .unwrap_or_else(|| "swarm.compile".into())
}

fn error_metatable(lua: &Lua) -> mlua::Result<Table> {
    let mt = lua.create_table()?;
    mt.set("__name", "swarm.CompileError")?;
    mt.set("__tostring", lua.create_function(|_, t: Table| t.get::<String>("text"))?)?;
    Ok(mt)
}

fn compile_error_table(lua: &Lua, errors: &CompileErrors) -> mlua::Result<Table> {
    let mt = error_metatable(lua)?;
    let one = |e: &crate::blueprint::compile::CompileError| -> mlua::Result<Table> {
        let t = lua.create_table()?;
        t.set("kind", e.kind.name())?;
        t.set("message", e.message.as_str())?;
        t.set("agent", e.agent.as_deref())?;
        t.set("step", e.step.as_deref())?;
        t.set("pointer", e.pointer.as_deref())?;
        t.set("file", e.location.as_ref().map(|l| l.file.as_str()).or(e.file.as_deref()))?;
        t.set("line", e.location.as_ref().map(|l| l.line))?;
        t.set("text", e.to_string())?;
        t.set_metatable(Some(mt.clone()))?;
        Ok(t)
    };
    let top = one(errors.first())?;
    let all = lua.create_table()?;
    for e in &errors.0 {
        all.raw_push(one(e)?)?;
    }
    top.set("errors", all)?;
    top.set("text", errors.to_string())?;
    Ok(top)
}

fn load_error_table(lua: &Lua, e: &LoadError) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set("kind", "invalid_blueprint")?;
    t.set("message", e.to_string())?;
    t.set("text", e.to_string())?;
    t.set_metatable(Some(error_metatable(lua)?))?;
    Ok(t)
}
