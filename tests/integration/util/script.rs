//! The rig the script-agent tests share: a host (with its script pool), an engine, and
//! blueprints written as JSON. Script VMs run on real threads, so these tests run on the real
//! clock; timing checks use generous bounds and polling with deadlines, never exact times.

use std::rc::Rc;
use std::time::{Duration, Instant};

use luaswarm::blueprint::Blueprint;
use luaswarm::engine::{Engine, EngineConfig, RunOutcome, RunStatus};
use luaswarm::flow::{FlowError, NoExterns};
use luaswarm::host::Host;
use luaswarm::value::from_json;
use luaswarm::worker::script::{PoolConfig, PoolStats};
use serde_json::{Value as J, json};
use tokio::runtime::Runtime;
use tokio::task::LocalSet;

pub struct Rig {
    pub host: Host,
    pub engine: Engine,
    runtime: Runtime,
    local: LocalSet,
}

impl Rig {
    pub fn new() -> Rig {
        Rig::with(PoolConfig::default())
    }

    pub fn with(config: PoolConfig) -> Rig {
        let host = Host::builder().script_pool(config).build().expect("the host starts");
        let engine = Engine::new(EngineConfig { token_secret: Some("script-tests".into()), ..EngineConfig::default() })
            .expect("the engine starts");
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        Rig { host, engine, runtime, local: LocalSet::new() }
    }

    /// A pool of one VM: consecutive calls are sure to share it.
    pub fn one_vm() -> Rig {
        Rig::with(PoolConfig { vms: 1, ..PoolConfig::default() })
    }

    /// Runs Lua in the host VM, with `swarm` in scope (to register bridges).
    pub fn host_lua(&self, code: &str) {
        let code = format!("local swarm = require('swarm')\n{code}");
        self.host.lua().load(code).exec().expect("the host code runs");
    }

    /// Compiles and runs a blueprint on the engine, to the end.
    pub fn run(&self, blueprint: J, init: J) -> RunOutcome {
        let bp = Blueprint::from_json(&blueprint.to_string()).expect("a valid blueprint");
        let compiled = Rc::new(self.host.compiler().compile(Rc::new(bp), None).expect("the blueprint compiles"));
        let init = from_json(&init.to_string()).expect("JSON");
        let engine = self.engine.clone();
        self.local.block_on(&self.runtime, async move { engine.start(compiled, init, Rc::new(NoExterns)).wait().await })
    }

    /// One step of the script agent `s` with `spec`, on `input`: its value or its error.
    pub fn call(&self, spec: J, input: J) -> Result<J, FlowError> {
        let outcome = self.run(one_step(spec), json!({ "x": input }));
        match outcome.error {
            None => {
                assert_eq!(outcome.status, RunStatus::Finished);
                Ok(J::from(&outcome.ctx)["y"].clone())
            }
            Some(error) => Err(error),
        }
    }

    /// Runs `source` on `input` and returns its value, failing the test if it fails.
    pub fn value(&self, source: &str, input: J) -> J {
        self.call(json!({ "source": source }), input).unwrap_or_else(|e| panic!("{source}\nfailed: {}", e.message))
    }

    /// Runs `source` on `input` and returns its error message, failing the test if it passes.
    pub fn error(&self, source: &str, input: J) -> String {
        match self.call(json!({ "source": source }), input) {
            Ok(v) => panic!("{source}\nreturned {v} instead of failing"),
            Err(e) => e.message,
        }
    }

    pub fn stats(&self) -> PoolStats {
        self.host.script_pool().stats()
    }

    /// Polls the pool's stats until `ready` holds, for at most `limit`.
    pub fn wait_for_stats(&self, limit: Duration, ready: impl Fn(&PoolStats) -> bool) -> PoolStats {
        let deadline = Instant::now() + limit;
        loop {
            let stats = self.stats();
            if ready(&stats) || Instant::now() >= deadline {
                return stats;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// A blueprint with the script agent `s` (spec `spec`) and one step: `$.y = s($.x)`.
pub fn one_step(spec: J) -> J {
    blueprint(
        spec,
        json!({"kind": "step", "ref": "s", "in": {"op": "path", "at": "$.x"}, "out": {"op": "path", "at": "$.y"}}),
    )
}

/// A blueprint with the script agent `s` and `flow`.
pub fn blueprint(spec: J, flow: J) -> J {
    json!({ "id": "script_test", "agents": [{ "name": "s", "kind": "lua", "spec": spec }], "flow": flow })
}

/// A fanout of `s` over `items`, lanes collected at `$.all` with `join`.
pub fn fanout(items: J, join: &str) -> J {
    json!({
        "kind": "fanout",
        "items": {"op": "lit", "value": items},
        "bind": {"op": "path", "at": "$.x"},
        "body": {"kind": "step", "ref": "s", "in": {"op": "path", "at": "$.x"}, "out": {"op": "path", "at": "$.y"}},
        "join": join,
        "out": {"op": "path", "at": "$.all"},
        "collect": {"op": "path", "at": "$.y"}
    })
}

/// A seq of `n` steps of `s`, each feeding the next (`$.x = s($.x)`).
pub fn chain(n: usize) -> J {
    let step =
        json!({"kind": "step", "ref": "s", "in": {"op": "path", "at": "$.x"}, "out": {"op": "path", "at": "$.x"}});
    json!({ "kind": "seq", "children": vec![step; n] })
}
