//! Running a `tests/lua/*.lua` conformance script in a fresh host VM. A script passes when it
//! runs to the end; it fails by raising an error, which names its file and line. Scripts run
//! as coroutines on a `LocalSet`, as the host runs them, so they can `swarm.run` flows.

use std::path::Path;

use luaswarm::host::{Host, lua_error_message};
use mlua::Table;

/// The scripts' names (`journal` for `tests/lua/journal.lua`), sorted.
pub fn scripts() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lua");
    let mut scripts: Vec<String> = std::fs::read_dir(&dir)
        .expect("tests/lua exists")
        .map(|e| e.expect("readable dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "lua"))
        .map(|p| p.file_stem().expect("a file name").to_string_lossy().into_owned())
        .collect();
    scripts.sort();
    scripts
}

/// Runs `tests/lua/NAME.lua` (current-thread runtime, `LocalSet`, 60 s limit); fails the test
/// with the script's error.
pub fn run(name: &str) {
    run_with(name, &[]);
}

/// [`run`] with string globals set first (the URL of a server the test started, say).
pub fn run_with(name: &str, globals: &[(&str, String)]) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lua").join(format!("{name}.lua"));
    if let Err(e) = run_script(&path, globals) {
        panic!("{}:\n  {e}", path.display());
    }
}

fn run_script(path: &Path, globals: &[(&str, String)]) -> Result<(), String> {
    let host = Host::new().map_err(|e| e.to_string())?;
    let lua = host.lua();
    for (name, value) in globals {
        lua.globals().set(*name, value.as_str()).map_err(|e| e.to_string())?;
    }
    let package: Table = lua.globals().get("package").map_err(|e| e.to_string())?;
    let dir = path.parent().expect("scripts live in a folder").display().to_string();
    let search: String = package.get("path").map_err(|e| e.to_string())?;
    package.set("path", format!("{dir}/?.lua;{search}")).map_err(|e| e.to_string())?;
    let name = format!("@tests/lua/{}", path.file_name().expect("a file").to_string_lossy());
    let source = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async {
        let script = lua.load(source).set_name(name).exec_async();
        match tokio::time::timeout(std::time::Duration::from_secs(60), script).await {
            Ok(result) => result.map_err(|e| lua_error_message(&e)),
            Err(_) => Err("timed out after 60 s".to_string()),
        }
    })
}
