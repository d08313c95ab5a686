//! No process a step started outlives the step or the host, through the real binary (which is
//! a child subreaper): a grandchild that left its group with `setsid` dies with its step, and
//! after the host is killed with SIGKILL its child dies at once and the rest of the family when
//! the next `swarm` opens the journal.

use std::process::{Command, Stdio};

use crate::util::bin::{stderr, stdout_json, swarm_in, write};
use crate::util::live::Killed;
use crate::util::procs::Scratch;
use crate::util::wait_for;

/// A blueprint of one agent per `(name, sh script)`, run in order; `$DIR` is the scratch
/// directory. `setsid` forks when it must, so a grandchild that left with it writes its own pid.
fn blueprint(scratch: &Scratch, agents: &[(&str, &str)]) -> String {
    let mut defs = String::new();
    let mut steps = String::new();
    for (name, script) in agents {
        let script = script.replace("$DIR", scratch.marker());
        defs.push_str(&format!(
            "    {name} = {{ kind = \"subprocess\", spec = {{ program = \"/bin/sh\", timeout_ms = 10000, args = {{ \"-c\", [[{script}]] }} }} }},\n"
        ));
        steps.push_str(&format!("    F.step({{ agent = \"{name}\", input = 1, out = \"$.{name}\" }}),\n"));
    }
    let text = format!(
        "local swarm = require(\"swarm\")\nlocal F = swarm.flow\nreturn swarm.blueprint({{\n  id = \"tree\",\n  agents = {{\n{defs}  }},\n  flow = F.seq({{\n{steps}  }}),\n}})\n"
    );
    write(scratch.path(), "bp.lua", &text)
}

#[test]
fn a_setsid_grandchild_dies_with_the_step_that_left_it() {
    let scratch = Scratch::new("cli-setsid");
    let bp = blueprint(
        &scratch,
        &[
            // Leaves a grandchild in a session of its own (holding stdout open, too) and exits.
            (
                "leave",
                r#"setsid sh -c 'echo $$ > "$0/gc.pid"; exec "$0/sleeper" 1000' "$DIR" &
                   until [ -s "$DIR/gc.pid" ]; do sleep 0.01; done; echo '{"left":true}'"#,
            ),
            // The next step looks for it: running, or gone (a zombie counts as gone).
            (
                "look",
                r#"s=$(cut -d' ' -f3 "/proc/$(cat "$DIR/gc.pid")/stat" 2>/dev/null)
                   if [ -n "$s" ] && [ "$s" != Z ]; then echo '{"alive":true}'; else echo '{"alive":false}'; fi"#,
            ),
        ],
    );
    let out = swarm_in(scratch.path(), &["run", &bp, "--state", "memory"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let ctx = stdout_json(&out);
    assert_eq!(ctx["leave"]["left"], true);
    assert_eq!(ctx["look"]["alive"], false, "the grandchild outlived its step");
    let grandchild = scratch.pid("gc.pid");
    wait_for("the grandchild dying", || !scratch.running(grandchild));
}

#[test]
fn a_killed_host_leaves_no_step_process_behind() {
    let scratch = Scratch::new("cli-host-killed");
    let bp = blueprint(
        &scratch,
        &[(
            "hold",
            r#"echo $$ > "$DIR/child.pid"
               "$DIR/sleeper" 1000 & echo $! > "$DIR/gc.pid"
               setsid sh -c 'echo $$ > "$0/sid.pid"; exec "$0/sleeper" 1000' "$DIR" &
               wait"#,
        )],
    );
    let state = scratch.path().join("state.db");
    let state = state.to_str().unwrap();
    let mut host = Killed(
        Command::new(env!("CARGO_BIN_EXE_swarm"))
            .args(["run", &bp, "--state", state])
            .current_dir(scratch.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let written = |name: &str| std::fs::read_to_string(scratch.path().join(name)).is_ok_and(|t| t.ends_with('\n'));
    wait_for("the step starting its family", || written("sid.pid"));
    let (child, grandchild, loner) = (scratch.pid("child.pid"), scratch.pid("gc.pid"), scratch.pid("sid.pid"));
    host.0.kill().unwrap();
    host.0.wait().unwrap();
    wait_for("the child dying with its host", || !scratch.running(child));
    // The next swarm to open the journal kills what is left, before it does anything else.
    let out = swarm_in(scratch.path(), &["runs", "--state", state, "list"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    wait_for("the grandchild dying", || !scratch.running(grandchild));
    wait_for("the grandchild in its own session dying", || !scratch.running(loner));
    assert!(scratch.marked().is_empty(), "{:?}", scratch.marked());
}
