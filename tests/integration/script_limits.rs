//! Script agents' limits: instructions, memory and time, each a distinct error naming the
//! limit and its value; a VM stuck inside a C function is answered for on time, retired and
//! replaced, while the rest of the pool keeps working.

use std::time::{Duration, Instant};

use crate::util::script::{Rig, blueprint, fanout};
use luaswarm::worker::script::{Limits, PoolConfig};
use serde_json::{Value as J, json};

/// `source` with `limits` (spec fields) fails with `message`; its error value names the limit.
fn breaches(rig: &Rig, source: &str, limits: J, message: &str, limit: &str) {
    let mut spec = limits;
    spec["source"] = json!(source);
    let error = rig.call(spec, json!(null)).expect_err(source);
    assert_eq!(error.message, message, "{source}");
    let value = J::from(&error.value.expect("a limit error carries its limit"));
    assert_eq!(value["limit"], json!(limit), "{source}");
}

#[test]
fn an_endless_loop_hits_the_instruction_limit() {
    let rig = Rig::new();
    let limits = json!({"max_instructions": 10_000});
    breaches(&rig, "while true do end", limits.clone(), "instruction limit of 10000 exceeded", "max_instructions");
    // Catching the error does not help: the limit is raised again at every pcall.
    let catching = "while true do pcall(function() while true do end end) end";
    breaches(&rig, catching, limits.clone(), "instruction limit of 10000 exceeded", "max_instructions");
    let in_coroutine = "while true do coroutine.resume(coroutine.create(function() while true do end end)) end";
    breaches(&rig, in_coroutine, limits.clone(), "instruction limit of 10000 exceeded", "max_instructions");
    let in_load = "while true do load(function() while true do end end) end";
    breaches(&rig, in_load, limits, "instruction limit of 10000 exceeded", "max_instructions");
    // A script well inside its budget is unaffected.
    assert_eq!(rig.value("local n = 0 for i = 1, 1000 do n = n + i end return n", json!(null)), json!(500500));
}

#[test]
fn a_growing_table_hits_the_memory_limit() {
    let rig = Rig::new();
    let grow = "local t = {} for i = 1, 1e9 do t[i] = {i} end";
    breaches(&rig, grow, json!({"max_memory": 1_000_000}), "memory limit of 1000000 bytes exceeded", "max_memory");
    let caught = "local t = {} pcall(function() for i = 1, 1e9 do t[i] = {i} end end) t = nil return 'caught'";
    assert_eq!(rig.call(json!({"source": caught, "max_memory": 1_000_000}), json!(null)).unwrap(), json!("caught"));
}

#[test]
fn a_huge_string_rep_hits_the_default_memory_limit() {
    let rig = Rig::new();
    let message = format!("memory limit of {} bytes exceeded", Limits::default().max_memory);
    breaches(&rig, "return string.rep('x', 2^30)", json!({}), &message, "max_memory");
    breaches(&rig, "return ('x'):rep(1e8)", json!({}), &message, "max_memory");
    // Larger than the call may allocate: refused before anything is allocated.
    breaches(&rig, "return string.rep('x', 2^31)", json!({}), &message, "max_memory");
}

#[test]
fn one_calls_garbage_is_not_charged_to_the_next() {
    let rig = Rig::one_vm();
    // Each call makes ~3 MB of garbage against a 4 MB budget; ten in a row on one VM pass.
    let source = "local parts = {} for i = 1, 300 do parts[i] = string.rep('x', 10000) .. i end return #parts";
    for _ in 0..10 {
        assert_eq!(rig.call(json!({"source": source, "max_memory": 4_000_000}), json!(null)).unwrap(), json!(300));
    }
}

#[test]
fn a_long_lua_loop_hits_the_time_limit() {
    let rig = Rig::new();
    let limits = json!({"timeout_ms": 100, "max_instructions": 1e15});
    let started = Instant::now();
    breaches(&rig, "while true do end", limits, "time limit of 100 ms exceeded", "timeout_ms");
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    // A loop in Lua stops at the hook: its VM is back, not retired.
    assert_eq!(rig.value("return 'next'", json!(null)), json!("next"));
    assert_eq!(rig.stats().vms_retired, 0);
}

#[test]
fn each_limit_has_its_own_error() {
    let rig = Rig::new();
    let errors: Vec<String> = [
        json!({"source": "while true do end", "max_instructions": 5_000}),
        json!({"source": "local t = {} while true do t[#t + 1] = {} end", "max_memory": 500_000}),
        json!({"source": "while true do end", "timeout_ms": 50, "max_instructions": 1e15}),
    ]
    .into_iter()
    .map(|spec| rig.call(spec, json!(null)).unwrap_err().message)
    .collect();
    assert_eq!(
        errors,
        ["instruction limit of 5000 exceeded", "memory limit of 500000 bytes exceeded", "time limit of 50 ms exceeded"]
    );
}

#[test]
fn a_script_stuck_in_c_is_answered_on_time_and_its_vm_replaced() {
    let rig = Rig::with(PoolConfig { vms: 2, retire_after: Duration::from_millis(100), ..PoolConfig::default() });
    // Lane 0 backtracks inside string.find for seconds (no hook runs in C); the others are quick.
    let source = "if _CTX == 0 then return string.find(string.rep('a', 400), string.rep('a*', 3) .. 'b') end
                  return _CTX * 2";
    let spec = json!({"source": source, "timeout_ms": 200});
    let items: Vec<i64> = (0..=30).collect();
    let started = Instant::now();
    let outcome = rig.run(blueprint(spec.clone(), fanout(json!(items), "all_settled")), json!({}));
    let took = started.elapsed();
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    let all = J::from(&outcome.ctx)["all"].clone();
    assert_eq!(all[0]["status"], json!("rejected"));
    assert_eq!(all[0]["reason"]["message"], json!("time limit of 200 ms exceeded"));
    for n in 1..=30 {
        assert_eq!(all[n], json!({"status": "fulfilled", "value": n * 2}), "lane {n}");
    }
    // The pattern alone runs for seconds; the attempt was answered at its deadline.
    assert!(took < Duration::from_millis(2_500), "answered after {took:?}");

    // The stuck VM is retired and a new one takes its place.
    let stats = rig.wait_for_stats(Duration::from_secs(10), |s| s.vms_retired == 1 && s.vms_created == 3);
    assert_eq!((stats.vms_retired, stats.vms_created), (1, 3), "{stats:?}");
    // The pool works at full strength while the old thread is still busy in C.
    let items: Vec<i64> = (1..=20).collect();
    let outcome = rig.run(blueprint(spec, fanout(json!(items), "all")), json!({}));
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    assert_eq!(J::from(&outcome.ctx)["all"], json!(items.iter().map(|n| n * 2).collect::<Vec<_>>()));
}

#[test]
fn a_step_timeout_cancels_the_script_and_frees_its_vm() {
    let rig = Rig::with(PoolConfig { vms: 1, retire_after: Duration::from_secs(30), ..PoolConfig::default() });
    let flow = json!({"kind": "step", "ref": "s", "in": {"op": "lit", "value": 1}, "out": {"op": "path", "at": "$.y"}, "timeout_ms": 50});
    let spec = json!({"source": "while true do end", "max_instructions": 1e15});
    let started = Instant::now();
    let outcome = rig.run(blueprint(spec, flow), json!({}));
    assert_eq!(outcome.error.map(|e| e.kind.name()), Some("timeout"));
    assert!(started.elapsed() < Duration::from_secs(3));
    // The one VM stopped the loop and is free for the next call.
    assert_eq!(rig.value("return 'free'", json!(null)), json!("free"));
    assert_eq!((rig.stats().vms_created, rig.stats().vms_retired), (1, 0));
}

#[test]
fn string_rep_is_checked_before_it_runs_in_c() {
    let rig = Rig::new();
    // Nothing to copy 2^60 times: an empty string at once, never a VM stuck in C.
    let started = Instant::now();
    assert_eq!(rig.value("return string.rep('', 1 << 60)", json!(null)), json!(""));
    assert_eq!(rig.value("return ('').rep('', 1 << 60, '')", json!(null)), json!(""));
    assert_eq!(rig.value("return string.rep('ab', 3, ',')", json!(null)), json!("ab,ab,ab"));
    assert_eq!(rig.value("return string.rep(5, 2)", json!(null)), json!("55"));
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    // Too large for the call's memory: the memory limit, before anything is allocated, and
    // catchable like any allocation that fails.
    breaches(
        &rig,
        "return string.rep('x', 1 << 60)",
        json!({"max_memory": 1_000_000}),
        "memory limit of 1000000 bytes exceeded",
        "max_memory",
    );
    breaches(
        &rig,
        "return ('').rep('', 1 << 60, 'x')",
        json!({"max_memory": 1_000_000}),
        "memory limit of 1000000 bytes exceeded",
        "max_memory",
    );
    let caught = "local ok = pcall(string.rep, 'x', 1e7) return ok";
    assert_eq!(rig.value(caught, json!(null)), json!(true), "within the default 64 MiB");
    let caught = "local ok, err = pcall(string.rep, 'x', 1e7) return {caught = not ok, err = err}";
    let spec = json!({"source": caught, "max_memory": 1_000_000});
    assert_eq!(rig.call(spec, json!(null)).unwrap(), json!({"caught": true, "err": "not enough memory"}));
    assert!(rig.error("return string.rep('x', 1.5)", json!(null)).contains("number has no integer representation"));
    assert_eq!(rig.stats().vms_retired, 0, "no VM was stuck");
}
