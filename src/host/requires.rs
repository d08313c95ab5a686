//! Which files a VM's `require` found on disk, so hot reload can watch every one of them.
//!
//! Lua's own file searcher is wrapped: before it runs, the wrapper asks `package.searchpath`
//! the same question the searcher asks (same name, same `package.path`), and records the file
//! it names. A module with a syntax error is recorded too (the searcher raises after finding
//! it), so fixing it triggers a reload. Modules found by other searchers (the preloaded
//! `swarm`, the embedded `std.*` modules, C modules) are not files a save can change.

use std::path::PathBuf;

use mlua::{Function, Lua, Table};

/// Registry key of the list of files, in the order they were first required.
const REQUIRED_KEY: &str = "swarm.required_files";

/// Index of Lua's file searcher in `package.searchers` (after the preload searcher).
const FILE_SEARCHER: i64 = 2;

/// Wraps the file searcher. Call before any script runs.
pub(super) fn install(lua: &Lua) -> mlua::Result<()> {
    let files = lua.create_table()?;
    lua.set_named_registry_value(REQUIRED_KEY, &files)?;
    let package: Table = lua.globals().get("package")?;
    let searchers: Table = package.get("searchers")?;
    let file_searcher: Function = searchers.raw_get(FILE_SEARCHER)?;
    let wrapper: Function = lua
        .load(
            "local package, file_searcher, files = ...
             local seen = {}
             return function(name, ...)
               local path = package.searchpath(name, package.path)
               if path and not seen[path] then
                 seen[path] = true
                 files[#files + 1] = path
               end
               return file_searcher(name, ...)
             end",
        )
        .set_name("@[swarm]/requires.lua")
        .call((package, file_searcher, files))?;
    searchers.raw_set(FILE_SEARCHER, wrapper)
}

/// Every file `require` has loaded (or tried to load) in this VM, as `package.path` spelt it.
pub fn required_files(lua: &Lua) -> Vec<PathBuf> {
    let Ok(files) = lua.named_registry_value::<Table>(REQUIRED_KEY) else { return Vec::new() };
    files.sequence_values::<String>().filter_map(Result::ok).map(PathBuf::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::Host;

    #[test]
    fn transitive_requires_are_files_and_embedded_modules_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
        write("a.lua", "local b = require('b'); return { b = b }");
        write("b.lua", "require('std.layers'); require('swarm'); return 2");
        write("unused.lua", "return 3");
        let host = Host::new().unwrap();
        let lua = host.lua();
        let path = format!("{}/?.lua", dir.path().display());
        lua.load(format!("package.path = {path:?}; require('a'); require('a')")).exec().unwrap();
        let expected: Vec<PathBuf> = ["a.lua", "b.lua"].iter().map(|f| dir.path().join(f)).collect();
        assert_eq!(required_files(lua), expected);
    }

    #[test]
    fn a_module_that_fails_to_compile_is_still_recorded() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("broken.lua"), "return {").unwrap();
        let host = Host::new().unwrap();
        let lua = host.lua();
        let path = format!("{}/?.lua", dir.path().display());
        let result = lua.load(format!("package.path = {path:?}; require('broken')")).exec();
        assert!(result.is_err());
        assert_eq!(required_files(lua), vec![dir.path().join("broken.lua")]);
    }
}
