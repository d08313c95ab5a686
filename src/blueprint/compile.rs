//! Stage 1: a blueprint becomes a routing table, agent name → spawner, built by a factory
//! registry keyed by agent kind.
//!
//! Every problem is collected, not just the first, and reported in this order:
//! `unresolved_operator_ref`, `duplicate_agent`, `unknown_kind`, `invalid_spec`,
//! `unresolved_ref`. Each names the agent or step and, where known, the `file:line` that
//! declared it.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::path::Path;
use std::rc::Rc;

use serde::Serialize;

pub use crate::engine::compiled::{CompiledBlueprint, Router, Warning};
use crate::flow::Node;
use crate::middleware::{LayerRegistry, LinkError};
use crate::schema::{Blueprint, Location};
use crate::worker::{BuildContext, Spawner, SpawnerFactory};

/// The kinds of compile error, in the order they are reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CompileErrorKind {
    /// An `operator` agent names an operator seat the blueprint does not declare.
    UnresolvedOperatorRef,
    /// Two agents share a name.
    DuplicateAgent,
    /// An agent's kind is not one the compiler knows (under `strict_kind`).
    UnknownKind,
    /// An agent's spec is wrong for its kind.
    InvalidSpec,
    /// A step names an agent the blueprint does not declare (under `strict_refs`).
    UnresolvedRef,
    /// A layer key no registry knows, or a layer whose settings are wrong (stage 2, linking).
    UnknownLayer,
}

impl CompileErrorKind {
    /// The snake_case name used on the wire and in messages.
    pub fn name(self) -> &'static str {
        match self {
            CompileErrorKind::UnresolvedOperatorRef => "unresolved_operator_ref",
            CompileErrorKind::DuplicateAgent => "duplicate_agent",
            CompileErrorKind::UnknownKind => "unknown_kind",
            CompileErrorKind::InvalidSpec => "invalid_spec",
            CompileErrorKind::UnresolvedRef => "unresolved_ref",
            CompileErrorKind::UnknownLayer => "unknown_layer",
        }
    }
}

/// One compile error.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CompileError {
    /// What kind of error it is.
    pub kind: CompileErrorKind,
    /// What is wrong, for people.
    pub message: String,
    /// The agent the error concerns, when it concerns one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// The step's agent ref, for errors about a step.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// The node's place in the flow tree, e.g. `/children/2`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pointer: Option<String>,
    /// The file and line that declared the offending part, when known.
    #[serde(skip)]
    pub location: Option<Location>,
    /// The blueprint's file, when no line is known.
    #[serde(skip)]
    pub file: Option<String>,
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.location, &self.file) {
            (Some(loc), _) => write!(f, "{loc}: ")?,
            (None, Some(file)) => write!(f, "{file}: ")?,
            (None, None) => {}
        }
        write!(f, "{}: {}", self.kind.name(), self.message)?;
        if self.location.is_none()
            && let Some(pointer) = &self.pointer
        {
            write!(f, " (at flow{pointer})")?;
        }
        Ok(())
    }
}

/// Every compile error of a blueprint, in reporting order; never empty.
#[derive(Clone, Debug, PartialEq)]
pub struct CompileErrors(pub Vec<CompileError>);

impl CompileErrors {
    /// The error reported first.
    pub fn first(&self) -> &CompileError {
        &self.0[0]
    }
}

impl fmt::Display for CompileErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for CompileErrors {}

/// Compiles blueprints with a registry of factories keyed by agent kind.
#[derive(Default, Clone)]
pub struct Compiler {
    factories: BTreeMap<String, Rc<dyn SpawnerFactory>>,
    default_spawner: Option<Rc<dyn Spawner>>,
    /// Shared with whoever registers layers (the host VM), so a compiler made once links
    /// with the layers registered since.
    layers: Rc<RefCell<LayerRegistry>>,
    /// Checking a blueprint away from the host that runs it: layer keys this registry does
    /// not know are warnings, as that host may register them.
    detached: bool,
}

impl Compiler {
    /// A compiler with no factories at all.
    pub fn new() -> Compiler {
        Compiler::default()
    }

    /// Registers (or replaces) the factory for agent kind `kind`.
    pub fn register(&mut self, kind: &str, factory: impl SpawnerFactory + 'static) -> &mut Compiler {
        self.factories.insert(kind.to_string(), Rc::new(factory));
        self
    }

    /// Steps naming no declared agent go here instead of failing `strict_refs`.
    pub fn set_default_spawner(&mut self, spawner: Rc<dyn Spawner>) -> &mut Compiler {
        self.default_spawner = Some(spawner);
        self
    }

    /// The layers blueprints are linked with (stage 2).
    pub fn set_layers(&mut self, layers: LayerRegistry) -> &mut Compiler {
        self.layers = Rc::new(RefCell::new(layers));
        self
    }

    /// Links with `layers` as they stand at each compile (the host VM's registry, which
    /// `swarm.layer` adds to).
    pub fn share_layers(&mut self, layers: Rc<RefCell<LayerRegistry>>) -> &mut Compiler {
        self.layers = layers;
        self
    }

    /// Compile away from the host that will run the blueprint (checking a JSON file): layer
    /// keys unknown here become warnings.
    pub fn set_detached(&mut self, detached: bool) -> &mut Compiler {
        self.detached = detached;
        self
    }

    /// The registered agent kinds.
    pub fn kinds(&self) -> impl Iterator<Item = &str> {
        self.factories.keys().map(String::as_str)
    }

    /// Compiles `bp` in its two stages: each agent's spec to a spawner, by the factory of its
    /// kind, into a routing table (relative paths in specs resolve against `base_dir`); then
    /// the link, the layers around that table. The result is runnable as a unit, which is why
    /// one call does both: an engine starts runs of a `CompiledBlueprint`.
    pub fn compile(&self, bp: Rc<Blueprint>, base_dir: Option<&Path>) -> Result<CompiledBlueprint, CompileErrors> {
        let mut run = CompileRun { bp: &bp, errors: Vec::new(), warnings: Vec::new(), failed: HashSet::new() };
        run.check_references(self);
        let (routes, declared) = run.build_routes(self, base_dir);
        if bp.strategy.strict_refs && self.default_spawner.is_none() {
            run.check_refs(&routes, &declared);
        } else {
            run.warn_unrouted(&routes, self.default_spawner.is_some());
        }
        let router = Rc::new(Router { routes, default: self.default_spawner.clone() });
        let spawner = run.link(self, router.clone());
        if !run.errors.is_empty() {
            run.errors.sort_by_key(|e| e.kind);
            return Err(CompileErrors(run.errors));
        }
        let operators = bp
            .agents
            .iter()
            .filter_map(|a| Some((a.name.clone(), self.factories.get(&a.kind)?.operator_seat(a)?)))
            .collect();
        let warnings = run.warnings;
        Ok(CompiledBlueprint { blueprint: bp, router, spawner, operators, warnings, step_pointers: Default::default() })
    }
}

/// The state of one compilation.
struct CompileRun<'a> {
    bp: &'a Blueprint,
    errors: Vec<CompileError>,
    warnings: Vec<Warning>,
    /// Agents (by index) already reported, which their factory is not asked about again.
    failed: HashSet<usize>,
}

impl CompileRun<'_> {
    fn agent_error(&mut self, kind: CompileErrorKind, index: usize, message: String) {
        let agent = &self.bp.agents[index];
        self.errors.push(CompileError {
            kind,
            message,
            agent: Some(agent.name.clone()),
            step: None,
            pointer: None,
            location: self.bp.sources.agent_site(index),
            file: self.bp.sources.file.clone(),
        });
    }

    /// Stage 2, the link: the engine's base layers, then each hint layer the blueprint lists,
    /// around the routing table (stage 1's result). An unknown layer key is an `unknown_layer`
    /// error, or a warning when the blueprint is checked away from the host that runs it.
    fn link(&mut self, compiler: &Compiler, router: Rc<Router>) -> Rc<dyn Spawner> {
        let bp = self.bp;
        let stack = compiler.layers.borrow().stack(bp);
        match stack {
            Ok(stack) => stack.wrap(router),
            Err(link_errors) => {
                for e in link_errors {
                    if compiler.detached && matches!(e, LinkError::Unknown { .. }) {
                        self.warnings.push(Warning {
                            message: format!("{e}; the host that runs this blueprint must register it"),
                            location: bp.sources.blueprint.clone(),
                            file: bp.sources.file.clone(),
                        });
                        continue;
                    }
                    self.errors.push(CompileError {
                        kind: CompileErrorKind::UnknownLayer,
                        message: e.to_string(),
                        agent: None,
                        step: None,
                        pointer: None,
                        location: bp.sources.blueprint.clone(),
                        file: bp.sources.file.clone(),
                    });
                }
                router
            }
        }
    }

    /// What each agent's spec refers to must be declared (operator agents name an operator), and
    /// the declarations each kind owns must be sound (operators of a known kind): asked of the
    /// kinds' factories, before any spec is built.
    fn check_references(&mut self, compiler: &Compiler) {
        let bp = self.bp;
        for (index, agent) in bp.agents.iter().enumerate() {
            let Some(factory) = compiler.factories.get(&agent.kind) else { continue };
            if let Some(message) = factory.unresolved_ref(agent, bp) {
                self.agent_error(CompileErrorKind::UnresolvedOperatorRef, index, message);
                self.failed.insert(index);
            }
        }
        for message in compiler.factories.values().flat_map(|factory| factory.check_declarations(bp)) {
            self.errors.push(CompileError {
                kind: CompileErrorKind::UnknownKind,
                message,
                agent: None,
                step: None,
                pointer: None,
                location: bp.sources.blueprint.clone(),
                file: bp.sources.file.clone(),
            });
        }
    }

    /// Builds a spawner per agent. `declared` holds every agent name that exists for the
    /// purpose of step refs, including agents whose spec failed, so one mistake is reported once.
    fn build_routes(
        &mut self,
        compiler: &Compiler,
        base_dir: Option<&Path>,
    ) -> (HashMap<String, Rc<dyn Spawner>>, HashSet<String>) {
        let bp = self.bp;
        let mut routes: HashMap<String, Rc<dyn Spawner>> = HashMap::new();
        let mut declared = HashSet::new();
        let mut cx = BuildContext { blueprint: bp, base_dir, warnings: Vec::new() };
        for (index, agent) in bp.agents.iter().enumerate() {
            if !declared.insert(agent.name.clone()) {
                let message = format!("agent '{}' is declared more than once", agent.name);
                self.agent_error(CompileErrorKind::DuplicateAgent, index, message);
                continue;
            }
            let Some(factory) = compiler.factories.get(&agent.kind) else {
                let known: Vec<&str> = compiler.kinds().collect();
                let message =
                    format!("agent '{}' has unknown kind '{}' (known: {})", agent.name, agent.kind, known.join(", "));
                if bp.strategy.strict_kind {
                    self.agent_error(CompileErrorKind::UnknownKind, index, message);
                } else {
                    declared.remove(&agent.name);
                    let location = bp.sources.agent_site(index);
                    self.warnings.push(Warning {
                        message: format!("{message}; dropped (strict_kind = false)"),
                        location,
                        file: bp.sources.file.clone(),
                    });
                }
                continue;
            };
            if self.failed.contains(&index) {
                continue;
            }
            let hint = bp.hints.per_agent.get(&agent.name);
            match factory.build(agent, hint, &mut cx) {
                Ok(spawner) => {
                    routes.insert(agent.name.clone(), spawner);
                }
                Err(message) => {
                    let message = format!("agent '{}' ({}): {message}", agent.name, agent.kind);
                    self.agent_error(CompileErrorKind::InvalidSpec, index, message);
                }
            }
        }
        for message in cx.warnings {
            self.warnings.push(Warning {
                message,
                location: bp.sources.blueprint.clone(),
                file: bp.sources.file.clone(),
            });
        }
        (routes, declared)
    }

    fn check_refs(&mut self, routes: &HashMap<String, Rc<dyn Spawner>>, declared: &HashSet<String>) {
        let bp = self.bp;
        bp.flow.walk(&mut |pointer, node| {
            let Node::Step(step) = node else { return };
            if routes.contains_key(&step.agent) || declared.contains(&step.agent) {
                return;
            }
            let mut message = format!("step refers to agent '{}', which is not declared", step.agent);
            if let Some(near) = closest(&step.agent, declared.iter().map(String::as_str)) {
                message.push_str(&format!(" (did you mean '{near}'?)"));
            }
            self.errors.push(CompileError {
                kind: CompileErrorKind::UnresolvedRef,
                message,
                agent: None,
                step: Some(step.agent.clone()),
                pointer: Some(pointer.to_string()),
                location: bp.sources.node_site(pointer),
                file: bp.sources.file.clone(),
            });
        });
    }

    fn warn_unrouted(&mut self, routes: &HashMap<String, Rc<dyn Spawner>>, has_default: bool) {
        if has_default {
            return;
        }
        let bp = self.bp;
        bp.flow.walk(&mut |pointer, node| {
            if let Node::Step(step) = node
                && !routes.contains_key(&step.agent)
            {
                self.warnings.push(Warning {
                    message: format!(
                        "step refers to agent '{}', which is not declared; it will fail when it runs",
                        step.agent
                    ),
                    location: bp.sources.node_site(pointer),
                    file: bp.sources.file.clone(),
                });
            }
        });
    }
}

/// The candidate nearest to `name` by edit distance, if it is near enough to be a typo.
fn closest<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (name.chars().count() / 3).max(1);
    candidates.map(|c| (edit_distance(name, c), c)).filter(|(d, _)| *d <= limit).min().map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_near_names_only() {
        assert_eq!(closest("summarise", ["summarize", "review"].into_iter()), Some("summarize"));
        assert_eq!(closest("x", ["review"].into_iter()), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
