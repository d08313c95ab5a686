//! The full engine per step: task, worker token, events and the agent, for a `rust_fn` echo
//! and an inline Lua function, in a seq of N steps and a fanout of N lanes. The per-step figure
//! is criterion's time divided by N (it reports element throughput).
//!
//! `cargo bench --bench engine` also prints the resident memory after runs of growing size, to
//! show that finished steps are not kept.

use std::rc::Rc;
use std::time::Duration;

mod support;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use luaswarm::blueprint::Blueprint;
use luaswarm::blueprint::compile::CompiledBlueprint;
use luaswarm::host::Host;
use support::{Runner, fanout, seq};

fn blueprint(flow: String) -> String {
    layered(flow, &[])
}

fn layered(flow: String, layers: &[String]) -> String {
    let layers = serde_json::to_string(layers).unwrap();
    format!(
        r#"{{"id":"bench","layers":{layers},"agents":[{{"name":"echo","kind":"rust_fn","spec":{{"fn_id":"echo"}}}},{{"name":"lua","kind":"lua","spec":{{"fn":"bench/lua"}}}}],"flow":{flow}}}"#
    )
}

/// A host whose VM holds the inline function `bench/lua` (it returns its input) and five
/// do-nothing Lua layers of each style: `b1`..`b5` (before), `a1`..`a5` (after), `w1`..`w5`
/// (wrap, calling next once).
fn host() -> Host {
    let host = Host::new().unwrap();
    host.lua()
        .load(
            r#"local swarm = require("swarm")
            swarm.blueprint({ id = "bench", agents = { lua = function(x) return x end }, flow = swarm.flow.seq({}) })
            for i = 1, 5 do
              swarm.layer("b" .. i, { before = function(ctx) end })
              swarm.layer("a" .. i, { after = function(ctx, result) end })
              swarm.layer("w" .. i, { wrap = function(ctx, next) return next(ctx) end })
            end"#,
        )
        .exec()
        .unwrap();
    host
}

fn compile(host: &Host, flow: String) -> Rc<CompiledBlueprint> {
    let bp = Blueprint::from_json(&blueprint(flow)).unwrap();
    Rc::new(host.compiler().compile(Rc::new(bp), None).unwrap())
}

fn engine_steps(c: &mut Criterion) {
    let host = host();
    let bench = Runner::new();
    let mut group = c.benchmark_group("engine");
    group.sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(4));
    for agent in ["echo", "lua"] {
        for n in [1_000usize, 10_000, 100_000] {
            let compiled = compile(&host, seq(agent, n));
            group.throughput(Throughput::Elements(n as u64));
            group.bench_with_input(BenchmarkId::new(format!("seq_{agent}"), n), &compiled, |b, compiled| {
                b.iter(|| bench.run(compiled))
            });
        }
        let n = 10_000;
        let compiled = compile(&host, fanout(agent, n));
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new(format!("fanout_{agent}"), n), &compiled, |b, compiled| {
            b.iter(|| bench.run(compiled))
        });
    }
    group.finish();
    assert_eq!(bench.engine.live_tasks(), 0, "no task outlives its run");
    assert_eq!(bench.engine.token_records(), 0, "no token record outlives its attempt");
}

/// Five Lua layers of one style around a `rust_fn` step; the per-layer cost is the difference
/// to the bare step, divided by five.
fn layer_stack(c: &mut Criterion) {
    let host = host();
    let bench = Runner::new();
    let n = 10_000;
    let mut group = c.benchmark_group("layers");
    group.sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(4));
    group.throughput(Throughput::Elements(n as u64));
    for (style, name) in [("", "no_layers"), ("b", "five_before"), ("a", "five_after"), ("w", "five_wrap")] {
        let layers: Vec<String> =
            if style.is_empty() { Vec::new() } else { (1..=5).map(|i| format!("{style}{i}")).collect() };
        let bp = Blueprint::from_json(&layered(seq("echo", n), &layers)).unwrap();
        let compiled = Rc::new(host.compiler().compile(Rc::new(bp), None).unwrap());
        group.bench_with_input(BenchmarkId::new(name, n), &compiled, |b, compiled| b.iter(|| bench.run(compiled)));
    }
    group.finish();
}

/// Resident memory in KiB, from /proc (Linux).
fn rss_kib() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4)
}

fn engine_memory(_c: &mut Criterion) {
    let host = host();
    let bench = Runner::new();
    let compiled = compile(&host, seq("lua", 10_000));
    bench.run(&compiled);
    let Some(base) = rss_kib() else { return };
    let mut report = String::from("engine memory (seq of 10,000 inline-Lua steps, repeated on one engine):");
    let mut finished = 10_000usize;
    for round in 1..=20 {
        bench.run(&compiled);
        finished += 10_000;
        if round % 5 == 0 {
            let now = rss_kib().unwrap_or(base);
            report.push_str(&format!(
                "\n  {finished:>7} steps finished: rss {now} KiB ({:+} KiB since the first run)",
                now as i64 - base as i64
            ));
        }
    }
    println!("{report}");
    assert_eq!(bench.engine.live_tasks(), 0);
    assert_eq!(bench.engine.token_records(), 0);
}

criterion_group!(benches, engine_steps, layer_stack, engine_memory);
criterion_main!(benches);
