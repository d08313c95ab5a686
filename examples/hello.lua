-- The smallest useful blueprint: two inline Lua agents in a row.
local swarm = require("swarm")
local F = swarm.flow

return swarm.blueprint({
  id = "hello",
  agents = {
    greet = function(input)
      return "hello, " .. input.name
    end,
    shout = function(text)
      return string.upper(text) .. "!"
    end,
  },
  flow = F.seq({
    F.step({ agent = "greet", input = F.p("$"), out = "$.greeting" }),
    F.step({ agent = "shout", input = F.p("$.greeting"), out = "$.loud" }),
  }),
})
