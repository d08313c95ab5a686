//! Stream modes end to end: `sh -c 'printf ...'` children write crafted streams through each
//! framing, and the engine's run shows what came of them: `worker_output` events, the result,
//! or the error.

use std::io::Write;

use crate::util::procs::*;
use luaswarm::engine::EventKind;
use luaswarm::flow::ErrorKind;
use serde_json::json;

const FINAL_OK: &str = r#"{"type":"final","content":{"kind":"inline","value":{"answer":42}},"ok":true}"#;

/// Runs `script` as an agent in `mode` and returns the outcome and the events.
async fn stream(
    scratch: &Scratch,
    mode: &str,
    script: &str,
) -> (luaswarm::engine::RunOutcome, Vec<luaswarm::engine::Event>) {
    let spec = with(sh(script, scratch.marker()), json!({"stream_mode": mode}));
    Rig::new().run_one(spec, json!({})).await
}

#[tokio::test]
async fn output_events_become_worker_output_events_in_order() {
    let scratch = Scratch::new("order");
    within(async {
        let script = r#"
            printf '{"type":"progress","stage":"load","note":"reading"}\n'
            printf '{"type":"partial","chunk":{"kind":"inline","value":"Hel"}}\n'
            printf '{"type":"artifact","name":"notes.md","content":{"kind":"file_ref","path":"/tmp/notes.md","mime":"text/markdown","size_hint":5}}\n'
            printf '{"type":"progress","stage":"done","note":null}\n'
            printf '{"type":"final","content":{"kind":"inline","value":{"text":"Hello"}},"ok":true}\n'
        "#;
        let (outcome, events) = stream(&scratch, "ndjson_lines", script).await;
        assert_eq!(out(&outcome), json!({"text": "Hello"}));
        assert_eq!(
            outputs(&events),
            vec![
                json!({"type":"progress","stage":"load","note":"reading"}),
                json!({"type":"partial","chunk":{"kind":"inline","value":"Hel"}}),
                json!({"type":"artifact","name":"notes.md","content":{"kind":"file_ref","path":"/tmp/notes.md","mime":"text/markdown","size_hint":5}}),
                json!({"type":"progress","stage":"done","note":null}),
            ],
            "the final is the result, not an output event"
        );
        // Every output sits between its attempt's start and finish.
        let kinds: Vec<&str> = events.iter().map(|e| e.kind.name()).collect();
        let started = kinds.iter().position(|k| *k == "attempt_started").unwrap();
        let finished = kinds.iter().position(|k| *k == "attempt_finished").unwrap();
        let outputs_at: Vec<usize> = (0..kinds.len()).filter(|&i| kinds[i] == "worker_output").collect();
        assert!(outputs_at.iter().all(|&i| started < i && i < finished), "{kinds:?}");
        scratch.assert_no_survivors().await;
    })
    .await;
}

#[tokio::test]
async fn ndjson_tolerates_crlf_and_blank_lines_and_the_last_final_wins() {
    let scratch = Scratch::new("ndjson");
    within(async {
        let script = r#"
            printf '\r\n{"type":"final","content":{"kind":"inline","value":1},"ok":true}\r\n\n   \n'
            printf '{"type":"progress","stage":"more"}\r\n'
            printf '{"type":"final","content":{"kind":"inline","value":2},"ok":true}'
        "#;
        let (outcome, events) = stream(&scratch, "ndjson_lines", script).await;
        assert_eq!(out(&outcome), json!(2), "the last final, even without a trailing newline");
        assert_eq!(outputs(&events), vec![json!({"type":"progress","stage":"more"})]);
    })
    .await;
}

#[tokio::test]
async fn sse_joins_data_lines_and_skips_comments_and_event_fields() {
    let scratch = Scratch::new("sse");
    within(async {
        let script = r#"
            printf ': keep-alive comment\r\nevent: progress\r\nid: 1\r\ndata: {"type":"progress",\r\ndata: "stage":"split"}\r\n\r\n'
            printf 'retry: 10\n\n'
            printf 'event: final\ndata: {"type":"final","content":{"kind":"inline","value":"done"},"ok":true}\n'
        "#;
        let (outcome, events) = stream(&scratch, "sse_events", script).await;
        assert_eq!(out(&outcome), json!("done"), "a last event without a blank line still counts");
        assert_eq!(outputs(&events), vec![json!({"type":"progress","stage":"split"})]);
    })
    .await;
}

/// A frame as `printf` escapes: the 4-byte big-endian length, then the payload.
fn frame(payload: &str) -> String {
    let len = (payload.len() as u32).to_be_bytes();
    let prefix: String = len.iter().map(|b| format!("\\{b:03o}")).collect();
    format!("{prefix}{payload}")
}

#[tokio::test]
async fn length_prefixed_frames_split_across_reads_are_joined() {
    let scratch = Scratch::new("frames");
    within(async {
        // The child writes a progress frame and the first half of the final frame in one write,
        // then waits on a FIFO until the test has seen the progress event: the second half can
        // only arrive in a later read.
        let mut go = fifo(&scratch, "go");
        let last = frame(FINAL_OK);
        let (first, second) = last.split_at(last.len() / 2);
        let script = format!(
            "printf '{}{first}'\nread go < \"$0/go\"\nprintf '{second}'",
            frame(r#"{"type":"progress","stage":"half"}"#)
        );
        let rig = Rig::new();
        let spec = with(sh(&script, scratch.marker()), json!({"stream_mode": "length_prefixed"}));
        let compiled = rig.compile(json!([{"name": "a", "spec": spec}]), step("a", json!({})));
        let (run, mut tap) = rig.start(&compiled, json!({}));
        progress(&mut tap, "half").await;
        go.write_all(b"go\n").unwrap();
        let outcome = run.wait().await;
        assert_eq!(out(&outcome), json!({"answer": 42}));
    })
    .await;
}

#[tokio::test]
async fn bad_frames_fail_the_attempt() {
    let scratch = Scratch::new("bad-frames");
    within(async {
        let oversized = format!("printf '{}\\001\\000\\000\\001'", frame(r#"{"type":"progress","stage":"a"}"#));
        let (outcome, events) = stream(&scratch, "length_prefixed", &oversized).await;
        assert_eq!(failure(&outcome), "stdout frame 2 declares 16777217 bytes, over the 16 MiB limit");
        assert_eq!(outputs(&events).len(), 1, "the frame before it was delivered");

        let (outcome, _) = stream(&scratch, "length_prefixed", r"printf '\000\000\000\000'").await;
        assert_eq!(failure(&outcome), "stdout frame 1 has length 0");

        let truncated = format!("printf '{}'", &frame(FINAL_OK)[..30]);
        let (outcome, _) = stream(&scratch, "length_prefixed", &truncated).await;
        assert!(failure(&outcome).starts_with("stdout ended inside frame 1 ("), "{}", failure(&outcome));
        scratch.assert_no_survivors().await;
    })
    .await;
}

#[tokio::test]
async fn garbage_invalid_utf8_and_unknown_types_fail_with_the_line_quoted() {
    let scratch = Scratch::new("garbage");
    within(async {
        let cases = [
            (
                "ndjson_lines",
                r#"printf '{"type":"progress","stage":"ok"}\nhello world\n'"#,
                r#"stdout line 2: not JSON (expected value at line 1 column 1): "hello world""#,
            ),
            (
                "ndjson_lines",
                r#"printf '{"type":"progress","stage":"\377"}\n'"#,
                "stdout line 1: not valid UTF-8 (invalid utf-8 sequence of 1 bytes from index 28): ",
            ),
            (
                "ndjson_lines",
                r#"printf '{"type":"log","text":"x"}\n'"#,
                r#"stdout line 1: unknown output event type "log" (expected progress, partial, artifact or final)"#,
            ),
            (
                "sse_events",
                r#"printf 'data: {"type":"progress","stage":"a"}\n\ngarbage\n'"#,
                "stdout line 3 is not an SSE field (data:, event:, id:, retry: or a ':' comment): \"garbage\"",
            ),
            (
                "sse_events",
                r#"printf 'data: [1,2]\n\n'"#,
                "stdout event at line 1: an output event is a JSON object, not array",
            ),
            ("length_prefixed", &format!("printf '{}'", frame("nope")), "stdout frame 1: not JSON"),
        ];
        for (mode, script, message) in cases {
            let (outcome, _) = stream(&scratch, mode, script).await;
            let error = outcome.error.as_ref().expect("the run fails");
            assert_eq!(error.kind, ErrorKind::Failed);
            assert!(error.message.starts_with(message), "{mode} {script}:\n{}\nwant {message}", error.message);
        }
    })
    .await;
}

#[tokio::test]
async fn a_garbage_line_kills_the_child_at_once() {
    let scratch = Scratch::new("garbage-kill");
    within(async {
        let script = r#"echo $$ > "$0/child.pid"; "$0/sleeper" 1000 & echo $! > "$0/gc.pid"; echo garbage; wait"#;
        let spec = with(sh(script, scratch.marker()), json!({"stream_mode": "ndjson_lines"}));
        let (outcome, _) = Rig::new().run_one(spec, json!({})).await;
        assert!(failure(&outcome).starts_with("stdout line 1: not JSON"), "{}", failure(&outcome));
        scratch.assert_killed(scratch.pid("child.pid"), scratch.pid("gc.pid")).await;
        scratch.assert_no_survivors().await;
    })
    .await;
}

#[tokio::test]
async fn finals_decide_the_result() {
    let scratch = Scratch::new("finals");
    within(async {
        let (outcome, _) =
            stream(&scratch, "ndjson_lines", r#"printf '{"type":"progress","stage":"a"}\n'; echo oops >&2"#).await;
        assert_eq!(failure(&outcome), "no final event: /bin/sh exited with code 0 without writing one; stderr: oops");

        let script =
            r#"printf '{"type":"final","content":{"kind":"inline","value":{"why":"bad input"}},"ok":false}\n'"#;
        let (outcome, _) = stream(&scratch, "ndjson_lines", script).await;
        assert_eq!(failure(&outcome), r#"the final event has ok = false: {"why":"bad input"}"#);
        assert_eq!(failure_value(&outcome), json!({"why": "bad input"}));

        // ok = final.ok AND exit success.
        let script = format!("printf '{FINAL_OK}\\n'; echo 'late trouble' >&2; exit 3");
        let (outcome, _) = stream(&scratch, "ndjson_lines", &script).await;
        assert_eq!(failure(&outcome), "/bin/sh exited with code 3 after its final event; stderr: late trouble");
        assert_eq!(failure_value(&outcome), json!({"answer": 42}));

        let file_ref = r#"{"kind":"file_ref","path":"/tmp/report.md","mime":"text/markdown","size_hint":1234}"#;
        let script = format!(r#"printf '{{"type":"final","content":{file_ref},"ok":true}}\n'"#);
        let (outcome, _) = stream(&scratch, "sse_events", &script.replace("printf '", "printf 'data: ")).await;
        assert_eq!(out(&outcome), serde_json::from_str::<serde_json::Value>(file_ref).unwrap());
    })
    .await;
}

#[tokio::test]
async fn the_attempt_and_task_are_reported_failed() {
    let scratch = Scratch::new("reported");
    within(async {
        let (outcome, events) = stream(&scratch, "ndjson_lines", "echo nonsense").await;
        assert!(outcome.error.is_some());
        let finished = events.iter().find_map(|e| match &e.kind {
            EventKind::AttemptFinished { status, error, .. } => Some((status.name(), error.clone())),
            _ => None,
        });
        let (status, error) = finished.expect("an attempt_finished event");
        assert_eq!(status, "failed");
        assert!(error.unwrap().starts_with("stdout line 1: not JSON"));
    })
    .await;
}
