//! What a subprocess step costs through the engine, next to starting the same program directly
//! with `tokio::process::Command` and `std::process::Command` in the same loop, and what a
//! keep-alive round trip costs. Each iteration runs N steps (or N raw starts); criterion reports
//! element throughput, so the per-step figure is its time divided by N.
//!
//! The keep-alive child is this binary itself (started with `SWARM_BENCH_CHILD=1`): a loop that
//! answers each request line with a `final` carrying the request's input, so the figure is the
//! pipe round trip and the engine, not a shell's `read`. A shell child is measured too.

use std::io::{BufRead, Write};
use std::process::Stdio;
use std::rc::Rc;
use std::time::Duration;

mod support;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use luaswarm::blueprint::Blueprint;
use luaswarm::blueprint::compile::{CompiledBlueprint, Compiler};
use luaswarm::value::Value;
use luaswarm::worker::subprocess::SubprocessFactory;
use serde_json::json;
use support::Runner;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Steps per run for programs started per step.
const SPAWN_STEPS: usize = 20;
/// Steps per run for keep-alive round trips.
const ROUND_TRIPS: usize = 1_000;
/// The input every step gets, as JSON.
const INPUT: &str = r#"{"n":1,"text":"hello"}"#;

/// The ctx each engine run starts from: the input at `$.x`.
fn input() -> Value {
    Value::from_pairs([("x", luaswarm::value::from_json(INPUT).unwrap())])
}

fn compile(agent: serde_json::Value, steps: usize) -> Rc<CompiledBlueprint> {
    let step =
        json!({"kind": "step", "ref": "a", "in": {"op": "path", "at": "$.x"}, "out": {"op": "path", "at": "$.y"}});
    let flow = json!({"kind": "seq", "children": vec![step; steps]});
    let mut agent = agent;
    agent["name"] = json!("a");
    agent["kind"] = json!("subprocess");
    let bp = json!({"id": "bench", "flow": flow, "agents": [agent]});
    let bp = Blueprint::from_json(&bp.to_string()).unwrap();
    let mut compiler = Compiler::new();
    compiler.register("subprocess", SubprocessFactory);
    Rc::new(compiler.compile(Rc::new(bp), None).unwrap_or_else(|e| panic!("{e}")))
}

/// Starts `program` with tokio as the worker does (own process group, stdout and stderr piped),
/// feeds it the input on stdin or as the last argument, and reads both pipes to the end.
async fn tokio_once(program: &str, use_stdin: bool) {
    let mut command = tokio::process::Command::new(program);
    command.process_group(0).stdout(Stdio::piped()).stderr(Stdio::piped());
    if use_stdin {
        command.stdin(Stdio::piped());
    } else {
        command.stdin(Stdio::null()).arg(INPUT);
    }
    let mut child = command.spawn().unwrap();
    let stdin = child.stdin.take();
    let feed = async move {
        if let Some(mut stdin) = stdin {
            stdin.write_all(INPUT.as_bytes()).await.unwrap();
        }
    };
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let (mut a, mut b) = (Vec::new(), Vec::new());
    let (_, _, _, status) = tokio::join!(feed, out.read_to_end(&mut a), err.read_to_end(&mut b), child.wait());
    assert!(status.unwrap().success());
}

/// The same with std, blocking.
fn std_once(program: &str, use_stdin: bool) {
    use std::os::unix::process::CommandExt;
    let mut command = std::process::Command::new(program);
    command.process_group(0).stdout(Stdio::piped()).stderr(Stdio::piped());
    if use_stdin {
        command.stdin(Stdio::piped());
    } else {
        command.stdin(Stdio::null()).arg(INPUT);
    }
    let mut child = command.spawn().unwrap();
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(INPUT.as_bytes()).unwrap();
    }
    assert!(child.wait_with_output().unwrap().status.success());
}

fn spawn_per_step(c: &mut Criterion) {
    let bench = Runner::new();
    let mut group = c.benchmark_group("subprocess_step");
    group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(SPAWN_STEPS as u64));
    for (name, program, use_stdin) in [("true", "/bin/true", false), ("cat", "/bin/cat", true)] {
        let compiled = compile(json!({"spec": {"program": program, "use_stdin": use_stdin}}), SPAWN_STEPS);
        group.bench_function(BenchmarkId::new("engine", name), |b| b.iter(|| bench.run_with(&compiled, input())));
        group.bench_function(BenchmarkId::new("raw_tokio", name), |b| {
            b.iter(|| {
                bench.block_on(async {
                    for _ in 0..SPAWN_STEPS {
                        tokio_once(program, use_stdin).await;
                    }
                })
            })
        });
        group.bench_function(BenchmarkId::new("raw_std", name), |b| {
            b.iter(|| (0..SPAWN_STEPS).for_each(|_| std_once(program, use_stdin)))
        });
    }
    group.finish();
}

fn keep_alive(c: &mut Criterion) {
    let bench = Runner::new();
    let me = std::env::current_exe().unwrap();
    let mut group = c.benchmark_group("keep_alive_round_trip");
    group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(ROUND_TRIPS as u64));
    let rust_child = json!({"spec": {"program": me.to_str().unwrap(), "keep_alive": true,
        "env": {"SWARM_BENCH_CHILD": "1"}}});
    let shell_child = json!({"spec": {"program": "/bin/sh", "keep_alive": true, "args": ["-c",
        r#"while IFS= read -r line; do id=${line#*\"id\":}; printf '{"type":"final","id":%s,"content":{"kind":"inline","value":1},"ok":true}\n' "${id%%,*}"; done"#]}});
    for (name, agent) in [("engine_rust_child", rust_child), ("engine_shell_child", shell_child)] {
        let compiled = compile(agent, ROUND_TRIPS);
        bench.run_with(&compiled, input()); // starts the child outside the measurement
        group.bench_function(name, |b| b.iter(|| bench.run_with(&compiled, input())));
    }
    group.finish();
}

/// The keep-alive child: answers every request line with its input.
fn child() {
    let stdin = std::io::stdin().lock();
    let mut stdout = std::io::stdout().lock();
    for line in stdin.lines() {
        let Ok(line) = line else { return };
        let request: serde_json::Value = serde_json::from_str(&line).unwrap();
        let answer = json!({"type": "final", "id": request["id"], "content": {"kind": "inline", "value": request["input"]}, "ok": true});
        if writeln!(stdout, "{answer}").and_then(|()| stdout.flush()).is_err() {
            return;
        }
    }
}

criterion_group!(benches, spawn_per_step, keep_alive);

fn main() {
    if std::env::var_os("SWARM_BENCH_CHILD").is_some() {
        child();
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
