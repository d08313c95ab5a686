//! The node evaluator over a scripted fake dispatcher, with flows read from their JSON wire
//! shape. Tests run on tokio's paused clock, so sleeps, timeouts and backoffs take virtual time
//! and every timing below is exact.

use std::cell::{Cell, RefCell};

use luaswarm::Value;
use luaswarm::flow::{Dispatcher, ErrorKind, Evaluator, ExternTable, FlowError, Node, Step};
use serde_json::{Value as J, json};

use crate::util::flow::{assert_json, lit, p, seq, step};
use tokio::time::{Duration, Instant, sleep};

// ---------------------------------------------------------------------------------------------
// A fake dispatcher. Agents, by name:
//   echo      returns its input
//   fail      fails; the message is the input string
//   block     blocks with the input as the error's value
//   sleep     {ms, fail?: kind}: sleeps ms, then returns the input or fails with kind
//   flaky     {fails, kind, ms?}: attempts 1..=fails fail with kind ("hang" never returns);
//             later attempts return {"attempt": n}
//   nowhere   cannot be opened (a dispatch error)

struct Fake {
    start: Instant,
    opened: Cell<usize>,
    /// (agent, attempt, virtual ms at start) for every attempt.
    attempts: RefCell<Vec<(String, u32, u64)>>,
    /// (agent, attempt, virtual ms) for every attempt that ran to its end.
    finished: RefCell<Vec<(String, u32, u64)>>,
    dropped: Cell<usize>,
    in_flight: Cell<usize>,
    max_in_flight: Cell<usize>,
    timed_out: RefCell<Vec<(String, u32)>>,
    /// (agent, outcome kind or "ok") for every closed step.
    closed: RefCell<Vec<(String, String)>>,
}

struct Task {
    agent: String,
    input: Value,
}

/// Counts an attempt in flight; an attempt dropped before it finished counts as dropped.
struct InFlight<'a> {
    fake: &'a Fake,
    done: bool,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.fake.in_flight.set(self.fake.in_flight.get() - 1);
        if !self.done {
            self.fake.dropped.set(self.fake.dropped.get() + 1);
        }
    }
}

impl Fake {
    fn new() -> Fake {
        Fake {
            start: Instant::now(),
            opened: Cell::new(0),
            attempts: RefCell::default(),
            finished: RefCell::default(),
            dropped: Cell::new(0),
            in_flight: Cell::new(0),
            max_in_flight: Cell::new(0),
            timed_out: RefCell::default(),
            closed: RefCell::default(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn attempt_numbers(&self) -> Vec<u32> {
        self.attempts.borrow().iter().map(|(_, n, _)| *n).collect()
    }

    fn attempt_times(&self) -> Vec<u64> {
        self.attempts.borrow().iter().map(|(_, _, t)| *t).collect()
    }

    fn finished_count(&self) -> usize {
        self.finished.borrow().len()
    }

    async fn behave(&self, task: &Task, attempt: u32) -> Result<Value, FlowError> {
        let input = &task.input;
        let field = |key: &str| input.get(key).cloned().unwrap_or(Value::Null);
        let int = |key: &str| match field(key) {
            Value::Number(n) => n.as_f64() as u64,
            _ => 0,
        };
        let fail = |kind: &str, message: String| {
            let kind: ErrorKind = serde_json::from_value(json!(kind)).expect("a known error kind");
            Err(FlowError::new(kind, message))
        };
        match task.agent.as_str() {
            "echo" => Ok(input.clone()),
            "fail" => Err(FlowError::new(ErrorKind::Failed, input.as_str().unwrap_or("failed"))),
            "block" => Err(FlowError::new(ErrorKind::Blocked, "blocked").with_value(input.clone())),
            "sleep" => {
                let ms = int("ms");
                sleep(Duration::from_millis(ms)).await;
                match field("fail").as_str() {
                    Some(kind) => fail(kind, format!("{kind} after {ms} ms")),
                    None => Ok(input.clone()),
                }
            }
            "flaky" => {
                sleep(Duration::from_millis(int("ms"))).await;
                if u64::from(attempt) > int("fails") {
                    return Ok(Value::from_pairs([("attempt", Value::int(attempt.into()))]));
                }
                match field("kind").as_str().expect("flaky needs a kind") {
                    "hang" => std::future::pending().await,
                    kind => fail(kind, format!("attempt {attempt} {kind}")),
                }
            }
            other => panic!("the fake has no agent '{other}'"),
        }
    }
}

impl Dispatcher for Fake {
    type Task = Task;

    async fn open(&self, step: &Step, input: Value) -> Result<Task, FlowError> {
        if step.agent == "nowhere" {
            return Err(FlowError::new(ErrorKind::Dispatch, "no agent 'nowhere'"));
        }
        self.opened.set(self.opened.get() + 1);
        Ok(Task { agent: step.agent.clone(), input })
    }

    async fn attempt(&self, task: &Task, attempt: u32) -> Result<Value, FlowError> {
        self.attempts.borrow_mut().push((task.agent.clone(), attempt, self.now_ms()));
        self.in_flight.set(self.in_flight.get() + 1);
        self.max_in_flight.set(self.max_in_flight.get().max(self.in_flight.get()));
        let mut guard = InFlight { fake: self, done: false };
        let outcome = self.behave(task, attempt).await;
        guard.done = true;
        self.finished.borrow_mut().push((task.agent.clone(), attempt, self.now_ms()));
        outcome
    }

    fn attempt_timed_out(&self, task: &Task, attempt: u32) {
        self.timed_out.borrow_mut().push((task.agent.clone(), attempt));
    }

    async fn close(&self, task: Task, outcome: &Result<Value, FlowError>) {
        let how = match outcome {
            Ok(_) => "ok".to_string(),
            Err(e) => e.kind.name().to_string(),
        };
        self.closed.borrow_mut().push((task.agent, how));
    }
}

// ---------------------------------------------------------------------------------------------
// Wire-shape builders and running.

fn assign(at: &str, value: J) -> J {
    json!({"kind": "assign", "at": p(at), "value": value})
}

fn add(lhs: J, rhs: J) -> J {
    json!({"op": "add", "lhs": lhs, "rhs": rhs})
}

/// A fanout over `items` bound at `$.item`, written at `$.res`, with extra fields merged in.
fn fanout(items: J, body: J, join: &str, extra: J) -> J {
    let mut node =
        json!({"kind": "fanout", "items": items, "bind": p("$.item"), "body": body, "join": join, "out": p("$.res")});
    node.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    node
}

fn externs() -> ExternTable {
    let mut table = ExternTable::new();
    table.insert("twice", |args: &[Value]| match args {
        [Value::Number(n)] => Ok(Value::float(n.as_f64() * 2.0)),
        _ => Err("twice takes one number".to_string()),
    });
    table
}

/// Parses `flow` from its JSON, runs it over `ctx` and returns the outcome and the final ctx.
async fn run(fake: &Fake, flow: J, ctx: J) -> (Result<(), FlowError>, Value) {
    let node: Node = serde_json::from_value(flow.clone()).unwrap_or_else(|e| panic!("{flow}: {e}"));
    let table = externs();
    let mut ctx = Value::from(ctx);
    let outcome = Evaluator::new(fake, &table).run(&node, &mut ctx).await;
    (outcome, ctx)
}

#[track_caller]
fn assert_error(outcome: Result<(), FlowError>, want: J) {
    let err = outcome.expect_err("the flow should fail");
    assert_json(&err.to_value(), want);
}

// ---------------------------------------------------------------------------------------------
// step

#[tokio::test]
async fn step_sends_its_input_and_writes_the_result_creating_objects() {
    let fake = Fake::new();
    let (outcome, ctx) = run(&fake, step("echo", p("$.x"), "$.y.a.b"), json!({"x": {"v": 1}, "y": null})).await;
    outcome.unwrap();
    assert_json(&ctx, json!({"x": {"v": 1}, "y": {"a": {"b": {"v": 1}}}}));
    assert_eq!(fake.attempt_numbers(), [1]);
    assert_eq!(*fake.closed.borrow(), [("echo".to_string(), "ok".to_string())]);
}

#[tokio::test]
async fn step_errors_carry_the_step_and_their_kind() {
    let fake = Fake::new();
    let (outcome, _) = run(&fake, step("echo", p("$.nope"), "$.y"), json!({})).await;
    assert_error(
        outcome,
        json!({"kind": "eval", "message": "path not found: $.nope", "step": "echo", "pointer": "/in"}),
    );
    assert_eq!(fake.opened.get(), 0, "a step whose input fails is never opened");

    let (outcome, ctx) = run(&fake, step("echo", lit(json!(1)), "$.s.x"), json!({"s": "text"})).await;
    assert_error(
        outcome,
        json!({"kind": "eval", "message": "cannot write $.s.x: $.s is string, not an object", "step": "echo", "pointer": "/out"}),
    );
    assert_json(&ctx, json!({"s": "text"}));

    let (outcome, ctx) = run(&fake, step("fail", lit(json!("no luck")), "$.y"), json!({})).await;
    assert_error(outcome, json!({"kind": "failed", "message": "no luck", "step": "fail"}));
    assert_json(&ctx, json!({}));

    let (outcome, _) = run(&fake, step("block", lit(json!({"why": "policy"})), "$.y"), json!({})).await;
    assert_error(
        outcome,
        json!({"kind": "blocked", "message": "blocked", "step": "block", "value": {"why": "policy"}}),
    );

    let (outcome, _) = run(&fake, step("nowhere", lit(json!(1)), "$.y"), json!({})).await;
    assert_error(outcome, json!({"kind": "dispatch", "message": "no agent 'nowhere'", "step": "nowhere"}));
    assert_eq!(fake.attempt_numbers(), [1, 1, 1], "echo (write failed), fail and block each ran once");
    let closed: Vec<String> = fake.closed.borrow().iter().map(|(a, how)| format!("{a}:{how}")).collect();
    assert_eq!(closed, ["echo:ok", "fail:failed", "block:blocked"]);
}

#[tokio::test(start_paused = true)]
async fn step_timeout_cancels_the_attempt() {
    let fake = Fake::new();
    let mut node = step("sleep", lit(json!({"ms": 500})), "$.y");
    node["timeout_ms"] = json!(100);
    let (outcome, ctx) = run(&fake, node.clone(), json!({})).await;
    assert_error(outcome, json!({"kind": "timeout", "message": "attempt 1 timed out after 100 ms", "step": "sleep"}));
    assert_json(&ctx, json!({}));
    assert_eq!(*fake.timed_out.borrow(), [("sleep".to_string(), 1)]);
    assert_eq!((fake.dropped.get(), fake.finished_count(), fake.now_ms()), (1, 0, 100));
    assert_eq!(*fake.closed.borrow(), [("sleep".to_string(), "timeout".to_string())]);

    node["timeout_ms"] = json!(600);
    let (outcome, ctx) = run(&fake, node, json!({})).await;
    outcome.unwrap();
    assert_json(&ctx, json!({"y": {"ms": 500}}));
    assert_eq!(fake.timed_out.borrow().len(), 1);
}

fn flaky(fails: u32, kind: &str, retry: J) -> J {
    let mut node = step("flaky", lit(json!({"fails": fails, "kind": kind})), "$.y");
    node["retry"] = retry;
    node
}

#[tokio::test(start_paused = true)]
async fn retry_makes_new_attempts_of_one_task_with_backoff() {
    let fake = Fake::new();
    let node = flaky(2, "failed", json!({"max_attempts": 5, "backoff_ms": 100, "backoff_factor": 2.0}));
    let (outcome, ctx) = run(&fake, node, json!({})).await;
    outcome.unwrap();
    assert_json(&ctx, json!({"y": {"attempt": 3}}));
    assert_eq!(fake.opened.get(), 1);
    assert_eq!(fake.attempt_numbers(), [1, 2, 3]);
    assert_eq!(fake.attempt_times(), [0, 100, 300]);
    assert_eq!(*fake.closed.borrow(), [("flaky".to_string(), "ok".to_string())]);
}

#[tokio::test(start_paused = true)]
async fn retry_gives_up_after_max_attempts_with_the_last_error() {
    let fake = Fake::new();
    let (outcome, _) = run(&fake, flaky(9, "failed", json!({"max_attempts": 3, "backoff_ms": 10})), json!({})).await;
    assert_error(outcome, json!({"kind": "failed", "message": "attempt 3 failed", "step": "flaky"}));
    assert_eq!(fake.attempt_numbers(), [1, 2, 3]);
    assert_eq!(fake.attempt_times(), [0, 10, 20], "the default factor is 1");
}

#[tokio::test(start_paused = true)]
async fn retry_filters_on_the_error_kind() {
    // Blocked is a verdict: not retried unless `on` asks for it.
    let fake = Fake::new();
    let (outcome, _) = run(&fake, flaky(1, "blocked", json!({"max_attempts": 3})), json!({})).await;
    assert_eq!(outcome.unwrap_err().kind, ErrorKind::Blocked);
    assert_eq!(fake.attempt_numbers(), [1]);

    let fake = Fake::new();
    let (outcome, ctx) =
        run(&fake, flaky(1, "blocked", json!({"max_attempts": 3, "on": ["blocked"]})), json!({})).await;
    outcome.unwrap();
    assert_json(&ctx, json!({"y": {"attempt": 2}}));

    let fake = Fake::new();
    let (outcome, _) = run(&fake, flaky(1, "failed", json!({"max_attempts": 3, "on": ["timeout"]})), json!({})).await;
    assert_eq!(outcome.unwrap_err().kind, ErrorKind::Failed);
    assert_eq!(fake.attempt_numbers(), [1]);

    for kind in ["eval", "dispatch", "cancelled"] {
        let fake = Fake::new();
        let all = json!({"max_attempts": 3, "on": ["failed", "blocked", "timeout"]});
        let (outcome, _) = run(&fake, flaky(1, kind, all), json!({})).await;
        assert_eq!(outcome.unwrap_err().kind.name(), kind);
        assert_eq!(fake.attempt_numbers(), [1], "{kind} is never retried");
    }
}

#[tokio::test(start_paused = true)]
async fn retry_covers_timeouts_by_default_and_not_when_left_out() {
    let fake = Fake::new();
    let mut node = flaky(1, "hang", json!({"max_attempts": 3, "backoff_ms": 50}));
    node["timeout_ms"] = json!(100);
    let (outcome, ctx) = run(&fake, node.clone(), json!({})).await;
    outcome.unwrap();
    assert_json(&ctx, json!({"y": {"attempt": 2}}));
    assert_eq!(*fake.timed_out.borrow(), [("flaky".to_string(), 1)]);
    assert_eq!(fake.attempt_times(), [0, 150]);

    let fake = Fake::new();
    node["retry"]["on"] = json!(["failed"]);
    let (outcome, _) = run(&fake, node, json!({})).await;
    assert_error(outcome, json!({"kind": "timeout", "message": "attempt 1 timed out after 100 ms", "step": "flaky"}));
    assert_eq!(fake.attempt_numbers(), [1]);
}

// ---------------------------------------------------------------------------------------------
// seq, branch, loop, assign

#[tokio::test]
async fn seq_runs_in_order_and_stops_at_the_first_error() {
    let fake = Fake::new();
    let flow = seq(vec![
        step("echo", lit(json!(1)), "$.a"),
        step("echo", add(p("$.a"), lit(json!(1))), "$.b"),
        step("fail", lit(json!("second fails")), "$.c"),
        step("echo", lit(json!(3)), "$.d"),
    ]);
    let (outcome, ctx) = run(&fake, flow, json!({})).await;
    assert_error(outcome, json!({"kind": "failed", "message": "second fails", "step": "fail"}));
    assert_json(&ctx, json!({"a": 1, "b": 2}));
    let agents: Vec<String> = fake.attempts.borrow().iter().map(|(a, ..)| a.clone()).collect();
    assert_eq!(agents, ["echo", "echo", "fail"]);

    let (outcome, ctx) = run(&fake, seq(vec![]), json!({"k": 1})).await;
    outcome.unwrap();
    assert_json(&ctx, json!({"k": 1}));
}

fn branch(cond: J) -> J {
    json!({"kind": "branch", "cond": cond, "then": assign("$.took", lit(json!("then"))), "else": assign("$.took", lit(json!("else")))})
}

#[tokio::test]
async fn branch_takes_a_boolean_and_nothing_else() {
    let fake = Fake::new();
    let eq_pass = json!({"op": "eq", "lhs": p("$.v"), "rhs": lit(json!("pass"))});
    let (outcome, ctx) = run(&fake, branch(eq_pass.clone()), json!({"v": "pass"})).await;
    outcome.unwrap();
    assert_json(&ctx, json!({"v": "pass", "took": "then"}));
    let (outcome, ctx) = run(&fake, branch(eq_pass), json!({"v": null})).await;
    outcome.unwrap();
    assert_json(&ctx, json!({"v": null, "took": "else"}));

    for (cond, message) in [
        (lit(json!(1)), "branch cond must be a boolean, got number: 1"),
        (lit(json!(null)), "branch cond must be a boolean, got null: null"),
        (lit(json!("true")), "branch cond must be a boolean, got string: \"true\""),
        (p("$.gone"), "path not found: $.gone"),
    ] {
        let (outcome, ctx) = run(&fake, branch(cond), json!({})).await;
        let err = outcome.unwrap_err();
        assert_eq!((err.kind, err.message.as_str(), err.step), (ErrorKind::Eval, message, None));
        assert_json(&ctx, json!({}));
    }
}

#[tokio::test]
async fn an_evaluation_error_names_the_node_and_field_it_arose_in() {
    let fake = Fake::new();
    let gt = json!({"op": "gt", "lhs": p("$.score"), "rhs": lit(json!("high"))});
    let flow = seq(vec![
        assign("$.a", lit(json!(1))),
        step("echo", p("$"), "$.echoed"),
        json!({"kind": "try", "body": branch(gt), "catch": seq(vec![])}),
        branch(json!({"op": "eq", "lhs": p("$.reslt"), "rhs": lit(json!(1))})),
    ]);
    let (outcome, ctx) = run(&fake, flow.clone(), json!({"score": 3, "result": 1})).await;
    let err = outcome.unwrap_err();
    assert_eq!(err.message, "path not found: $.reslt (did you mean $.result?)");
    assert_eq!(err.pointer.as_deref(), Some("/children/3/cond"));
    assert_eq!(err.to_string(), "eval at /children/3/cond: path not found: $.reslt (did you mean $.result?)");
    assert_json(&ctx.get("a").cloned().unwrap(), json!(1));

    // Without the try, the type error in the branch ends the flow, named where it sits.
    let mut flow = flow;
    flow["children"][2] = branch(json!({"op": "gt", "lhs": p("$.score"), "rhs": lit(json!("high"))}));
    let (outcome, _) = run(&fake, flow, json!({"score": 3})).await;
    assert_error(
        outcome,
        json!({"kind": "eval", "message": "type error in gt: cannot compare number with string", "pointer": "/children/2/cond"}),
    );

    // Inside a loop and a fanout lane, the pointer runs through `body`.
    let lane_flow = fanout(
        lit(json!([1])),
        count_loop(json!({"op": "lt", "lhs": p("$.item"), "rhs": lit(json!("x"))}), 2),
        "all",
        json!({}),
    );
    let (outcome, _) = run(&fake, lane_flow, json!({})).await;
    assert_eq!(outcome.unwrap_err().pointer.as_deref(), Some("/body/cond"));
}

fn count_loop(cond: J, max: u32) -> J {
    json!({"kind": "loop", "counter": p("$.i"), "cond": cond, "max": max,
           "body": assign("$.runs", add(p("$.runs"), lit(json!(1))))})
}

#[tokio::test]
async fn loop_counts_iterations_and_stops_at_cond_or_max() {
    let fake = Fake::new();
    let below = |n: i64| json!({"op": "lt", "lhs": p("$.i"), "rhs": lit(json!(n))});
    for (cond, max, i, runs) in [
        (lit(json!(false)), 5, 0, 0),
        (lit(json!(null)), 5, 0, 0),
        (lit(json!(0)), 3, 3, 3), // 0 is truthy
        (below(4), 10, 4, 4),     // the counter is visible to cond
        (below(100), 2, 2, 2),
        (p("$.gone"), 0, 0, 0), // max 0: cond is never evaluated
    ] {
        let (outcome, ctx) = run(&fake, count_loop(cond.clone(), max), json!({"i": "stale", "runs": 0})).await;
        outcome.unwrap_or_else(|e| panic!("{cond}: {e}"));
        assert_json(&ctx, json!({"i": i, "runs": runs}));
    }

    let (outcome, ctx) = run(&fake, count_loop(p("$.gone"), 3), json!({"runs": 0})).await;
    assert_eq!(outcome.unwrap_err().message, "path not found: $.gone");
    assert_json(&ctx, json!({"i": 0, "runs": 0}));

    // A body error ends the loop; the counter holds the iterations completed before it.
    let fail_on_third = json!({"kind": "branch", "cond": {"op": "lt", "lhs": p("$.runs"), "rhs": lit(json!(3))},
        "then": seq(vec![]), "else": step("fail", lit(json!("third run")), "$.x")});
    let failing_body = json!({"kind": "loop", "counter": p("$.i"), "cond": lit(json!(true)), "max": 5,
        "body": seq(vec![assign("$.runs", add(p("$.runs"), lit(json!(1)))), fail_on_third])});
    let (outcome, ctx) = run(&fake, failing_body, json!({"runs": 0})).await;
    assert_error(outcome, json!({"kind": "failed", "message": "third run", "step": "fail"}));
    assert_json(&ctx, json!({"i": 2, "runs": 3}));

    let (outcome, _) = run(
        &fake,
        json!({"kind": "loop", "counter": p("$.s.n"), "cond": lit(json!(true)), "max": 1,
        "body": seq(vec![])}),
        json!({"s": 1}),
    )
    .await;
    assert_eq!(outcome.unwrap_err().message, "cannot write $.s.n: $.s is number, not an object");
}

#[tokio::test]
async fn assign_writes_an_expression_without_dispatch() {
    let fake = Fake::new();
    let value = json!({"op": "call_extern", "ref": "twice", "args": [p("$.n")]});
    let (outcome, ctx) = run(&fake, assign("$.out.doubled", value), json!({"n": 4})).await;
    outcome.unwrap();
    assert_json(&ctx, json!({"n": 4, "out": {"doubled": 8.0}}));
    assert_eq!(fake.opened.get(), 0);

    let (outcome, _) = run(&fake, assign("$.n.x", lit(json!(1))), json!({"n": 4})).await;
    assert_error(
        outcome,
        json!({"kind": "eval", "message": "cannot write $.n.x: $.n is number, not an object", "pointer": "/at"}),
    );
    let (outcome, _) = run(&fake, assign("$.list[3]", lit(json!(1))), json!({"list": [0]})).await;
    assert_error(
        outcome,
        json!({"kind": "eval", "message": "cannot write $.list[3]: index 3 is out of bounds for an array of length 1", "pointer": "/at"}),
    );
    let bad_call = json!({"op": "call_extern", "ref": "twice", "args": [lit(json!("x"))]});
    let (outcome, _) = run(&fake, assign("$.y", bad_call), json!({})).await;
    assert_error(
        outcome,
        json!({"kind": "eval", "message": "extern 'twice': twice takes one number", "pointer": "/value"}),
    );
}

// ---------------------------------------------------------------------------------------------
// try

fn try_node(body: J, catch: J, err_at: Option<&str>) -> J {
    let mut node = json!({"kind": "try", "body": body, "catch": catch});
    if let Some(at) = err_at {
        node["err_at"] = p(at);
    }
    node
}

#[tokio::test]
async fn try_rolls_back_the_body_records_the_error_and_runs_catch() {
    let fake = Fake::new();
    let body = seq(vec![
        assign("$.keep", lit(json!("overwritten"))),
        step("echo", lit(json!(1)), "$.written"),
        step("block", lit(json!({"reason": "nope"})), "$.never"),
    ]);
    let catch = assign("$.caught", p("$.err.kind"));
    let (outcome, ctx) = run(&fake, try_node(body, catch, Some("$.err")), json!({"keep": "original"})).await;
    outcome.unwrap();
    assert_json(
        &ctx,
        json!({
            "keep": "original",
            "err": {"kind": "blocked", "message": "blocked", "step": "block", "value": {"reason": "nope"}},
            "caught": "blocked"
        }),
    );
}

#[tokio::test]
async fn try_without_an_error_skips_catch_and_catch_errors_propagate() {
    let fake = Fake::new();
    let (outcome, ctx) = run(
        &fake,
        try_node(assign("$.a", lit(json!(1))), assign("$.caught", lit(json!(true))), Some("$.err")),
        json!({}),
    )
    .await;
    outcome.unwrap();
    assert_json(&ctx, json!({"a": 1}));

    let body = seq(vec![assign("$.a", lit(json!(1))), assign("$.b", p("$.missing"))]);
    let catch = step("fail", lit(json!("catch failed too")), "$.x");
    let (outcome, ctx) = run(&fake, try_node(body.clone(), catch, Some("$.err")), json!({})).await;
    assert_error(outcome, json!({"kind": "failed", "message": "catch failed too", "step": "fail"}));
    assert_json(
        &ctx,
        json!({"err": {"kind": "eval", "message": "path not found: $.missing", "pointer": "/body/children/1/value"}}),
    );

    let (outcome, ctx) = run(&fake, try_node(body, seq(vec![]), None), json!({"z": 0})).await;
    outcome.unwrap();
    assert_json(&ctx, json!({"z": 0}));
}

// ---------------------------------------------------------------------------------------------
// fanout

#[tokio::test]
async fn fanout_lanes_are_isolated_from_each_other_and_the_parent() {
    let fake = Fake::new();
    let body = seq(vec![
        // A lane that could see another's writes would find $.mark set.
        json!({"kind": "branch", "cond": {"op": "exists", "arg": p("$.mark")},
               "then": assign("$.dirty", lit(json!(true))), "else": seq(vec![])}),
        assign("$.mark", p("$.item")),
        assign("$.shared", p("$.item")),
        step("echo", p("$.item"), "$.echoed"),
    ]);
    let (outcome, ctx) =
        run(&fake, fanout(p("$.items"), body, "all", json!({})), json!({"items": [1, 2], "shared": "parent"})).await;
    outcome.unwrap();
    let lane = |i: i64| json!({"echoed": i, "item": i, "items": [1, 2], "mark": i, "shared": i});
    assert_json(&ctx, json!({"items": [1, 2], "shared": "parent", "res": [lane(1), lane(2)]}));
}

#[tokio::test]
async fn fanout_collect_takes_one_value_per_lane_and_a_missing_one_fails() {
    let fake = Fake::new();
    let body = step("echo", add(p("$.item"), lit(json!(10))), "$.out");
    let (outcome, ctx) =
        run(&fake, fanout(lit(json!([1, 2, 3])), body.clone(), "all", json!({"collect": p("$.out")})), json!({})).await;
    outcome.unwrap();
    assert_json(&ctx, json!({"res": [11, 12, 13]}));

    let (outcome, ctx) =
        run(&fake, fanout(lit(json!([1])), body, "all", json!({"collect": p("$.nope")})), json!({})).await;
    assert_error(outcome, json!({"kind": "eval", "message": "path not found: $.nope", "pointer": "/collect"}));
    assert_json(&ctx, json!({}));
}

#[tokio::test]
async fn fanout_items_must_be_an_array_and_bind_must_be_writable() {
    let fake = Fake::new();
    let (outcome, _) = run(&fake, fanout(lit(json!({"a": 1})), seq(vec![]), "all", json!({})), json!({})).await;
    assert_error(
        outcome,
        json!({"kind": "eval", "message": "fanout items must be an array, got object", "value": {"a": 1}, "pointer": "/items"}),
    );
    let mut node = fanout(lit(json!([1])), seq(vec![]), "all", json!({}));
    node["bind"] = p("$.s.item");
    let (outcome, _) = run(&fake, node, json!({"s": "x"})).await;
    assert_error(
        outcome,
        json!({"kind": "eval", "message": "cannot write $.s.item: $.s is string, not an object", "pointer": "/bind"}),
    );
}

fn sleeper_body() -> J {
    step("sleep", p("$.item"), "$.out")
}

fn sleepers(items: J, join: &str, extra: J) -> J {
    let mut extra = extra;
    extra["collect"] = p("$.out.ms");
    fanout(lit(items), sleeper_body(), join, extra)
}

#[tokio::test(start_paused = true)]
async fn fanout_all_keeps_item_order_and_empty_gives_an_empty_array() {
    let fake = Fake::new();
    let (outcome, ctx) =
        run(&fake, sleepers(json!([{"ms": 30}, {"ms": 10}, {"ms": 20}]), "all", json!({})), json!({})).await;
    outcome.unwrap();
    assert_json(&ctx, json!({"res": [30, 10, 20]}));
    let finish_times: Vec<u64> = fake.finished.borrow().iter().map(|(.., t)| *t).collect();
    assert_eq!(finish_times, [10, 20, 30], "lanes overlapped and finished out of item order");

    for join in ["all", "all_settled"] {
        let (outcome, ctx) = run(&fake, sleepers(json!([]), join, json!({})), json!({})).await;
        outcome.unwrap();
        assert_json(&ctx, json!({"res": []}));
    }
}

#[tokio::test(start_paused = true)]
async fn fanout_all_fails_at_the_first_error_and_cancels_the_rest() {
    let fake = Fake::new();
    let items = json!([{"ms": 1000}, {"ms": 50, "fail": "failed"}, {"ms": 1000}]);
    let (outcome, ctx) = run(&fake, sleepers(items, "all", json!({})), json!({})).await;
    assert_error(outcome, json!({"kind": "failed", "message": "failed after 50 ms", "step": "sleep"}));
    assert_json(&ctx, json!({}));
    assert_eq!((fake.now_ms(), fake.finished_count(), fake.dropped.get()), (50, 1, 2));
    sleep(Duration::from_secs(5)).await;
    assert_eq!(fake.finished_count(), 1, "a cancelled lane never finishes");
}

#[tokio::test(start_paused = true)]
async fn fanout_any_takes_the_first_success() {
    let fake = Fake::new();
    let items = json!([{"ms": 10, "fail": "failed"}, {"ms": 100, "fail": "failed"}, {"ms": 50}, {"ms": 200}]);
    let (outcome, ctx) = run(&fake, sleepers(items, "any", json!({})), json!({})).await;
    outcome.unwrap();
    assert_json(&ctx, json!({"res": 50}));
    assert_eq!((fake.now_ms(), fake.finished_count(), fake.dropped.get()), (50, 2, 2));
    sleep(Duration::from_secs(5)).await;
    assert_eq!(fake.finished_count(), 2);
}

#[tokio::test(start_paused = true)]
async fn fanout_any_with_every_lane_failed_gives_the_last_error() {
    let fake = Fake::new();
    let items = json!([{"ms": 30, "fail": "failed"}, {"ms": 10, "fail": "blocked"}, {"ms": 20, "fail": "timeout"}]);
    let (outcome, _) = run(&fake, sleepers(items, "any", json!({})), json!({})).await;
    assert_error(outcome, json!({"kind": "failed", "message": "failed after 30 ms", "step": "sleep"}));
    assert_eq!(fake.now_ms(), 30);

    let (outcome, _) = run(&fake, sleepers(json!([]), "any", json!({})), json!({})).await;
    assert_error(outcome, json!({"kind": "eval", "message": "fanout join any needs at least one item", "pointer": ""}));
}

#[tokio::test(start_paused = true)]
async fn fanout_race_takes_the_first_to_settle_even_an_error() {
    let fake = Fake::new();
    let (outcome, ctx) =
        run(&fake, sleepers(json!([{"ms": 20}, {"ms": 10}, {"ms": 30}]), "race", json!({})), json!({})).await;
    outcome.unwrap();
    assert_json(&ctx, json!({"res": 10}));
    assert_eq!((fake.now_ms(), fake.finished_count(), fake.dropped.get()), (10, 1, 2));

    let fake = Fake::new();
    let items = json!([{"ms": 20}, {"ms": 10, "fail": "blocked"}]);
    let (outcome, ctx) = run(&fake, sleepers(items, "race", json!({})), json!({})).await;
    assert_error(outcome, json!({"kind": "blocked", "message": "blocked after 10 ms", "step": "sleep"}));
    assert_json(&ctx, json!({}));
    assert_eq!((fake.now_ms(), fake.dropped.get()), (10, 1));
    sleep(Duration::from_secs(5)).await;
    assert_eq!(fake.finished_count(), 1);

    let (outcome, _) = run(&fake, sleepers(json!([]), "race", json!({})), json!({})).await;
    assert_error(
        outcome,
        json!({"kind": "eval", "message": "fanout join race needs at least one item", "pointer": ""}),
    );
}

#[tokio::test(start_paused = true)]
async fn fanout_all_settled_reports_every_lane_in_item_order() {
    let fake = Fake::new();
    let items = json!([{"ms": 30}, {"ms": 10, "fail": "failed"}, {"ms": 20}]);
    let (outcome, ctx) = run(&fake, sleepers(items, "all_settled", json!({})), json!({})).await;
    outcome.unwrap();
    assert_json(
        &ctx,
        json!({"res": [
            {"status": "fulfilled", "value": 30},
            {"status": "rejected", "reason": {"kind": "failed", "message": "failed after 10 ms", "step": "sleep"}},
            {"status": "fulfilled", "value": 20}
        ]}),
    );
    assert_eq!(fake.now_ms(), 30);
}

#[tokio::test(start_paused = true)]
async fn fanout_max_concurrency_caps_lanes_in_flight() {
    let items: Vec<J> = (0..10).map(|_| json!({"ms": 100})).collect();
    for (max, in_flight, elapsed) in
        [(json!(3), 3, 400), (json!(1), 1, 1000), (json!(0), 10, 100), (json!(20), 10, 100)]
    {
        let fake = Fake::new();
        let node = sleepers(json!(items), "all", json!({"max_concurrency": max}));
        let (outcome, ctx) = run(&fake, node, json!({})).await;
        outcome.unwrap();
        assert_json(&ctx, json!({"res": vec![100; 10]}));
        assert_eq!((fake.max_in_flight.get(), fake.now_ms()), (in_flight, elapsed), "max_concurrency {max}");
    }
}

#[tokio::test(start_paused = true)]
async fn fanout_lanes_overlap_when_unbounded() {
    let fake = Fake::new();
    let items: Vec<J> = (0..100).map(|_| json!({"ms": 1000})).collect();
    let (outcome, ctx) = run(&fake, sleepers(json!(items), "all", json!({})), json!({})).await;
    outcome.unwrap();
    assert_eq!(ctx.get("res").and_then(Value::as_array).map(<[Value]>::len), Some(100));
    assert_eq!((fake.max_in_flight.get(), fake.now_ms()), (100, 1000));
}

#[tokio::test]
async fn fanouts_nest() {
    let fake = Fake::new();
    let mut inner = fanout(p("$.item"), step("echo", p("$.item"), "$.out"), "all", json!({"collect": p("$.out")}));
    inner["out"] = p("$.inner");
    let outer = fanout(lit(json!([[1, 2], [3]])), inner, "all", json!({"collect": p("$.inner")}));
    let (outcome, ctx) = run(&fake, outer, json!({})).await;
    outcome.unwrap();
    assert_json(&ctx, json!({"res": [[1, 2], [3]]}));
}
