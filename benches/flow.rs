//! The evaluator's own cost per step, over a dispatcher that returns its input at once.
//!
//! Shapes: a seq of N steps that all overwrite `$.out`, a seq of N steps that each add a key
//! (the ctx grows to N keys), and a 10,000-lane fanout. Per-step cost should be flat in N: a
//! rise means the evaluator copies the ctx, or something as large, per step. The `path_only`
//! group does the same reads and writes without the evaluator; the difference between the two
//! is the evaluator's overhead, and whatever grows in both is the ctx map's own lookup cost.

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use luaswarm::Value;
use luaswarm::flow::{Dispatcher, Evaluator, Expr, Fanout, FlowError, Join, NoExterns, Node, Path, PathExpr, Step};
use std::time::Duration;

/// Returns each step's input as its output, with no await that could park.
struct Echo;

impl Dispatcher for Echo {
    type Task = Value;

    async fn open(&self, _step: &Step, input: Value) -> Result<Value, FlowError> {
        Ok(input)
    }

    async fn attempt(&self, task: &Value, _attempt: u32) -> Result<Value, FlowError> {
        Ok(task.clone())
    }
}

fn path(text: &str) -> Path {
    text.parse().expect("bench paths parse")
}

fn step(input: &str, out: &str) -> Node {
    Node::Step(Step {
        agent: "echo".into(),
        input: Expr::path(path(input)),
        out: PathExpr(path(out)),
        timeout_ms: None,
        retry: None,
    })
}

fn seq(children: Vec<Node>) -> Node {
    Node::Seq { children }
}

fn run(rt: &tokio::runtime::Runtime, node: &Node, mut ctx: Value) -> Value {
    let evaluator = Evaluator::new(&Echo, &NoExterns);
    rt.block_on(evaluator.run(node, &mut ctx)).expect("the bench flow runs");
    ctx
}

fn seq_steps(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().build().expect("a runtime");
    let init = Value::from_pairs([("x", Value::int(1))]);
    let mut group = c.benchmark_group("seq");
    group.sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3));
    for n in [1_000usize, 10_000, 100_000] {
        group.throughput(Throughput::Elements(n as u64));
        let same_out = seq((0..n).map(|_| step("$.x", "$.out")).collect());
        group.bench_with_input(BenchmarkId::new("same_out", n), &same_out, |b, node| {
            // The final ctx is returned so its drop falls outside the measurement.
            b.iter_batched(|| init.clone(), |ctx| run(&rt, node, ctx), BatchSize::SmallInput)
        });
        let new_key = seq((0..n).map(|i| step("$.x", &format!("$.s{i}"))).collect());
        group.bench_with_input(BenchmarkId::new("new_key", n), &new_key, |b, node| {
            b.iter_batched(|| init.clone(), |ctx| run(&rt, node, ctx), BatchSize::SmallInput)
        });
    }
    group.finish();
}

/// The steps' reads and writes alone: what a step costs before the evaluator adds anything.
fn path_only(c: &mut Criterion) {
    let init = Value::from_pairs([("x", Value::int(1))]);
    let input = path("$.x");
    let mut group = c.benchmark_group("path_only");
    group.sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    for n in [1_000usize, 10_000, 100_000] {
        group.throughput(Throughput::Elements(n as u64));
        let shapes = [
            ("same_out", (0..n).map(|_| path("$.out")).collect::<Vec<_>>()),
            ("new_key", (0..n).map(|i| path(&format!("$.s{i}"))).collect()),
        ];
        for (name, outs) in shapes {
            group.bench_with_input(BenchmarkId::new(name, n), &outs, |b, outs| {
                let run = |mut ctx: Value| {
                    for out in outs {
                        let value = input.read(&ctx).expect("$.x is there").clone();
                        out.write(&mut ctx, value).expect("the write succeeds");
                    }
                    ctx
                };
                b.iter_batched(|| init.clone(), run, BatchSize::SmallInput)
            });
        }
    }
    group.finish();
}

fn fanout_lanes(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().build().expect("a runtime");
    const LANES: usize = 10_000;
    let init = Value::from_pairs([("items", Value::array((0..LANES as i64).map(Value::int).collect()))]);
    let node = Node::Fanout(Fanout {
        items: Expr::path(path("$.items")),
        bind: PathExpr(path("$.item")),
        body: Box::new(step("$.item", "$.out")),
        join: Join::All,
        out: PathExpr(path("$.results")),
        max_concurrency: None,
        collect: Some(PathExpr(path("$.out"))),
    });
    let mut group = c.benchmark_group("fanout");
    group.sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Elements(LANES as u64));
    group.bench_function(BenchmarkId::new("lanes", LANES), |b| {
        b.iter_batched(|| init.clone(), |ctx| run(&rt, &node, ctx), BatchSize::SmallInput)
    });
    group.finish();
}

criterion_group!(benches, seq_steps, path_only, fanout_lanes);
criterion_main!(benches);
