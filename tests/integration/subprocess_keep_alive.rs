//! Keep-alive agents: long-lived children answering one request per line. Every answer carries
//! the child's pid, which shows which child served it.

use std::io::Write;
use std::rc::Rc;

use crate::util::flow::{self, lit, seq, try_catch};
use crate::util::procs::*;
use luaswarm::blueprint::compile::CompiledBlueprint;
use luaswarm::engine::RunStatus;
use serde_json::{Value as J, json};

/// A child that answers each request with `{pid, n, request}` (n counts its requests), each
/// event carrying the request's id back. Inputs can ask it to misbehave: `die` exits
/// mid-request, `hang` waits on a grandchild forever, `garbage` answers with a line that is no
/// event, `pair` waits until two children hold a request at once, `chatty` writes a progress
/// event right after its final, `late` writes one once the test says so through the FIFO `go`,
/// `stale` answers with the id of its previous request, `extra` writes a second final a moment
/// after the first.
const CHILD: &str = r#"
echo "$$" > "$DIR/child.$$.pid"
n=0
prev=0
while IFS= read -r line; do
  n=$((n+1))
  id=${line#*\"id\":}
  id=${id%%,*}
  case "$line" in
    *'"die":true'*) echo "dying on request $n" >&2; exit 7 ;;
    *'"hang":true'*) "$DIR/sleeper" 1000 & echo $! > "$DIR/hang.pid"; wait ;;
    *'"garbage":true'*) echo "not an event"; continue ;;
    *'"stale":true'*) id=$prev ;;
    *'"pair":true'*)
      touch "$DIR/arrived.$$"
      while [ "$(ls "$DIR" | grep -c '^arrived\.')" -lt 2 ]; do sleep 0.01; done ;;
  esac
  late=''
  case "$line" in *'"chatty":true'*) late='{"type":"progress","stage":"late","id":'$id'}\n' ;; esac
  printf '{"type":"progress","stage":"got","note":"%s","id":%s}\n' "$n" "$id"
  # The final and anything after it leave in one write.
  final='{"type":"final","content":{"kind":"inline","value":{"pid":%s,"n":%s,"request":%s}},"ok":true,"id":%s}\n'
  printf "$final$late" "$$" "$n" "$line" "$id"
  case "$line" in *'"extra":true'*)
    sleep 0.05; printf "$final" "$$" "$n" '{"extra":true}' "$id" ;;
  esac
  case "$line" in *'"late":true'*)
    read go < "$DIR/go"; printf '{"type":"progress","stage":"late","id":%s}\n' "$id"; touch "$DIR/late-written" ;;
  esac
  prev=$id
done
# Only a kill ends it: the end of stdin does not.
exec "$DIR/sleeper" 1000
"#;

/// A blueprint of `flow` over a keep-alive agent `k` running [`CHILD`], with `extra` spec
/// fields. Its pool lives as long as the blueprint.
fn pool(rig: &Rig, scratch: &Scratch, extra: J, flow: J) -> Rc<CompiledBlueprint> {
    let program = scratch.script("child.sh", CHILD);
    let spec = with(json!({"program": program, "keep_alive": true}), extra);
    rig.compile(json!([{"name": "k", "spec": spec}]), flow)
}

/// Two `pair` requests at once, their answers collected at `$.all`.
fn pair_fanout() -> J {
    let body = flow::step("k", lit(json!({"pair": true})), "$.r");
    json!({"kind": "fanout", "items": {"op": "lit", "value": [1, 2]}, "bind": {"op": "path", "at": "$.item"},
        "body": body, "join": "all", "out": {"op": "path", "at": "$.all"}, "collect": {"op": "path", "at": "$.r"}})
}

/// The pids of the children that answered `$.all`.
fn pids(ctx: &J) -> Vec<u32> {
    ctx["all"].as_array().unwrap().iter().map(|a| a["pid"].as_u64().unwrap() as u32).collect()
}

/// A field of each worker output, in order.
fn output_fields(events: &[luaswarm::engine::Event], field: &str) -> Vec<J> {
    outputs(events).iter().map(|o| o[field].clone()).collect()
}

#[tokio::test]
async fn one_child_serves_request_after_request() {
    let scratch = Scratch::new("reuse");
    within(async {
        let rig = Rig::new();
        let flow = seq((1..=3).map(|i| flow::step("k", lit(json!({"i": i})), &format!("$.r{i}"))).collect());
        let compiled = pool(&rig, &scratch, json!({}), flow);
        let (outcome, events) = rig.run(&compiled).await;
        let ctx = ctx_json(&outcome);
        for i in 1..=3 {
            let answer = &ctx[format!("r{i}")];
            assert_eq!(answer["pid"], ctx["r1"]["pid"], "the same child served every request");
            assert_eq!(answer["n"], i, "its request counter goes on");
            let request = &answer["request"];
            assert_eq!(request["input"], json!({"i": i}));
            assert_eq!((&request["agent"], &request["attempt"]), (&json!("k"), &json!(1)));
            assert!(request["task_id"].as_str().unwrap().starts_with(outcome.run_id.as_ref()));
            // The child echoed its token back; the engine keeps only its fingerprint.
            assert!(request["token"].as_str().unwrap().starts_with("[token "), "{request}");
            let keys: Vec<&String> = request.as_object().unwrap().keys().collect();
            assert_eq!(keys, ["agent", "attempt", "id", "input", "task_id", "token"]);
        }
        assert_eq!(output_fields(&events, "note"), ["1", "2", "3"], "progress events reach the engine");
        drop(compiled);
        scratch.assert_no_survivors().await;
    })
    .await;
}

#[tokio::test]
async fn a_pool_of_two_serves_two_requests_at_once() {
    let scratch = Scratch::new("pool");
    within(async {
        let rig = Rig::new();
        // Each child holds its request until two have arrived: one child would time out.
        let compiled = pool(&rig, &scratch, json!({"pool_size": 2, "timeout_ms": 15000}), pair_fanout());
        let ctx = ctx_json(&rig.run(&compiled).await.0);
        let pids = pids(&ctx);
        assert_ne!(pids[0], pids[1], "two children served: {ctx}");
        drop(compiled);
        scratch.assert_no_survivors().await;
    })
    .await;
}

#[tokio::test]
async fn a_child_that_dies_mid_request_is_replaced() {
    let scratch = Scratch::new("die");
    within(async {
        let rig = Rig::new();
        let flow = seq(vec![flow::step("k", lit(json!({"first": true})), "$.a"), flow::step("k", lit(json!({"die": true})), "$.b")]);
        let compiled = pool(&rig, &scratch, json!({}), flow);
        let (outcome, _) = rig.run(&compiled).await;
        let first = outcome.ctx.get("a").unwrap().get("pid").unwrap().to_json();
        let program = format!("{}/child.sh", scratch.marker());
        assert_eq!(
            failure(&outcome),
            format!(
                "keep-alive child {program} (pid {first}) exited with code 7 before its final event; stderr: dying on request 2"
            )
        );
        // The next request, on the same pool, gets a new child.
        let (outcome, _) = rig.run(&compiled).await;
        let answer = outcome.ctx.get("a").unwrap();
        assert_ne!(answer.get("pid").unwrap().to_json(), first, "a new child answered");
        assert_eq!(answer.get("n").unwrap().to_json(), "1");
        drop(compiled);
        scratch.assert_no_survivors().await;
    })
    .await;
}

#[tokio::test]
async fn a_timed_out_request_kills_its_child_and_the_next_gets_a_new_one() {
    let scratch = Scratch::new("ka-timeout");
    within(async {
        let rig = Rig::new();
        let flow = seq(vec![
            try_catch(flow::step("k", lit(json!({"hang": true})), "$.a"), "$.err"),
            flow::step("k", lit(json!({})), "$.b"),
        ]);
        let compiled = pool(&rig, &scratch, json!({"timeout_ms": 1000}), flow);
        let ctx = ctx_json(&rig.run(&compiled).await.0);
        let message = ctx["err"]["message"].as_str().unwrap();
        assert!(message.starts_with("timed out after 1000 ms; killed the keep-alive child "), "{message}");
        assert_eq!(ctx["err"]["kind"], "timeout");
        let child: u32 = message.split("(pid ").nth(1).unwrap().split(')').next().unwrap().parse().unwrap();
        scratch.assert_killed(child, scratch.pid("hang.pid")).await;
        assert_ne!(ctx["b"]["pid"], child, "a new child took the next request");
        assert_eq!(ctx["b"]["n"], 1);
        drop(compiled);
        scratch.assert_no_survivors().await;
    })
    .await;
}

#[tokio::test]
async fn cancelling_a_request_kills_its_child() {
    let scratch = Scratch::new("ka-cancel");
    within(async {
        let rig = Rig::new();
        let compiled = pool(&rig, &scratch, json!({}), flow::step("k", lit(json!({"hang": true})), "$.a"));
        let (run, mut tap) = rig.start(&compiled, json!({}));
        // The hang's pid file is the last thing the child writes before it waits.
        let hang = scratch.path().join("hang.pid");
        eventually("the request reaching the child", || {
            std::fs::read_to_string(&hang).is_ok_and(|t| t.ends_with('\n'))
        })
        .await;
        let child = std::fs::read_dir(scratch.path())
            .unwrap()
            .filter_map(|e| e.unwrap().file_name().into_string().ok())
            .find_map(|name| name.strip_prefix("child.")?.strip_suffix(".pid")?.parse::<u32>().ok())
            .unwrap();
        run.cancel();
        assert_eq!(run.wait().await.status, RunStatus::Cancelled);
        while tap.recv().await.is_some() {}
        scratch.assert_killed(child, scratch.pid("hang.pid")).await;
        drop((run, compiled));
        scratch.assert_no_survivors().await;
    })
    .await;
}

#[tokio::test]
async fn garbage_in_an_answer_fails_the_request_and_replaces_the_child() {
    let scratch = Scratch::new("ka-garbage");
    within(async {
        let rig = Rig::new();
        let flow = seq(vec![
            flow::step("k", lit(json!({"first": true})), "$.a"),
            try_catch(flow::step("k", lit(json!({"garbage": true})), "$.b"), "$.err"),
            flow::step("k", lit(json!({"chatty": true})), "$.c"),
            flow::step("k", lit(json!({"after": true})), "$.d"),
        ]);
        let compiled = pool(&rig, &scratch, json!({}), flow);
        let ctx = ctx_json(&rig.run(&compiled).await.0);
        let message = ctx["err"]["message"].as_str().unwrap();
        let want = r#"stdout line 3: not JSON (expected ident at line 1 column 2): "not an event""#;
        assert!(message.starts_with(want), "{message}");
        assert_ne!(ctx["a"]["pid"], ctx["c"]["pid"], "the child that wrote garbage was replaced");
        assert_eq!(ctx["c"]["n"], 1);
        // A child that writes past its final is out of step, so it is replaced too.
        assert_ne!(ctx["c"]["pid"], ctx["d"]["pid"], "the chatty child was replaced");
        drop(compiled);
        scratch.assert_no_survivors().await;
    })
    .await;
}

#[tokio::test]
async fn dropping_the_blueprint_kills_the_children() {
    let scratch = Scratch::new("ka-drop");
    within(async {
        let rig = Rig::new();
        let compiled = pool(&rig, &scratch, json!({"pool_size": 2}), pair_fanout());
        let pids = pids(&ctx_json(&rig.run(&compiled).await.0));
        assert!(pids.iter().all(|&p| scratch.running(p)), "idle children wait for the next request");
        // The children ignore the end of stdin (see CHILD): only the kill can end them.
        drop(compiled);
        for pid in pids {
            eventually("an idle child being killed and reaped", || scratch.gone(pid)).await;
        }
        scratch.assert_no_survivors().await;
    })
    .await;
}

#[tokio::test]
async fn a_child_that_writes_between_requests_is_replaced() {
    let scratch = Scratch::new("ka-late");
    within(async {
        let rig = Rig::new();
        let mut go = fifo(&scratch, "go");
        let compiled = pool(&rig, &scratch, json!({}), flow::step("k", lit(json!({"late": true})), "$.a"));
        let first = ctx_json(&rig.run(&compiled).await.0)["a"]["pid"].clone();
        // Now idle, the child writes once more; the pool must notice before reusing it.
        go.write_all(b"go\n").unwrap();
        let written = scratch.path().join("late-written");
        eventually("the child writing between requests", || written.exists()).await;
        let (outcome, events) = rig.run(&compiled).await;
        assert_ne!(ctx_json(&outcome)["a"]["pid"], first, "a new child answered");
        assert_eq!(output_fields(&events, "stage"), ["got"], "the stale progress event went nowhere");
        // The new child waits on the FIFO after answering too; let it go.
        go.write_all(b"go\n").unwrap();
        drop(compiled);
        scratch.assert_no_survivors().await;
    })
    .await;
}

#[tokio::test]
async fn an_answer_for_another_request_is_refused_and_its_child_replaced() {
    let scratch = Scratch::new("ka-stale");
    within(async {
        let rig = Rig::new();
        let flow = seq(vec![
            flow::step("k", lit(json!({"first": true})), "$.a"),
            try_catch(flow::step("k", lit(json!({"stale": true})), "$.b"), "$.err"),
            flow::step("k", lit(json!({"after": true})), "$.c"),
        ]);
        let compiled = pool(&rig, &scratch, json!({}), flow);
        let ctx = ctx_json(&rig.run(&compiled).await.0);
        assert_eq!(ctx["b"], J::Null, "the answer to the first request was not taken as the second's");
        let message = ctx["err"]["message"].as_str().unwrap();
        let first_id = &ctx["a"]["request"]["id"];
        let want = format!(": the keep-alive child answered out of turn: request id {first_id}, expected ");
        assert!(message.starts_with("stdout line ") && message.contains(&want), "{message}");
        assert_ne!(ctx["a"]["pid"], ctx["c"]["pid"], "the child that answered out of turn was replaced");
        assert_eq!((&ctx["c"]["n"], &ctx["c"]["request"]["input"]), (&json!(1), &json!({"after": true})));
        drop(compiled);
        scratch.assert_no_survivors().await;
    })
    .await;
}

/// A child that writes a second `final` a moment after its answer: whether the pool sees it
/// before the next request or during it, the next step never receives the earlier answer.
#[tokio::test]
async fn an_extra_final_never_answers_the_next_request() {
    let scratch = Scratch::new("ka-extra");
    within(async {
        let rig = Rig::new();
        let mut flow = Vec::new();
        for i in 0..6 {
            flow.push(flow::step("k", lit(json!({"extra": true, "i": i})), &format!("$.x{i}")));
            flow.push(try_catch(flow::step("k", lit(json!({"next": i})), &format!("$.n{i}")), &format!("$.e{i}")));
        }
        let compiled = pool(&rig, &scratch, json!({}), seq(flow));
        let ctx = ctx_json(&rig.run(&compiled).await.0);
        for i in 0..6 {
            let (answer, err) = (&ctx[format!("n{i}")], &ctx[format!("e{i}")]);
            if answer.is_null() {
                let message = err["message"].as_str().unwrap();
                assert!(message.contains("answered out of turn"), "{message}");
            } else {
                assert_eq!(answer["request"]["input"], json!({"next": i}), "step {i} got its own answer: {ctx}");
            }
        }
        drop(compiled);
        scratch.assert_no_survivors().await;
    })
    .await;
}
