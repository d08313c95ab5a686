//! The engine's operations behind the gate: every verb's operation refuses the roles
//! the table forbids and works for the roles it allows; external verdicts; the senior loop;
//! sessions; worker tokens bound to their task and its sub-tasks; spawn depth.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use crate::util::rig::*;
use futures::FutureExt;
use luaswarm::Value;
use luaswarm::engine::now_ms;
use luaswarm::engine::{Auth, EngineConfig, EngineError, Prompt, RunStatus, TaskState};
use luaswarm::flow::{ErrorKind, FlowError};
use luaswarm::gate::{CapToken, Gate, Grant, Role, TokenError, Verb};
use luaswarm::worker::{Job, Verdict, WorkerError};
use serde_json::json;

fn v(json: serde_json::Value) -> Value {
    Value::from(json)
}

fn violation(role: Role, verb: Verb) -> EngineError {
    EngineError::Token(TokenError::RoleViolation { role, verb })
}

// ---------------------------------------------------------------------------------------------
// Every verb, every role.

/// A run with one attempt in flight (`task`, on probe `p`), a pending task `side` started
/// beside it, and the attempt's worker token.
struct Fixture {
    run_id: Arc<str>,
    task: Arc<str>,
    side: Arc<str>,
    worker: String,
}

/// Why a call was refused: engine operations return `EngineError`; `dispatch_attempt` returns
/// the flow error the evaluator sees.
#[derive(Debug)]
enum Refusal {
    Engine(EngineError),
    Flow(FlowError),
}

/// Calls the operation of `verb` with `auth` on the fixture. An async operation that passed the
/// gate and is now waiting counts as `Ok`.
fn call_verb(rig: &Rig, verb: Verb, auth: Auth<'_>, fx: &Fixture) -> Result<(), Refusal> {
    let engine = &rig.engine;
    let task = &*fx.task;
    let e = Refusal::Engine;
    match verb {
        Verb::StartTask => engine.start_task(auth, &fx.run_id, "echo", Value::Null, None).map(drop).map_err(e),
        Verb::DispatchAttempt => match engine.dispatch_attempt(auth, &fx.side, 1).now_or_never() {
            Some(result) => result.map(drop).map_err(Refusal::Flow),
            None => Ok(()),
        },
        Verb::MintWorkerToken => engine.mint_worker_token(auth, task).map(drop).map_err(e),
        Verb::ReadTaskState => engine.read_task_state(auth, task).map(drop).map_err(e),
        Verb::CancelTask => engine.cancel_task(auth, &fx.side).map_err(e),
        Verb::QuerySenior => match engine.query_senior(auth, task, Value::from("why?")).now_or_never() {
            Some(result) => result.map(drop).map_err(e),
            None => Ok(()),
        },
        Verb::MarkPass => engine.mark_pass(auth, task, Value::from(1)).map_err(e),
        Verb::MarkBlocked => engine.mark_blocked(auth, task, Value::from(1)).map_err(e),
        Verb::AttachSession => engine.attach_session(auth, "alice").map(drop).map_err(e),
        Verb::DetachSession => engine.detach_session(auth, "s-1").map_err(e),
        Verb::Heartbeat => engine.heartbeat(auth, "s-1").map(drop).map_err(e),
        Verb::PollTask => engine.poll_task(auth, task).map(drop).map_err(e),
        Verb::FetchPrompt => engine.fetch_prompt(auth, task).map(drop).map_err(e),
        Verb::FetchData => engine.fetch_data(auth, task).map(drop).map_err(e),
        Verb::PostResult => engine.post_result(auth, task, Value::from(1), true).map_err(e),
        Verb::VerifyToken => engine.verify_token(auth, &fx.worker, Verb::FetchData).map(drop).map_err(e),
        Verb::EmitOutput => engine.emit_output(auth, task, 1, Value::from("out")).map_err(e),
        Verb::SubscribeEvents => {
            let all = engine.subscribe_events(auth).map(drop);
            let one = engine.subscribe_run(auth, &fx.run_id).map(drop);
            assert_eq!(all, one, "subscribe_run is checked as subscribe_events");
            all.map_err(e)
        }
        Verb::ReadTrace => engine.read_trace(auth, None).map(drop).map_err(e),
        Verb::AnswerQuery => engine.answer_query(auth, 1, Value::from("yes")).map_err(e),
        Verb::OverrideVerdict => engine.override_verdict(auth, task, Verdict::Pass(Value::from(1))).map_err(e),
        Verb::PauseLoop => engine.pause_loop(auth).map_err(e),
        Verb::ResumeLoop => engine.resume_loop(auth).map_err(e),
        Verb::InjectDirective => engine.inject_directive(auth, task, Value::from("obey")).map_err(e),
    }
}

#[track_caller]
fn assert_role_violation(role: Role, verb: Verb, result: Result<(), Refusal>) {
    match result {
        Err(Refusal::Engine(err)) => {
            assert_eq!(err, violation(role, verb), "{role} × {verb}");
            assert_eq!(err.kind(), "role_violation");
        }
        Err(Refusal::Flow(err)) => {
            assert_eq!(verb, Verb::DispatchAttempt, "only dispatch_attempt answers with a flow error");
            assert_eq!(err.kind, ErrorKind::Dispatch);
            assert_eq!(err.message, format!("role_violation: {}", TokenError::RoleViolation { role, verb }));
        }
        Ok(()) => panic!("{role} × {verb} was allowed"),
    }
}

#[tokio::test(start_paused = true)]
async fn every_verb_refuses_the_roles_the_gate_forbids() {
    within(async {
        let rig = Rig::new();
        let mut probe = rig.probe("p");
        let run = rig.start(step("p", lit(json!({"n": 1})), "$.r"), json!({}));
        let call = probe.next().await;
        let op = rig.token(Role::Operator);
        let side = rig.engine.start_task(Auth::Held(&op), &run.id, "echo", Value::from(5), None).unwrap();
        let fx = Fixture { run_id: run.id.clone(), task: call.task(), side, worker: call.token() };
        // A held worker token bound to the same task as the attempt's own.
        let worker = CapToken::decode(&fx.worker).unwrap();
        let worker = rig
            .engine
            .mint_held(Grant::new(Role::Worker, worker.agent_id).for_task(call.task().to_string(), 0), now_ms());
        let held = [op, worker, rig.token(Role::Observer), rig.token(Role::Senior)];
        assert_eq!(held.iter().map(|t| t.token().role).collect::<Vec<_>>(), Role::ALL);

        let gate = Gate::default();
        let mut refused = 0;
        for verb in Verb::ALL {
            let mut refused_this_verb = 0;
            for (role, token) in Role::ALL.into_iter().zip(&held) {
                if gate.allows(role, verb) {
                    continue;
                }
                // The two transports alternate across the table, so both are checked.
                let encoded = token.encode();
                let auth = if (verb as usize + role as usize).is_multiple_of(2) {
                    Auth::Held(token)
                } else {
                    Auth::Encoded(&encoded)
                };
                assert_role_violation(role, verb, call_verb(&rig, verb, auth, &fx));
                refused_this_verb += 1;
            }
            assert!(refused_this_verb > 0, "{verb} is forbidden to some role, so it was tried");
            refused += refused_this_verb;
        }
        assert_eq!(refused, Role::COUNT * Verb::COUNT - 33, "33 cells of the table allow");

        // Nothing the refused calls would have done was done.
        let engine = &rig.engine;
        assert_eq!(engine.task_snapshot(&fx.task).unwrap().state, TaskState::Running);
        let side = engine.task_snapshot(&fx.side).unwrap();
        assert_eq!((side.state, side.attempts), (TaskState::Pending, 0));
        assert!(!engine.is_paused());
        assert!(engine.open_queries().is_empty());
        let prompt = engine.fetch_prompt(Auth::Encoded(&fx.worker), &fx.task).unwrap();
        assert!(prompt.directives.is_empty());
        let op = &held[0];
        assert_eq!(engine.heartbeat(Auth::Held(op), "s-1"), Err(EngineError::NoSuchSession("s-1".into())));
        assert_eq!(engine.live_tasks(), 2);
        let story = rig.story(&run);
        assert_eq!(
            story,
            [
                "run_started engine-test",
                "task_created #1 p depth 0",
                "attempt_started #1 p 1",
                "task_created #2 echo depth 0"
            ]
        );

        assert!(call.pass(json!("done")));
        assert_eq!(run.wait().await.status, RunStatus::Finished);
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn every_verb_works_for_a_role_the_gate_allows() {
    within(async {
        let rig = Rig::new();
        let mut probe = rig.probe_with("p", json!({"profile": {"system_prompt": "You are a probe."}}));
        let flow = seq(vec![
            step("p", lit(json!({"n": 1})), "$.a"),
            try_catch(step("p", lit(json!({"n": 2})), "$.b"), "$.b_err"),
            step("p", lit(json!({"n": 3})), "$.c"),
            step("p", lit(json!({"n": 4})), "$.d"),
        ]);
        let run = rig.start(flow, json!({}));
        let engine = &rig.engine;
        let (op, obs, sen) = (rig.token(Role::Operator), rig.token(Role::Observer), rig.token(Role::Senior));
        let obs_text = obs.encode();
        // subscribe_events (both forms), as an observer.
        let mut tap = engine.subscribe_run(Auth::Held(&obs), &run.id).unwrap();
        let mut live = engine.subscribe_events(Auth::Encoded(&obs_text)).unwrap();

        let c1 = probe.next().await;
        let (t1, w1) = (c1.task(), c1.token());
        // read_task_state (observer) and poll_task (operator).
        let snap = engine.read_task_state(Auth::Held(&obs), &t1).unwrap();
        assert_eq!((&*snap.agent, snap.state, snap.attempts, snap.depth), ("p", TaskState::Running, 1, 0));
        assert_eq!(engine.poll_task(Auth::Held(&op), &t1).unwrap(), snap);
        // fetch_data, inject_directive (senior), fetch_prompt, verify_token, emit_output (worker).
        assert_eq!(engine.fetch_data(Auth::Encoded(&w1), &t1).unwrap(), v(json!({"n": 1})));
        engine.inject_directive(Auth::Held(&sen), &t1, Value::from("be brief")).unwrap();
        let prompt = engine.fetch_prompt(Auth::Encoded(&w1), &t1).unwrap();
        let want = Prompt {
            task_id: t1.clone(),
            agent: "p".into(),
            attempt: 1,
            input: v(json!({"n": 1})),
            system_prompt: Some("You are a probe.".into()),
            directives: vec![Value::from("be brief")],
        };
        assert_eq!(prompt, want);
        let verified = engine.verify_token(Auth::Encoded(&w1), &w1, Verb::PostResult).unwrap();
        assert_eq!(
            (verified.role, verified.agent_id.as_str(), verified.task.as_deref(), verified.depth),
            (Role::Worker, "p", Some(&*t1), 0)
        );
        engine.emit_output(Auth::Encoded(&w1), &t1, 1, v(json!({"type": "progress", "note": "half"}))).unwrap();

        // start_task, mint_worker_token, dispatch_attempt, cancel_task (operator).
        let side = engine.start_task(Auth::Held(&op), &run.id, "echo", Value::from(5), None).unwrap();
        let snap = engine.task_snapshot(&side).unwrap();
        assert_eq!((snap.state, snap.attempts, snap.depth, snap.parent), (TaskState::Pending, 0, 0, None));
        let minted = engine.mint_worker_token(Auth::Held(&op), &side).unwrap();
        assert_eq!((minted.role, minted.agent_id.as_str()), (Role::Worker, "echo"));
        assert!(engine.verify(&minted.encode(), Verb::FetchData, Some(&side)).is_ok());
        assert_eq!(
            engine.verify(&minted.encode(), Verb::FetchData, Some(&t1)),
            Err(EngineError::Token(TokenError::TaskMismatch))
        );
        assert_eq!(engine.dispatch_attempt(Auth::Held(&op), &side, 1).await, Ok(Value::from(5)));
        let snap = engine.task_snapshot(&side).unwrap();
        assert_eq!((snap.attempts, snap.result), (1, Some(Value::from(5))));
        engine.cancel_task(Auth::Held(&op), &side).unwrap();
        assert_eq!(engine.task_snapshot(&side).unwrap().state, TaskState::Cancelled);

        // attach_session, heartbeat, detach_session (operator).
        let session = engine.attach_session(Auth::Held(&op), "alice").unwrap();
        assert_eq!(engine.heartbeat(Auth::Held(&op), &session).unwrap(), "alice");
        engine.detach_session(Auth::Held(&op), &session).unwrap();

        // pause_loop, resume_loop (senior).
        engine.pause_loop(Auth::Held(&sen)).unwrap();
        assert!(engine.is_paused());
        engine.resume_loop(Auth::Held(&sen)).unwrap();
        assert!(!engine.is_paused());

        // query_senior (operator), answer_query (senior).
        let query = {
            let (engine, op, t1) = (engine.clone(), op.clone(), t1.clone());
            tokio::task::spawn_local(async move { engine.query_senior(Auth::Held(&op), &t1, Value::from("ok?")).await })
        };
        until(&mut tap, "task_suspended").await;
        let open = engine.open_queries();
        assert_eq!(open, [(1, t1.clone(), Value::from("ok?"))]);
        engine.answer_query(Auth::Held(&sen), open[0].0, Value::from("yes")).unwrap();
        assert_eq!(query.await.unwrap(), Ok(Value::from("yes")));

        // mark_pass, mark_blocked (operator), override_verdict (senior), post_result (worker).
        engine.mark_pass(Auth::Held(&op), &t1, v(json!({"ok": 1}))).unwrap();
        let c2 = probe.next().await;
        engine.mark_blocked(Auth::Held(&op), &c2.task(), v(json!({"why": "policy"}))).unwrap();
        let c3 = probe.next().await;
        engine.override_verdict(Auth::Held(&sen), &c3.task(), Verdict::Pass(v(json!({"senior": true})))).unwrap();
        let c4 = probe.next().await;
        engine.post_result(Auth::Encoded(&c4.token()), &c4.task(), v(json!({"posted": 4})), true).unwrap();

        let outcome = run.wait().await;
        assert_eq!((outcome.status, outcome.error), (RunStatus::Finished, None));
        assert_json(
            &outcome.ctx,
            json!({
                "a": {"ok": 1},
                "b_err": {"kind": "blocked", "message": "blocked: {\"why\":\"policy\"}", "step": "p",
                          "value": {"why": "policy"}},
                "c": {"senior": true},
                "d": {"posted": 4},
            }),
        );
        // Each verdict from outside stopped the worker it replaced.
        assert_eq!(probe.counts(), (4, 0, 4));
        drop((c1, c2, c3, c4));

        // read_trace (observer) is the engine's trace; the live subscription saw the output.
        let trace = engine.read_trace(Auth::Held(&obs), Some(&run.id)).unwrap();
        assert_eq!(trace, rig.events(&run));
        let output = trace.iter().map(show).find(|e| e.starts_with("worker_output")).unwrap();
        assert_eq!(output, r#"worker_output #1 1 {"note":"half","type":"progress"}"#);
        let mut seen = Vec::new();
        while let Ok(event) = live.try_recv() {
            seen.push(event);
        }
        assert_eq!(seen, trace, "subscribed before the driver ran, so nothing was missed");
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_replaced_gate_is_what_the_engine_enforces() {
    within(async {
        // An observer that may not read the trace but may mark a task passed.
        let mut gate = Gate::default();
        gate.set(Role::Observer, Verb::ReadTrace, false);
        gate.set(Role::Observer, Verb::MarkPass, true);
        let rig = Rig::with(EngineConfig { gate, ..EngineConfig::default() });
        let (_probe, run, call) = rig.one_step().await;
        let obs = rig.token(Role::Observer);
        assert_eq!(rig.engine.read_trace(Auth::Held(&obs), None), Err(violation(Role::Observer, Verb::ReadTrace)));
        rig.engine.mark_pass(Auth::Held(&obs), &call.task(), Value::from("observer says so")).unwrap();
        let outcome = run.wait().await;
        assert_json(&outcome.ctx, json!({"r": "observer says so"}));

        // An operator that may not dispatch: every step of every run is refused.
        let mut gate = Gate::default();
        gate.set(Role::Operator, Verb::DispatchAttempt, false);
        let rig = Rig::with(EngineConfig { gate, ..EngineConfig::default() });
        let run = rig.start(step("echo", lit(json!(1)), "$.r"), json!({}));
        let outcome = run.wait().await;
        assert_eq!(outcome.status, RunStatus::Failed);
        let err = outcome.error.unwrap();
        assert_eq!((err.kind, err.step.as_deref()), (ErrorKind::Dispatch, Some("echo")));
        assert_eq!(err.message, "role_violation: role `operator` may not call `dispatch_attempt`");
        assert_eq!(
            rig.story(&run),
            ["run_started engine-test", "task_created #1 echo depth 0", "run_finished failed"],
            "no attempt started"
        );
        assert_eq!((rig.engine.live_tasks(), rig.engine.token_records()), (0, 0));
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// External verdicts.

#[tokio::test(start_paused = true)]
async fn external_verdicts_settle_the_attempt_in_flight_and_stop_its_worker() {
    within(async {
        let rig = Rig::new();
        let mut probe = rig.probe("p");
        let flow = seq(vec![
            try_catch(step("p", lit(json!(1)), "$.a"), "$.e1"),
            try_catch(step("p", lit(json!(2)), "$.b"), "$.e2"),
            step("p", lit(json!(3)), "$.c"),
        ]);
        let run = rig.start(flow, json!({}));
        let engine = &rig.engine;
        let (op, sen) = (rig.token(Role::Operator), rig.token(Role::Senior));

        // A senior overrides with a blocked verdict.
        let c1 = probe.next().await;
        engine.override_verdict(Auth::Held(&sen), &c1.task(), Verdict::Blocked(Value::from("no"))).unwrap();
        // A worker posts a failure through the engine, with its own token.
        let c2 = probe.next().await;
        engine.post_result(Auth::Encoded(&c2.token()), &c2.task(), Value::from("could not"), false).unwrap();
        // An operator passes the last one; a second verdict for the same attempt is too late.
        let c3 = probe.next().await;
        engine.mark_pass(Auth::Held(&op), &c3.task(), Value::from("fine")).unwrap();
        let outcome = run.wait().await;
        assert_eq!(outcome.status, RunStatus::Finished);
        assert_json(
            &outcome.ctx,
            json!({
                "e1": {"kind": "blocked", "message": "blocked: \"no\"", "step": "p", "value": "no"},
                "e2": {"kind": "failed", "message": "could not", "step": "p"},
                "c": "fine",
            }),
        );
        let states: Vec<TaskState> =
            [&c1, &c2, &c3].iter().map(|c| engine.task_snapshot(&c.task()).unwrap().state).collect();
        assert_eq!(states, [TaskState::Blocked, TaskState::Failed, TaskState::Pass]);
        assert_eq!(probe.counts(), (3, 0, 3), "every worker was dropped, none ran to its end");
        let finished: Vec<String> = rig.story(&run).into_iter().filter(|e| e.starts_with("attempt_finished")).collect();
        assert_eq!(
            finished,
            ["attempt_finished #1 p 1 blocked", "attempt_finished #2 p 1 failed", "attempt_finished #3 p 1 pass"]
        );
        // The worker's reply arrives after the verdict: nobody takes it.
        assert!(!c3.pass(json!("late")));
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_verdict_needs_an_attempt_in_flight() {
    within(async {
        let rig = Rig::new();
        let (_probe, run, call) = rig.one_step().await;
        let engine = &rig.engine;
        let (op, sen) = (rig.token(Role::Operator), rig.token(Role::Senior));

        // A pending task has no attempt yet.
        let side = engine.start_task(Auth::Held(&op), &run.id, "echo", Value::Null, None).unwrap();
        let not_running = |op: &'static str| EngineError::NotRunning { task: side.to_string(), state: "pending", op };
        assert_eq!(engine.mark_pass(Auth::Held(&op), &side, Value::Null), Err(not_running("mark_pass")));
        assert_eq!(engine.mark_blocked(Auth::Held(&op), &side, Value::Null), Err(not_running("mark_blocked")));
        let verdict = Verdict::Pass(Value::Null);
        assert_eq!(engine.override_verdict(Auth::Held(&sen), &side, verdict), Err(not_running("override_verdict")));
        let worker = engine.mint_worker_token(Auth::Held(&op), &side).unwrap().encode();
        let err = engine.post_result(Auth::Encoded(&worker), &side, Value::Null, true).unwrap_err();
        assert_eq!((err.kind(), err), ("not_running", not_running("post_result")));

        // A cancelled task takes no verdict, even while its attempt is still unwinding.
        let task = call.task();
        engine.cancel_task(Auth::Held(&op), &task).unwrap();
        assert_eq!(engine.mark_pass(Auth::Held(&op), &task, Value::Null), Err(EngineError::Settled(task.to_string())));
        assert_eq!(
            engine.post_result(Auth::Encoded(&call.token()), &task, Value::Null, true),
            Err(EngineError::Settled(task.to_string()))
        );
        let outcome = run.wait().await;
        assert_eq!(outcome.error.unwrap().kind, ErrorKind::Cancelled);
        // Settled and retired: still no attempt in flight.
        let err = engine.mark_pass(Auth::Held(&op), &task, Value::Null).unwrap_err();
        assert_eq!(err, EngineError::Settled(task.to_string()));
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_task_runs_one_attempt_at_a_time() {
    within(async {
        let rig = Rig::new();
        let (probe, run, call) = rig.one_step().await;
        let op = rig.token(Role::Operator);
        let task = call.task();
        let second = rig.engine.dispatch_attempt(Auth::Held(&op), &task, 2).await.unwrap_err();
        assert_eq!((second.kind, second.step.as_deref()), (ErrorKind::Dispatch, Some("p")));
        assert_eq!(second.message, format!("task '{task}' already has attempt 1 in flight"));
        assert_eq!(probe.counts(), (1, 0, 0), "no second worker started");
        // The attempt in flight is untouched: it still takes its verdict.
        rig.engine.mark_pass(Auth::Held(&op), &task, Value::from("first")).unwrap();
        assert_json(&run.wait().await.ctx, json!({"r": "first"}));
        assert_eq!(rig.engine.task_snapshot(&task).unwrap().attempts, 1);
        drop(call);
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// The senior loop.

#[tokio::test(start_paused = true)]
async fn a_query_suspends_its_task_until_a_senior_answers() {
    within(async {
        let rig = Rig::new();
        let (_probe, run, call) = rig.one_step().await;
        let engine = &rig.engine;
        let (op, sen) = (rig.token(Role::Operator), rig.token(Role::Senior));
        let mut tap = engine.subscribe_run(Auth::Held(&rig.token(Role::Observer)), &run.id).unwrap();
        let task = call.task();

        let query = {
            let (engine, op, task) = (engine.clone(), op.clone(), task.clone());
            tokio::task::spawn_local(async move {
                engine.query_senior(Auth::Encoded(&op.encode()), &task, v(json!({"may_i": "deploy"}))).await
            })
        };
        let suspended = until(&mut tap, "task_suspended").await;
        assert_eq!(show(&suspended), "task_suspended #1 query_senior");
        assert_eq!(engine.task_snapshot(&task).unwrap().state, TaskState::Suspended);
        assert_eq!(engine.open_queries(), [(1, task.clone(), v(json!({"may_i": "deploy"})))]);
        assert_eq!(engine.answer_query(Auth::Held(&sen), 7, Value::Null), Err(EngineError::NoSuchQuery(7)));
        assert!(!query.is_finished());

        engine.answer_query(Auth::Held(&sen), 1, v(json!({"answer": "not on friday"}))).unwrap();
        assert_eq!(query.await.unwrap(), Ok(v(json!({"answer": "not on friday"}))));
        assert_eq!(show(&until(&mut tap, "task_").await), "task_resumed #1");
        assert_eq!(engine.task_snapshot(&task).unwrap().state, TaskState::Running);
        assert!(engine.open_queries().is_empty());

        call.pass(json!("deployed monday"));
        let outcome = run.wait().await;
        assert_json(&outcome.ctx, json!({"r": "deployed monday"}));
        assert_eq!(engine.task_snapshot(&task).unwrap().state, TaskState::Pass);
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_query_whose_caller_goes_away_is_withdrawn() {
    within(async {
        let rig = Rig::new();
        let (_probe, run, call) = rig.one_step().await;
        let engine = &rig.engine;
        let op = rig.token(Role::Operator);
        let task = call.task();
        let asking = engine.query_senior(Auth::Held(&op), &task, Value::from("?")).now_or_never();
        assert!(asking.is_none(), "the query waits for an answer");
        // The caller dropped its query: nobody will read an answer, and the task is not stuck.
        assert!(engine.open_queries().is_empty());
        assert_eq!(engine.task_snapshot(&task).unwrap().state, TaskState::Running);
        let story = rig.story(&run);
        assert_eq!(story[story.len() - 2..], ["task_suspended #1 query_senior", "task_resumed #1"]);
        call.pass(json!(1));
        assert_eq!(run.wait().await.status, RunStatus::Finished);
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn directives_and_the_profile_prompt_reach_fetch_prompt() {
    within(async {
        let rig = Rig::new();
        let mut plain = rig.probe("plain");
        let mut briefed = rig.probe_with("briefed", json!({"profile": {"system_prompt": "Summarise {{topic}}."}}));
        let flow =
            seq(vec![step("plain", lit(json!("x")), "$.a"), step("briefed", lit(json!({"topic": "tea"})), "$.b")]);
        let run = rig.start(flow, json!({}));
        let engine = &rig.engine;
        let sen = rig.token(Role::Senior);

        let call = plain.next().await;
        let prompt = engine.fetch_prompt(Auth::Encoded(&call.token()), &call.task()).unwrap();
        assert_eq!((prompt.system_prompt, prompt.directives), (None, vec![]));
        call.pass(json!("a"));

        let call = briefed.next().await;
        let (task, token) = (call.task(), call.token());
        engine.inject_directive(Auth::Held(&sen), &task, Value::from("cite sources")).unwrap();
        engine.inject_directive(Auth::Held(&sen), &task, v(json!({"tone": "dry"}))).unwrap();
        let prompt = engine.fetch_prompt(Auth::Encoded(&token), &task).unwrap();
        assert_eq!(prompt.system_prompt.as_deref(), Some("Summarise {{topic}}."));
        assert_eq!(prompt.directives, [Value::from("cite sources"), v(json!({"tone": "dry"}))]);
        assert_eq!((prompt.attempt, prompt.input), (1, v(json!({"topic": "tea"}))));
        assert_eq!(
            engine.inject_directive(Auth::Held(&sen), "r-nope.1", Value::Null),
            Err(EngineError::NoSuchTask("r-nope.1".into()))
        );
        call.pass(json!("b"));
        assert_eq!(run.wait().await.status, RunStatus::Finished);
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Sessions.

#[tokio::test]
async fn sessions_attach_heartbeat_and_detach() {
    let rig = Rig::new();
    let engine = &rig.engine;
    let op = rig.token(Role::Operator);
    let op = Auth::Held(&op);
    let alice = engine.attach_session(op, "alice").unwrap();
    let bob = engine.attach_session(op, "bob").unwrap();
    assert_eq!((&*alice, &*bob), ("s-1", "s-2"));
    assert_eq!(engine.heartbeat(op, &alice).unwrap(), "alice");
    assert_eq!(engine.heartbeat(op, &bob).unwrap(), "bob");
    engine.detach_session(op, &alice).unwrap();
    let gone = EngineError::NoSuchSession("s-1".into());
    assert_eq!(engine.heartbeat(op, &alice), Err(gone.clone()));
    assert_eq!(engine.detach_session(op, &alice), Err(gone.clone()));
    assert_eq!(gone.kind(), "no_such_session");
    assert_eq!(engine.heartbeat(op, "s-9"), Err(EngineError::NoSuchSession("s-9".into())));
    assert_eq!(engine.heartbeat(op, &bob).unwrap(), "bob", "detaching one session leaves the others");
}

// ---------------------------------------------------------------------------------------------
// Worker tokens and sub-tasks.

/// An agent that hands its job to the test, then dispatches `child` with its input and
/// returns what the child returns.
fn boss(rig: &Rig, name: &str, child: &'static str) -> Rc<RefCell<Vec<Job>>> {
    let jobs = Rc::new(RefCell::new(Vec::new()));
    let seen = jobs.clone();
    rig.agent(name, move |job| {
        seen.borrow_mut().push(job.clone());
        Box::pin(async move {
            let input = job.input.clone();
            match job.host.dispatch(child, input).await {
                Ok(value) => Ok(Verdict::Pass(value)),
                Err(err) => Err(WorkerError::new(err.error.message)),
            }
        })
    });
    jobs
}

#[tokio::test(start_paused = true)]
async fn a_worker_token_reaches_its_own_task_and_its_sub_tasks_only() {
    within(async {
        let rig = Rig::new();
        let bosses = boss(&rig, "boss", "minion");
        let mut minion = rig.probe("minion");
        let run = rig.start(step("boss", lit(json!("orders")), "$.r"), json!({}));
        let engine = &rig.engine;
        let op = rig.token(Role::Operator);

        let call = minion.next().await;
        let job = bosses.borrow()[0].clone();
        let (boss_task, boss_token) = (job.task_id.clone(), job.host.token());
        let (sub, sub_token) = (call.task(), call.token());
        let unrelated = engine.start_task(Auth::Held(&op), &run.id, "echo", Value::Null, None).unwrap();

        let snap = engine.task_snapshot(&sub).unwrap();
        assert_eq!((snap.depth, snap.parent.as_deref(), &*snap.agent), (1, Some(&*boss_task), "minion"));
        assert_eq!(call.job.input, Value::from("orders"));
        // Its own task, and the sub-task it started.
        let boss_auth = Auth::Encoded(&boss_token);
        assert_eq!(engine.read_task_state(boss_auth, &boss_task).unwrap().state, TaskState::Running);
        assert_eq!(engine.poll_task(boss_auth, &sub).unwrap().state, TaskState::Running);
        // Not an unrelated task, and the sub-task's token does not reach its parent.
        let mismatch = EngineError::Token(TokenError::TaskMismatch);
        assert_eq!(mismatch.kind(), "task_mismatch");
        assert_eq!(engine.read_task_state(boss_auth, &unrelated), Err(mismatch.clone()));
        assert_eq!(engine.read_task_state(Auth::Encoded(&sub_token), &boss_task), Err(mismatch.clone()));
        assert_eq!(engine.cancel_task(boss_auth, &unrelated), Err(mismatch));

        // The boss settles its sub-task through the engine; its dispatch returns that value.
        engine.post_result(boss_auth, &sub, Value::from("done, boss"), true).unwrap();
        let outcome = run.wait().await;
        assert_json(&outcome.ctx, json!({"r": "done, boss"}));
        assert_eq!(engine.task_snapshot(&sub).unwrap().state, TaskState::Pass);
        assert_eq!(engine.task_snapshot(&boss_task).unwrap().state, TaskState::Pass);
        let created: Vec<String> = rig.story(&run).into_iter().filter(|e| e.starts_with("task_created")).collect();
        assert_eq!(
            created,
            [
                "task_created #1 boss depth 0",
                "task_created #2 minion depth 1 parent #1",
                "task_created #3 echo depth 0"
            ]
        );
        drop(call);
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn recursive_sub_dispatch_stops_at_max_spawn_depth() {
    within(async {
        let rig = Rig::with(EngineConfig { max_spawn_depth: 2, ..EngineConfig::default() });
        let jobs = boss(&rig, "rec", "rec");
        let run = rig.start(step("rec", lit(json!(0)), "$.r"), json!({}));
        let outcome = run.wait().await;
        assert_eq!(outcome.status, RunStatus::Failed);
        let err = outcome.error.unwrap();
        assert_eq!((err.kind, err.step.as_deref()), (ErrorKind::Failed, Some("rec")));
        assert_eq!(err.message, "depth_exceeded: spawn depth 2 reaches the limit of 2");

        let tasks: Vec<Arc<str>> = jobs.borrow().iter().map(|j| j.task_id.clone()).collect();
        assert_eq!(tasks.len(), 2, "depths 0 and 1 ran; depth 2 was refused");
        let snaps: Vec<_> = tasks.iter().map(|t| rig.engine.task_snapshot(t).unwrap()).collect();
        assert_eq!((snaps[0].depth, snaps[0].parent.clone(), snaps[0].state), (0, None, TaskState::Failed));
        assert_eq!(
            (snaps[1].depth, snaps[1].parent.clone(), snaps[1].state),
            (1, Some(tasks[0].clone()), TaskState::Failed)
        );
        assert_eq!(
            rig.story(&run),
            [
                "run_started engine-test",
                "task_created #1 rec depth 0",
                "attempt_started #1 rec 1",
                "task_created #2 rec depth 1 parent #1",
                "attempt_started #2 rec 1",
                "attempt_finished #2 rec 1 failed",
                "attempt_finished #1 rec 1 failed",
                "run_finished failed",
            ]
        );
        assert_eq!((rig.engine.live_tasks(), rig.engine.token_records()), (0, 0));
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_worker_cannot_start_a_task_outside_its_spawn_depth() {
    within(async {
        // Depth 1 allows top-level tasks only: a worker may start nothing.
        let rig = Rig::with(EngineConfig { max_spawn_depth: 1, ..EngineConfig::default() });
        let (_probe, run, call) = rig.one_step().await;
        let engine = &rig.engine;
        let (task, token) = (call.task(), call.token());
        let refused = Err(EngineError::Token(TokenError::DepthExceeded { depth: 1, max: 1 }));
        let with_parent = engine.start_task(Auth::Encoded(&token), &run.id, "echo", Value::Null, Some(&task));
        assert_eq!(with_parent, refused);
        // Leaving the parent out does not make a worker's task a top-level one.
        let without_parent = engine.start_task(Auth::Encoded(&token), &run.id, "echo", Value::Null, None);
        assert_eq!(without_parent, refused);
        assert_eq!(engine.live_tasks(), 1);
        call.pass(json!(1));
        assert_eq!(run.wait().await.status, RunStatus::Finished);

        // With room, a worker's task is its sub-task either way.
        let rig = Rig::new();
        let (_probe, run, call) = rig.one_step().await;
        let (task, token) = (call.task(), call.token());
        let child = rig.engine.start_task(Auth::Encoded(&token), &run.id, "echo", Value::Null, None).unwrap();
        let snap = rig.engine.task_snapshot(&child).unwrap();
        assert_eq!((snap.depth, snap.parent), (1, Some(task)));
        call.pass(json!(1));
        assert_eq!(run.wait().await.status, RunStatus::Finished);
        // Never dispatched, the sub-task was retired with its run.
        assert_eq!(rig.engine.task_snapshot(&child).unwrap().state, TaskState::Cancelled);
        assert_eq!(rig.engine.live_tasks(), 0);
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn worker_tokens_an_operator_mints_die_with_their_task() {
    within(async {
        let rig = Rig::new();
        let (_probe, run, call) = rig.one_step().await;
        let op = rig.token(Role::Operator);
        let before = rig.engine.token_records();
        let task = call.task();
        let minted = rig.engine.mint_worker_token(Auth::Held(&op), &task).unwrap().encode();
        assert_eq!(rig.engine.token_records(), before + 1);
        assert!(rig.engine.fetch_data(Auth::Encoded(&minted), &task).is_ok());
        assert!(call.pass(json!(1)));
        run.wait().await;
        let err = rig.engine.verify(&minted, Verb::FetchData, None).unwrap_err();
        assert_eq!(err.kind(), "unknown_token", "the task retired and took its token along");
        assert_eq!(
            rig.engine.token_records(),
            before - 2,
            "the run's operator token and the attempt's worker token are gone too"
        );
    })
    .await;
}
