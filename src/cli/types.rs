//! `swarm types DIR`: writes the LuaLS definitions of `swarm` and the `std.*` modules to DIR
//! (point `workspace.library` in a `.luarc.json` at it; `swarm init` does).

use std::path::Path;

/// Path under DIR → contents.
pub const DEFINITIONS: &[(&str, &str)] = &[
    ("swarm.d.lua", include_str!("../../lua/types/swarm.d.lua")),
    ("std/layers.d.lua", include_str!("../../lua/types/std/layers.d.lua")),
    ("std/pipeline.d.lua", include_str!("../../lua/types/std/pipeline.d.lua")),
];

/// `swarm types DIR`: writes the definitions and returns the exit code.
pub fn run(dir: &Path) -> u8 {
    match write(dir) {
        Ok(()) => {
            eprintln!("wrote the swarm definitions to {}", dir.display());
            0
        }
        Err(message) => {
            eprintln!("swarm types: {message}");
            super::EXIT_USAGE
        }
    }
}

/// Writes every file of [`DEFINITIONS`] under `dir`, making directories as needed.
pub fn write(dir: &Path) -> Result<(), String> {
    for (name, text) in DEFINITIONS {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}
