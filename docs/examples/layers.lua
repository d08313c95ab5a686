-- input: {"question": "six times seven"}
-- expect-json: {"reply": {"answer": "six times seven? 42", "tenant": "acme", "try": 3}, "fallback": "the stub answers", "rerouted": "the stub answers"}
--
-- Middleware layers: `before`, `after` and `wrap` around every attempt of a blueprint that
-- lists the layer in `layers`. Later layers wrap the earlier ones.
local swarm = require("swarm")
local F = swarm.flow
local std_layers = require("std.layers")

-- before: edit the hints the agent sees as task.runtime (or reroute ctx.agent, or raise).
swarm.layer("tenant", {
  before = function(ctx)
    ctx.runtime.tenant = "acme"
  end,
})

-- wrap: call next(ctx) as often as you like; here, up to three times until it passes.
swarm.layer("patient", {
  wrap = function(ctx, next)
    local result
    for try = 1, 3 do
      ctx.runtime.try = try
      result = next(ctx)
      if result.ok then
        return result
      end
    end
    return result
  end,
})

-- after: replace a failed result with a fallback value.
swarm.layer("fallback", {
  after = function(ctx, result)
    if not result.ok and ctx.agent == "broken" then
      return { ok = true, value = "the stub answers" }
    end
  end,
})

-- before can also reroute an attempt to another agent of the blueprint.
swarm.layer("reroute", {
  before = function(ctx)
    if ctx.agent == "retired" then
      ctx.agent = "stub"
    end
  end,
})

-- From the standard library: one log line as each attempt starts and ends.
swarm.layer("log", std_layers.logging({ log = function(line) io.stderr:write(line, "\n") end }))

local calls = 0

return swarm.blueprint({
  id = "layers",
  -- "audit" is built in: a layer_note event as each attempt starts and finishes.
  layers = { "audit", "tenant", "patient", "fallback", "reroute", "log" },
  agents = {
    flaky = function(input, task)
      calls = calls + 1
      if calls < 3 then
        error("not yet")
      end
      return { answer = input.question .. "? 42", tenant = task.runtime.tenant, try = task.runtime.try }
    end,
    broken = function()
      error("always")
    end,
    stub = function()
      return "the stub answers"
    end,
    retired = function()
      error("retired agents never run")
    end,
  },
  flow = F.seq({
    F.step({ agent = "flaky", out = "$.reply" }),
    F.step({ agent = "broken", out = "$.fallback" }),
    F.step({ agent = "retired", out = "$.rerouted" }),
  }),
})
