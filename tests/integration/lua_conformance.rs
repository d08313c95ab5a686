//! Runs every `tests/lua/*.lua` conformance script in a fresh host VM. A script passes when it
//! runs to the end; it fails by raising an error, which names its file and line. Scripts run
//! as coroutines on a `LocalSet`, as the host runs them, so they can `swarm.run` flows.

use std::path::{Path, PathBuf};

use luaswarm::host::{Host, lua_error_message};
use mlua::Table;

fn scripts() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lua");
    let mut scripts: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/lua exists")
        .map(|e| e.expect("readable dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "lua"))
        .collect();
    scripts.sort();
    scripts
}

fn run_script(path: &Path) -> Result<(), String> {
    let host = Host::new().map_err(|e| e.to_string())?;
    let lua = host.lua();
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

#[test]
fn every_lua_conformance_script_passes() {
    let scripts = scripts();
    assert!(scripts.len() >= 2, "expected conformance scripts in tests/lua");
    let failures: Vec<String> = scripts
        .iter()
        .filter_map(|path| run_script(path).err().map(|e| format!("{}:\n  {e}", path.display())))
        .collect();
    assert!(failures.is_empty(), "{} of {} scripts failed:\n{}", failures.len(), scripts.len(), failures.join("\n"));
}
