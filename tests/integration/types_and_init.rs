//! The editor definitions cover the whole `swarm` module, and `swarm init` starts a project
//! that checks and runs.

use std::collections::BTreeSet;
use std::process::Command;

use luaswarm::cli::types::DEFINITIONS;
use luaswarm::host::Host;
use mlua::{Table, Value};

/// Every name the definitions declare: `function a.b.c(`, `function A:m(`, `a.b = ...`, and
/// `---@field` lines, with `local X = {}` (or `X = {}`) after `---@class NAME` read as NAME.
fn declared() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (_, text) in DEFINITIONS {
        let mut aliases: Vec<(String, String)> = Vec::new();
        let mut class: Option<String> = None;
        let resolve = |aliases: &Vec<(String, String)>, path: &str| -> String {
            let (head, rest) = path.split_once('.').unwrap_or((path, ""));
            match aliases.iter().find(|(alias, _)| alias == head) {
                Some((_, name)) if rest.is_empty() => name.clone(),
                Some((_, name)) => format!("{name}.{rest}"),
                None => path.to_string(),
            }
        };
        for line in text.lines() {
            let line = line.trim();
            if let Some(rest) = line.strip_prefix("---@class ") {
                class = rest.split([' ', ':']).next().map(str::to_string);
            } else if let Some(rest) = line.strip_prefix("---@field ") {
                if let (Some(class), Some(field)) = (&class, rest.split_whitespace().next()) {
                    names.insert(format!("{class}.{}", field.trim_end_matches('?')));
                }
            } else if let Some(rest) = line.strip_prefix("function ") {
                let name = rest.split('(').next().unwrap().replace(':', ".");
                names.insert(resolve(&aliases, &name));
            } else if !line.starts_with("--") && line.contains(" = ") {
                let (lhs, rhs) = line.split_once(" = ").unwrap();
                let lhs = lhs.trim_start_matches("local ").trim();
                if rhs.trim() == "{}" && lhs.chars().all(|c| c.is_alphanumeric() || c == '_') {
                    if let Some(class) = class.take() {
                        aliases.push((lhs.to_string(), class.clone()));
                        names.insert(class);
                    }
                } else {
                    names.insert(resolve(&aliases, lhs));
                }
            }
        }
    }
    names
}

/// The exported names of `table` under `prefix`, through the sub-tables in `descend`.
fn exported(prefix: &str, table: &Table, descend: &[&str], out: &mut BTreeSet<String>) {
    for pair in table.pairs::<Value, Value>() {
        let (key, value) = pair.unwrap();
        let Value::String(key) = key else { continue };
        let name = format!("{prefix}.{}", key.to_str().unwrap());
        if let Value::Table(t) = &value
            && descend.contains(&name.as_str())
        {
            exported(&name, t, descend, out);
        }
        out.insert(name);
    }
}

#[test]
fn the_definitions_name_every_export_of_swarm_and_std() {
    let host = Host::new().unwrap();
    let mut exports = BTreeSet::new();
    let descend = ["swarm.flow", "swarm.json", "swarm.token", "swarm.gate", "swarm.output", "swarm.http"];
    exported("swarm", &host.swarm().unwrap(), &descend, &mut exports);
    for module in ["std.layers", "std.pipeline"] {
        let table: Table = host.lua().load(format!("return require('{module}')")).eval().unwrap();
        exported(module, &table, &[], &mut exports);
    }
    assert!(exports.len() > 40 && exports.contains("swarm.flow.step"), "{exports:?}");
    let declared = declared();
    let missing: Vec<&String> = exports.iter().filter(|name| !declared.contains(*name)).collect();
    assert!(missing.is_empty(), "exported but not in lua/types: {missing:?}");
    // The parser itself finds what it should (so the check above cannot pass vacuously).
    for name in ["swarm.run", "swarm.flow.p", "swarm.gate.roles", "swarm.null", "std.pipeline.stage", "swarm.Run.wait"]
    {
        assert!(declared.contains(name), "{name} not parsed: {declared:?}");
    }
    assert!(!declared.contains("swarm.flow.no_such_builder"));
}

#[test]
fn init_makes_a_project_that_checks_and_runs() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("demo");
    let swarm = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_swarm")).args(args).output().unwrap();
    let init = swarm(&["init", project.to_str().unwrap()]);
    assert_eq!(init.status.code(), Some(0), "{}", String::from_utf8_lossy(&init.stderr));
    let main = project.join("main.lua");
    let check = swarm(&["check", main.to_str().unwrap()]);
    assert_eq!(check.status.code(), Some(0), "{}", String::from_utf8_lossy(&check.stderr));
    let run = swarm(&["run", main.to_str().unwrap(), "--input", r#"{"name":"you"}"#]);
    assert_eq!(run.status.code(), Some(0), "{}", String::from_utf8_lossy(&run.stderr));
    let ctx: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(ctx["loud"], "HELLO, YOU!");

    let luarc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(project.join(".luarc.json")).unwrap()).unwrap();
    let library = luarc["workspace.library"][0].as_str().unwrap();
    let defs = std::fs::read_to_string(project.join(library).join("swarm.d.lua")).unwrap();
    assert!(defs.starts_with("---@meta swarm"));
    assert!(project.join(library).join("std/pipeline.d.lua").exists());
    assert_eq!(swarm(&["init", project.to_str().unwrap()]).status.code(), Some(2), "init does not overwrite");

    let types = dir.path().join("defs");
    assert_eq!(swarm(&["types", types.to_str().unwrap()]).status.code(), Some(0));
    assert_eq!(std::fs::read_to_string(types.join("swarm.d.lua")).unwrap(), DEFINITIONS[0].1);
}

/// The `---@field` lines of each `---@class` in swarm.d.lua: class → [(field, type)], the type
/// as written (a type may hold spaces inside `<>`, `{}` or `()`), `?` marks kept.
fn classes() -> std::collections::BTreeMap<String, Vec<(String, String)>> {
    let text = DEFINITIONS.iter().find(|(name, _)| *name == "swarm.d.lua").unwrap().1;
    let mut classes = std::collections::BTreeMap::<String, Vec<(String, String)>>::new();
    let mut class = None;
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("---@class ") {
            class = rest.split([' ', ':']).next().map(str::to_string);
        } else if let Some(rest) = line.strip_prefix("---@field ")
            && let Some(class) = &class
        {
            let (name, rest) = rest.split_once(' ').unwrap();
            let mut depth = 0i32;
            let end = rest
                .char_indices()
                .find(|&(_, c)| {
                    match c {
                        '<' | '{' | '(' => depth += 1,
                        '>' | '}' | ')' => depth -= 1,
                        _ => {}
                    }
                    c == ' ' && depth == 0
                })
                .map_or(rest.len(), |(i, _)| i);
            let optional = name.ends_with('?');
            let ty = format!("{}{}", &rest[..end], if optional { "?" } else { "" });
            classes.entry(class.clone()).or_default().push((name.trim_end_matches('?').to_string(), ty));
        }
    }
    classes
}

/// The alternatives of a type: `swarm.Retry?` → [`swarm.Retry`], `("a"|"b")?` → [`"a"`, `"b"`],
/// `("a"|"b")[]?` → [`"a"[]`, `"b"[]`], `A|B[]` → [`A`, `B[]`].
fn alternatives(ty: &str) -> Vec<String> {
    let ty = ty.trim_end_matches('?');
    if let Some(inner) = ty.strip_prefix('(') {
        let (inner, suffix) = match inner.strip_suffix(")[]") {
            Some(inner) => (inner, "[]"),
            None => (inner.strip_suffix(')').unwrap(), ""),
        };
        return inner.split('|').map(|alt| format!("{alt}{suffix}")).collect();
    }
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in ty.char_indices() {
        match c {
            '<' | '{' | '(' => depth += 1,
            '>' | '}' | ')' => depth -= 1,
            '|' if depth == 0 => {
                parts.push(ty[start..i].to_string());
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(ty[start..].to_string());
    parts
}

/// Every variant of an IR enum, by its wire name: the matches stop compiling when a variant is
/// added, so a new one cannot be missed here.
fn joins() -> Vec<&'static str> {
    use luaswarm::flow::Join;
    let all = [Join::All, Join::Any, Join::Race, Join::AllSettled];
    for join in all {
        match join {
            Join::All | Join::Any | Join::Race | Join::AllSettled => {}
        }
    }
    all.iter().map(|j| j.name()).collect()
}

fn retry_kinds() -> Vec<String> {
    use luaswarm::flow::RetryOn;
    let all = [RetryOn::Failed, RetryOn::Blocked, RetryOn::Timeout];
    for on in all {
        match on {
            RetryOn::Failed | RetryOn::Blocked | RetryOn::Timeout => {}
        }
    }
    all.iter().map(|on| serde_json::to_value(on).unwrap().as_str().unwrap().to_string()).collect()
}

/// The builders, driven from Lua: `fields(class)` is the field list a builder's error gives for
/// an unknown field; `accepts(class, field, alternative)` builds with the field set to a sample
/// of that type and returns the error, if any.
const PROBE: &str = r#"
local swarm = require("swarm")
local F = swarm.flow
local function step(spec) spec.agent = spec.agent or "a"; return F.step(spec) end
local builders = {
  ["swarm.StepSpec"] = { step, {} },
  ["swarm.Retry"] = { function(spec) return F.step({ agent = "a", retry = spec }) end, { max_attempts = 1 } },
  ["swarm.AssignSpec"] = { F.assign, { at = "$.x", value = 1 } },
  ["swarm.BranchSpec"] = { F.branch, { cond = true, on_true = F.seq({}) } },
  ["swarm.LoopSpec"] = { F.loop, { counter = "$.i", max = 1, body = F.seq({}) } },
  ["swarm.FanoutSpec"] = { F.fanout, { items = F.lit({}), body = F.seq({}), out = "$.o" } },
  ["swarm.TrySpec"] = { F.try, { body = F.seq({}) } },
  ["swarm.WaitSpec"] = { F.wait, { signal = "approve" } },
  ["swarm.BlueprintSpec"] = { swarm.blueprint, { id = "probe", flow = F.seq({}) } },
}

local function sample(ty)
  local literal = ty:match('^"(.*)"$')
  if literal then return literal end
  local element = ty:match("^(.*)%[%]$")
  if element then
    local one = element:match('^"(.*)"$')
    return swarm.array(one and { one } or {})
  end
  local known = {
    integer = 1, number = 1.5, string = "a", boolean = true, table = {},
    ["swarm.PathLike"] = F.p("$.x"), ["swarm.ExprLike"] = F.lit(1), ["swarm.Node"] = F.seq({}),
    ["swarm.Retry"] = { max_attempts = 2 }, ["table<string, swarm.Agent>"] = {},
    ["{layers: string[]}"] = { layers = swarm.array({}) },
  }
  if known[ty] == nil then error("the probe has no sample of type " .. ty) end
  return known[ty]
end

local function copy(t) local c = {} for k, v in pairs(t) do c[k] = v end return c end

local function build(class, field, ty)
  local builder = builders[class]
  local spec = copy(builder[2])
  spec[field] = sample(ty)
  return builder[1](spec)
end

return {
  fields = function(class)
    local builder = builders[class]
    if not builder then return nil end
    local spec = copy(builder[2])
    spec.no_such_field = 1
    local ok, err = pcall(builder[1], spec)
    assert(not ok, class .. " took an unknown field")
    return tostring(err):match("%(fields: (.-)%)")
  end,
  accepts = function(class, field, ty)
    local ok, err = pcall(build, class, field, ty)
    return (not ok) and tostring(err) or nil
  end,
  build = build,
}
"#;

#[test]
fn the_definitions_and_the_builders_agree_on_every_field_type_and_enum() {
    let host = Host::new().unwrap();
    let probe: Table = host.lua().load(PROBE).eval().unwrap();
    let fields: mlua::Function = probe.get("fields").unwrap();
    let accepts: mlua::Function = probe.get("accepts").unwrap();
    let classes = classes();
    let mut checked = 0;
    for (class, declared) in &classes {
        let Some(accepted) = fields.call::<Option<String>>(class.as_str()).unwrap() else { continue };
        checked += 1;
        let accepted: BTreeSet<&str> = accepted.split(", ").collect();
        let names: BTreeSet<&str> = declared.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, accepted, "{class}: swarm.d.lua declares the first set, the builder takes the second");
        for (field, ty) in declared {
            for alternative in alternatives(ty) {
                let refused: Option<String> =
                    accepts.call((class.as_str(), field.as_str(), alternative.as_str())).unwrap();
                assert!(
                    refused.is_none(),
                    "{class}.{field} is declared `{ty}`, but the builder refuses {alternative}: {refused:?}"
                );
            }
        }
    }
    assert_eq!(checked, 9, "every builder option class was found in swarm.d.lua: {:?}", classes.keys());

    // The enums are the IR's, every variant of them.
    let literals = |class: &str, field: &str| -> BTreeSet<String> {
        let (_, ty) = classes[class].iter().find(|(name, _)| name == field).unwrap();
        alternatives(ty).iter().map(|alt| alt.trim_end_matches("[]").trim_matches('"').to_string()).collect()
    };
    let joins: BTreeSet<String> = joins().into_iter().map(String::from).collect();
    assert_eq!(literals("swarm.FanoutSpec", "join"), joins);
    assert_eq!(literals("swarm.Retry", "on"), retry_kinds().into_iter().collect());
    for join in &joins {
        let refused: Option<String> = accepts.call(("swarm.FanoutSpec", "join", format!("\"{join}\""))).unwrap();
        assert!(refused.is_none(), "F.fanout refuses join {join}: {refused:?}");
    }
}

/// The LuaLS type of a field in each role, as swarm.d.lua spells it.
fn lua_type(role: luaswarm::flow::Role) -> Vec<String> {
    use luaswarm::flow::Role;
    let one = |ty: &str| vec![ty.to_string()];
    match role {
        Role::Node => one("swarm.Node"),
        Role::NodeList => one("swarm.Node[]"),
        Role::Expr => one("swarm.ExprLike"),
        Role::Path => one("swarm.PathLike"),
        Role::Number => one("integer"),
        Role::Agent => one("string"),
        Role::Retry => one("swarm.Retry"),
        Role::Signal => vec!["string".to_string(), "swarm.ExprLike".to_string()],
        Role::Enum(names) => names.iter().map(|name| format!("\"{name}\"")).collect(),
    }
}

/// The host's description of each node kind (`NODE_SHAPES`) is what the Lua builders take and
/// what swarm.d.lua declares: every option of `F.<kind>` under the same name, with the type of
/// its role, filling the wire field the description names.
#[test]
fn the_builders_and_the_definitions_take_the_fields_of_each_node_kind() {
    use luaswarm::flow::{NODE_SHAPES, Role};
    let host = Host::new().unwrap();
    let probe: Table = host.lua().load(PROBE).eval().unwrap();
    let fields: mlua::Function = probe.get("fields").unwrap();
    let build: mlua::Function = probe.get("build").unwrap();
    let flow: Table = host.swarm().unwrap().get("flow").unwrap();
    let classes = classes();
    for shape in NODE_SHAPES {
        assert!(flow.contains_key(shape.kind).unwrap(), "swarm.flow has no builder `{}`", shape.kind);
        let options: Vec<_> = shape.fields.iter().filter(|f| f.lua.is_some()).collect();
        if options.is_empty() {
            // `F.seq{...}` takes its one list field as the argument itself.
            assert!(matches!(shape.fields, [field] if field.role == Role::NodeList), "{}", shape.kind);
            let seq: Table =
                flow.get::<mlua::Function>(shape.kind).unwrap().call(host.lua().create_table().unwrap()).unwrap();
            assert!(seq.contains_key(shape.fields[0].wire).unwrap(), "{}", shape.kind);
            continue;
        }
        let mut chars = shape.kind.chars();
        let class = format!("swarm.{}{}Spec", chars.next().unwrap().to_uppercase(), chars.as_str());
        let declared = classes.get(&class).unwrap_or_else(|| panic!("swarm.d.lua has no class {class}"));
        let described: BTreeSet<&str> = options.iter().map(|f| f.lua.unwrap()).collect();
        let names: BTreeSet<&str> = declared.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, described, "{class}: swarm.d.lua declares the first set, the host describes the second");
        let accepted: String = fields.call(class.as_str()).unwrap();
        let accepted: BTreeSet<&str> = accepted.split(", ").collect();
        assert_eq!(accepted, described, "{class}: F.{} takes the first set, the host describes the second", shape.kind);
        for field in options {
            let option = field.lua.unwrap();
            let (_, ty) = declared.iter().find(|(name, _)| name == option).unwrap();
            let alternatives = alternatives(ty);
            assert_eq!(alternatives, lua_type(field.role), "{class}.{option} is declared `{ty}`");
            for alternative in &alternatives {
                let node: Table = build
                    .call((class.as_str(), option, alternative.as_str()))
                    .unwrap_or_else(|e| panic!("{class}.{option} = {alternative}: {e}"));
                assert!(
                    node.contains_key(field.wire).unwrap(),
                    "F.{} does not fill `{}` from `{option}`",
                    shape.kind,
                    field.wire
                );
            }
        }
    }
}
