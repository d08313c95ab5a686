//! The full engine per step: task, worker token, events and the agent, for a `rust_fn` echo
//! and an inline Lua function, in a seq of N steps and a fanout of N lanes. The per-step figure
//! is criterion's time divided by N (it reports element throughput).
//!
//! `cargo bench --bench engine` also prints the resident memory after runs of growing size, to
//! show that finished steps are not kept.
//!
//! The `journal` group runs the same steps with the SQLite journal on (a file in a temporary
//! directory, as `swarm run` sets it up), and `journal_latency` prints the journaled steps per
//! second and the p50/p99 step latency of a seq: the time from one step's durable close to the
//! next one's, which covers opening, dispatching and journaling a step and waiting for its ack.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod support;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use luaswarm::blueprint::Blueprint;
use luaswarm::blueprint::compile::CompiledBlueprint;
use luaswarm::engine::{Engine, EngineConfig, Event, JournalRef, RunStatus};
use luaswarm::flow::FlowError;
use luaswarm::host::Host;
use luaswarm::store::journal::{Ack, Journal, RunStart, SqliteJournal, SqliteOutputStore, StepRecord};
use luaswarm::value::Value;
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

/// A runner whose engine journals to `journal`, its outputs in the same file (as `swarm run`
/// does).
fn journaled(journal: Rc<dyn Journal>, file: Rc<SqliteJournal>) -> Runner {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let config = EngineConfig {
        token_secret: Some("bench".into()),
        journal: Some(JournalRef(journal)),
        ..EngineConfig::default()
    };
    let outputs = Rc::new(SqliteOutputStore::new(file).unwrap());
    let engine = Engine::with_output_store(config, outputs).unwrap();
    Runner { runtime, local: tokio::task::LocalSet::new(), engine }
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

/// A journal that notes when each step's close reaches it, passing everything on.
struct Timed {
    inner: Rc<SqliteJournal>,
    closes: RefCell<Vec<Instant>>,
}

impl Journal for Timed {
    fn run_started(&self, run: &RunStart) {
        self.inner.run_started(run);
    }

    fn event(&self, event: &Event) {
        self.inner.event(event);
    }

    fn step_closed(&self, step: StepRecord) -> Ack {
        self.closes.borrow_mut().push(Instant::now());
        self.inner.step_closed(step)
    }

    fn run_finished(&self, run_id: &Arc<str>, status: RunStatus, ctx: &Value, error: Option<&FlowError>) -> Ack {
        self.inner.run_finished(run_id, status, ctx, error)
    }
}

fn journal_steps(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let file = Rc::new(SqliteJournal::open(&dir.path().join("state.db")).unwrap());
    let bench = journaled(file.clone(), file.clone());
    let host = host();
    let mut group = c.benchmark_group("journal");
    group.sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(4));
    let n = 10_000;
    group.throughput(Throughput::Elements(n as u64));
    for (name, flow) in [("seq_echo", seq("echo", n)), ("fanout_echo", fanout("echo", n))] {
        let compiled = compile(&host, flow);
        group.bench_with_input(BenchmarkId::new(name, n), &compiled, |b, compiled| b.iter(|| bench.run(compiled)));
    }
    group.finish();
}

/// Journaled steps per second and the p50/p99 step latency of a seq, printed.
fn journal_latency(_c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let file = Rc::new(SqliteJournal::open(&dir.path().join("state.db")).unwrap());
    let timed = Rc::new(Timed { inner: file.clone(), closes: RefCell::new(Vec::new()) });
    let bench = journaled(timed.clone(), file);
    let host = host();
    let n = 20_000;
    let mut report = String::from("journaled steps (rust_fn echo, SQLite journal on a temporary file):");
    for (name, flow) in [("seq", seq("echo", n)), ("fanout", fanout("echo", n))] {
        let compiled = compile(&host, flow);
        bench.run(&compiled);
        timed.closes.borrow_mut().clear();
        let started = Instant::now();
        bench.run(&compiled);
        let took = started.elapsed();
        let closes = std::mem::take(&mut *timed.closes.borrow_mut());
        assert_eq!(closes.len(), n);
        let mut gaps: Vec<Duration> = closes.windows(2).map(|w| w[1] - w[0]).collect();
        gaps.sort_unstable();
        let at = |q: f64| gaps[((gaps.len() - 1) as f64 * q) as usize];
        report.push_str(&format!(
            "\n  {name:<7} {n} steps in {:.1} ms: {:.0} steps/s; step latency p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs",
            took.as_secs_f64() * 1000.0,
            n as f64 / took.as_secs_f64(),
            at(0.5).as_secs_f64() * 1e6,
            at(0.99).as_secs_f64() * 1e6,
            gaps.last().unwrap().as_secs_f64() * 1e6,
        ));
    }
    println!("{report}");
}

criterion_group!(benches, engine_steps, layer_stack, engine_memory, journal_steps, journal_latency);
criterion_main!(benches);
