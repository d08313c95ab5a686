-- input: {"score": 72}
-- expect: exit 1
--
-- A branch cond that is not a boolean is an `eval` error, not truthiness: this run fails with
--   {"error":{"kind":"eval","message":"branch cond must be a boolean, got number: 72","value":72},"run_id":"r-…"}
local swarm = require("swarm")
local F = swarm.flow

return swarm.blueprint({
  id = "branch_not_boolean",
  flow = F.branch({
    cond = F.p("$.score"), -- write F.p("$.score"):gt(0), or F.p("$.score"):exists()
    on_true = F.assign({ at = "$.ok", value = true }),
  }),
})
