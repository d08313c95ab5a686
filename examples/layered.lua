-- Middleware: a layer written in Lua wraps every step of a blueprint that lists it.
-- `swarm run examples/layered.lua --events ndjson` shows the audit notes and the retries.
local swarm = require("swarm")
local F = swarm.flow

-- Retries a failed attempt up to twice more, and says so in the runtime hints.
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

local flaky_calls = 0

return swarm.blueprint({
  id = "layered",
  layers = { "audit", "patient" },
  agents = {
    -- Fails twice, then answers with the try that worked.
    flaky = function(input, task)
      flaky_calls = flaky_calls + 1
      if flaky_calls < 3 then
        error("not yet")
      end
      return { answer = input.question .. "? 42", try = task.runtime.try }
    end,
  },
  flow = F.step({ agent = "flaky", input = F.p("$"), out = "$.reply" }),
})
