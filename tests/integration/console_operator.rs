//! The console operator through the real binary: the rendered prompt on stderr, the answers
//! read from stdin (text, or JSON over several lines).

use crate::util::bin::{command, root, with_input};

fn run_with_stdin(answers: &str) -> std::process::Output {
    let args = ["run", "tests/fixtures/console.lua", "--input", r#"{"release":{"name":"swarm","version":"1.0"}}"#];
    with_input(command(root(), &args), answers)
}

#[test]
fn the_person_at_the_console_answers_in_text_or_json() {
    let out = run_with_stdin("yes, ship it\n{\n  \"approved\": true,\n  \"notes\": [\"fine\"]\n}\n");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let ctx: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(ctx["first"], "yes, ship it");
    assert_eq!(ctx["second"], serde_json::json!({"approved": true, "notes": ["fine"]}));
    assert_eq!(stderr.matches("Approve the release of swarm 1.0?").count(), 2, "{stderr}");
    assert!(stderr.contains("── operator human · agent approve"), "{stderr}");
}

#[test]
fn a_console_that_closes_fails_the_step() {
    let out = run_with_stdin("only one answer\n");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("the console closed before answering"), "{stderr}");
}
