//! What the benches share: a runtime with an engine to run compiled blueprints on, and the
//! JSON shapes of the flows they time. Each bench uses some of it.
#![allow(dead_code)]

use std::rc::Rc;

use luaswarm::blueprint::compile::CompiledBlueprint;
use luaswarm::engine::{Engine, EngineConfig, RunStatus};
use luaswarm::flow::NoExterns;
use luaswarm::value::Value;

/// A current-thread runtime, its `LocalSet` and one engine that every run of a bench shares.
pub struct Runner {
    pub runtime: tokio::runtime::Runtime,
    pub local: tokio::task::LocalSet,
    pub engine: Engine,
}

impl Runner {
    pub fn new() -> Runner {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let engine =
            Engine::new(EngineConfig { token_secret: Some("bench".into()), ..EngineConfig::default() }).unwrap();
        Runner { runtime, local: tokio::task::LocalSet::new(), engine }
    }

    /// Runs `compiled` over `{x = 1}` and checks that it finished.
    pub fn run(&self, compiled: &Rc<CompiledBlueprint>) {
        self.run_with(compiled, Value::from_pairs([("x", Value::int(1))]));
    }

    /// Runs `compiled` over `init` and checks that it finished.
    pub fn run_with(&self, compiled: &Rc<CompiledBlueprint>, init: Value) {
        let engine = self.engine.clone();
        let compiled = compiled.clone();
        let outcome = self.block_on(async move { engine.start(compiled, init, Rc::new(NoExterns)).wait().await });
        assert_eq!(outcome.status, RunStatus::Finished, "{:?}", outcome.error);
    }

    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.local.block_on(&self.runtime, f)
    }
}

/// A step of `agent` reading `$.x` and writing `$.y`.
pub fn step_json(agent: &str) -> String {
    format!(r#"{{"kind":"step","ref":"{agent}","in":{{"op":"path","at":"$.x"}},"out":{{"op":"path","at":"$.y"}}}}"#)
}

/// A seq of `n` such steps.
pub fn seq(agent: &str, n: usize) -> String {
    let steps: Vec<String> = (0..n).map(|_| step_json(agent)).collect();
    format!(r#"{{"kind":"seq","children":[{}]}}"#, steps.join(","))
}

/// A fanout of `n` lanes, each one such step, collecting `$.y`.
pub fn fanout(agent: &str, n: usize) -> String {
    let items: Vec<String> = (0..n).map(|i| i.to_string()).collect();
    format!(
        r#"{{"kind":"fanout","items":{{"op":"lit","value":[{}]}},"bind":{{"op":"path","at":"$.x"}},"body":{},"join":"all","out":{{"op":"path","at":"$.all"}},"collect":{{"op":"path","at":"$.y"}}}}"#,
        items.join(","),
        step_json(agent)
    )
}
