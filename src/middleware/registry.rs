//! The registry of layers blueprints are linked with.

use std::collections::BTreeMap;
use std::rc::Rc;

use super::{SpawnerLayer, Stack};
use crate::blueprint::Blueprint;

/// Makes a layer for one blueprint (a layer may take its settings from the blueprint's
/// `hints.global.<key>` or `metadata`); `Err` is a compile error naming the layer.
pub type LayerFactory = Rc<dyn Fn(&Blueprint) -> Result<Rc<dyn SpawnerLayer>, String>>;

/// A factory that hands every blueprint the same layer.
pub fn fixed(layer: Rc<dyn SpawnerLayer>) -> LayerFactory {
    Rc::new(move |_| Ok(layer.clone()))
}

/// Why a blueprint's layers could not be linked.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("unknown layer '{key}' (known: {})", if known.is_empty() { "none".to_string() } else { known.join(", ") })]
    Unknown { key: String, known: Vec<String> },
    #[error("layer '{key}': {message}")]
    Layer { key: String, message: String },
}

/// Base layers wrap every blueprint; hint layers only those that list their key.
#[derive(Clone, Default)]
pub struct LayerRegistry {
    base: Vec<(String, LayerFactory)>,
    hints: BTreeMap<String, LayerFactory>,
}

impl LayerRegistry {
    pub fn new() -> LayerRegistry {
        LayerRegistry::default()
    }

    /// Adds a base layer; base layers apply in registration order, innermost first.
    pub fn base(&mut self, name: &str, factory: LayerFactory) {
        self.base.push((name.to_string(), factory));
    }

    /// Registers (or replaces) the hint layer for `key`.
    pub fn hint(&mut self, key: &str, factory: LayerFactory) {
        self.hints.insert(key.to_string(), factory);
    }

    /// The hint keys, sorted.
    pub fn hint_keys(&self) -> Vec<String> {
        self.hints.keys().cloned().collect()
    }

    /// The stack for `bp`: every base layer, then each hint layer `bp.layers` lists, in list
    /// order, each outside the last. Every problem is reported.
    pub fn stack(&self, bp: &Blueprint) -> Result<Stack, Vec<LinkError>> {
        let mut chosen: Vec<(&str, &LayerFactory)> = self.base.iter().map(|(n, f)| (n.as_str(), f)).collect();
        let mut errors = Vec::new();
        for key in &bp.layers {
            match self.hints.get(key) {
                Some(factory) => chosen.push((key, factory)),
                None => errors.push(LinkError::Unknown { key: key.clone(), known: self.hint_keys() }),
            }
        }
        let mut stack = Stack::new();
        for (key, factory) in chosen {
            match factory(bp) {
                Ok(layer) => stack = stack.push(layer),
                Err(message) => errors.push(LinkError::Layer { key: key.to_string(), message }),
            }
        }
        if errors.is_empty() { Ok(stack) } else { Err(errors) }
    }
}
