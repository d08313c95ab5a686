//! Script agents through the engine: their globals, how results marshal, bridges into the
//! host VM, compile-time checks, and VM reuse.

use std::time::{Duration, Instant};

use crate::util::script::{Rig, blueprint, chain, fanout};
use luaswarm::blueprint::Blueprint;
use luaswarm::worker::script::PoolConfig;
use serde_json::json;

#[test]
fn scripts_see_the_prompt_ctx_agent_task_and_attempt() {
    let rig = Rig::new();
    let source = "return {prompt = _PROMPT, ctx = _CTX, agent = _AGENT, task = type(_TASK_ID), attempt = _ATTEMPT}";
    let seen = rig.value(source, json!({"n": 2, "list": [1, null]}));
    assert_eq!(seen["prompt"], json!(r#"{"list":[1,null],"n":2}"#), "a non-string input is its JSON");
    assert_eq!(seen["ctx"], json!({"n": 2, "list": [1, null]}));
    assert_eq!(
        (seen["agent"].clone(), seen["task"].clone(), seen["attempt"].clone()),
        (json!("s"), json!("string"), json!(1))
    );
    let seen = rig.value("return {_PROMPT, _CTX}", json!("hello"));
    assert_eq!(seen, json!(["hello", "hello"]), "a string input is the prompt as is");
}

#[test]
fn attempts_are_numbered_across_retries() {
    let rig = Rig::new();
    let source = "if _ATTEMPT < 3 then error('not yet') end return {attempt = _ATTEMPT, task = _TASK_ID}";
    let flow = json!({"kind": "step", "ref": "s", "in": {"op": "lit", "value": 1}, "out": {"op": "path", "at": "$.y"},
                      "retry": {"max_attempts": 3}});
    let outcome = rig.run(blueprint(json!({ "source": source }), flow), json!({}));
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    let y = &serde_json::Value::from(&outcome.ctx)["y"];
    assert_eq!(y["attempt"], json!(3));
    assert!(y["task"].as_str().is_some_and(|t| t.starts_with(&*outcome.run_id)), "{y}");
}

#[test]
fn results_marshal_through_value_and_ok() {
    let rig = Rig::new();
    assert_eq!(rig.value("return {value = _CTX + 1}", json!(1)), json!(2));
    assert_eq!(rig.value("return {value = 'fine', ok = true}", json!(null)), json!("fine"));
    assert_eq!(rig.value("return {a = 1, b = {true}}", json!(null)), json!({"a": 1, "b": [true]}));
    assert_eq!(rig.value("return 'plain'", json!(null)), json!("plain"));
    assert_eq!(rig.value("return", json!(null)), json!(null));

    let failed = rig.call(json!({"source": "return {value = 'no luck', ok = false}"}), json!(null)).unwrap_err();
    assert_eq!((failed.message.as_str(), failed.value.map(|v| v.to_json())), ("no luck", Some(r#""no luck""#.into())));
    let failed = rig.call(json!({"source": "return {value = {code = 4}, ok = false}"}), json!(null)).unwrap_err();
    assert_eq!(failed.message, r#"the script returned ok = false with value {"code":4}"#);
    assert_eq!(failed.value.map(|v| v.to_json()), Some(r#"{"code":4}"#.into()));
    assert!(
        rig.error("return {f = function() end}", json!(null)).contains("$.f"),
        "a value with no JSON form says where"
    );
}

#[test]
fn raised_errors_fail_with_their_first_line() {
    let rig = Rig::new();
    assert_eq!(rig.error("\n\nerror('first line\\nsecond line')", json!(null)), "[agent s]:3: first line");
    assert_eq!(
        rig.error("return _CTX.missing.field", json!({})),
        "[agent s]:1: attempt to index a nil value (field 'missing')"
    );
    let raised = rig.call(json!({"source": "error({message = 'structured', code = 7})"}), json!(null)).unwrap_err();
    assert_eq!(raised.message, "structured");
    assert_eq!(raised.value.map(|v| v.to_json()), Some(r#"{"code":7,"message":"structured"}"#.into()));
}

#[test]
fn file_scripts_are_read_at_compile_time_and_name_their_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.lua");
    std::fs::write(&path, "#!/usr/bin/env lua\nlocal n = _CTX.n\nif n < 0 then error('negative') end\nreturn n * 3\n")
        .unwrap();
    let rig = Rig::new();
    let bp = blueprint(
        json!({"file": "agent.lua"}),
        json!({"kind": "step", "ref": "s", "in": {"op": "path", "at": "$.x"}, "out": {"op": "path", "at": "$.y"}}),
    );
    let bp = std::rc::Rc::new(Blueprint::from_json(&bp.to_string()).unwrap());
    let compiled = std::rc::Rc::new(rig.host.compiler().compile(bp.clone(), Some(dir.path())).unwrap());
    // Changing the file after compiling changes nothing: it was read once.
    std::fs::write(&path, "return 'changed'").unwrap();
    let run = |x: i64| {
        let init = luaswarm::value::from_json(&json!({"x": {"n": x}}).to_string()).unwrap();
        let (engine, compiled) = (rig.engine.clone(), compiled.clone());
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(
            tokio::task::LocalSet::new().run_until(async move {
                engine.start(compiled, init, std::rc::Rc::new(luaswarm::flow::NoExterns)).wait().await
            }),
        )
    };
    assert_eq!(serde_json::Value::from(&run(4).ctx)["y"], json!(12));
    let failed = run(-1).error.unwrap();
    assert_eq!(failed.message, format!("{}:3: negative", path.display()));
}

#[test]
fn syntax_errors_and_bad_limits_are_compile_errors() {
    let rig = Rig::new();
    let bad = |spec: serde_json::Value| {
        let bp = Blueprint::from_json(&crate::util::script::one_step(spec).to_string()).unwrap();
        rig.host.compiler().compile(std::rc::Rc::new(bp), None).err().map(|e| e.first().to_string())
    };
    let syntax = bad(json!({"source": "return +"})).unwrap();
    assert!(
        syntax.contains("invalid_spec") && syntax.contains("the script does not compile: [agent s]:1:"),
        "{syntax}"
    );
    assert!(bad(json!({"source": "return 1", "timeout_ms": 0})).unwrap().contains("`timeout_ms`"));
    assert!(bad(json!({"source": "return 1", "max_instructions": 1e6, "max_memory": 1e6, "timeout_ms": 10})).is_none());
    // Every limit is range-checked, never truncated.
    for (field, value) in [
        ("max_result_bytes", json!(0)),
        ("max_result_bytes", json!(1u64 << 33)),
        ("max_memory", json!(1u64 << 50)),
        ("max_instructions", json!(1.5)),
        ("timeout_ms", json!(1u64 << 60)),
    ] {
        let mut spec = json!({"source": "return 1"});
        spec[field] = value.clone();
        let error = bad(spec).unwrap_or_else(|| panic!("{field} = {value} was taken"));
        assert!(error.contains(&format!("`{field}` must be a whole number from 1 to")), "{error}");
    }
}

#[test]
fn what_a_script_hands_the_host_is_converted_within_max_result_bytes() {
    let rig = Rig::new();
    // Shared subtables count each time they are reached: refused fast, never expanded.
    let dag = "local x = {1} for i = 1, 60 do x = {a = x, b = x} end";
    let started = std::time::Instant::now();
    // A budget of 1 MiB keeps the walk short on a loaded debug build (the default's 64 MiB
    // takes seconds there, inside the script's own time limit).
    let small = |source: String| {
        let spec = json!({"source": source, "max_result_bytes": 1 << 20});
        rig.call(spec, json!(null)).expect_err("the value is over budget").message
    };
    let returned = small(format!("{dag} return x"));
    // Which branch is walked first follows the table's hash order.
    assert!(returned.contains("the script returned cannot convert $."), "{returned}");
    assert!(returned.contains("larger than max_result_bytes (1048576 bytes"), "{returned}");
    let raised = small(format!("{dag} error(x)"));
    assert!(raised.contains("larger than max_result_bytes"), "{raised}");
    rig.host_lua("swarm.bridge('id', function(v) return v end)");
    let bridged = small(format!("{dag} return host.id(x)"));
    assert!(
        bridged.contains("host.id: argument 1: cannot convert") && bridged.contains("max_result_bytes"),
        "{bridged}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(30), "{:?}", started.elapsed());
    // The spec sets its own budget.
    let spec = json!({"source": "return string.rep('x', 2000)", "max_result_bytes": 1000});
    let error = rig.call(spec, json!(null)).unwrap_err();
    assert!(error.message.contains("larger than max_result_bytes (1000 bytes"), "{}", error.message);
    let spec = json!({"source": "return string.rep('x', 500)", "max_result_bytes": 1000});
    assert_eq!(rig.call(spec, json!(null)).unwrap().as_str().map(str::len), Some(500));
}

#[test]
fn bridges_run_in_the_host_vm_and_may_yield() {
    let rig = Rig::new();
    rig.host_lua(
        "swarm.bridge('add', function(a, b) return a + b end)
         swarm.bridge('nap', function(ms) swarm.sleep(ms) return {rested = ms} end)
         swarm.bridge('fail', function() error('kaput', 0) end)",
    );
    assert_eq!(rig.value("return host.add(_CTX.a, _CTX.b)", json!({"a": 2, "b": 40})), json!(42));
    assert_eq!(rig.value("return host.nap(20)", json!(null)), json!({"rested": 20}));
    assert_eq!(rig.error("local x = 1\nlocal r = host.fail()\nreturn r", json!(null)), "[agent s]:2: host.fail: kaput");
    // A tail call leaves no caller line to name, as with any Lua error.
    assert_eq!(rig.error("return host.fail()", json!(null)), "host.fail: kaput");
    let caught = "local ok, err = pcall(host.fail) return {ok, err}";
    assert_eq!(rig.value(caught, json!(null)), json!([false, "host.fail: kaput"]));
    assert_eq!(
        rig.error("local r = host.add(print) return r", json!(null)),
        "[agent s]:1: host.add: argument 1: cannot convert $ to JSON: a function has no JSON form"
    );
}

#[test]
fn an_unknown_bridge_is_nil_and_host_is_read_only() {
    let rig = Rig::new();
    rig.host_lua("swarm.bridge('known', function() return 1 end)");
    assert_eq!(rig.value("return {host.known ~= nil, host.unknown == nil}", json!(null)), json!([true, true]));
    assert_eq!(
        rig.error("return host.unknown()", json!(null)),
        "[agent s]:1: attempt to call a nil value (field 'unknown')"
    );
    assert_eq!(
        rig.error("host.known = nil", json!(null)),
        "[agent s]:1: cannot modify the read-only table 'host' (field 'known')"
    );
    // A bridge registered later is offered to the next call.
    rig.host_lua("swarm.bridge('later', function() return 'late' end)");
    assert_eq!(rig.value("return host.later()", json!(null)), json!("late"));
}

#[test]
fn many_bridge_calls_in_fanout_lanes_interleave_on_the_host() {
    let rig = Rig::new();
    rig.host_lua("swarm.bridge('slow_double', function(n) swarm.sleep(100) return n * 2 end)");
    let items: Vec<i64> = (1..=20).collect();
    let started = Instant::now();
    let outcome =
        rig.run(blueprint(json!({"source": "return host.slow_double(_CTX)"}), fanout(json!(items), "all")), json!({}));
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    let expected: Vec<i64> = items.iter().map(|n| n * 2).collect();
    assert_eq!(serde_json::Value::from(&outcome.ctx)["all"], json!(expected));
    // Twenty 100 ms bridges one after another would take two seconds; VMs and bridges overlap.
    assert!(started.elapsed() < Duration::from_millis(1_900), "{:?}", started.elapsed());
}

#[test]
fn a_cancelled_bridge_call_frees_its_vm() {
    let rig = Rig::with(PoolConfig { vms: 1, retire_after: Duration::from_secs(30), ..PoolConfig::default() });
    rig.host_lua("swarm.bridge('forever', function() swarm.sleep(60000) end)");
    let flow = json!({"kind": "step", "ref": "s", "in": {"op": "lit", "value": 1}, "out": {"op": "path", "at": "$.y"}, "timeout_ms": 50});
    let started = Instant::now();
    let outcome = rig.run(blueprint(json!({"source": "return host.forever()"}), flow), json!({}));
    assert_eq!(outcome.error.map(|e| e.kind.name()), Some("timeout"));
    assert!(started.elapsed() < Duration::from_secs(5));
    // The one VM is free again, not retired.
    assert_eq!(rig.value("return 'free'", json!(null)), json!("free"));
    assert_eq!((rig.stats().vms_created, rig.stats().vms_retired), (1, 0));
}

#[test]
fn sequential_steps_reuse_a_few_warm_vms() {
    let rig = Rig::with(PoolConfig { vms: 2, ..PoolConfig::default() });
    assert_eq!(rig.stats().vms_created, 0, "the pool starts on the first call, not before");
    let outcome = rig.run(blueprint(json!({"source": "return _CTX + 1"}), chain(200)), json!({"x": 0}));
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    assert_eq!(serde_json::Value::from(&outcome.ctx)["x"], json!(200));
    let stats = rig.stats();
    assert_eq!(stats.vms_created, 2, "{stats:?}");
    assert_eq!(stats.calls, 200, "{stats:?}");
    assert!(stats.compiles <= 2, "each VM compiles the script once: {stats:?}");
}

#[test]
fn a_fanout_of_fifty_completes_in_order() {
    let rig = Rig::with(PoolConfig { vms: 3, ..PoolConfig::default() });
    let items: Vec<i64> = (1..=50).collect();
    let outcome = rig.run(blueprint(json!({"source": "return _CTX * 2"}), fanout(json!(items), "all")), json!({}));
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    let expected: Vec<i64> = items.iter().map(|n| n * 2).collect();
    assert_eq!(serde_json::Value::from(&outcome.ctx)["all"], json!(expected));
    assert_eq!(rig.stats().vms_created, 3);
}

#[test]
fn dropping_the_host_stops_its_pool() {
    let rig = Rig::new();
    assert_eq!(rig.value("return 1", json!(null)), json!(1));
    let bp = Blueprint::from_json(&crate::util::script::one_step(json!({"source": "return 1"})).to_string()).unwrap();
    let compiled = std::rc::Rc::new(rig.host.compiler().compile(std::rc::Rc::new(bp), None).unwrap());
    let engine = rig.engine.clone();
    drop(rig);
    // The compiled blueprint outlives its host: its script attempts fail, saying why.
    let outcome = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(
        tokio::task::LocalSet::new().run_until(async move {
            let init = luaswarm::value::from_json(r#"{"x":1}"#).unwrap();
            engine.start(compiled, init, std::rc::Rc::new(luaswarm::flow::NoExterns)).wait().await
        }),
    );
    assert_eq!(outcome.error.unwrap().message, "the script pool has shut down (its host is gone)");
}
