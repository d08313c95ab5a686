//! Runs on the engine (docs/engine.md): the task state machine, cancel stopping workers, pause and
//! resume, the event stream, retries and timeouts as attempts of one task, and memory that
//! does not grow with finished steps.

use std::sync::Arc;
use std::time::Duration;

use crate::util::rig::*;
use luaswarm::Value;
use luaswarm::engine::{Auth, EngineConfig, EngineError, Event, RunStatus, TaskState};
use luaswarm::flow::ErrorKind;
use luaswarm::gate::Role;
use serde_json::json;
use tokio::time::Instant;

fn states(rig: &Rig, tasks: &[Arc<str>]) -> Vec<TaskState> {
    tasks.iter().map(|t| rig.engine.task_snapshot(t).expect("the task is known").state).collect()
}

fn count(story: &[String], prefix: &str) -> usize {
    story.iter().filter(|e| e.starts_with(prefix)).count()
}

// ---------------------------------------------------------------------------------------------
// The state machine.

#[tokio::test(start_paused = true)]
async fn a_step_task_runs_then_settles_as_pass_blocked_or_failed() {
    within(async {
        let rig = Rig::new();
        let mut probe = rig.probe("p");
        let flow = seq(vec![
            step("p", lit(json!(1)), "$.a"),
            try_catch(step("p", lit(json!(2)), "$.b"), "$.e2"),
            try_catch(step("p", lit(json!(3)), "$.c"), "$.e3"),
        ]);
        let run = rig.start(flow, json!({}));
        let mut tasks = Vec::new();
        for reply in 0..3 {
            let call = probe.next().await;
            let snap = rig.engine.task_snapshot(&call.task()).unwrap();
            assert_eq!((snap.state, snap.attempts, snap.result), (TaskState::Running, 1, None));
            tasks.push(call.task());
            match reply {
                0 => call.pass(json!({"ok": true})),
                1 => call.block(json!("needs review")),
                _ => call.fail("it broke"),
            };
        }
        let outcome = run.wait().await;
        assert_json(
            &outcome.ctx,
            json!({
                "a": {"ok": true},
                "e2": {"kind": "blocked", "message": "blocked: \"needs review\"", "step": "p", "value": "needs review"},
                "e3": {"kind": "failed", "message": "it broke", "step": "p"},
            }),
        );
        assert_eq!(states(&rig, &tasks), [TaskState::Pass, TaskState::Blocked, TaskState::Failed]);
        let results: Vec<_> = tasks.iter().map(|t| rig.engine.task_snapshot(t).unwrap().result).collect();
        assert_eq!(results, [Some(Value::from(json!({"ok": true}))), Some(Value::from("needs review")), None]);
        assert_eq!(probe.counts(), (3, 3, 0));
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn pause_suspends_an_attempt_about_to_start_until_resume() {
    within(async {
        let rig = Rig::new();
        let mut probe = rig.probe("p");
        let sen = rig.token(Role::Senior);
        rig.engine.pause_loop(Auth::Held(&sen)).unwrap();
        let run = rig.start(step("p", lit(json!(null)), "$.r"), json!({}));
        let mut tap = rig.engine.subscribe_run(Auth::Held(&rig.token(Role::Observer)), &run.id).unwrap();
        let suspended = until(&mut tap, "task_suspended").await;
        assert_eq!(show(&suspended), "task_suspended #1 paused");
        // However long the pause lasts, the attempt does not start.
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(probe.try_next().is_none());
        let task: Arc<str> = format!("{}.1", run.id).into();
        assert_eq!(states(&rig, std::slice::from_ref(&task)), [TaskState::Suspended]);

        rig.engine.resume_loop(Auth::Held(&sen)).unwrap();
        let call = probe.next().await;
        assert_eq!(call.task(), task);
        assert_eq!(states(&rig, std::slice::from_ref(&task)), [TaskState::Running]);
        call.pass(json!("went ahead"));
        let outcome = run.wait().await;
        assert_json(&outcome.ctx, json!({"r": "went ahead"}));
        assert_eq!(
            rig.story(&run),
            [
                "run_started engine-test",
                "task_created #1 p depth 0",
                "task_suspended #1 paused",
                "task_resumed #1",
                "attempt_started #1 p 1",
                "attempt_finished #1 p 1 pass",
                "run_finished finished",
            ]
        );
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn cancel_reaches_pending_and_running_tasks_but_not_settled_ones() {
    within(async {
        let rig = Rig::new();
        let (probe, run, call) = rig.one_step().await;
        let op = rig.token(Role::Operator);
        let op = Auth::Held(&op);

        let pending = rig.engine.start_task(op, &run.id, "echo", Value::Null, None).unwrap();
        assert_eq!(states(&rig, std::slice::from_ref(&pending)), [TaskState::Pending]);
        rig.engine.cancel_task(op, &pending).unwrap();
        assert_eq!(rig.engine.cancel_task(op, &pending), Err(EngineError::Settled(pending.to_string())));

        let running = call.task();
        rig.engine.cancel_task(op, &running).unwrap();
        let outcome = run.wait().await;
        assert_eq!(outcome.status, RunStatus::Failed);
        let err = outcome.error.unwrap();
        assert_eq!((err.kind, err.step.as_deref()), (ErrorKind::Cancelled, Some("p")));
        assert_eq!(states(&rig, &[pending.clone(), running.clone()]), [TaskState::Cancelled, TaskState::Cancelled]);
        let err = rig.engine.cancel_task(op, &running).unwrap_err();
        assert_eq!((err.kind(), err), ("settled", EngineError::Settled(running.to_string())));
        assert_eq!(
            rig.story(&run),
            [
                "run_started engine-test",
                "task_created #1 p depth 0",
                "attempt_started #1 p 1",
                "task_created #2 echo depth 0",
                "task_cancelled #2",
                "task_cancelled #1",
                "attempt_finished #1 p 1 cancelled",
                "run_finished failed",
            ]
        );
        assert_eq!(probe.counts(), (1, 0, 1), "the cancelled worker was stopped");
        drop(call);
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn cancelling_a_suspended_task_does_not_wait_for_resume() {
    within(async {
        let rig = Rig::new();
        let mut probe = rig.probe("p");
        let (op, sen) = (rig.token(Role::Operator), rig.token(Role::Senior));
        rig.engine.pause_loop(Auth::Held(&sen)).unwrap();
        let run = rig.start(step("p", lit(json!(null)), "$.r"), json!({}));
        let mut tap = rig.engine.subscribe_run(Auth::Held(&rig.token(Role::Observer)), &run.id).unwrap();
        let task = until(&mut tap, "task_suspended").await;
        let task: Arc<str> = format!("{}.1", task.run_id).into();
        rig.engine.cancel_task(Auth::Held(&op), &task).unwrap();

        let outcome = run.wait().await;
        assert!(rig.engine.is_paused(), "the run ended while the loop was still paused");
        assert_eq!(outcome.error.unwrap().kind, ErrorKind::Cancelled);
        assert_eq!(states(&rig, &[task]), [TaskState::Cancelled]);
        assert_eq!(probe.counts(), (0, 0, 0), "no attempt ever started");
        assert_eq!(
            rig.story(&run),
            [
                "run_started engine-test",
                "task_created #1 p depth 0",
                "task_suspended #1 paused",
                "task_cancelled #1",
                "run_finished failed",
            ]
        );
        rig.engine.resume_loop(Auth::Held(&sen)).unwrap();
        assert!(probe.try_next().is_none());
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_late_worker_result_never_overwrites_cancelled() {
    within(async {
        let rig = Rig::new();
        let (probe, run, call) = rig.one_step().await;
        let task = call.task();
        rig.engine.cancel_task(Auth::Held(&rig.token(Role::Operator)), &task).unwrap();
        // The worker answers after the cancel, before the engine looked again.
        assert!(call.pass(json!("too late")));
        let outcome = run.wait().await;
        assert_eq!(probe.counts(), (1, 1, 0), "the worker ran to its end: its result really was late");
        let err = outcome.error.unwrap();
        assert_eq!((err.kind, err.step.as_deref()), (ErrorKind::Cancelled, Some("p")));
        assert_json(&outcome.ctx, json!({}));
        let snap = rig.engine.task_snapshot(&task).unwrap();
        assert_eq!((snap.state, snap.result), (TaskState::Cancelled, None));
        assert!(rig.story(&run).contains(&"attempt_finished #1 p 1 cancelled".to_string()));
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Cancel stops the worker.

#[tokio::test(start_paused = true)]
async fn cancelling_a_task_drops_its_blocked_worker() {
    within(async {
        let rig = Rig::new();
        let mut probe = rig.probe("p");
        let run = rig.start(step("p", lit(json!(null)), "$.r"), json!({}));
        // Dropping the call leaves the worker blocked for good.
        let task = probe.next().await.task();
        assert_eq!(probe.counts(), (1, 0, 0));
        rig.engine.cancel_task(Auth::Held(&rig.token(Role::Operator)), &task).unwrap();
        let outcome = run.wait().await;
        assert_eq!(outcome.error.unwrap().kind, ErrorKind::Cancelled);
        assert_eq!(probe.counts(), (1, 0, 1));
        assert_eq!(rig.engine.live_tasks(), 0);
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn cancelling_a_run_cancels_every_task_not_yet_settled() {
    within(async {
        let rig = Rig::new();
        let mut probe = rig.probe("p");
        let run = rig.start(seq(vec![step("echo", lit(json!(1)), "$.a"), step("p", lit(json!(2)), "$.b")]), json!({}));
        let call = probe.next().await;
        let first: Arc<str> = format!("{}.1", run.id).into();
        run.cancel();
        let outcome = run.wait().await;
        assert_eq!(outcome.status, RunStatus::Cancelled);
        let err = outcome.error.unwrap();
        assert_eq!((err.kind, err.message.as_str()), (ErrorKind::Cancelled, "the run was cancelled"));
        assert_json(&outcome.ctx, json!({"a": 1}));
        assert_eq!(states(&rig, &[first, call.task()]), [TaskState::Pass, TaskState::Cancelled]);
        let story = rig.story(&run);
        assert_eq!(
            story[story.len() - 3..],
            ["attempt_finished #2 p 1 cancelled", "task_cancelled #2", "run_finished cancelled"]
        );
        assert_eq!(probe.counts(), (1, 0, 1));
        assert_eq!((rig.engine.live_tasks(), rig.engine.token_records()), (0, 0));
        assert!(!call.pass(json!("nobody listens")));
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn cancelling_a_run_cancels_every_lane_of_a_fanout() {
    within(async {
        let rig = Rig::new();
        let mut probe = rig.probe("p");
        let run = rig.start(fanout(lit(json!([1, 2, 3, 4])), step("p", p("$.item"), "$.out")), json!({}));
        let mut tasks = Vec::new();
        for _ in 0..4 {
            tasks.push(probe.next().await.task());
        }
        run.cancel();
        let outcome = run.wait().await;
        assert_eq!(outcome.status, RunStatus::Cancelled);
        assert_eq!(states(&rig, &tasks), [TaskState::Cancelled; 4]);
        let story = rig.story(&run);
        assert_eq!((count(&story, "task_cancelled"), count(&story, "attempt_finished")), (4, 4));
        assert_eq!(count(&story, "attempt_finished #"), count(&story, "attempt_finished"));
        assert!(story.iter().filter(|e| e.starts_with("attempt_finished")).all(|e| e.ends_with(" cancelled")));
        assert_eq!(probe.counts(), (4, 0, 4));
        assert_eq!((rig.engine.live_tasks(), rig.engine.token_records()), (0, 0));
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Events.

#[tokio::test(start_paused = true)]
async fn run_events_are_numbered_from_one_bracketed_and_serializable() {
    within(async {
        let rig = Rig::new();
        rig.agent("talker", |job| {
            Box::pin(async move {
                job.host.emit(Value::from(json!({"type": "progress", "note": "thinking"})));
                Ok(luaswarm::worker::Verdict::Pass(job.input))
            })
        });
        let flow = seq(vec![step("echo", lit(json!("hi")), "$.a"), step("talker", p("$.a"), "$.b")]);
        let other = rig.start(step("echo", lit(json!(0)), "$.x"), json!({}));
        let run = rig.start(flow, json!({}));
        let outcome = run.wait().await;
        other.wait().await;
        assert_json(&outcome.ctx, json!({"a": "hi", "b": "hi"}));
        assert_eq!(
            rig.story(&run),
            [
                "run_started engine-test",
                "task_created #1 echo depth 0",
                "attempt_started #1 echo 1",
                "attempt_finished #1 echo 1 pass",
                "task_created #2 talker depth 0",
                "attempt_started #2 talker 1",
                r#"worker_output #2 1 {"note":"thinking","type":"progress"}"#,
                "attempt_finished #2 talker 1 pass",
                "run_finished finished",
            ]
        );
        // Two runs interleave in the trace; each numbers its own events from 1.
        for handle in [&run, &other] {
            let events = rig.events(handle);
            assert!(events.iter().all(|e| e.run_id == handle.id));
            let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
            assert_eq!(seqs, (1..=events.len() as u64).collect::<Vec<_>>());
        }
        let obs = rig.token(Role::Observer);
        let trace = rig.engine.read_trace(Auth::Held(&obs), Some(&run.id)).unwrap();
        assert_eq!(trace, rig.events(&run));
        assert_eq!(rig.engine.read_trace(Auth::Held(&obs), None).unwrap().len(), trace.len() + 5);
        // Every event round-trips exactly, measured times included: 200 more steps give a
        // spread of `elapsed_ms` values.
        let steps = (0..200).map(|i| step("echo", lit(json!(i)), "$.x")).collect();
        rig.start(seq(steps), json!({})).wait().await;
        let all = rig.engine.trace(None);
        assert!(all.len() > 600);
        for event in &all {
            let text = serde_json::to_string(event).unwrap();
            let json: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!((json["run_id"].as_str(), json["seq"].as_u64()), (Some(&*event.run_id), Some(event.seq)));
            assert_eq!(json["kind"].as_str(), Some(event.kind.name()));
            assert_eq!(serde_json::from_str::<Event>(&text).unwrap(), *event, "{text}");
        }
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_failed_run_ends_with_its_error_in_run_finished() {
    within(async {
        let rig = Rig::new();
        let run = rig.start(step("fail", lit(json!("no way")), "$.r"), json!({}));
        let outcome = run.wait().await;
        let events = rig.events(&run);
        let last = serde_json::to_value(events.last().unwrap()).unwrap();
        assert_eq!(last["kind"], "run_finished");
        assert_eq!(last["status"], "failed");
        assert_eq!(last["error"], json!({"kind": "failed", "message": "no way", "step": "fail", "value": "no way"}));
        assert_eq!(outcome.error.unwrap().message, "no way");
        let round_trip: Event = serde_json::from_value(last).unwrap();
        assert_eq!(&round_trip, events.last().unwrap());
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Retries and timeouts.

#[tokio::test(start_paused = true)]
async fn a_retried_step_is_one_task_with_numbered_attempts() {
    within(async {
        let rig = Rig::new();
        let mut probe = rig.probe("p");
        let mut node = step("p", lit(json!("job")), "$.r");
        node["retry"] = json!({"max_attempts": 3, "backoff_ms": 100, "on": ["failed", "blocked"]});
        let start = Instant::now();
        let run = rig.start(node, json!({}));
        let mut seen = Vec::new();
        for reply in 0..3 {
            let call = probe.next().await;
            seen.push((call.task(), call.job.attempt, start.elapsed().as_millis()));
            match reply {
                0 => call.fail("flaky"),
                1 => call.block(json!("not yet")),
                _ => call.pass(json!("third time")),
            };
        }
        let outcome = run.wait().await;
        assert_json(&outcome.ctx, json!({"r": "third time"}));
        let task = seen[0].0.clone();
        assert_eq!(seen, [(task.clone(), 1, 0), (task.clone(), 2, 100), (task.clone(), 3, 200)]);
        let snap = rig.engine.task_snapshot(&task).unwrap();
        assert_eq!((snap.state, snap.attempts), (TaskState::Pass, 3));
        assert_eq!(
            rig.story(&run),
            [
                "run_started engine-test",
                "task_created #1 p depth 0",
                "attempt_started #1 p 1",
                "attempt_finished #1 p 1 failed",
                "attempt_started #1 p 2",
                "attempt_finished #1 p 2 blocked",
                "attempt_started #1 p 3",
                "attempt_finished #1 p 3 pass",
                "run_finished finished",
            ]
        );
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_step_timeout_ends_the_attempt_and_the_task_as_timeout() {
    within(async {
        let rig = Rig::new();
        let mut probe = rig.probe("p");
        let mut node = step("p", lit(json!(null)), "$.r");
        node["timeout_ms"] = json!(50);
        let start = Instant::now();
        let run = rig.start(node, json!({}));
        let call = probe.next().await;
        let outcome = run.wait().await;
        assert_eq!(start.elapsed(), Duration::from_millis(50));
        let err = outcome.error.unwrap();
        assert_eq!((err.kind, err.message.as_str()), (ErrorKind::Timeout, "attempt 1 timed out after 50 ms"));
        assert_eq!(states(&rig, &[call.task()]), [TaskState::Timeout]);
        assert_eq!(probe.counts(), (1, 0, 1), "the worker was stopped");
        assert_eq!(
            rig.story(&run),
            [
                "run_started engine-test",
                "task_created #1 p depth 0",
                "attempt_started #1 p 1",
                "attempt_finished #1 p 1 timeout",
                "run_finished failed",
            ]
        );
        assert!(!call.pass(json!("too late")));
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn timed_out_attempts_are_retried_as_attempts_of_the_same_task() {
    within(async {
        let rig = Rig::new();
        let mut probe = rig.probe("p");
        let mut node = step("p", lit(json!(null)), "$.r");
        node["timeout_ms"] = json!(50);
        node["retry"] = json!({"max_attempts": 2, "on": ["timeout"]});
        let run = rig.start(node, json!({}));
        let (first, second) = (probe.next().await, probe.next().await);
        assert_eq!((first.task(), first.job.attempt, second.job.attempt), (second.task(), 1, 2));
        let outcome = run.wait().await;
        assert_eq!(outcome.error.unwrap().message, "attempt 2 timed out after 50 ms");
        let snap = rig.engine.task_snapshot(&first.task()).unwrap();
        assert_eq!((snap.state, snap.attempts), (TaskState::Timeout, 2));
        let story = rig.story(&run);
        assert_eq!(count(&story, "task_created"), 1);
        let finished: Vec<&String> = story.iter().filter(|e| e.starts_with("attempt_finished")).collect();
        assert_eq!(finished, ["attempt_finished #1 p 1 timeout", "attempt_finished #1 p 2 timeout"]);
        assert_eq!(probe.counts(), (2, 0, 2));
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Memory.

#[tokio::test(start_paused = true)]
async fn large_runs_leave_no_tasks_or_tokens_behind() {
    within(async {
        let rig = Rig::with(EngineConfig { recent_tasks: 100, trace_capacity: 100, ..EngineConfig::default() });
        let engine = &rig.engine;

        // While a step runs: its task, the run's operator token and the attempt's worker token.
        let (_probe, run, call) = rig.one_step().await;
        assert_eq!((engine.live_tasks(), engine.token_records()), (1, 2));
        call.pass(json!(null));
        run.wait().await;
        assert_eq!((engine.live_tasks(), engine.token_records()), (0, 0));

        let steps = (0..2000).map(|i| step("echo", lit(json!(i)), "$.last")).collect();
        let run = rig.start(seq(steps), json!({}));
        let outcome = run.wait().await;
        assert_json(&outcome.ctx, json!({"last": 1999}));
        assert_eq!((engine.live_tasks(), engine.token_records()), (0, 0));
        // The ring keeps exactly the 100 most recent tasks.
        let known = |n: u32| engine.task_snapshot(&format!("{}.{n}", run.id));
        assert_eq!(known(2000).unwrap().state, TaskState::Pass);
        assert!(known(1901).is_some());
        assert!(known(1900).is_none());
        assert_eq!(engine.trace(None).len(), 100, "the trace is bounded too");

        let items: Vec<u32> = (0..500).collect();
        let run = rig.start(fanout(lit(json!(items)), step("echo", p("$.item"), "$.out")), json!({}));
        let outcome = run.wait().await;
        assert_json(&outcome.ctx, json!({"res": items}));
        assert_eq!((engine.live_tasks(), engine.token_records()), (0, 0));
        let known = |n: u32| engine.task_snapshot(&format!("{}.{n}", run.id));
        assert_eq!((1..=500).filter(|&n| known(n).is_some()).count(), 100);
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn tasks_a_run_leaves_behind_are_retired_when_it_ends() {
    within(async {
        let rig = Rig::new();
        let mut probe = rig.probe("p");
        let mut side = rig.probe("side");
        let run = rig.start(step("p", lit(json!(null)), "$.r"), json!({}));
        let op = rig.token(Role::Operator);
        let call = probe.next().await;
        // A task started from outside the flow and never dispatched, and one whose attempt an
        // outside caller is still waiting on when the run ends.
        let idle = rig.engine.start_task(Auth::Held(&op), &run.id, "echo", Value::Null, None).unwrap();
        let busy = rig.engine.start_task(Auth::Held(&op), &run.id, "side", Value::Null, None).unwrap();
        let attempt = {
            let (engine, op, busy) = (rig.engine.clone(), op.clone(), busy.clone());
            tokio::task::spawn_local(async move { engine.dispatch_attempt(Auth::Held(&op), &busy, 1).await })
        };
        let busy_call = side.next().await;
        assert_eq!(rig.engine.live_tasks(), 3);

        call.pass(json!("done"));
        assert_eq!(run.wait().await.status, RunStatus::Finished);
        assert_eq!(rig.engine.live_tasks(), 0);
        assert_eq!(states(&rig, &[idle, busy]), [TaskState::Cancelled, TaskState::Cancelled]);
        let err = attempt.await.unwrap().unwrap_err();
        assert_eq!(err.kind, ErrorKind::Cancelled);
        assert_eq!(side.counts(), (1, 0, 1), "the outside attempt's worker was stopped");
        // Nothing is published after run_finished, not even by the outside attempt.
        let story = rig.story(&run);
        assert_eq!(
            story[story.len() - 5..],
            [
                "attempt_finished #1 p 1 pass",
                "task_cancelled #2",
                "attempt_finished #3 side 1 cancelled",
                "task_cancelled #3",
                "run_finished finished",
            ]
        );
        drop(busy_call);
    })
    .await;
}
