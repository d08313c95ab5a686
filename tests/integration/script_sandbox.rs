//! Script agents' sandbox: every way out we know of is closed, each with its precise error,
//! and nothing one call does is visible to the next.

use crate::util::script::Rig;
use serde_json::json;

/// `source` fails with exactly `message`, positioned at line 1 of the agent's chunk.
fn refuses(rig: &Rig, source: &str, message: &str) {
    assert_eq!(rig.error(source, json!(null)), format!("[agent s]:1: {message}"), "{source}");
}

#[test]
fn io_is_absent() {
    refuses(&Rig::new(), "return io.open('/etc/passwd')", "attempt to index a nil value (global 'io')");
}

#[test]
fn os_keeps_only_the_clock_and_the_date() {
    let rig = Rig::new();
    for name in ["execute", "remove", "rename", "exit", "getenv", "tmpname", "setlocale"] {
        refuses(&rig, &format!("return os.{name}('x', 'y')"), &format!("attempt to call a nil value (field '{name}')"));
    }
    let kept =
        rig.value("return {type(os.time()), type(os.clock()), type(os.date('%Y')), os.difftime(2, 1)}", json!(null));
    assert_eq!(kept, json!(["number", "number", "string", 1.0]));
}

#[test]
fn debug_is_absent() {
    let rig = Rig::new();
    refuses(&rig, "return debug.getinfo(1)", "attempt to index a nil value (global 'debug')");
    refuses(&rig, "debug.sethook()", "attempt to index a nil value (global 'debug')");
}

#[test]
fn package_and_require_are_absent() {
    let rig = Rig::new();
    refuses(&rig, "return package.loadlib('libc.so.6', 'system')", "attempt to index a nil value (global 'package')");
    refuses(&rig, "return require('socket.core')", "attempt to call a nil value (global 'require')");
}

#[test]
fn string_dump_is_absent_from_the_library_and_from_string_methods() {
    let rig = Rig::new();
    refuses(&rig, "return string.dump(function() end)", "attempt to call a nil value (field 'dump')");
    refuses(&rig, "return ('x').dump(function() end)", "attempt to call a nil value (field 'dump')");
}

#[test]
fn load_refuses_bytecode_built_in_the_host() {
    let rig = Rig::new();
    // Real bytecode, made where `string.dump` exists; hex, because ctx strings are UTF-8.
    let hex: String = rig
        .host
        .lua()
        .load("return (string.dump(function() return 'escaped' end):gsub('.', function(c) return string.format('%02x', c:byte()) end))")
        .eval()
        .unwrap();
    let source = "local bytes = _CTX:gsub('..', function(h) return string.char(tonumber(h, 16)) end)
                  local f, err = load(bytes, 'dumped', 'b')
                  return {loaded = f ~= nil, err = err}";
    let result = rig.value(source, json!(hex));
    assert_eq!(result, json!({"loaded": false, "err": "attempt to load a binary chunk (mode is 't')"}));
}

#[test]
fn load_with_its_own_env_reaches_nothing_else() {
    let rig = Rig::new();
    let source = "local f = load('return string, _G, getmetatable, _ENV', 'chunk', 't', {})
                  local s, g, gm, env = f()
                  return {s == nil, g == nil, gm == nil, next(env) == nil}";
    assert_eq!(rig.value(source, json!(null)), json!([true, true, true, true]));
    // Without an env, a loaded chunk sees the calling script's globals, not the VM's.
    let source = "mine = 'here' return load('return mine, string.upper(\"x\")')()";
    assert_eq!(rig.value(source, json!(null)), json!("here"));
}

#[test]
fn dofile_and_loadfile_are_absent() {
    let rig = Rig::new();
    refuses(&rig, "return dofile('/etc/passwd')", "attempt to call a nil value (global 'dofile')");
    refuses(&rig, "return loadfile('/etc/passwd')", "attempt to call a nil value (global 'loadfile')");
}

#[test]
fn the_string_metatable_is_hidden() {
    let rig = Rig::new();
    assert_eq!(rig.value("return getmetatable('')", json!(null)), json!(false));
    refuses(&rig, "getmetatable('').__index.upper = nil", "attempt to index a boolean value");
    assert_eq!(rig.value("return ('abc'):upper()", json!(null)), json!("ABC"));
}

#[test]
fn libraries_are_read_only() {
    let rig = Rig::one_vm();
    refuses(
        &rig,
        "string.upper = function() return 'pwned' end",
        "cannot modify the read-only table 'string' (field 'upper')",
    );
    refuses(&rig, "math.pi = 3", "cannot modify the read-only table 'math' (field 'pi')");
    // Written from inside a library function, so there is no script line to name.
    assert_eq!(
        rig.error("table.insert(string, 'x')", json!(null)),
        "cannot modify the read-only table 'string' (field '1')"
    );
    refuses(&rig, "rawset(math, 'pi', 3)", "rawset: the table 'math' is read-only");
    refuses(&rig, "setmetatable(os, nil)", "cannot change a protected metatable");
    refuses(&rig, "rawset(nil, 1, 2)", "bad argument #1 to 'rawset' (table expected, got nil)");
    assert_eq!(rig.value("return {string.upper('a'), math.pi > 3.14}", json!(null)), json!(["A", true]));
    // Listing a library still works, without handing out the table behind it.
    assert_eq!(rig.value("local n = 0 for _ in pairs(math) do n = n + 1 end return n > 20", json!(null)), json!(true));
}

#[test]
fn globals_do_not_persist_through_g_or_env_tricks() {
    let rig = Rig::one_vm();
    let first = "leak = 1; rawset(_G, 'raw', 2); _ENV.env = 3; _G._G = nil; return 'set'";
    assert_eq!(rig.value(first, json!(null)), json!("set"));
    let second = "return {leak == nil, raw == nil, env == nil, _G == _ENV}";
    assert_eq!(rig.value(second, json!(null)), json!([true, true, true, true]));
    refuses(&rig, "setmetatable(_G, {})", "cannot change a protected metatable");
    assert_eq!(rig.value("return getmetatable(_G)", json!(null)), json!(false));
    // The arrays in `_CTX` share a metatable; it is protected too.
    assert_eq!(rig.value("return getmetatable(_CTX)", json!([1, 2])), json!(false));
}

#[test]
fn collectgarbage_offers_only_collect_count_and_step() {
    let rig = Rig::new();
    refuses(
        &rig,
        "collectgarbage('stop')",
        "collectgarbage: option 'stop' is not available in scripts (use collect, count or step)",
    );
    refuses(
        &rig,
        "collectgarbage('generational')",
        "collectgarbage: option 'generational' is not available in scripts (use collect, count or step)",
    );
    assert_eq!(
        rig.value("collectgarbage() collectgarbage('step') return collectgarbage('count') > 0", json!(null)),
        json!(true)
    );
}

#[test]
fn finalizers_are_refused() {
    refuses(
        &Rig::new(),
        "setmetatable({}, {__gc = function() end})",
        "setmetatable: __gc metamethods are not available in scripts",
    );
}

#[test]
fn nothing_leaks_between_calls() {
    let rig = Rig::one_vm();
    let source = "if _CTX.phase == 1 then
                    counter = 41
                    return 'first'
                  end
                  return {counter = counter or 'nil', secret = _CTX.secret or 'nil', upper = string.upper('ok')}";
    assert_eq!(rig.value(source, json!({"phase": 1, "secret": "s3cr3t"})), json!("first"));
    refuses(&rig, "string.upper = string.lower", "cannot modify the read-only table 'string' (field 'upper')");
    let second = rig.value(source, json!({"phase": 2}));
    assert_eq!(second, json!({"counter": "nil", "secret": "nil", "upper": "OK"}));
    assert_eq!(rig.stats().vms_created, 1, "both calls ran on the one VM");
}

#[test]
fn print_goes_to_stderr_not_to_the_result() {
    assert_eq!(Rig::new().value("print('hello from a script', 1, nil) return 'done'", json!(null)), json!("done"));
}

#[test]
fn a_random_seed_does_not_outlive_its_call() {
    let rig = Rig::one_vm();
    let draw = "return math.random(1, 1 << 40)";
    let first_after_seed = rig.value(&format!("math.randomseed(42) {draw}"), json!(null));
    assert_eq!(
        rig.value(&format!("math.randomseed(42) {draw}"), json!(null)),
        first_after_seed,
        "seeding works in a call"
    );
    rig.value("math.randomseed(42)", json!(null));
    assert_ne!(rig.value(draw, json!(null)), first_after_seed, "the next call does not draw from the seeded sequence");
}

#[test]
fn table_move_cannot_hold_a_vm_in_c() {
    let rig = Rig::new();
    refuses(&rig, "table.move({}, 1, 2^62, 1)", "table.move: too many elements to move (at most 67108864 in a script)");
    assert_eq!(rig.value("return table.move({1, 2, 3}, 1, 3, 2)", json!(null)), json!([1, 1, 2, 3]));
}
