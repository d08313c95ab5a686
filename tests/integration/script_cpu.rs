//! A script VM the pool gave up on never keeps a core: `string.rep("", 1 << 60)` (2^60 empty
//! copies in C, where no hook runs) returns at once, and a thread retired while stuck inside a
//! C function runs at idle priority until it returns. The test runs alone in a process of its
//! own, so the process's CPU time is its own.

use std::time::{Duration, Instant};

use crate::util::alone;
use crate::util::script::Rig;
use luaswarm::worker::script::PoolConfig;
use serde_json::json;

/// The process's user + system CPU time, in clock ticks (`/proc/self/stat` fields 14 and 15).
fn cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("procfs");
    // The command name (field 2) may hold spaces; the fields after its ')' are plain.
    let fields: Vec<&str> = stat[stat.rfind(')').expect("a comm field") + 2..].split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// The scheduling policy of every live thread of this process named `name` (`/proc` stat field 41).
fn policies_of(name: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").expect("procfs").flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim() != name {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else { continue };
        let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
        found.push(fields[38].parse().unwrap());
    }
    found
}

const SCHED_IDLE: u32 = 5;

#[test]
fn no_script_thread_keeps_a_core_after_its_call() {
    if !alone("script_cpu::no_script_thread_keeps_a_core_after_its_call") {
        return;
    }
    let rig = Rig::with(PoolConfig { vms: 1, retire_after: Duration::from_millis(50), ..PoolConfig::default() });
    // Without the checked string.rep this times out and its thread copies nothing forever.
    let spec = json!({"source": "return #string.rep('', 1 << 60)", "timeout_ms": 300});
    assert_eq!(rig.call(spec, json!(null)).unwrap(), json!(0));
    let (before, started) = (cpu_ticks(), Instant::now());
    // A window of real time in which to measure the CPU the process uses: the measurement, not
    // a wait for something to happen.
    std::thread::sleep(Duration::from_millis(1_000));
    let ticks_per_sec = 100; // USER_HZ on Linux
    let used = cpu_ticks() - before;
    let window = started.elapsed().as_millis() as u64 * ticks_per_sec / 1000;
    assert!(used * 2 < window, "{used} ticks of CPU in a {window}-tick window: a thread is still spinning");
    assert_eq!(rig.stats().vms_retired, 0);

    // A pattern that backtracks in C for many seconds: answered at the deadline, its VM retired
    // and replaced, and the stuck thread moved to the idle class while it finishes.
    let source = "return string.find(string.rep('a', 200), string.rep('a*', 4) .. 'b')";
    let error = rig.call(json!({"source": source, "timeout_ms": 100}), json!(null)).unwrap_err();
    assert_eq!(error.message, "time limit of 100 ms exceeded");
    let stats = rig.wait_for_stats(Duration::from_secs(10), |s| s.vms_retired == 1 && s.vms_created == 2);
    assert_eq!(stats.vms_stuck, 1, "{stats:?}");
    assert_eq!(policies_of("swarm-script-1"), [SCHED_IDLE], "the stuck thread runs at idle priority");
    // The replacement is counted before its thread has started: wait for the thread.
    crate::util::wait_for("the replacement's thread starting", || !policies_of("swarm-script-2").is_empty());
    assert_eq!(policies_of("swarm-script-2"), [0], "its replacement runs normally");
    assert_eq!(rig.value("return 'next'", json!(null)), json!("next"));
}
