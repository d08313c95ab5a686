//! The compiler's five errors, their precedence, `file:line` for Lua blueprints, and the
//! `strict_kind` / `strict_refs` / default-spawner switches (docs/agents.md).

use std::path::Path;
use std::rc::Rc;

use crate::util::bin::write;

use luaswarm::blueprint::Blueprint;
use luaswarm::blueprint::compile::{CompileErrorKind, CompileErrors, CompiledBlueprint};
use luaswarm::host::Host;
use luaswarm::worker::{Job, Spawner, Verdict, WorkerResult};

fn compile_lua(source: &str) -> Result<CompiledBlueprint, CompileErrors> {
    let dir = tempfile::tempdir().unwrap();
    let path = std::path::PathBuf::from(write(dir.path(), "bp.lua", source));
    let host = Host::new().unwrap();
    let bp = host.load_file(&path).unwrap();
    host.compiler().compile(Rc::new(bp), Some(dir.path()))
}

fn compile_json(text: &str) -> Result<CompiledBlueprint, CompileErrors> {
    let bp = Blueprint::from_json(text).unwrap();
    Host::new().unwrap().detached_compiler().compile(Rc::new(bp), None)
}

fn kinds(errors: &CompileErrors) -> Vec<CompileErrorKind> {
    errors.0.iter().map(|e| e.kind).collect()
}

/// Every kind of error at once, declared in the reverse of reporting order.
const ALL_FIVE: &str = r#"local swarm = require("swarm")
local F = swarm.flow
return swarm.blueprint({
  id = "five",
  agents = {
    { name = "bad_spec", kind = "subprocess", spec = { args = { "x" } } },
    { name = "weird", kind = "wizard" },
    { name = "twice", kind = "rust_fn", spec = { fn_id = "echo" } },
    { name = "twice", kind = "rust_fn", spec = { fn_id = "echo" } },
    { name = "asks", kind = "operator", spec = { operator_ref = "nobody" } },
  },
  flow = F.seq({
    F.step({ agent = "twice" }),
    F.step({ agent = "ghost" }),
  }),
})
"#;

#[test]
fn reports_all_five_kinds_in_precedence_order_with_lines() {
    let errors = compile_lua(ALL_FIVE).err().expect("must not compile");
    assert_eq!(
        kinds(&errors),
        [
            CompileErrorKind::UnresolvedOperatorRef,
            CompileErrorKind::DuplicateAgent,
            CompileErrorKind::UnknownKind,
            CompileErrorKind::InvalidSpec,
            CompileErrorKind::UnresolvedRef,
        ]
    );
    let lines: Vec<String> = errors.0.iter().map(|e| e.to_string()).collect();
    assert!(lines[0].ends_with("bp.lua:3: unresolved_operator_ref: agent 'asks' refers to operator 'nobody', which is not declared (none are declared)"), "{}", lines[0]);
    assert!(lines[1].contains("bp.lua:3: duplicate_agent: agent 'twice' is declared more than once"), "{}", lines[1]);
    assert!(lines[2].contains("bp.lua:3: unknown_kind: agent 'weird' has unknown kind 'wizard'"), "{}", lines[2]);
    assert!(
        lines[3].contains("bp.lua:3: invalid_spec: agent 'bad_spec' (subprocess): `program` is required"),
        "{}",
        lines[3]
    );
    assert!(lines[4].contains("bp.lua:14: unresolved_ref: step refers to agent 'ghost'"), "{}", lines[4]);
    assert_eq!(errors.first().kind, CompileErrorKind::UnresolvedOperatorRef);
    assert_eq!(errors.0[4].step.as_deref(), Some("ghost"));
    assert_eq!(errors.0[4].pointer.as_deref(), Some("/children/1"));
}

#[test]
fn a_duplicate_is_located_at_its_second_declaration_a_function_at_its_definition() {
    let source = r#"local swarm = require("swarm")
local F = swarm.flow
local function helper(x)
  return x
end
return swarm.blueprint({
  id = "dup",
  agents = { { name = "helper", kind = "rust_fn", spec = { fn_id = "echo" } }, helper = helper },
  flow = F.seq({}),
})
"#;
    let errors = compile_lua(source).err().unwrap();
    assert_eq!(kinds(&errors), [CompileErrorKind::DuplicateAgent]);
    assert!(errors.first().to_string().contains("bp.lua:3:"), "{}", errors.first());
}

#[test]
fn one_mistake_is_reported_once() {
    // A step naming an agent whose spec is wrong is not also an unresolved ref.
    let source = r#"local swarm = require("swarm")
return swarm.blueprint({
  id = "once",
  agents = { { name = "a", kind = "rust_fn", spec = {} } },
  flow = swarm.flow.step({ agent = "a" }),
})
"#;
    let errors = compile_lua(source).err().unwrap();
    assert_eq!(kinds(&errors), [CompileErrorKind::InvalidSpec]);
    assert!(errors.first().message.contains("`fn_id` is required"), "{}", errors.first());
}

#[test]
fn strict_kind_off_drops_the_agent_with_a_warning() {
    let json = r#"{"id":"k","strategy":{"strict_kind":false},
      "agents":[{"name":"w","kind":"wizard"},{"name":"e","kind":"rust_fn","spec":{"fn_id":"echo"}}],
      "flow":{"kind":"step","ref":"e","in":{"op":"lit","value":1},"out":{"op":"path","at":"$.y"}}}"#;
    let compiled = compile_json(json).unwrap();
    assert_eq!(compiled.agent_names(), ["e"]);
    assert!(compiled.warnings[0].message.contains("dropped (strict_kind = false)"), "{}", compiled.warnings[0]);

    // A step that still names the dropped agent no longer resolves.
    let json = json.replace(r#""ref":"e""#, r#""ref":"w""#);
    let errors = compile_json(&json).err().unwrap();
    assert_eq!(kinds(&errors), [CompileErrorKind::UnresolvedRef]);
}

#[test]
fn strict_refs_off_compiles_and_warns() {
    let json = r#"{"id":"r","strategy":{"strict_refs":false},
      "flow":{"kind":"step","ref":"nobody","in":{"op":"lit","value":1},"out":{"op":"path","at":"$.y"}}}"#;
    let compiled = compile_json(json).unwrap();
    assert!(compiled.route("nobody").is_none());
    assert!(compiled.warnings[0].message.contains("'nobody'"), "{}", compiled.warnings[0]);
    let strict = json.replace(r#""strategy":{"strict_refs":false},"#, "");
    assert_eq!(kinds(&compile_json(&strict).err().unwrap()), [CompileErrorKind::UnresolvedRef]);
}

struct Fallback;

impl Spawner for Fallback {
    fn spawn(&self, job: Job) -> futures::future::LocalBoxFuture<'static, WorkerResult> {
        Box::pin(async move { Ok(Verdict::Pass(job.input)) })
    }
}

#[test]
fn a_default_spawner_resolves_every_ref() {
    let json = r#"{"id":"d","flow":{"kind":"step","ref":"anyone","in":{"op":"lit","value":1},"out":{"op":"path","at":"$.y"}}}"#;
    let bp = Rc::new(Blueprint::from_json(json).unwrap());
    let host = Host::new().unwrap();
    let mut compiler = host.detached_compiler();
    assert!(compiler.compile(bp.clone(), None).is_err());
    compiler.set_default_spawner(Rc::new(Fallback));
    let compiled = compiler.compile(bp, None).unwrap();
    assert!(compiled.route("anyone").is_some());
}

#[test]
fn operators_must_be_declared_and_of_a_known_kind() {
    let json = r#"{"id":"o","operators":[{"name":"human","kind":"telepathy"}],
      "agents":[{"name":"ask","kind":"operator","spec":{"operator_ref":"human"}}],
      "flow":{"kind":"step","ref":"ask","in":{"op":"lit","value":1},"out":{"op":"path","at":"$.y"}}}"#;
    let errors = compile_json(json).err().unwrap();
    assert_eq!(kinds(&errors), [CompileErrorKind::UnknownKind]);
    assert!(errors.first().message.contains("operator 'human' has unknown kind 'telepathy'"));
    let fixed = json.replace("telepathy", "console");
    assert!(compile_json(&fixed).is_ok());
}

#[test]
fn lua_specs_are_checked() {
    for (spec, needle) in [
        (r#"{}"#, "give exactly one of fn, source or file (got none)"),
        (r#"{"fn":"x","source":"return 1"}"#, "(got fn and source)"),
        (r#"{"source":"return 1","max_memory":0}"#, "`max_memory`"),
        (r#"{"source":"return 1","budget":1}"#, "unknown field `budget`"),
        (r#"{"file":"does/not/exist.lua"}"#, "does not exist"),
    ] {
        let json = format!(
            r#"{{"id":"l","agents":[{{"name":"s","kind":"lua","spec":{spec}}}],"flow":{{"kind":"seq","children":[]}}}}"#
        );
        let errors = compile_json(&json).err().unwrap_or_else(|| panic!("{spec} must not compile"));
        assert_eq!(kinds(&errors), [CompileErrorKind::InvalidSpec], "{spec}");
        assert!(errors.first().message.contains(needle), "{spec}: {}", errors.first());
    }
}

#[test]
fn script_files_resolve_beside_the_blueprint() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "agent.lua", "return _CTX");
    let json = r#"{"id":"f","agents":[{"name":"s","kind":"lua","spec":{"file":"agent.lua","timeout_ms":100}}],"flow":{"kind":"seq","children":[]}}"#;
    let bp = Rc::new(Blueprint::from_json(json).unwrap());
    let compiler = Host::new().unwrap().detached_compiler();
    assert!(compiler.compile(bp.clone(), Some(dir.path())).is_ok());
    assert!(compiler.compile(bp, Some(Path::new("/nonexistent"))).is_err());
}

#[test]
fn inline_functions_resolve_only_in_their_own_vm() {
    let source = r#"local swarm = require("swarm")
return swarm.blueprint({ id = "fns", agents = { f = function() end }, flow = swarm.flow.step({ agent = "f" }) })
"#;
    assert!(compile_lua(source).is_ok());
    // The same blueprint as JSON: the reference is kept, with a warning instead of an error.
    let compiled = compile_lua(source).unwrap();
    let json = compiled.blueprint.to_json_pretty();
    let detached = compile_json(&json).unwrap();
    assert!(detached.warnings[0].message.contains("inline function 'fns/f'"), "{}", detached.warnings[0]);
    // Another VM that never ran the module does not have the function.
    let other = Host::new().unwrap();
    let errors = other.compiler().compile(Rc::new(Blueprint::from_json(&json).unwrap()), None).err().unwrap();
    assert!(errors.first().message.contains("no function 'fns/f' is registered"), "{}", errors.first());
}

#[test]
fn json_blueprints_name_the_file_and_the_node() {
    let dir = tempfile::tempdir().unwrap();
    let path = std::path::PathBuf::from(write(
        dir.path(),
        "bp.json",
        r#"{"id":"j","flow":{"kind":"seq","children":[{"kind":"step","ref":"x","in":{"op":"lit","value":1},"out":{"op":"path","at":"$.y"}}]}}"#,
    ));
    let host = Host::new().unwrap();
    let bp = host.load_file(&path).unwrap();
    let errors = host.detached_compiler().compile(Rc::new(bp), None).err().unwrap();
    let text = errors.first().to_string();
    assert!(
        text.ends_with("bp.json: unresolved_ref: step refers to agent 'x', which is not declared (at flow/children/0)"),
        "{text}"
    );
}

#[test]
fn an_unknown_layer_is_an_error_on_the_host_and_a_warning_when_checked_apart() {
    let json = r#"{"id":"l","layers":["audit","homemade"],"flow":{"kind":"seq","children":[]}}"#;
    let host = Host::new().unwrap();
    let errors = host.compiler().compile(Rc::new(Blueprint::from_json(json).unwrap()), None).err().unwrap();
    assert_eq!(kinds(&errors), [CompileErrorKind::UnknownLayer]);
    assert!(errors.first().message.starts_with("unknown layer 'homemade' (known: alias, audit,"), "{}", errors.first());
    let checked = compile_json(json).unwrap();
    assert!(checked.warnings[0].message.contains("the host that runs this blueprint must register it"));
}
