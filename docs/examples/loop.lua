-- expect-json: {"i": 4, "total": 10, "n": 3}
--
-- `loop`: counter := 0; while counter < max and cond is truthy: body; counter += 1.
local swarm = require("swarm")
local F = swarm.flow

return swarm.blueprint({
  id = "loop",
  agents = {
    add = function(input)
      return input.total + input.i + 1
    end,
  },
  flow = F.seq({
    F.assign({ at = "$.total", value = 0 }),
    -- Runs 4 times (i = 0..3): total = 1 + 2 + 3 + 4. `cond` defaults to true, so `max` bounds it.
    F.loop({
      counter = "$.i",
      max = 4,
      body = F.step({ agent = "add", input = F.p("$"), out = "$.total" }),
    }),
    -- Stops as soon as cond is falsy: here after 3 rounds although max is 10.
    F.loop({
      counter = "$.n",
      max = 10,
      cond = F.p("$.n"):lt(3),
      body = F.assign({ at = "$.last", value = F.p("$.n") }),
    }),
  }),
})
