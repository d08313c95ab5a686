//! `rust_fn` agents: closures registered by id. Built in: `echo`, `sleep`, `fail`, `block`.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use futures::future::LocalBoxFuture;

use super::spec::SpecReader;
use super::{BuildContext, Job, Spawner, SpawnerFactory, Verdict, WorkerError, WorkerResult};
use crate::schema::AgentDef;
use crate::value::{Number, Value};

/// A registered Rust agent: input in, verdict out.
pub type RustFn = Rc<dyn Fn(Value) -> LocalBoxFuture<'static, WorkerResult>>;

/// The `rust_fn` agents a host offers, by id.
#[derive(Clone)]
pub struct RustFnRegistry {
    fns: BTreeMap<String, RustFn>,
}

impl Default for RustFnRegistry {
    fn default() -> Self {
        let mut registry = RustFnRegistry { fns: BTreeMap::new() };
        registry.register("echo", |input| Box::pin(async move { Ok(Verdict::Pass(input)) }));
        registry.register("sleep", |input| {
            Box::pin(async move {
                let ms = sleep_millis(&input)?;
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Ok(Verdict::Pass(input))
            })
        });
        registry.register("fail", |input| {
            Box::pin(async move {
                let message = match &input {
                    Value::String(s) => s.to_string(),
                    other => other.to_json(),
                };
                Err(WorkerError::with_value(message, input))
            })
        });
        registry.register("block", |input| Box::pin(async move { Ok(Verdict::Blocked(input)) }));
        registry
    }
}

/// `sleep` takes `{ms = N}` or a bare N.
fn sleep_millis(input: &Value) -> Result<u64, WorkerError> {
    let ms = match input {
        Value::Number(n) => Some(*n),
        other => match other.get("ms") {
            Some(Value::Number(n)) => Some(*n),
            _ => None,
        },
    };
    match ms {
        Some(Number::Int(i)) if i >= 0 => Ok(i as u64),
        Some(Number::Float(f)) if f >= 0.0 && f.is_finite() => Ok(f as u64),
        _ => Err(WorkerError::new(format!("sleep takes {{ms = N}} or N milliseconds, got {}", input.preview(60)))),
    }
}

impl RustFnRegistry {
    /// Registers (or replaces) the agent `id`.
    pub fn register(&mut self, id: &str, f: impl Fn(Value) -> LocalBoxFuture<'static, WorkerResult> + 'static) {
        self.fns.insert(id.to_string(), Rc::new(f));
    }

    /// The agent registered as `id`, if any.
    pub fn get(&self, id: &str) -> Option<RustFn> {
        self.fns.get(id).cloned()
    }

    /// Every registered id, in no particular order.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.fns.keys().map(String::as_str)
    }
}

/// Builds `rust_fn` spawners from a registry; spec `{fn_id = "<id>"}`.
pub struct RustFnFactory {
    /// The functions `fn_id` may name.
    pub registry: Rc<RustFnRegistry>,
}

struct RustFnSpawner {
    f: RustFn,
}

impl Spawner for RustFnSpawner {
    fn spawn(&self, job: Job) -> LocalBoxFuture<'static, WorkerResult> {
        (self.f)(job.input)
    }
}

impl SpawnerFactory for RustFnFactory {
    fn build(
        &self,
        agent: &AgentDef,
        _hint: Option<&Value>,
        _cx: &mut BuildContext,
    ) -> Result<Rc<dyn Spawner>, String> {
        let mut spec = SpecReader::new(&agent.spec, "{fn_id = \"<id>\"}")?;
        let id = spec.required_string("fn_id")?;
        spec.finish()?;
        let f = self.registry.get(id).ok_or_else(|| {
            let known: Vec<&str> = self.registry.ids().collect();
            format!("no rust_fn '{id}' is registered (registered: {})", known.join(", "))
        })?;
        Ok(Rc::new(RustFnSpawner { f }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(id: &str, input: Value) -> WorkerResult {
        let registry = RustFnRegistry::default();
        let f = registry.get(id).unwrap();
        tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(f(input))
    }

    #[test]
    fn built_ins_behave_as_documented() {
        assert_eq!(run("echo", Value::int(3)), Ok(Verdict::Pass(Value::int(3))));
        assert_eq!(run("block", Value::string("why")), Ok(Verdict::Blocked(Value::string("why"))));
        let err = run("fail", Value::string("boom")).unwrap_err();
        assert_eq!(err.message, "boom");
        let ms = Value::from_pairs([("ms", Value::int(1))]);
        assert_eq!(run("sleep", ms.clone()), Ok(Verdict::Pass(ms)));
        assert_eq!(run("sleep", Value::int(0)), Ok(Verdict::Pass(Value::int(0))));
        assert!(run("sleep", Value::string("soon")).unwrap_err().message.contains("sleep takes"));
    }
}
