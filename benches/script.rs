//! Sandboxed script steps: through the full engine (a seq of N steps and a fanout of N lanes
//! of a `source` agent; criterion's element throughput gives the time per step), and the
//! pool's round trip alone (a script spawner called directly, no engine). A `rust_fn` echo seq
//! is the engine's own cost for comparison, and each script case also runs with spinning off
//! (`PoolConfig::spin = 0`), to show what the cross-thread hand-off costs when both sides park.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

mod support;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use futures::future::LocalBoxFuture;
use luaswarm::blueprint::Blueprint;
use luaswarm::blueprint::compile::CompiledBlueprint;
use luaswarm::flow::FlowError;
use luaswarm::host::Host;
use luaswarm::value::Value;
use luaswarm::worker::script::{HostBridges, Limits, PoolConfig, Script, ScriptRuntime, ScriptSpawner};
use luaswarm::worker::{Job, Spawner, SubTaskError, TaskHost};
use support::{Runner, fanout, seq};

const SCRIPT: &str = "return _CTX + 1";

fn blueprint(flow: String) -> String {
    format!(
        r#"{{"id":"bench","agents":[{{"name":"echo","kind":"rust_fn","spec":{{"fn_id":"echo"}}}},{{"name":"script","kind":"lua","spec":{{"source":"{SCRIPT}"}}}}],"flow":{flow}}}"#
    )
}

/// The shared runner plus a host whose script pool is configured for the case.
struct Bench {
    host: Host,
    runner: Runner,
}

impl Bench {
    fn new(config: PoolConfig) -> Bench {
        Bench { host: Host::builder().script_pool(config).build().unwrap(), runner: Runner::new() }
    }

    fn compile(&self, flow: String) -> Rc<CompiledBlueprint> {
        let bp = Blueprint::from_json(&blueprint(flow)).unwrap();
        Rc::new(self.host.compiler().compile(Rc::new(bp), None).unwrap())
    }

    fn run(&self, compiled: &Rc<CompiledBlueprint>) {
        self.runner.run(compiled);
    }
}

fn spinning(spin: bool) -> PoolConfig {
    let config = PoolConfig::default();
    if spin { config } else { PoolConfig { spin: Duration::ZERO, ..config } }
}

fn engine_steps(c: &mut Criterion) {
    let mut group = c.benchmark_group("script");
    group.sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3));
    let n = 10_000;
    for (name, spin) in [("spin", true), ("nospin", false)] {
        let bench = Bench::new(spinning(spin));
        let compiled = bench.compile(seq("script", n));
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new(format!("seq_script_{name}"), n), &compiled, |b, compiled| {
            b.iter(|| bench.run(compiled))
        });
        let compiled = bench.compile(fanout("script", n));
        group.bench_with_input(BenchmarkId::new(format!("fanout_script_{name}"), n), &compiled, |b, compiled| {
            b.iter(|| bench.run(compiled))
        });
        let stats = bench.host.script_pool().stats();
        println!("pool ({name}): {stats:?}");
    }
    let bench = Bench::new(PoolConfig::default());
    let compiled = bench.compile(seq("echo", n));
    group.bench_with_input(BenchmarkId::new("seq_echo", n), &compiled, |b, compiled| b.iter(|| bench.run(compiled)));
    group.finish();
}

/// The engine's side of an attempt, reduced to nothing: the pool alone.
struct NoHost;

impl TaskHost for NoHost {
    fn token(&self) -> String {
        String::new()
    }
    fn emit(&self, _: Value) {}
    fn note(&self, _: &str, _: Value) {}
    fn output_refs(&self) -> Vec<Arc<str>> {
        Vec::new()
    }
    fn dispatch(&self, _: &str, _: Value) -> LocalBoxFuture<'static, Result<Value, SubTaskError>> {
        Box::pin(async { Err(FlowError::eval("no dispatch here").into()) })
    }
}

fn pool_round_trip(c: &mut Criterion) {
    let mut group = c.benchmark_group("script_pool");
    group.sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3));
    let n = 10_000u64;
    for (name, spin) in [("spin", true), ("nospin", false)] {
        let bench = Bench::new(spinning(spin));
        let runtime = ScriptRuntime {
            pool: Rc::new(luaswarm::worker::script::ScriptPool::new(spinning(spin))),
            bridges: Rc::new(HostBridges::new(bench.host.lua())),
        };
        let script = Script::new("=[agent bench]".into(), SCRIPT).unwrap();
        let spawner = ScriptSpawner::new(script, Limits::default(), runtime.clone());
        let host: Rc<dyn TaskHost> = Rc::new(NoHost);
        let (task_id, agent): (Arc<str>, Arc<str>) = ("bench.1".into(), "bench".into());
        group.throughput(Throughput::Elements(n));
        group.bench_function(BenchmarkId::new(format!("round_trip_{name}"), n), |b| {
            b.iter(|| {
                bench.runner.block_on(async {
                    for i in 0..n {
                        let job = Job {
                            task_id: task_id.clone(),
                            attempt: 1,
                            agent: agent.clone(),
                            input: Value::int(i as i64),
                            runtime: Value::object(),
                            operator: None,
                            host: host.clone(),
                        };
                        let out = spawner.spawn(job).await.unwrap();
                        assert_eq!(out, luaswarm::worker::Verdict::Pass(Value::int(i as i64 + 1)));
                    }
                })
            })
        });
        runtime.pool.shutdown();
    }
    group.finish();
}

criterion_group!(benches, engine_steps, pool_round_trip);
criterion_main!(benches);
