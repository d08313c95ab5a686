//! `operator` agents: spec `{operator_ref = "<name in operators>"}`. The operator gets the
//! agent's rendered system prompt and the input, and answers like an agent. Operators are of
//! kind `lua` (a function registered with `swarm.operator`), `console` (the person at the
//! terminal) or `remote` (whoever answers the question's signal from outside: another
//! terminal, a client of the host).

mod console;
mod remote;

use std::rc::Rc;
use std::sync::Arc;

use super::spec::SpecReader;
use super::template::PromptTemplate;
use super::{BuildContext, Spawner, SpawnerFactory, UnavailableSpawner};
use crate::schema::{AgentDef, Blueprint};
use crate::value::Value;

pub use console::{ConsoleIo, ConsoleOperator, ScriptedConsole, StdConsole, UnattendedConsole, parse_answer};

/// The operator kinds a blueprint may declare.
pub const OPERATOR_KINDS: [&str; 3] = ["lua", "console", "remote"];

/// What an operator spawner is built from.
#[derive(Clone, Debug)]
pub struct OperatorSetup {
    /// The operator seat's name.
    pub operator: String,
    /// The agent's `profile.system_prompt`, checked.
    pub template: Option<PromptTemplate>,
}

/// Builds the spawner of a `lua` operator, if the host VM has one registered under the name.
pub type LuaOperatorLookup = Rc<dyn Fn(&OperatorSetup) -> Option<Rc<dyn Spawner>>>;

/// Builds `operator` spawners. Without a Lua lookup (checking a JSON file, no host VM), a
/// `lua` operator cannot be resolved and becomes a warning rather than an error.
pub struct OperatorFactory {
    /// Finds `lua` operators on the host VM, if there is one.
    pub lua: Option<LuaOperatorLookup>,
    /// Where `console` operators ask their questions.
    pub console: Rc<dyn ConsoleIo>,
}

impl SpawnerFactory for OperatorFactory {
    fn unresolved_ref(&self, agent: &AgentDef, blueprint: &Blueprint) -> Option<String> {
        let name = agent.spec.get("operator_ref")?.as_str()?;
        if blueprint.operators.iter().any(|o| o.name == name) {
            return None;
        }
        let defined: Vec<&str> = blueprint.operators.iter().map(|o| o.name.as_str()).collect();
        let known = if defined.is_empty() { "none are declared".to_string() } else { defined.join(", ") };
        Some(format!("agent '{}' refers to operator '{name}', which is not declared ({known})", agent.name))
    }

    fn check_declarations(&self, blueprint: &Blueprint) -> Vec<String> {
        blueprint
            .operators
            .iter()
            .filter(|op| !OPERATOR_KINDS.contains(&op.kind.as_str()))
            .map(|op| {
                format!("operator '{}' has unknown kind '{}' (known: {})", op.name, op.kind, OPERATOR_KINDS.join(", "))
            })
            .collect()
    }

    fn operator_seat(&self, agent: &AgentDef) -> Option<Arc<str>> {
        Some(Arc::from(agent.spec.get("operator_ref")?.as_str()?))
    }

    fn build(&self, agent: &AgentDef, _hint: Option<&Value>, cx: &mut BuildContext) -> Result<Rc<dyn Spawner>, String> {
        let mut spec = SpecReader::new(&agent.spec, "{operator_ref = \"<operator name>\"}")?;
        let name = spec.required_string("operator_ref")?;
        spec.finish()?;
        // Whether the operator is declared, and of a known kind, are compiler checks
        // (`unresolved_operator_ref`, `unknown_kind`); here it is there.
        let Some(operator) = cx.blueprint.operators.iter().find(|o| o.name == name) else {
            return Err(format!("operator '{name}' is not declared"));
        };
        let template = match agent.profile.as_ref().and_then(|p| p.system_prompt.as_deref()) {
            Some(source) => Some(PromptTemplate::compile(source)?),
            None => None,
        };
        let setup = OperatorSetup { operator: name.to_string(), template };
        match operator.kind.as_str() {
            "console" => Ok(Rc::new(ConsoleOperator { setup, io: self.console.clone() })),
            "remote" => Ok(Rc::new(remote::RemoteOperator { setup })),
            _ => match &self.lua {
                Some(lookup) => lookup(&setup).ok_or_else(|| {
                    format!("no Lua operator '{name}' is registered (register it with swarm.operator(\"{name}\", fn))")
                }),
                None => {
                    cx.warnings.push(format!(
                        "agent '{}' asks Lua operator '{name}', which only its Lua module can provide",
                        agent.name
                    ));
                    Ok(Rc::new(UnavailableSpawner { what: "lua operator (its Lua module is not loaded)" }))
                }
            },
        }
    }
}

/// Puts an attempt's question to seat `operator` as a wait: the signal that answers it, and the
/// wait for that signal. The question (`{operator, agent, input, prompt?}`) goes with the wait,
/// for whoever lists what is open (`swarm runs show`, the REPL's `:pending`, a client).
pub fn ask(
    job: &crate::worker::Job,
    operator: &str,
    prompt: Option<&str>,
) -> (String, futures::future::LocalBoxFuture<'static, Result<Value, crate::flow::FlowError>>) {
    let signal = job.host.question_signal(operator);
    let mut asked =
        vec![("operator", Value::from(operator)), ("agent", Value::from(&*job.agent)), ("input", job.input.clone())];
    if let Some(prompt) = prompt {
        asked.push(("prompt", Value::from(prompt)));
    }
    let wait = job.host.wait(&signal, None, Some(Value::from_pairs(asked)));
    (signal, wait)
}

/// The prompt an operator is shown: the rendered system prompt, or nothing.
pub fn render_prompt(setup: &OperatorSetup, input: &Value) -> Result<Option<String>, String> {
    setup.template.as_ref().map(|t| t.render(input)).transpose()
}
