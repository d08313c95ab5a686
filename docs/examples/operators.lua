-- input: {"expenses": [{"what": "train", "amount": 80}, {"what": "laptop", "amount": 1400}]}
-- expect-json: {"decisions": [{"status": "fulfilled", "value": {"approved": true, "prompt": "Approve 80 EUR for train?"}}, {"status": "rejected", "reason": {"kind": "blocked", "step": "sign_off", "value": {"reason": "needs a second signature"}}}]}
--
-- Operators: a blueprint declares a seat (`operators`), an `operator` agent puts questions to
-- it, and the host fills it: a Lua function here; `kind = "console"` asks the person at the
-- terminal instead.
local swarm = require("swarm")
local F = swarm.flow

-- `info` carries operator, agent, task_id, attempt, token and the rendered system_prompt.
swarm.operator("reviewer", function(expense, info)
  if expense.amount > 500 then
    return swarm.block({ reason = "needs a second signature" })
  end
  return { approved = true, prompt = info.system_prompt }
end)

return swarm.blueprint({
  id = "operators",
  operators = { { name = "reviewer", kind = "lua" } },
  agents = {
    sign_off = {
      kind = "operator",
      spec = { operator_ref = "reviewer" },
      -- A Jinja template over the input's fields.
      profile = { system_prompt = "Approve {{ amount }} EUR for {{ what }}?" },
    },
  },
  flow = F.fanout({
    items = F.p("$.expenses"),
    bind = "$.expense",
    join = "all_settled",
    out = "$.decisions",
    collect = "$.decision",
    body = F.step({ agent = "sign_off", input = F.p("$.expense"), out = "$.decision" }),
  }),
})
