-- swarm.blueprint normalizes agents, operators and layers, and swarm.compile reports
-- structured errors with file:line.
local swarm = require("swarm")
local expect = require("support.expect")
local F = swarm.flow

local function greet(input)
  return "hi " .. input
end

local bp = swarm.blueprint({
  id = "demo",
  agents = {
    { name = "tool", kind = "rust_fn", spec = { fn_id = "echo" } },
    zeta = greet,
    alpha = { kind = "lua", spec = { fn = function() end } },
  },
  operators = { human = { kind = "console" } },
  layers = { "audit" },
  flow = F.seq({ F.step({ agent = "zeta", input = "x", out = "$.y" }) }),
})

-- A list part keeps its order; map entries follow, sorted by name. Functions become ids.
expect.eq(#bp.agents, 3, "agent count")
expect.eq(bp.agents[1].name, "tool")
expect.eq(bp.agents[2].name, "alpha")
expect.eq(bp.agents[2].spec.fn, "demo/alpha", "a function in spec.fn is registered too")
expect.eq(bp.agents[3].name, "zeta")
expect.json(bp.agents[3], '{"kind":"lua","name":"zeta","spec":{"fn":"demo/zeta"}}', "inline function agent")
expect.json(bp.operators, '[{"kind":"console","name":"human"}]', "operators as a map")
expect.json(bp.layers, '["audit"]', "layers")
assert(swarm.blueprint(bp) == bp, "building a built blueprint returns it unchanged")

-- Compiling gives a handle with the routed agents.
local compiled = swarm.compile(bp)
expect.eq(compiled.id, "demo")
expect.json(compiled.agents, '["alpha","tool","zeta"]', "routed agents")
assert(swarm.compile(compiled) == compiled, "compiling a compiled blueprint is a no-op")

-- Builder errors.
expect.raises(function() swarm.blueprint({ flow = F.seq({}) }) end, { "blueprint_builder.lua:", "`id` must be a non-empty string" })
expect.raises(function() swarm.blueprint({ id = "x" }) end, { "`flow` must be a flow node" })
expect.raises(function() swarm.blueprint({ id = "x", flow = F.seq({}), agnets = {} }) end, { "unknown field 'agnets'" })
expect.raises(function() swarm.blueprint({ id = "x", flow = F.seq({}), agents = { 7 } }) end, { "must be a table or a function" })
expect.raises(function() swarm.blueprint({ id = "x", flow = F.seq({}), agents = { { kind = "lua" } } }) end, { "needs a `name`" })
expect.raises(function()
  swarm.blueprint({ id = "x", flow = F.seq({}), agents = { a = { name = "b", kind = "lua" } } })
end, { "agent under key 'a' is named 'b'" })

-- Compile errors are structured tables: kind, message, agent or step, file and line.
local ok, err = pcall(swarm.compile, swarm.blueprint({
  id = "broken",
  agents = { a = { kind = "rust_fn", spec = { fn_id = "missing" } } },
  flow = F.seq({
    F.step({ agent = "a" }),
    F.step({ agent = "b" }),
  }),
}))
assert(not ok, "compile must fail")
expect.eq(err.kind, "invalid_spec", "the first error by precedence")
expect.eq(err.agent, "a")
expect.eq(err.line, 51, "agent errors point at swarm.blueprint")
assert(string.find(err.file, "blueprint_builder.lua", 1, true), err.file)
expect.eq(#err.errors, 2, "every error is listed")
local second = err.errors[2]
expect.eq(second.kind, "unresolved_ref")
expect.eq(second.step, "b")
expect.eq(second.pointer, "/children/1")
expect.eq(second.line, 56, "step errors point at the F.step line")
assert(string.find(tostring(err), "unresolved_ref", 1, true), "tostring lists every error")

-- A function agent's errors point at the function.
local ok2, err2 = pcall(swarm.compile, swarm.blueprint({
  id = "dup",
  agents = {
    { name = "a", kind = "rust_fn", spec = { fn_id = "echo" } },
    { name = "a", kind = "rust_fn", spec = { fn_id = "echo" } },
  },
  flow = F.seq({}),
}))
assert(not ok2)
expect.eq(err2.kind, "duplicate_agent")

-- A table that is not a blueprint at all.
local ok3, err3 = pcall(swarm.compile, { id = "raw", flow = { kind = "seq", children = {} }, bogus = 1 })
assert(not ok3)
expect.eq(err3.kind, "invalid_blueprint")
assert(string.find(err3.message, "bogus", 1, true), err3.message)

-- A hand-written wire table compiles: empty lists may be written as {}.
local raw = swarm.compile({ id = "raw", flow = { kind = "seq", children = {} } })
expect.eq(raw.id, "raw")
