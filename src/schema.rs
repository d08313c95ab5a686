//! The blueprint schema (docs/agents.md): plain data that round-trips through JSON.
//!
//! A blueprint from a Lua module also carries a [`SourceMap`] (never serialized) so compile
//! errors can point at the `file:line` where an agent or step was declared.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::flow::Node;
use crate::flow::ir::list;
use crate::value::Value;

/// A flow plus the agents its steps dispatch to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "BlueprintWire")]
pub struct Blueprint {
    /// The blueprint's name; runs and journal rows carry it.
    pub id: String,
    /// The flow a run evaluates.
    pub flow: Node,
    /// The agents the flow's steps dispatch to.
    pub agents: Vec<AgentDef>,
    /// The operator seats that `operator` agents refer to.
    pub operators: Vec<OperatorDef>,
    /// Hint keys resolved against the engine's layer registry, in wrapping order.
    pub layers: Vec<String>,
    /// Settings handed to agents and layers.
    #[serde(skip_serializing_if = "Hints::is_empty")]
    pub hints: Hints,
    /// How strict the compiler is.
    pub strategy: Strategy,
    /// Free-form data about the blueprint, kept as written; some layers read it.
    #[serde(skip_serializing_if = "is_null")]
    pub metadata: Value,
    /// Where the parts were declared; empty for JSON blueprints.
    #[serde(skip)]
    pub sources: SourceMap,
}

/// An agent: a name the flow's steps use, and the worker behind it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentDef {
    /// What the flow's steps call the agent.
    pub name: String,
    /// `lua`, `rust_fn`, `subprocess`, `operator`, or a kind a host registered. Kept as text so
    /// an unknown kind is a compile error with the agent's name, not a parse error.
    pub kind: String,
    /// The kind's settings, checked when the blueprint is compiled.
    #[serde(default, skip_serializing_if = "is_null")]
    pub spec: Value,
    /// What the agent is told about itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<Profile>,
    /// Free-form data about the agent, kept as written.
    #[serde(default, skip_serializing_if = "is_null")]
    pub meta: Value,
}

/// What an agent is told about itself: the system prompt template, the model, the tools.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    /// The system prompt template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_prompt: Option<String>,
    /// The model the agent should use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The tools the agent may use, by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "list")]
    pub tools: Vec<String>,
    /// Any other profile field, kept as written.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// An operator seat: a decision-maker the blueprint declares under `operators`, which
/// `operator` agents put their questions to by name (`spec.operator_ref`). It is filled by a Lua
/// function registered with `swarm.operator` (kind `lua`) or by the person at the terminal (kind
/// `console`). Unrelated to the gate's operator role ([`crate::gate::Role::Operator`]), which is
/// who may drive a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorDef {
    /// What `operator` agents call the seat.
    pub name: String,
    /// `lua` (a function registered with `swarm.operator`) or `console`.
    pub kind: String,
    /// The name shown to the person at the seat.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// The kind's settings.
    #[serde(default, skip_serializing_if = "is_null")]
    pub spec: Value,
    /// What the operator is told about the seat.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<Profile>,
}

/// Per-agent hints handed to the agent's factory.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hints {
    /// Hints for one agent, by the agent's name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub per_agent: BTreeMap<String, Value>,
    /// Hints for the whole blueprint; built-in layers read their settings at `global.<key>`.
    #[serde(default, skip_serializing_if = "is_null")]
    pub global: Value,
}

impl Hints {
    fn is_empty(&self) -> bool {
        self.per_agent.is_empty() && self.global == Value::Null
    }
}

/// How strict the compiler is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Strategy {
    /// Every step must name a declared agent (unless the compiler has a default spawner).
    #[serde(default = "yes")]
    pub strict_refs: bool,
    /// An agent of an unknown kind is an error; otherwise it is dropped with a warning.
    #[serde(default = "yes")]
    pub strict_kind: bool,
}

impl Default for Strategy {
    fn default() -> Self {
        Strategy { strict_refs: true, strict_kind: true }
    }
}

fn optional_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    list(d).map(Some)
}

fn yes() -> bool {
    true
}

fn is_null(v: &Value) -> bool {
    matches!(v, Value::Null)
}

/// The wire form, which also accepts mlua-swarm's `spawner_hints.layers` and `schema_version`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BlueprintWire {
    id: String,
    flow: Node,
    #[serde(default, deserialize_with = "list")]
    agents: Vec<AgentDef>,
    #[serde(default, deserialize_with = "list")]
    operators: Vec<OperatorDef>,
    #[serde(default, deserialize_with = "optional_list")]
    layers: Option<Vec<String>>,
    #[serde(default)]
    spawner_hints: Option<SpawnerHints>,
    #[serde(default)]
    hints: Hints,
    #[serde(default)]
    strategy: Strategy,
    #[serde(default)]
    metadata: Value,
    #[serde(default)]
    #[allow(dead_code)]
    schema_version: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SpawnerHints {
    #[serde(default, deserialize_with = "list")]
    layers: Vec<String>,
}

impl TryFrom<BlueprintWire> for Blueprint {
    type Error = String;

    fn try_from(w: BlueprintWire) -> Result<Blueprint, String> {
        let layers = match (w.layers, w.spawner_hints) {
            (Some(_), Some(_)) => return Err("give `layers` or `spawner_hints.layers`, not both".into()),
            (Some(layers), None) => layers,
            (None, Some(hints)) => hints.layers,
            (None, None) => Vec::new(),
        };
        if w.id.is_empty() {
            return Err("blueprint `id` must not be empty".into());
        }
        Ok(Blueprint {
            id: w.id,
            flow: w.flow,
            agents: w.agents,
            operators: w.operators,
            layers,
            hints: w.hints,
            strategy: w.strategy,
            metadata: w.metadata,
            sources: SourceMap::default(),
        })
    }
}

impl Blueprint {
    /// Parses a JSON blueprint.
    pub fn from_json(text: &str) -> Result<Blueprint, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// Canonical, pretty JSON: every object's keys sorted, so equal blueprints print the same.
    pub fn to_json_pretty(&self) -> String {
        let value = serde_json::to_value(self).expect("a blueprint always encodes");
        serde_json::to_string_pretty(&value).expect("a JSON value always encodes")
    }

    /// SHA-256 of [`Blueprint::to_json_pretty`], the first 16 bytes in hex: what a journaled run
    /// records, to tell on resume whether its blueprint changed.
    pub fn digest(&self) -> std::sync::Arc<str> {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(self.to_json_pretty().as_bytes());
        digest[..16].iter().map(|b| format!("{b:02x}")).collect::<String>().into()
    }

    /// The agent named `name`, if declared.
    pub fn agent(&self, name: &str) -> Option<&AgentDef> {
        self.agents.iter().find(|a| a.name == name)
    }
}

/// A place in a source file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    /// The file's path, as given.
    pub file: String,
    /// The line, from 1.
    pub line: u32,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// Where a blueprint's parts were declared. Nodes are keyed by their pointer in the flow tree
/// (see [`crate::blueprint::walk`]), e.g. `/children/1/then`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SourceMap {
    /// The file the blueprint came from (Lua or JSON).
    pub file: Option<String>,
    /// Where `swarm.blueprint{...}` was called.
    pub blueprint: Option<Location>,
    /// By the agent's position in `agents`.
    pub agents: Vec<Option<Location>>,
    /// By the node's pointer in the flow tree.
    pub nodes: HashMap<String, Location>,
}

impl SourceMap {
    /// The best place to report something about the agent at `index`.
    pub fn agent_site(&self, index: usize) -> Option<Location> {
        self.agents.get(index).and_then(Option::as_ref).or(self.blueprint.as_ref()).cloned()
    }

    /// The best place to report something about the node at `pointer`.
    pub fn node_site(&self, pointer: &str) -> Option<Location> {
        self.nodes.get(pointer).or(self.blueprint.as_ref()).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"{"id":"bp","flow":{"kind":"seq","children":[]}}"#;

    #[test]
    fn defaults_fill_in_and_print_canonically() {
        let bp = Blueprint::from_json(MINIMAL).unwrap();
        assert!(bp.strategy.strict_refs && bp.strategy.strict_kind);
        let again = Blueprint::from_json(&bp.to_json_pretty()).unwrap();
        assert_eq!(bp, again);
        assert_eq!(bp.to_json_pretty(), again.to_json_pretty());
    }

    #[test]
    fn accepts_the_spawner_hints_alias() {
        let text = r#"{"id":"bp","flow":{"kind":"seq","children":[]},"spawner_hints":{"layers":["audit"]},"schema_version":"0.1.0"}"#;
        let bp = Blueprint::from_json(text).unwrap();
        assert_eq!(bp.layers, ["audit"]);
        assert!(bp.to_json_pretty().contains("\"layers\""));
    }

    #[test]
    fn rejects_unknown_fields_and_both_layer_spellings() {
        let typo = r#"{"id":"bp","flow":{"kind":"seq","children":[]},"agnets":[]}"#;
        assert!(Blueprint::from_json(typo).unwrap_err().to_string().contains("agnets"));
        let both = r#"{"id":"bp","flow":{"kind":"seq","children":[]},"layers":[],"spawner_hints":{"layers":[]}}"#;
        assert!(Blueprint::from_json(both).is_err());
        let bad_agent =
            r#"{"id":"bp","flow":{"kind":"seq","children":[]},"agents":[{"name":"a","kind":"lua","sepc":{}}]}"#;
        assert!(Blueprint::from_json(bad_agent).is_err());
    }
}
