//! The optional `std.*` Lua modules (`stdlib/`), embedded in the binary.
//!
//! They are found by a searcher placed right after Lua's own file searcher, so `require`
//! prefers a `std/<name>.lua` on `package.path` (beside the blueprint, or in the working
//! directory): a project can pin or patch a module without rebuilding `swarm`.

use mlua::{Function, Lua, MultiValue, Table, Value as LuaValue};

/// Module name → source. Names starting with `_` are shared helpers of the other modules,
/// loadable but not listed.
const MODULES: &[(&str, &str)] = &[
    ("std._internal", include_str!("../../stdlib/std/_internal.lua")),
    ("std.layers", include_str!("../../stdlib/std/layers.lua")),
    ("std.pipeline", include_str!("../../stdlib/std/pipeline.lua")),
];

/// Chunks are named under the `swarm` module's prefix, so the builders' `file:line` skips
/// their frames and names the script that called them.
const CHUNK_PREFIX: &str = "@[swarm]/";

/// Index of Lua's own file searcher in `package.searchers` (after the preload searcher).
const FILE_SEARCHER: i64 = 2;

/// Adds the embedded-module searcher to `package.searchers`.
pub(super) fn install(lua: &Lua) -> mlua::Result<()> {
    let searchers: Table = lua.globals().get::<Table>("package")?.get("searchers")?;
    searchers.raw_insert(FILE_SEARCHER + 1, lua.create_function(search)?)
}

/// A `package.searchers` entry: the loader of an embedded module, a reason for another
/// `std.*` name, and nothing for names outside `std.` (so `require` errors stay short).
fn search(lua: &Lua, name: String) -> mlua::Result<MultiValue> {
    let Some((_, source)) = MODULES.iter().find(|(module, _)| *module == name) else {
        if !name.starts_with("std.") {
            return Ok(MultiValue::new());
        }
        let known: Vec<&str> =
            MODULES.iter().map(|(module, _)| *module).filter(|module| !module.starts_with("std._")).collect();
        let reason = format!("no embedded module '{name}' (embedded: {})", known.join(", "));
        return Ok(MultiValue::from_iter([LuaValue::String(lua.create_string(reason)?)]));
    };
    let file = format!("std/{}.lua", name.trim_start_matches("std.").replace('.', "/"));
    let loader: Function = lua.load(*source).set_name(format!("{CHUNK_PREFIX}{file}")).into_function()?;
    Ok(MultiValue::from_iter([
        LuaValue::Function(loader),
        LuaValue::String(lua.create_string(format!("[swarm]/{file}"))?),
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_embedded_module_compiles() {
        let lua = Lua::new();
        for (name, source) in MODULES {
            lua.load(*source).set_name(*name).into_function().unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }
}
