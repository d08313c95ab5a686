//! Stage 2, linking: layers wrap the compiled routing table (docs/layers.md).
//!
//! A layer wraps a [`Spawner`] in another spawner, as tower's `Layer` wraps a service. The
//! engine's [`LayerRegistry`] holds base layers (they wrap every blueprint, in registration
//! order) and hint layers (only where a blueprint lists their key, in list order); each later
//! layer is outer. Nothing else in the engine knows which layers exist.

pub mod builtin;
mod registry;

use std::rc::Rc;

use crate::engine::spawner::Spawner;

pub use registry::{LayerFactory, LayerRegistry, LinkError, fixed};

/// Wraps a spawner in another.
pub trait SpawnerLayer {
    /// Returns a spawner that runs `inner`, with this layer's behaviour around it.
    fn layer(&self, inner: Rc<dyn Spawner>) -> Rc<dyn Spawner>;
}

/// A closure as a layer.
pub struct LayerFn<F>(pub F);

impl<F: Fn(Rc<dyn Spawner>) -> Rc<dyn Spawner>> SpawnerLayer for LayerFn<F> {
    fn layer(&self, inner: Rc<dyn Spawner>) -> Rc<dyn Spawner> {
        (self.0)(inner)
    }
}

/// Layers applied in order, each outside the ones before it.
#[derive(Clone, Default)]
pub struct Stack {
    layers: Vec<Rc<dyn SpawnerLayer>>,
}

impl Stack {
    /// An empty stack, which wraps nothing.
    pub fn new() -> Stack {
        Stack::default()
    }

    /// Adds a layer outside the ones already there.
    pub fn push(mut self, layer: Rc<dyn SpawnerLayer>) -> Stack {
        self.layers.push(layer);
        self
    }

    /// `inner` wrapped in every layer, the last pushed outermost.
    pub fn wrap(&self, inner: Rc<dyn Spawner>) -> Rc<dyn Spawner> {
        self.layers.iter().fold(inner, |inner, layer| layer.layer(inner))
    }

    /// How many layers the stack holds.
    pub fn len(&self) -> usize {
        self.layers.len()
    }

    /// Whether the stack holds no layer.
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }
}
