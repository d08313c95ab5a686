-- input: {"name": "you"}
-- expect-json: {"greeting": "hello, you", "loud": "HELLO, YOU!"}
--
-- The smallest useful blueprint: two inline Lua agents in a row.
--   swarm run docs/examples/first.lua --input '{"name": "you"}'
local swarm = require("swarm")
local F = swarm.flow

return swarm.blueprint({
  id = "first",
  agents = {
    greet = function(input)
      return "hello, " .. input.name
    end,
    shout = function(text)
      return text:upper() .. "!"
    end,
  },
  flow = F.seq({
    F.step({ agent = "greet", input = F.p("$"), out = "$.greeting" }),
    F.step({ agent = "shout", input = F.p("$.greeting"), out = "$.loud" }),
  }),
})
