//! What the integration tests share, by concern: [`bin`] runs the real binary to its end,
//! [`live`] keeps it running while a test talks to it, [`procs`] starts and checks processes
//! for the subprocess agents, [`rig`] and [`script`] are engines to run blueprints on,
//! [`flow`] writes flows in their JSON wire shape and [`lua`] runs the `tests/lua` scripts.
//!
//! Nothing here sleeps in the hope that something has happened: waits poll a condition until
//! a generous [`DEADLINE`], or wait on an event.

pub mod bin;
pub mod flow;
pub mod http;
pub mod http_server;
pub mod live;
pub mod lua;
pub mod procs;
pub mod rig;
pub mod script;

use std::future::Future;
use std::process::Command;
use std::time::{Duration, Instant};

use tokio::task::LocalSet;

/// How long anything a test waits for may take before the test fails: generous, since CI
/// machines are slow and busy.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// How often a wait looks again.
const POLL: Duration = Duration::from_millis(10);

/// Waits until `done()` holds, failing the test at the [`DEADLINE`].
#[track_caller]
pub fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < DEADLINE, "{what} did not happen within {DEADLINE:?}");
        std::thread::sleep(POLL);
    }
}

/// [`wait_for`] on an async test's runtime, which goes on running meanwhile.
pub async fn eventually(what: &str, done: impl Fn() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < DEADLINE, "{what} did not happen within {DEADLINE:?}");
        tokio::time::sleep(POLL).await;
    }
}

/// Runs `test` inside a `LocalSet` (the engine's home), failing it if it has not finished
/// after two minutes: virtual minutes for the tests on tokio's paused clock (an idle paused
/// runtime jumps straight there, so a hang fails at once), real ones for the rest.
pub async fn within<F: Future>(test: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(120), LocalSet::new().run_until(test))
        .await
        .expect("the test hung (two minutes passed)")
}

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
