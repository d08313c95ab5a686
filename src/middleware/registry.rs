//! The registry of layers blueprints are linked with.

use std::collections::BTreeMap;
use std::rc::Rc;

use super::{SpawnerLayer, Stack};
use crate::schema::Blueprint;

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
    /// The blueprint lists a layer key no registry knows.
    #[error("unknown layer '{key}' (known: {})", if known.is_empty() { "none".to_string() } else { known.join(", ") })]
    Unknown {
        /// The key as listed.
        key: String,
        /// Every key the registry knows, for the message.
        known: Vec<String>,
    },
    /// The layer's factory refused the blueprint's settings.
    #[error("layer '{key}': {message}")]
    Layer {
        /// The layer's key.
        key: String,
        /// What is wrong with its settings.
        message: String,
    },
}

/// Base layers wrap every blueprint; hint layers only those that list their key.
#[derive(Clone, Default)]
pub struct LayerRegistry {
    base: Vec<(String, LayerFactory)>,
    hints: BTreeMap<String, LayerFactory>,
}

impl LayerRegistry {
    /// A registry with no layers.
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

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use futures::future::LocalBoxFuture;

    use super::*;
    use crate::engine::spawner::{Job, Spawner, WorkerResult};
    use crate::middleware::LayerFn;

    /// Records its name on the way in, then delegates.
    struct Mark {
        name: &'static str,
        trail: Rc<RefCell<Vec<&'static str>>>,
        inner: Rc<dyn Spawner>,
    }

    impl Spawner for Mark {
        fn spawn(&self, job: Job) -> LocalBoxFuture<'static, WorkerResult> {
            self.trail.borrow_mut().push(self.name);
            self.inner.spawn(job)
        }
    }

    fn mark(name: &'static str, trail: &Rc<RefCell<Vec<&'static str>>>) -> LayerFactory {
        let trail = trail.clone();
        fixed(Rc::new(LayerFn(move |inner| -> Rc<dyn Spawner> { Rc::new(Mark { name, trail: trail.clone(), inner }) })))
    }

    /// The order layers are entered in when an attempt goes through the stack: outermost first.
    fn entry_order(registry: &LayerRegistry, keys: &[&str]) -> Vec<&'static str> {
        let trail = Rc::new(RefCell::new(Vec::new()));
        let mut registry = registry.clone();
        for name in ["b1", "b2"] {
            registry.base(name, mark(name, &trail));
        }
        for name in ["h1", "h2", "h3"] {
            registry.hint(name, mark(name, &trail));
        }
        let mut bp = Blueprint::from_json(r#"{"id":"x","flow":{"kind":"seq","children":[]}}"#).unwrap();
        bp.layers = keys.iter().map(|k| k.to_string()).collect();
        struct Bottom(Rc<RefCell<Vec<&'static str>>>);
        impl Spawner for Bottom {
            fn spawn(&self, _job: Job) -> LocalBoxFuture<'static, WorkerResult> {
                self.0.borrow_mut().push("worker");
                Box::pin(async { Ok(crate::engine::spawner::Verdict::Pass(crate::value::Value::Null)) })
            }
        }
        let stack = registry.stack(&bp).unwrap().wrap(Rc::new(Bottom(trail.clone())));
        let job = Job {
            task_id: "t".into(),
            attempt: 1,
            agent: "a".into(),
            input: crate::value::Value::Null,
            runtime: crate::value::Value::object(),
            operator: None,
            host: Rc::new(NoHost),
        };
        drop(stack.spawn(job));
        trail.borrow().clone()
    }

    struct NoHost;
    impl crate::engine::spawner::TaskHost for NoHost {
        fn token(&self) -> String {
            String::new()
        }
        fn emit(&self, _: crate::value::Value) {}
        fn note(&self, _: &str, _: crate::value::Value) {}
        fn output_refs(&self) -> Vec<std::sync::Arc<str>> {
            Vec::new()
        }
        fn dispatch(
            &self,
            _: &str,
            _: crate::value::Value,
        ) -> LocalBoxFuture<'static, Result<crate::value::Value, crate::engine::spawner::SubTaskError>> {
            Box::pin(async { Err(crate::flow::FlowError::eval("no host").into()) })
        }
    }

    #[test]
    fn base_layers_are_inner_and_later_layers_are_outer() {
        let registry = LayerRegistry::new();
        // Listed h3 then h1: h1 is outermost, then h3, then the base layers b2, b1.
        assert_eq!(entry_order(&registry, &["h3", "h1"]), ["h1", "h3", "b2", "b1", "worker"]);
        assert_eq!(entry_order(&registry, &[]), ["b2", "b1", "worker"]);
    }

    #[test]
    fn unknown_keys_and_bad_settings_are_all_reported() {
        let mut registry = LayerRegistry::new();
        registry.hint("known", fixed(Rc::new(LayerFn(|inner| inner))));
        registry.hint("picky", Rc::new(|_| Err("needs settings".to_string())));
        let mut bp = Blueprint::from_json(r#"{"id":"x","flow":{"kind":"seq","children":[]}}"#).unwrap();
        bp.layers = vec!["nope".into(), "picky".into(), "known".into()];
        let errors = registry.stack(&bp).err().unwrap();
        let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(text, ["unknown layer 'nope' (known: known, picky)", "layer 'picky': needs settings"]);
    }
}
