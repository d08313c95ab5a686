//! Builds the `swarm` module: the Lua half (`lua/*.lua`, embedded) over a table of natives.

use mlua::{Function, Lua, LuaSerdeExt, MultiValue, Table, Value as LuaValue};

use super::{FUNCTIONS_KEY, SOURCES_KEY};
use crate::flow::Path;
use crate::value::from_json;
use crate::value::lua::{from_lua, to_lua};

const FLOW_LUA: &str = include_str!("../../lua/flow.lua");
const BLUEPRINT_LUA: &str = include_str!("../../lua/blueprint.lua");
const ENGINE_LUA: &str = include_str!("../../lua/engine.lua");

/// Embedded chunks are named under this prefix, so `site()` can skip their frames.
const CHUNK_PREFIX: &str = "@[swarm]/";

/// Installs `swarm` into `package.loaded`, so `require("swarm")` finds it.
pub(super) fn install(lua: &Lua) -> mlua::Result<()> {
    let functions = lua.create_table()?;
    lua.set_named_registry_value(FUNCTIONS_KEY, &functions)?;

    let native = natives(lua, functions)?;
    let (flow, node_sites, is_node): (Table, Table, Function) =
        lua.load(FLOW_LUA).set_name(format!("{CHUNK_PREFIX}flow.lua")).call(&native)?;
    let (blueprint, sources_of, by_id): (Function, Function, Table) = lua
        .load(BLUEPRINT_LUA)
        .set_name(format!("{CHUNK_PREFIX}blueprint.lua"))
        .call((&native, node_sites, is_node))?;
    lua.set_named_registry_value(SOURCES_KEY, sources_of)?;
    lua.set_named_registry_value(super::BLUEPRINTS_KEY, by_id)?;

    let swarm = lua.create_table()?;
    swarm.set("flow", flow)?;
    swarm.set(
        "blueprint",
        lua.create_function(move |lua, spec: LuaValue| blueprint.call::<LuaValue>((spec, caller_site(lua))))?,
    )?;
    swarm.set("null", lua.null())?;
    swarm.set("array", lua.create_function(|lua, t: Option<Table>| make_array(lua, t))?)?;
    swarm.set("json", json_table(lua)?)?;
    super::load::install_compile(lua, &swarm)?;
    super::agent_api::install(lua, &swarm)?;
    super::operator_api::install(lua, &swarm)?;
    super::layer_api::install(lua, &swarm)?;
    super::gate_api::install(lua, &swarm, &crate::gate::Gate::default())?;
    super::semaphore::install(lua, &swarm)?;
    super::http::install(lua, &swarm)?;
    super::stdlib::install(lua)?;
    let engine_native = lua.create_table()?;
    super::engine_api::install(lua, &engine_native)?;
    super::engine_api::install_output(lua, &swarm)?;
    lua.load(ENGINE_LUA).set_name(format!("{CHUNK_PREFIX}engine.lua")).call::<()>((engine_native, &swarm))?;

    let loaded: Table = lua.globals().get::<Table>("package")?.get("loaded")?;
    loaded.set("swarm", swarm)?;
    Ok(())
}

fn make_array(lua: &Lua, t: Option<Table>) -> mlua::Result<Table> {
    let t = match t {
        Some(t) => t,
        None => lua.create_table()?,
    };
    t.set_metatable(Some(lua.array_metatable()))?;
    Ok(t)
}

/// Functions only the embedded Lua half uses.
fn natives(lua: &Lua, functions: Table) -> mlua::Result<Table> {
    let native = lua.create_table()?;
    native.set("array_mt", lua.array_metatable())?;
    native.set("null", lua.null())?;
    // Each node kind's fields: the builders check options against it, the site walker finds
    // the children with it.
    native.set("node_shapes", lua.to_value(crate::flow::NODE_SHAPES)?)?;
    native.set(
        "canonical_path",
        lua.create_function(|_, text: String| {
            Ok(match text.parse::<Path>() {
                Ok(path) => (Some(path.to_string()), None),
                Err(e) => (None, Some(e.to_string())),
            })
        })?,
    )?;
    native.set("key_path", lua.create_function(|_, key: String| Ok(Path::root().key(&key).to_string()))?)?;
    native.set("site", lua.create_function(|lua, ()| Ok(caller_site(lua)))?)?;
    native.set(
        "fn_site",
        lua.create_function(|_, f: Function| {
            let info = f.info();
            Ok(match (info.source, info.line_defined) {
                (Some(source), Some(line)) if info.what == "Lua" => Some(format!("{}:{line}", source_name(&source))),
                _ => None,
            })
        })?,
    )?;
    native.set("register_fn", lua.create_function(move |_, (id, f): (String, Function)| functions.raw_set(id, f))?)?;
    Ok(native)
}

/// `file:line` of the innermost Lua frame outside the embedded `swarm` chunks.
pub fn caller_site(lua: &Lua) -> Option<String> {
    for level in 1.. {
        let frame = lua.inspect_stack(level, |d| {
            let source = d.source();
            let what = source.what;
            let name = source.source.map(|s| s.into_owned());
            (what, name, d.current_line())
        })?;
        match frame {
            (_, Some(source), _) if source.starts_with(CHUNK_PREFIX) => continue,
            // mlua's driver of async host calls sits between the call and its caller.
            (_, Some(source), _) if source == "=__mlua_async_poll" => continue,
            ("Lua" | "main", Some(source), Some(line)) => return Some(format!("{}:{line}", source_name(&source))),
            _ => continue,
        }
    }
    None
}

/// A chunk's name as a person reads it: a file path without the `@`.
fn source_name(source: &str) -> &str {
    source.strip_prefix('@').or_else(|| source.strip_prefix('=')).unwrap_or("[string]")
}

/// `swarm.json.encode(value [, {pretty = true}])` and `swarm.json.decode(text)`.
fn json_table(lua: &Lua) -> mlua::Result<Table> {
    let json = lua.create_table()?;
    json.set(
        "encode",
        lua.create_function(|lua, (value, opts): (LuaValue, Option<Table>)| {
            let value = from_lua(lua, &value).map_err(mlua::Error::external)?;
            let pretty = match opts {
                Some(t) => t.get::<Option<bool>>("pretty")?.unwrap_or(false),
                None => false,
            };
            if pretty {
                serde_json::to_string_pretty(&value).map_err(mlua::Error::external)
            } else {
                Ok(value.to_json())
            }
        })?,
    )?;
    json.set(
        "decode",
        lua.create_function(|lua, text: mlua::LuaString| {
            let text = text.to_str()?;
            match from_json(&text) {
                Ok(v) => Ok(MultiValue::from_iter([to_lua(lua, &v)?])),
                Err(e) => Err(mlua::Error::runtime(format!("swarm.json.decode: {e}"))),
            }
        })?,
    )?;
    json.set("null", lua.null())?;
    Ok(json)
}
