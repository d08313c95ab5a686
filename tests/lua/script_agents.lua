-- Script agents (`{source = ...}`: sandboxed Lua on the host's VM pool) in Lua blueprints
-- (docs/agents.md).
local swarm = require("swarm")
local expect = require("support.expect")
local F = swarm.flow

--- A script agent running `source`, with optional limits.
local function script(source, limits)
  local spec = { source = source }
  for key, value in pairs(limits or {}) do
    spec[key] = value
  end
  return { kind = "lua", spec = spec }
end

-- One script step.
local ctx = swarm.run(swarm.blueprint({
  id = "script_double",
  agents = { s = { kind = "lua", spec = { source = "return _CTX.n * 2" } } },
  flow = F.step({ agent = "s", input = F.p("$"), out = "$.doubled" }),
}), { n = 21 })
expect.eq(ctx.doubled, 42, "doubled")

-- Scripts next to inline agents, and a bridge this module registers, called as host.<name>.
swarm.bridge("greeting", function(name)
  swarm.sleep(1)
  return "hello, " .. name
end)
ctx = swarm.run(swarm.blueprint({
  id = "script_mixed",
  agents = {
    greet = script("return host.greeting(_CTX)"),
    shout = function(text)
      return text:upper()
    end,
  },
  flow = F.seq({
    F.step({ agent = "greet", input = F.p("$.name"), out = "$.greeting" }),
    F.step({ agent = "shout", input = F.p("$.greeting"), out = "$.loud" }),
  }),
}), { name = "lua" })
expect.eq(ctx.loud, "HELLO, LUA", "loud")

-- The sandbox, seen from a script; and the script's own globals.
ctx = swarm.run(swarm.blueprint({
  id = "script_sandbox",
  agents = {
    look = script([[
      return {
        io = io == nil, execute = os.execute == nil, debug = debug == nil, require = require == nil,
        agent = _AGENT, attempt = _ATTEMPT, prompt = _PROMPT,
      }
    ]]),
  },
  flow = F.step({ agent = "look", input = "text", out = "$.seen" }),
}))
expect.json(ctx.seen, '{"agent":"look","attempt":1,"debug":true,"execute":true,"io":true,"prompt":"text","require":true}')

-- A limit is an ordinary failure: `try` catches it, with the limit named in its value.
ctx = swarm.run(swarm.blueprint({
  id = "script_limit",
  agents = { spin = script("while true do end", { max_instructions = 10000 }) },
  flow = F.try({
    body = F.step({ agent = "spin", input = 1, out = "$.never" }),
    err_at = "$.err",
    catch = F.assign({ at = "$.caught", value = true }),
  }),
}))
expect.eq(ctx.caught, true, "caught")
expect.eq(ctx.err.kind, "failed", "kind")
expect.eq(ctx.err.message, "instruction limit of 10000 exceeded", "message")
expect.json(ctx.err.value, '{"limit":"max_instructions","max":10000}', "value")

-- `{value, ok = false}` fails the step with that value; a raised error names the agent's chunk.
local failed = expect.raises(function()
  swarm.run(swarm.blueprint({
    id = "script_not_ok",
    agents = { judge = script("return {value = 'rejected: ' .. _CTX, ok = false}") },
    flow = F.step({ agent = "judge", input = "draft", out = "$.verdict" }),
  }))
end, { "rejected: draft" })
expect.eq(failed.kind, "failed", "not ok")
expect.raises(function()
  swarm.run(swarm.blueprint({
    id = "script_raises",
    agents = { bad = script("local x = nil\nreturn x.field") },
    flow = F.step({ agent = "bad", input = 1, out = "$.y" }),
  }))
end, { "[agent bad]:2: attempt to index a nil value (local 'x')" })

-- A fanout over script lanes keeps item order.
ctx = swarm.run(swarm.blueprint({
  id = "script_fanout",
  agents = { square = script("return _CTX * _CTX") },
  flow = F.fanout({ items = { 1, 2, 3, 4, 5, 6, 7, 8 }, bind = "$.x", out = "$.squares", collect = "$.y",
    body = F.step({ agent = "square", input = F.p("$.x"), out = "$.y" }) }),
}))
expect.json(ctx.squares, "[1,4,9,16,25,36,49,64]", "squares")

-- A script that does not compile is a compile error naming the agent.
local err = expect.raises(function()
  swarm.compile(swarm.blueprint({ id = "script_syntax", agents = { s = script("return +") }, flow = F.step({ agent = "s" }) }))
end, { "invalid_spec", "the script does not compile: [agent s]:1:" })
expect.eq(err.kind, "invalid_spec", "compile error kind")

-- A script's own time limit counts as a timeout, so a step's retry.on = {"timeout"} retries it.
local tries = 0
swarm.bridge("count_try", function() tries = tries + 1 end)
local timed = swarm.run(swarm.blueprint({
  id = "script_timeout",
  agents = { spin = { kind = "lua", spec = { source = "host.count_try() while true do end", timeout_ms = 50 } } },
  flow = F.try({
    body = F.step({ agent = "spin", retry = { max_attempts = 2, on = { "timeout" } } }),
    err_at = "$.err",
  }),
}))
expect.eq(timed.err.kind, "timeout")
assert(string.find(timed.err.message, "time limit of 50 ms exceeded", 1, true), timed.err.message)
expect.eq(tries, 2, "retried once on timeout")
