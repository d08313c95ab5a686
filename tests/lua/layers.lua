-- Middleware in Lua: swarm.layer with before / after / wrap (docs/layers.md).
local swarm = require("swarm")
local expect = require("support.expect")
local F = swarm.flow

local trail = {}
local function tracer(name)
  return {
    before = function(ctx)
      trail[#trail + 1] = name .. ">"
      ctx.runtime[name] = true
    end,
    after = function(ctx, result)
      trail[#trail + 1] = "<" .. name
    end,
  }
end
swarm.layer("inner", tracer("inner"))
swarm.layer("outer", tracer("outer"))
swarm.layer("everywhere", tracer("base"), { base = true })

local function bp(layers, agents, input)
  return swarm.blueprint({
    id = "layered",
    layers = layers,
    agents = agents or {
      echo = function(input, task) return { got = input, runtime = task.runtime, agent = task.agent } end,
      other = function() return "rerouted" end,
    },
    flow = F.step({ agent = "echo", input = input or "hi", out = "$.r" }),
  })
end

-- Later layers are outer; base layers sit inside every hint layer.
local ctx = swarm.run(bp({ "inner", "outer" }))
expect.eq(table.concat(trail, " "), "outer> inner> base> <base <inner <outer", "layer order")
expect.json(ctx.r.runtime, '{"base":true,"inner":true,"outer":true}', "runtime hints reach the worker")

-- before can reroute.
swarm.layer("reroute", { before = function(ctx) ctx.agent = "other" end })
expect.eq(swarm.run(bp({ "reroute" })).r, "rerouted")

-- before can reject; the error names the layer.
swarm.layer("gatekeeper", { before = function(ctx) error("no entry for " .. ctx.agent) end })
local ok, err = pcall(swarm.run, bp({ "gatekeeper" }))
assert(not ok)
expect.eq(err.kind, "failed")
assert(string.find(err.message, "layer 'gatekeeper' (before):", 1, true), err.message)
assert(string.find(err.message, "no entry for echo", 1, true), err.message)

-- after can replace the result.
swarm.layer("polish", {
  after = function(ctx, result)
    if result.ok then
      return { value = string.upper(result.value.got), ok = true }
    end
  end,
})
expect.eq(swarm.run(bp({ "polish" })).r, "HI")
swarm.layer("veto", { after = function() return { value = "vetoed", ok = false } end })
ok, err = pcall(swarm.run, bp({ "veto" }))
assert(not ok)
expect.eq(err.message, "vetoed")

-- wrap: retry through next, or short-circuit without it.
local calls = 0
local flaky = {
  flaky = function()
    calls = calls + 1
    if calls < 3 then error("try again") end
    return "third time"
  end,
}
swarm.layer("retry3", {
  wrap = function(ctx, next)
    local result
    for _ = 1, 3 do
      result = next(ctx)
      if result.ok then return result end
    end
    return result
  end,
})
local flaky_bp = swarm.blueprint({ id = "flaky", layers = { "retry3" }, agents = flaky, flow = F.step({ agent = "flaky" }) })
expect.eq(swarm.run(flaky_bp).flaky, "third time")
expect.eq(calls, 3)
local cache = {}
swarm.layer("cache", {
  wrap = function(ctx, next)
    local key = swarm.json.encode(ctx.input)
    if cache[key] == nil then
      cache[key] = next(ctx)
    end
    return cache[key]
  end,
})
calls = 0
local counted = { count = function(x) calls = calls + 1 return x * 2 end }
local cached = swarm.blueprint({
  id = "cached",
  layers = { "cache" },
  agents = counted,
  flow = F.fanout({ items = { 1, 2, 1, 2, 1 }, bind = "$.x", out = "$.r", collect = "$.y",
    max_concurrency = 1, body = F.step({ agent = "count", input = F.p("$.x"), out = "$.y" }) }),
})
expect.json(swarm.run(cached).r, "[2,4,2,4,2]", "cached answers")
expect.eq(calls, 2, "one call per distinct input")

-- A blocked result passes through layers as blocked.
swarm.layer("watch", { after = function(ctx, result) assert(result.blocked == true and result.ok == false) end })
ok, err = pcall(swarm.run, bp({ "watch" }, { echo = function() return swarm.block("nope") end }))
expect.eq(err.kind, "blocked")

-- Layers are coroutines too.
swarm.layer("slow", { before = function() swarm.sleep(5) end })
expect.eq(swarm.run(bp({ "slow" })).r.got, "hi")

-- An unknown key is a compile error listing the known ones.
ok, err = pcall(swarm.compile, bp({ "nosuch" }))
assert(not ok)
expect.eq(err.kind, "unknown_layer")
assert(string.find(err.message, "unknown layer 'nosuch' (known: ", 1, true), err.message)
assert(string.find(err.message, "gatekeeper", 1, true), err.message)
expect.raises(function() swarm.layer("bad", { bfore = function() end }) end, { "unknown field `bfore`" })
expect.raises(function() swarm.layer("empty", {}) end, { "at least one of before, after, wrap" })
