//! Embedding: a host with its own Rust agents and engine configuration.

use std::rc::Rc;

use luaswarm::blueprint::Blueprint;
use luaswarm::engine::{EngineConfig, RunOutcome, RunStatus};
use luaswarm::flow::NoExterns;
use luaswarm::gate::{Gate, Role, Verb};
use luaswarm::host::Host;
use luaswarm::value::Value;
use luaswarm::worker::{Verdict, WorkerError};

const BLUEPRINT: &str = r#"{"id":"embed","agents":[{"name":"up","kind":"rust_fn","spec":{"fn_id":"upper"}}],
  "flow":{"kind":"step","ref":"up","in":{"op":"path","at":"$.text"},"out":{"op":"path","at":"$.loud"}}}"#;

fn upper(input: Value) -> futures::future::LocalBoxFuture<'static, Result<Verdict, WorkerError>> {
    Box::pin(async move {
        match input.as_str() {
            Some(s) => Ok(Verdict::Pass(Value::from(s.to_uppercase()))),
            None => Err(WorkerError::new("upper takes a string")),
        }
    })
}

/// Runs the blueprint on `host`'s engine with `{text = "quiet"}`.
async fn run_on(host: &Host) -> RunOutcome {
    let compiled = host.compiler().compile(Rc::new(Blueprint::from_json(BLUEPRINT).unwrap()), None).unwrap();
    let engine = host.engine().unwrap();
    let local = tokio::task::LocalSet::new();
    local
        .run_until(async move {
            let init = Value::from_pairs([("text", Value::from("quiet"))]);
            engine.start(Rc::new(compiled), init, Rc::new(NoExterns)).wait().await
        })
        .await
}

#[tokio::test]
async fn a_registered_rust_fn_runs_on_the_host_engine() {
    let host = Host::builder().rust_fn("upper", upper).build().unwrap();
    let outcome = run_on(&host).await;
    assert_eq!(outcome.status, RunStatus::Finished, "{:?}", outcome.error);
    assert_eq!(outcome.ctx.get("loud"), Some(&Value::from("QUIET")));
}

#[test]
fn an_unregistered_rust_fn_is_an_invalid_spec() {
    let host = Host::new().unwrap();
    let errors = host.compiler().compile(Rc::new(Blueprint::from_json(BLUEPRINT).unwrap()), None).err().unwrap();
    assert!(errors.first().message.contains("no rust_fn 'upper'"), "{}", errors.first());
}

#[tokio::test]
async fn the_host_gate_is_the_one_enforced() {
    let mut gate = Gate::default();
    gate.set(Role::Operator, Verb::DispatchAttempt, false);
    let host = Host::builder()
        .rust_fn("upper", upper)
        .engine(EngineConfig { gate, ..EngineConfig::default() })
        .build()
        .unwrap();
    let compiled = host.compiler().compile(Rc::new(Blueprint::from_json(BLUEPRINT).unwrap()), None).unwrap();
    let engine = host.engine().unwrap();
    let local = tokio::task::LocalSet::new();
    let outcome = local
        .run_until(async move {
            let init = Value::from_pairs([("text", Value::from("quiet"))]);
            engine.start(Rc::new(compiled), init, Rc::new(NoExterns)).wait().await
        })
        .await;
    assert_eq!(outcome.status, RunStatus::Failed);
    let error = outcome.error.unwrap();
    assert_eq!(error.kind.name(), "dispatch");
    assert!(error.message.starts_with("role_violation"), "{}", error.message);
}
