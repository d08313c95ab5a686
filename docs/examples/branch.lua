-- input: {"score": 72}
-- expect-json: {"grade": "pass", "note": "no retake"}
--
-- `branch`: `cond` must evaluate to a boolean; `on_true` / `on_false` may be left out.
local swarm = require("swarm")
local F = swarm.flow

return swarm.blueprint({
  id = "branch",
  flow = F.seq({
    F.branch({
      cond = F.p("$.score"):gte(50),
      on_true = F.assign({ at = "$.grade", value = "pass" }),
      on_false = F.assign({ at = "$.grade", value = "fail" }),
    }),
    -- Only one arm: nothing happens when the cond is false.
    F.branch({
      cond = F.p("$.grade"):eq("pass"),
      on_true = F.assign({ at = "$.note", value = "no retake" }),
    }),
  }),
})
