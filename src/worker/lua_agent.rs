//! `lua` agents: `{fn = "<id>"}` names a function kept in the host VM (what an inline function
//! in a Lua blueprint becomes); `{source = "..."}` or `{file = "path.lua"}` is an isolated
//! script with optional limits (DESIGN §5).

use std::rc::Rc;

use super::spec::SpecReader;
use super::{BuildContext, Spawner, SpawnerFactory, UnavailableSpawner};
use crate::blueprint::AgentDef;
use crate::value::Value;

/// Builds the spawner for the inline function registered under an id, if the host VM has one.
pub type FunctionLookup = Rc<dyn Fn(&str) -> Option<Rc<dyn Spawner>>>;

/// Checks `lua` specs. Without a function lookup (checking a JSON file, no host VM), a `fn`
/// reference cannot be resolved and becomes a warning rather than an error.
pub struct LuaAgentFactory {
    pub functions: Option<FunctionLookup>,
}

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
        if let Some(file) = spec.string("file")? {
            let path = cx.base_dir.map_or_else(|| file.into(), |dir| dir.join(file));
            if !path.is_file() {
                return Err(format!("script file '{}' does not exist", path.display()));
            }
        } else {
            spec.string("source")?;
        }
        spec.positive("max_instructions")?;
        spec.positive("max_memory")?;
        spec.positive("timeout_ms")?;
        spec.finish()?;
        Ok(Rc::new(UnavailableSpawner { what: "script lua" }))
    }
}

fn describe(given: &[&str]) -> String {
    if given.is_empty() { "none".to_string() } else { given.join(" and ") }
}
