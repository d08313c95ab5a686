//! `lua` agents: `{fn = "<id>"}` names a function kept in the host VM (what an inline function
//! in a Lua blueprint becomes); `{source = "..."}` or `{file = "path.lua"}` is an isolated
//! script with optional limits (docs/agents.md), run on the host's pool of sandboxed VMs.

use std::rc::Rc;

use super::script::{Limits, Script, ScriptRuntime, ScriptSpawner};
use super::spec::SpecReader;
use super::{BuildContext, Spawner, SpawnerFactory, UnavailableSpawner};
use crate::flow::ir::MAX_TIMEOUT_MS;
use crate::schema::AgentDef;
use crate::value::Value;
use crate::value::lua::MAX_RESULT_BYTES_LIMIT;

/// Builds the spawner for the inline function registered under an id, if the host VM has one.
pub type FunctionLookup = Rc<dyn Fn(&str) -> Option<Rc<dyn Spawner>>>;

/// Checks `lua` specs. Without a function lookup (checking a JSON file, no host VM), a `fn`
/// reference cannot be resolved and becomes a warning rather than an error. Without a script
/// runtime, scripts are checked but cannot run.
pub struct LuaAgentFactory {
    /// Finds the inline functions registered on the host VM, if there is one.
    pub functions: Option<FunctionLookup>,
    /// Runs script agents, if this host can.
    pub scripts: Option<ScriptRuntime>,
}

/// The largest limits a script spec may set: 10^15 instructions, 1 TiB (and a year for
/// `timeout_ms`, as for a step).
pub const MAX_INSTRUCTIONS: u64 = 1_000_000_000_000_000;
/// The largest `max_memory` a script spec may set, 1 TiB.
pub const MAX_MEMORY: u64 = 1 << 40;

const SHAPE: &str = "{fn = \"<id>\"}, {source = \"...\"} or {file = \"path.lua\"}";

impl SpawnerFactory for LuaAgentFactory {
    fn build(&self, agent: &AgentDef, _hint: Option<&Value>, cx: &mut BuildContext) -> Result<Rc<dyn Spawner>, String> {
        let mut spec = SpecReader::new(&agent.spec, SHAPE)?;
        let given: Vec<&str> = ["fn", "source", "file"].into_iter().filter(|k| spec.has(k)).collect();
        if given.len() != 1 {
            return Err(format!("give exactly one of fn, source or file (got {})", describe(&given)));
        }
        if let Some(id) = spec.string("fn")? {
            spec.finish()?;
            return match &self.functions {
                Some(lookup) => lookup(id).ok_or_else(|| format!("no function '{id}' is registered in the host VM")),
                None => {
                    cx.warnings.push(format!(
                        "agent '{}' calls inline function '{id}', which only its Lua module can provide",
                        agent.name
                    ));
                    Ok(Rc::new(UnavailableSpawner { what: "inline lua (its Lua module is not loaded)" }))
                }
            };
        }
        let (chunk_name, source) = match spec.string("file")? {
            Some(file) => {
                let path = cx.base_dir.map_or_else(|| file.into(), |dir| dir.join(file));
                if !path.is_file() {
                    return Err(format!("script file '{}' does not exist", path.display()));
                }
                let source = std::fs::read_to_string(&path)
                    .map_err(|e| format!("cannot read script file '{}': {e}", path.display()))?;
                (format!("@{}", path.display()), source)
            }
            None => (format!("=[agent {}]", agent.name), spec.required_string("source")?.to_string()),
        };
        let defaults = self.scripts.as_ref().map_or_else(Limits::default, |s| s.pool.config().limits);
        let limits = Limits {
            max_instructions: spec.bounded("max_instructions", MAX_INSTRUCTIONS)?.unwrap_or(defaults.max_instructions),
            max_memory: spec.bounded("max_memory", MAX_MEMORY)?.unwrap_or(defaults.max_memory),
            timeout_ms: spec.bounded("timeout_ms", MAX_TIMEOUT_MS)?.unwrap_or(defaults.timeout_ms),
            max_result_bytes: spec
                .bounded("max_result_bytes", MAX_RESULT_BYTES_LIMIT)?
                .unwrap_or(defaults.max_result_bytes),
        };
        spec.finish()?;
        let script = Script::new(chunk_name, &source)?;
        Ok(match &self.scripts {
            Some(runtime) => Rc::new(ScriptSpawner::new(script, limits, runtime.clone())),
            None => Rc::new(UnavailableSpawner { what: "script lua (no VM pool in this compiler)" }),
        })
    }
}

fn describe(given: &[&str]) -> String {
    if given.is_empty() { "none".to_string() } else { given.join(" and ") }
}
