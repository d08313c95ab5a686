//! `swarm init [DIR]`: a starter project: `main.lua` (a blueprint `swarm check` passes and
//! `swarm run` runs), the LuaLS definitions in `types/`, and a `.luarc.json` pointing at them.

use std::path::Path;

const MAIN_LUA: &str = r#"-- A starter blueprint: `swarm run main.lua --input '{"name": "you"}'`.
local swarm = require("swarm")
local F = swarm.flow

return swarm.blueprint({
  id = "starter",
  agents = {
    ---@param input {name: string?}
    greet = function(input)
      return "hello, " .. (input.name or "world")
    end,
    ---@param text string
    ---@param task swarm.Task
    shout = function(text, task)
      task.emit({ note = "shouting" })
      return string.upper(text) .. "!"
    end,
  },
  flow = F.seq({
    F.step({ agent = "greet", input = F.p("$"), out = "$.greeting" }),
    F.step({ agent = "shout", input = F.p("$.greeting"), out = "$.loud" }),
  }),
})
"#;

const LUARC: &str = r#"{
  "$schema": "https://raw.githubusercontent.com/LuaLS/vscode-lua/master/setting/schema.json",
  "runtime.version": "Lua 5.4",
  "workspace.library": ["types"],
  "workspace.checkThirdParty": false
}
"#;

pub fn run(dir: &Path) -> u8 {
    match init(dir) {
        Ok(()) => {
            eprintln!("created {0}/main.lua, {0}/.luarc.json and {0}/types/", dir.display());
            eprintln!("try: swarm run {}/main.lua --input '{{\"name\": \"you\"}}'", dir.display());
            0
        }
        Err(message) => {
            eprintln!("swarm init: {message}");
            super::EXIT_USAGE
        }
    }
}

fn init(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for name in ["main.lua", ".luarc.json"] {
        if dir.join(name).exists() {
            return Err(format!("{} exists already; not overwriting it", dir.join(name).display()));
        }
    }
    std::fs::write(dir.join("main.lua"), MAIN_LUA).map_err(|e| format!("main.lua: {e}"))?;
    std::fs::write(dir.join(".luarc.json"), LUARC).map_err(|e| format!(".luarc.json: {e}"))?;
    super::types::write(&dir.join("types"))
}
