//! The embedded `std.*` modules: `require` finds them in the binary, and a `std/<name>.lua`
//! beside the blueprint (anywhere on `package.path`) takes their place.

use std::path::Path;

use crate::util::bin::write;

use luaswarm::host::{Host, lua_error_message};
use luaswarm::value::Value;

/// A blueprint that reports, in its metadata, which `std.layers` and `std.pipeline` it got.
const PROBE: &str = r#"
local swarm = require("swarm")
local layers = require("std.layers")
local P = require("std.pipeline")
return swarm.blueprint({
  id = "probe",
  metadata = {
    layers = layers.origin or "embedded",
    timing = type(layers.timing),
    pipeline = type(P.pipeline),
  },
  agents = { a = function(x) return x end },
  flow = swarm.flow.step({ agent = "a" }),
})
"#;

/// Loads `probe.lua` from `dir` in a fresh host; returns its metadata.
fn probe(dir: &Path) -> Value {
    write(dir, "probe.lua", PROBE);
    let host = Host::new().expect("a host");
    let bp = host.load_file(&dir.join("probe.lua")).unwrap_or_else(|e| panic!("{e}"));
    bp.metadata
}

fn field<'v>(metadata: &'v Value, key: &str) -> &'v str {
    metadata.get(key).and_then(Value::as_str).unwrap_or_else(|| panic!("metadata.{key} in {}", metadata.to_json()))
}

#[test]
fn require_finds_the_embedded_modules() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let metadata = probe(dir.path());
    assert_eq!(field(&metadata, "layers"), "embedded");
    assert_eq!(field(&metadata, "timing"), "function");
    assert_eq!(field(&metadata, "pipeline"), "function");
}

#[test]
fn a_std_module_beside_the_blueprint_overrides_the_embedded_one() {
    let dir = tempfile::tempdir().expect("a temp dir");
    write(dir.path(), "std/layers.lua", "return { origin = 'disk' }\n");
    let metadata = probe(dir.path());
    assert_eq!(field(&metadata, "layers"), "disk", "the file on package.path wins");
    assert_eq!(field(&metadata, "timing"), "nil", "and it is the whole module");
    assert_eq!(field(&metadata, "pipeline"), "function", "modules not on disk still come embedded");
}

#[test]
fn an_unknown_std_module_lists_the_embedded_ones() {
    let host = Host::new().expect("a host");
    let err = host.lua().load(r#"require("std.nope")"#).set_name("=probe").exec().unwrap_err();
    let message = lua_error_message(&err);
    assert!(message.contains("module 'std.nope' not found"), "{message}");
    assert!(message.contains("no embedded module 'std.nope' (embedded: std.layers, std.pipeline)"), "{message}");
    let err = host.lua().load(r#"require("nope")"#).set_name("=probe").exec().unwrap_err();
    let message = lua_error_message(&err);
    assert!(!message.contains("embedded"), "names outside std. are not ours to explain: {message}");
}

#[test]
fn embedded_modules_name_the_callers_line_and_their_own_file() {
    let host = Host::new().expect("a host");
    // A pipeline entry that is not a stage: the error names the caller's line, and the
    // module's chunk is named so that tracebacks point at the embedded file.
    let err = host
        .lua()
        .load("local P = require('std.pipeline')\nP.pipeline({ 42 })")
        .set_name("@caller.lua")
        .exec()
        .unwrap_err();
    let message = lua_error_message(&err);
    assert!(message.starts_with("caller.lua:2: std.pipeline: P.pipeline: entry 1 is not a stage"), "{message}");
    let loaded: String =
        host.lua().load("return select(2, package.searchers[3]('std.layers'))").eval().expect("the searcher answers");
    assert_eq!(loaded, "[swarm]/std/layers.lua");
}
