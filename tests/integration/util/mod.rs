//! What the integration tests share, by concern.

pub mod bin;
pub mod killed;
pub mod live;
pub mod procs;
pub mod rig;
pub mod script;

use std::process::Command;

/// Set in a child that [`alone`] starts: the name of the one test it runs.
const ALONE: &str = "SWARM_TEST_ALONE";

/// For a test that measures the whole process (its CPU time, its threads): runs the test again,
/// alone, in a child process of this test binary, and says whether the caller is that child.
/// The caller returns at once when it is not; the child's failure fails the caller.
///
/// `test` is the test's path in this crate, e.g. `script_cpu::some_test`.
pub fn alone(test: &str) -> bool {
    if std::env::var_os(ALONE).is_some_and(|name| name == test) {
        return true;
    }
    let out = Command::new(std::env::current_exe().expect("the test binary's path"))
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(ALONE, test)
        .output()
        .expect("the test binary runs");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{test}, alone in a process, failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("1 passed"), "{test} did not run alone: is its path right?\n{stdout}");
    false
}
