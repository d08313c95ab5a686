-- A served script, not a blueprint: `swarm serve examples/serve/ticker.lua`. Every 2 s a timer
-- runs the greeting blueprint below and counts its runs in `swarm.state`, which survives
-- reloads: edit the greeting and save, and the count goes on. Ctrl-C stops it.
local swarm = require("swarm")
local F = swarm.flow

local greeting = swarm.blueprint({
  id = "ticker",
  agents = {
    greet = function(input)
      return "hello, " .. input.name .. " (run " .. input.n .. ")"
    end,
  },
  flow = F.step({ agent = "greet", input = F.p("$"), out = "$.greeting" }),
})

swarm.state.n = swarm.state.n or 0

swarm.every(2000, function()
  swarm.state.n = swarm.state.n + 1
  local ctx = swarm.run(greeting, { name = "you", n = swarm.state.n })
  print(ctx.greeting)
end)

swarm.on_reload(function(info)
  print("reloaded: " .. table.concat(info.changed, ", "))
end)
