-- An operator in the loop: a "reviewer" seat, filled here by a Lua function, signs off each
-- expense. Swap `kind = "lua"` for `kind = "console"` and a person at the terminal answers.
local swarm = require("swarm")
local F = swarm.flow

-- The policy a reviewer applies; it sees the agent's rendered system prompt in `info`.
swarm.operator("reviewer", function(expense, info)
  if expense.amount > 500 then
    return swarm.block({ reason = "needs a second signature", prompt = info.system_prompt })
  end
  return { approved = true, note = info.system_prompt }
end)

return swarm.blueprint({
  id = "expenses",
  operators = { { name = "reviewer", kind = "lua" } },
  agents = {
    sign_off = {
      kind = "operator",
      spec = { operator_ref = "reviewer" },
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
