//! Subprocess agents as processes: what a child is given (input, environment, working
//! directory), how plain mode reads what it gives back, and that cancel, timeouts and shutdown
//! kill its whole process group — grandchildren included — and leave nothing behind.

use crate::util::procs::*;
use luaswarm::Value;
use luaswarm::engine::{Auth, EventKind, RunStatus};
use luaswarm::flow::ErrorKind;
use luaswarm::gate::Verb;
use serde_json::json;

/// Writes the child's pid, starts a grandchild `sleeper 1000` and writes its pid: the start of
/// every script that must be killed. `$0` is the scratch directory.
const START_FAMILY: &str = r#"echo $$ > "$0/child.pid"; "$0/sleeper" 1000 & echo $! > "$0/gc.pid";"#;

#[tokio::test]
async fn the_child_gets_the_swarm_environment_the_spec_env_and_cwd() {
    let scratch = Scratch::new("env");
    within(async {
        // Attempt 1 fails, so the retry shows SWARM_ATTEMPT counting.
        let script = r#"[ "$SWARM_ATTEMPT" = 1 ] && exit 1
            printf '{"task":"%s","attempt":%s,"agent":"%s","token_len":%s,"greeting":"%s","cwd":"%s"}' \
              "$SWARM_TASK_ID" "$SWARM_ATTEMPT" "$SWARM_AGENT" "${#SWARM_TOKEN}" "$GREETING" "$(pwd)""#;
        let spec =
            with(sh(script, scratch.marker()), json!({"env": {"GREETING": "hi there"}, "cwd": scratch.marker()}));
        let rig = Rig::new();
        let mut flow = step("a", json!(null));
        flow["retry"] = json!({"max_attempts": 2, "on": ["failed"]});
        let compiled = rig.compile(json!([{"name": "a", "spec": spec}]), flow);
        let (run, mut tap) = rig.start(&compiled, json!({}));
        let outcome = run.wait().await;
        let got = out(&outcome);
        let mut task = None;
        while let Some(event) = tap.recv().await {
            if let EventKind::AttemptStarted { task_id, .. } = event.kind {
                task = Some(task_id.to_string());
            }
        }
        assert_eq!(got["task"], json!(task.unwrap()));
        assert_eq!(got["attempt"], 2);
        assert_eq!(got["agent"], "a");
        assert!(got["token_len"].as_u64().unwrap() > 40, "{got}");
        assert_eq!(got["greeting"], "hi there");
        assert_eq!(got["cwd"], scratch.marker());
    })
    .await;
}

#[tokio::test]
async fn swarm_token_is_the_attempts_worker_token() {
    let scratch = Scratch::new("token");
    within(async {
        let script = r#"echo $$ > "$0/child.pid"; printf '%s' "$SWARM_TOKEN" > "$0/token"
            printf '{"type":"progress","stage":"token","note":"%s"}\n' "$SWARM_TOKEN"
            exec "$0/sleeper" 1000"#;
        let rig = Rig::new();
        let spec = with(sh(script, scratch.marker()), json!({"stream_mode": "ndjson_lines"}));
        let compiled = rig.compile(json!([{"name": "a", "spec": spec}]), step("a", json!(null)));
        let (run, mut tap) = rig.start(&compiled, json!({}));
        let (task_id, note) = loop {
            let event = tap.recv().await.expect("the run goes on");
            if let EventKind::WorkerOutput { task_id, output, .. } = event.kind {
                break (task_id, output.get("note").and_then(Value::as_str).unwrap().to_string());
            }
        };
        let token = std::fs::read_to_string(scratch.path().join("token")).unwrap();
        // The event the child wrote it into carries only its fingerprint.
        assert!(note.starts_with("[token ") && !note.contains(&token), "{note}");
        let verified = rig.engine.verify(&token, Verb::PostResult, Some(&task_id));
        assert!(verified.is_ok(), "{:?}", verified.err());
        let other = rig.engine.verify(&token, Verb::PostResult, Some("some-other-task"));
        assert_eq!(other.unwrap_err().kind(), "task_mismatch", "the token is bound to its own task");
        // The child reports through the engine instead of stdout; its worker is then stopped.
        rig.engine.post_result(Auth::Encoded(&token), &task_id, Value::from("posted"), true).unwrap();
        let outcome = run.wait().await;
        assert_eq!(out(&outcome), json!("posted"));
        let child = scratch.pid("child.pid");
        eventually("the child being killed and reaped", || scratch.gone(child)).await;
        scratch.assert_no_survivors().await;
    })
    .await;
}

#[tokio::test]
async fn input_goes_to_stdin_or_to_the_last_argument() {
    let scratch = Scratch::new("input");
    within(async {
        let rig = Rig::new();
        let input = json!({"text": "hé \"quoted\"\nnext", "n": [1, 2.5]});
        let (outcome, _) = rig.run_one(json!({"program": "cat"}), input.clone()).await;
        assert_eq!(out(&outcome), input);

        let script = r#"printf '{"arg":%s,"stdin":"%s"}' "$1" "$(readlink /proc/self/fd/0)""#;
        let spec = with(sh(script, scratch.marker()), json!({"use_stdin": false}));
        let (outcome, _) = rig.run_one(spec, input.clone()).await;
        assert_eq!(out(&outcome), json!({"arg": input, "stdin": "/dev/null"}));
    })
    .await;
}

#[tokio::test]
async fn plain_output_that_is_not_json_comes_back_raw_with_stderr() {
    let scratch = Scratch::new("raw");
    within(async {
        let script = r#"printf 'hello\nworld \377\n\n'; echo "a warning" >&2"#;
        let (outcome, _) = Rig::new().run_one(sh(script, scratch.marker()), json!(null)).await;
        assert_eq!(out(&outcome), json!({"raw": "hello\nworld \u{fffd}", "stderr": "a warning"}));
    })
    .await;
}

#[tokio::test]
async fn a_failed_exit_names_the_code_or_signal_and_the_stderr_tail() {
    let scratch = Scratch::new("exit");
    within(async {
        let rig = Rig::new();
        let script = r#"echo '{"partial":true}'; echo "it broke" >&2; exit 4"#;
        let (outcome, _) = rig.run_one(sh(script, scratch.marker()), json!(null)).await;
        assert_eq!(failure(&outcome), "/bin/sh exited with code 4; stderr: it broke");
        assert_eq!(failure_value(&outcome), json!({"partial": true}));
        assert_eq!(outcome.error.as_ref().unwrap().kind, ErrorKind::Failed);

        let (outcome, _) = rig.run_one(sh("kill -9 $$", scratch.marker()), json!(null)).await;
        assert_eq!(failure(&outcome), "/bin/sh was killed by signal 9 (SIGKILL)");
        assert_eq!(failure_value(&outcome), json!({"raw": "", "stderr": ""}));
    })
    .await;
}

#[tokio::test]
async fn a_missing_program_is_a_compile_error_naming_it() {
    let err = try_compile(json!([{"name": "a", "spec": {"program": "no-such-program-xyz"}}]), step("a", json!(1)))
        .err()
        .expect("the blueprint does not compile");
    assert!(
        err.contains("invalid_spec: agent 'a' (subprocess): program 'no-such-program-xyz' was not found on PATH"),
        "{err}"
    );
    let err = try_compile(json!([{"name": "a", "spec": {"program": "/no/such/agent.sh"}}]), step("a", json!(1)))
        .err()
        .unwrap();
    assert!(err.contains("program '/no/such/agent.sh' does not exist"), "{err}");
}

#[tokio::test]
async fn the_spec_timeout_fails_the_attempt_and_kills_the_group() {
    let scratch = Scratch::new("timeout");
    within(async {
        let script = format!("{START_FAMILY} echo 'still working' >&2; wait");
        let spec = with(sh(&script, scratch.marker()), json!({"timeout_ms": 1500}));
        let (outcome, _) = Rig::new().run_one(spec, json!(null)).await;
        let child = scratch.pid("child.pid");
        let kind = outcome.error.as_ref().map(|e| e.kind.name());
        assert_eq!(kind, Some("timeout"), "the worker's own limit counts as a timeout, for retry.on");
        assert_eq!(
            failure(&outcome),
            format!(
                "timed out after 1500 ms; killed /bin/sh (pid {child}) and its process group; stderr: still working"
            )
        );
        scratch.assert_killed(child, scratch.pid("gc.pid")).await;
        scratch.assert_no_survivors().await;
    })
    .await;
}

#[tokio::test]
async fn a_timeout_kills_a_grandchild_that_left_the_group_with_setsid() {
    let scratch = Scratch::new("setsid");
    within(async {
        // The grandchild is in a session and group of its own: killing the child's group
        // misses it; it is found as a descendant of the child.
        let script = r#"echo $$ > "$0/child.pid"; setsid "$0/sleeper" 1000 & echo $! > "$0/gc.pid"; wait"#;
        let spec = with(sh(script, scratch.marker()), json!({"timeout_ms": 1000}));
        let (outcome, _) = Rig::new().run_one(spec, json!(null)).await;
        assert_eq!(outcome.error.as_ref().map(|e| e.kind), Some(ErrorKind::Timeout));
        scratch.assert_killed(scratch.pid("child.pid"), scratch.pid("gc.pid")).await;
        scratch.assert_no_survivors().await;
    })
    .await;
}

/// A stream child that starts its family, says it is ready, and waits.
fn waiting_family(scratch: &Scratch) -> serde_json::Value {
    let script = format!("{START_FAMILY} printf '{{\"type\":\"progress\",\"stage\":\"ready\"}}\\n'; wait");
    with(sh(&script, scratch.marker()), json!({"stream_mode": "ndjson_lines"}))
}

#[tokio::test]
async fn cancelling_the_run_kills_the_group() {
    let scratch = Scratch::new("cancel");
    within(async {
        let rig = Rig::new();
        let compiled = rig.compile(json!([{"name": "a", "spec": waiting_family(&scratch)}]), step("a", json!(null)));
        let (run, mut tap) = rig.start(&compiled, json!({}));
        progress(&mut tap, "ready").await;
        run.cancel();
        assert_eq!(run.wait().await.status, RunStatus::Cancelled);
        scratch.assert_killed(scratch.pid("child.pid"), scratch.pid("gc.pid")).await;
        scratch.assert_no_survivors().await;
    })
    .await;
}

#[tokio::test]
async fn a_step_timeout_kills_the_group() {
    let scratch = Scratch::new("step-timeout");
    within(async {
        let rig = Rig::new();
        let mut flow = step("a", json!(null));
        flow["timeout_ms"] = json!(2000);
        let compiled = rig.compile(json!([{"name": "a", "spec": waiting_family(&scratch)}]), flow);
        let (run, mut tap) = rig.start(&compiled, json!({}));
        progress(&mut tap, "ready").await;
        let outcome = run.wait().await;
        assert_eq!(outcome.error.as_ref().map(|e| e.kind), Some(ErrorKind::Timeout));
        scratch.assert_killed(scratch.pid("child.pid"), scratch.pid("gc.pid")).await;
        scratch.assert_no_survivors().await;
    })
    .await;
}

#[test]
fn shutting_the_engine_down_kills_the_group() {
    let scratch = Scratch::new("shutdown");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let local = tokio::task::LocalSet::new();
    let rig = Rig::new();
    let compiled = rig.compile(json!([{"name": "a", "spec": waiting_family(&scratch)}]), step("a", json!(null)));
    let run = local.block_on(&runtime, async {
        let (run, mut tap) = rig.start(&compiled, json!({}));
        progress(&mut tap, "ready").await;
        run
    });
    // The run is in flight; the runtime and everything on it go away.
    drop(local);
    drop(runtime);
    drop((run, compiled, rig));
    let (child, grandchild) = (scratch.pid("child.pid"), scratch.pid("gc.pid"));
    // With no runtime left to reap it, the child may stay a zombie until the process exits;
    // what matters is that neither process runs.
    crate::util::wait_for("the child and grandchild dying with the engine", || {
        !scratch.running(child) && !scratch.running(grandchild)
    });
    assert!(scratch.marked().is_empty(), "{:?}", scratch.marked());
}

#[tokio::test]
async fn leftovers_of_a_child_that_exits_are_killed() {
    let scratch = Scratch::new("leftovers");
    within(async {
        // The grandchild keeps stdout open: the attempt must not wait for it.
        let script = format!(r#"{START_FAMILY} echo '{{"done":true}}'"#);
        let (outcome, _) = Rig::new().run_one(sh(&script, scratch.marker()), json!(null)).await;
        assert_eq!(out(&outcome), json!({"done": true}));
        scratch.assert_killed(scratch.pid("child.pid"), scratch.pid("gc.pid")).await;
        scratch.assert_no_survivors().await;
    })
    .await;
}

#[tokio::test]
async fn ten_megabytes_pass_through_cat() {
    within(async {
        let blob = "x".repeat(10 * 1024 * 1024);
        let input = json!({"blob": blob, "tail": "end"});
        let rig = Rig::new();
        let (outcome, _) = rig.run_one(json!({"program": "cat"}), input.clone()).await;
        // 10 MB is far over the engine's offload limit: the ctx holds a ref to the stored value.
        let stored = out(&outcome);
        assert_eq!(stored["size"], input.to_string().len(), "{stored}");
        let record = rig.engine.outputs().get(stored["ref"].as_str().expect("a ref")).expect("the stored output");
        assert!(serde_json::Value::from(&record.value) == input, "the 10 MB came back intact");
    })
    .await;
}

#[tokio::test]
async fn ten_megabytes_of_stderr_neither_hang_nor_grow_the_error() {
    let scratch = Scratch::new("stderr");
    within(async {
        let rig = Rig::new();
        let noise = "head -c 10485760 /dev/zero | tr '\\000' e >&2; echo 'last words' >&2";
        let (outcome, _) =
            rig.run_one(sh(&format!("{noise}; echo '{{\"ok\":1}}'"), scratch.marker()), json!(null)).await;
        assert_eq!(out(&outcome), json!({"ok": 1}));

        let (outcome, _) = rig.run_one(sh(&format!("{noise}; exit 2"), scratch.marker()), json!(null)).await;
        let message = failure(&outcome);
        assert!(
            message.starts_with("/bin/sh exited with code 2; stderr (last 8 KiB of 10485771 bytes): …eee"),
            "{}",
            &message[..200.min(message.len())]
        );
        assert!(message.ends_with("eeelast words"));
        assert!(message.len() < 8 * 1024 + 100, "the message holds a bounded tail: {} bytes", message.len());
    })
    .await;
}

#[tokio::test]
async fn a_finished_child_is_reaped() {
    let scratch = Scratch::new("reaped");
    within(async {
        let (outcome, _) =
            Rig::new().run_one(sh(r#"echo $$ > "$0/child.pid"; echo 1"#, scratch.marker()), json!(null)).await;
        assert_eq!(out(&outcome), json!(1));
        let child = scratch.pid("child.pid");
        eventually("the child being reaped", || scratch.gone(child)).await;
    })
    .await;
}
