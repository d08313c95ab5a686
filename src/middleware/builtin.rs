//! The built-in layers. Each takes its settings from the blueprint's `hints.global.<key>`
//! (and `alias` also from `metadata.project_name_alias`), so a JSON blueprint can use them.
//!
//! - `audit`: a `layer_note` when an attempt starts and when it finishes, with its timing.
//! - `input_inject`: the output refs the step may read, into `runtime.input_refs`.
//! - `resolver`: reroutes by a table `{from = "to"}` or by a function the host supplies.
//! - `alias`: a project name alias into `runtime.project_name_alias`.
//! - `sink`: a data-sink endpoint into `runtime.data_sink_endpoint`.
//! - `long_hold`: a `layer_note` when an attempt runs past `threshold_ms` (default 30 s).
//! - `senior_escalation`: when an attempt fails, asks a senior and passes with
//!   `{senior_answer, original}` instead.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::LocalBoxFuture;

use super::registry::{LayerFactory, LayerRegistry, fixed};
use super::{LayerFn, SpawnerLayer};
use crate::engine::spawner::{Job, Spawner, Verdict, WorkerError, WorkerResult};
use crate::schema::Blueprint;
use crate::value::{Map, Number, Value};

/// Picks an agent for a job, or keeps it (`None`).
pub type ResolveFn = Rc<dyn Fn(&Job) -> LocalBoxFuture<'static, Result<Option<String>, String>>>;

/// Finds the senior a blueprint's `senior_escalation` asks.
pub type SeniorFor = Rc<dyn Fn(&Blueprint) -> Result<Rc<dyn Spawner>, String>>;

/// What the host supplies to the layers that need more than blueprint data; both are asked
/// when a blueprint is linked, so what a script registered by then counts.
#[derive(Clone)]
pub struct Builtins {
    /// The resolver function, if one is registered.
    pub resolve: Rc<dyn Fn() -> Option<ResolveFn>>,
    /// Who `senior_escalation` asks for a blueprint: a spawner taking the escalation as input.
    pub senior: SeniorFor,
}

/// Registers every built-in layer as a hint layer.
pub fn register(registry: &mut LayerRegistry, builtins: Builtins) {
    registry.hint("audit", fixed(layer(|inner| Rc::new(Audit { inner }))));
    registry.hint("input_inject", fixed(layer(|inner| Rc::new(InputInject { inner }))));
    registry.hint(
        "alias",
        runtime_hint("alias", "project_name_alias", |bp| {
            bp.metadata.get("project_name_alias").and_then(Value::as_str).map(str::to_string)
        }),
    );
    registry.hint("sink", runtime_hint("sink", "data_sink_endpoint", |_| None));
    registry.hint("long_hold", long_hold());
    registry.hint("resolver", resolver(builtins.resolve));
    registry.hint("senior_escalation", senior_escalation(builtins.senior));
}

fn layer(f: impl Fn(Rc<dyn Spawner>) -> Rc<dyn Spawner> + 'static) -> Rc<dyn SpawnerLayer> {
    Rc::new(LayerFn(f))
}

/// The layer's settings in `hints.global.<key>`.
fn settings<'a>(bp: &'a Blueprint, key: &str) -> Option<&'a Value> {
    bp.hints.global.get(key)
}

/// Sets `runtime.<field>` on every job.
struct RuntimeHint {
    inner: Rc<dyn Spawner>,
    field: Arc<str>,
    value: Value,
}

impl Spawner for RuntimeHint {
    fn spawn(&self, mut job: Job) -> LocalBoxFuture<'static, WorkerResult> {
        set_runtime(&mut job, &self.field, self.value.clone());
        self.inner.spawn(job)
    }
}

fn set_runtime(job: &mut Job, field: &str, value: Value) {
    if !matches!(job.runtime, Value::Object(_)) {
        job.runtime = Value::object();
    }
    if let Value::Object(map) = &mut job.runtime {
        Arc::make_mut(map).insert(field.into(), value);
    }
}

/// `alias` and `sink`: a string from `hints.global.<key>` (or `fallback`) into `runtime.<field>`.
fn runtime_hint(key: &'static str, field: &'static str, fallback: fn(&Blueprint) -> Option<String>) -> LayerFactory {
    Rc::new(move |bp: &Blueprint| {
        let value = match settings(bp, key) {
            Some(Value::String(s)) => s.to_string(),
            Some(other) => return Err(format!("hints.global.{key} must be a string, got {}", other.type_name())),
            None => fallback(bp).ok_or_else(|| format!("set hints.global.{key} to the {}", field.replace('_', " ")))?,
        };
        let value = Value::from(value);
        Ok(layer(move |inner| Rc::new(RuntimeHint { inner, field: field.into(), value: value.clone() })))
    })
}

struct Audit {
    inner: Rc<dyn Spawner>,
}

impl Spawner for Audit {
    fn spawn(&self, job: Job) -> LocalBoxFuture<'static, WorkerResult> {
        let host = job.host.clone();
        let agent = job.agent.clone();
        let attempt = job.attempt;
        host.note(
            "audit",
            note([("phase", "started".into()), ("agent", (*agent).into()), ("attempt", i64::from(attempt).into())]),
        );
        let started = Instant::now();
        let work = self.inner.spawn(job);
        Box::pin(async move {
            let result = work.await;
            let status = match &result {
                Ok(Verdict::Pass(_)) => "pass",
                Ok(Verdict::Blocked(_)) => "blocked",
                Err(_) => "failed",
            };
            host.note(
                "audit",
                note([
                    ("phase", "finished".into()),
                    ("agent", (*agent).into()),
                    ("attempt", i64::from(attempt).into()),
                    ("status", status.into()),
                    ("elapsed_ms", elapsed_ms(started)),
                ]),
            );
            result
        })
    }
}

fn note<const N: usize>(pairs: [(&str, Value); N]) -> Value {
    Value::from_pairs(pairs)
}

fn elapsed_ms(since: Instant) -> Value {
    Value::float((since.elapsed().as_secs_f64() * 1e6).round() / 1e3)
}

struct InputInject {
    inner: Rc<dyn Spawner>,
}

impl Spawner for InputInject {
    fn spawn(&self, mut job: Job) -> LocalBoxFuture<'static, WorkerResult> {
        let refs: Vec<Value> = job.host.output_refs().into_iter().map(Value::String).collect();
        set_runtime(&mut job, "input_refs", Value::array(refs));
        self.inner.spawn(job)
    }
}

fn long_hold() -> LayerFactory {
    Rc::new(|bp: &Blueprint| {
        let threshold_ms = match settings(bp, "long_hold").and_then(|s| s.get("threshold_ms")) {
            None => 30_000,
            Some(Value::Number(Number::Int(n))) if *n >= 0 => *n as u64,
            Some(other) => {
                return Err(format!("hints.global.long_hold.threshold_ms must be milliseconds, got {other}"));
            }
        };
        Ok(layer(move |inner| Rc::new(LongHold { inner, threshold: Duration::from_millis(threshold_ms) })))
    })
}

struct LongHold {
    inner: Rc<dyn Spawner>,
    threshold: Duration,
}

impl Spawner for LongHold {
    fn spawn(&self, job: Job) -> LocalBoxFuture<'static, WorkerResult> {
        let host = job.host.clone();
        let (agent, attempt) = (job.agent.clone(), job.attempt);
        let threshold = self.threshold;
        let mut work = self.inner.spawn(job);
        Box::pin(async move {
            let started = Instant::now();
            tokio::select! {
                result = &mut work => return result,
                _ = tokio::time::sleep(threshold) => {}
            }
            let threshold_ms = Value::int(threshold.as_millis() as i64);
            host.note(
                "long_hold",
                note([
                    ("long_hold", true.into()),
                    ("agent", (*agent).into()),
                    ("attempt", i64::from(attempt).into()),
                    ("elapsed_ms", elapsed_ms(started)),
                    ("threshold_ms", threshold_ms),
                ]),
            );
            work.await
        })
    }
}

fn resolver(resolve: Rc<dyn Fn() -> Option<ResolveFn>>) -> LayerFactory {
    Rc::new(move |bp: &Blueprint| {
        let resolve = resolve();
        let table: Option<Map> = match settings(bp, "resolver") {
            Some(Value::Object(map)) => {
                if let Some((from, _)) = map.iter().find(|(_, to)| to.as_str().is_none()) {
                    return Err(format!("hints.global.resolver.{from} must be an agent name"));
                }
                Some((**map).clone())
            }
            Some(other) => {
                return Err(format!(
                    "hints.global.resolver must be a table {{from = \"to\"}}, got {}",
                    other.type_name()
                ));
            }
            None => None,
        };
        if table.is_none() && resolve.is_none() {
            return Err("give hints.global.resolver = {from = \"to\"}, or a function with swarm.resolver(fn)".into());
        }
        Ok(layer(move |inner| Rc::new(Resolver { inner, table: table.clone(), resolve: resolve.clone() })))
    })
}

struct Resolver {
    inner: Rc<dyn Spawner>,
    table: Option<Map>,
    resolve: Option<ResolveFn>,
}

impl Spawner for Resolver {
    fn spawn(&self, mut job: Job) -> LocalBoxFuture<'static, WorkerResult> {
        if let Some(to) = self.table.as_ref().and_then(|t| t.get(&*job.agent)).and_then(Value::as_str) {
            job.agent = to.into();
            return self.inner.spawn(job);
        }
        let Some(resolve) = self.resolve.clone() else { return self.inner.spawn(job) };
        let inner = self.inner.clone();
        Box::pin(async move {
            match resolve(&job).await {
                Ok(Some(agent)) => job.agent = agent.into(),
                Ok(None) => {}
                Err(e) => return Err(WorkerError::new(format!("layer 'resolver': {e}"))),
            }
            inner.spawn(job).await
        })
    }
}

fn senior_escalation(senior: SeniorFor) -> LayerFactory {
    Rc::new(move |bp: &Blueprint| {
        let senior = senior(bp)?;
        Ok(layer(move |inner| Rc::new(SeniorEscalation { inner, senior: senior.clone() })))
    })
}

struct SeniorEscalation {
    inner: Rc<dyn Spawner>,
    senior: Rc<dyn Spawner>,
}

impl Spawner for SeniorEscalation {
    fn spawn(&self, job: Job) -> LocalBoxFuture<'static, WorkerResult> {
        let senior = self.senior.clone();
        let question = job.clone();
        let work = self.inner.spawn(job);
        Box::pin(async move {
            let failure = match work.await {
                Err(e) => e,
                passed_or_blocked => return passed_or_blocked,
            };
            let original = Value::from_pairs([
                ("error", Value::from(failure.message.as_str())),
                ("value", failure.value.clone().unwrap_or(Value::Null)),
            ]);
            let mut ask = question;
            ask.input = Value::from_pairs([
                ("reason", Value::from("the attempt failed")),
                ("agent", Value::from(&*ask.agent)),
                ("task_id", Value::from(&*ask.task_id)),
                ("attempt", Value::int(i64::from(ask.attempt))),
                ("input", ask.input.clone()),
                ("original", original.clone()),
            ]);
            match senior.spawn(ask).await {
                Ok(Verdict::Pass(answer)) => {
                    Ok(Verdict::Pass(Value::from_pairs([("senior_answer", answer), ("original", original)])))
                }
                // A senior who blocks or fails leaves the attempt as it was.
                _ => Err(failure),
            }
        })
    }
}
