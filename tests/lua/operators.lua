-- Operators: Lua operators registered with swarm.operator, the rendered system prompt, and
-- what an operator may answer (docs/agents.md).
local swarm = require("swarm")
local expect = require("support.expect")
local F = swarm.flow

local seen = {}
swarm.operator("reviewer", function(input, info)
  seen[#seen + 1] = info
  swarm.sleep(1) -- operators run as coroutines too
  if input.title == "bad" then
    return swarm.block({ reason = "not good enough" })
  end
  return { approved = true, by = info.operator, read = info.system_prompt }
end)

local function blueprint(prompt)
  return swarm.blueprint({
    id = "review_desk",
    operators = { { name = "reviewer", kind = "lua" } },
    agents = {
      review = { kind = "operator", spec = { operator_ref = "reviewer" }, profile = { system_prompt = prompt } },
    },
    flow = F.try({ body = F.step({ agent = "review", input = F.p("$.doc") }), err_at = "$.error" }),
  })
end

local ctx = swarm.run(blueprint("Review “{{ title }}” ({{ pages }} pages)."), { doc = { title = "the plan", pages = 3 } })
expect.eq(ctx.review.approved, true)
expect.eq(ctx.review.by, "reviewer")
expect.eq(ctx.review.read, "Review “the plan” (3 pages).", "the operator sees the rendered prompt")
expect.eq(seen[1].agent, "review")
expect.eq(seen[1].attempt, 1)
assert(type(seen[1].task_id) == "string" and #seen[1].token > 20)

-- An operator blocks like an agent.
ctx = swarm.run(blueprint("Review {{ title }}"), { doc = { title = "bad" } })
expect.eq(ctx.error.kind, "blocked")
expect.eq(ctx.error.value.reason, "not good enough")

-- A variable the input lacks fails the step and names the variable.
ctx = swarm.run(blueprint("Review {{ title }} by {{ deadline }}"), { doc = { title = "x" } })
expect.eq(ctx.error.kind, "failed")
assert(string.find(ctx.error.message, "undefined variable `deadline`", 1, true), ctx.error.message)

-- A template that does not parse, or an operator nobody registered, is a compile error.
local ok, err = pcall(swarm.compile, blueprint("Review {{ title "))
assert(not ok)
expect.eq(err.kind, "invalid_spec")
assert(string.find(err.message, "system_prompt does not parse", 1, true), err.message)

ok, err = pcall(swarm.compile, swarm.blueprint({
  id = "nobody_home",
  operators = { { name = "ghost", kind = "lua" } },
  agents = { ask = { kind = "operator", spec = { operator_ref = "ghost" } } },
  flow = F.step({ agent = "ask" }),
}))
assert(not ok)
expect.eq(err.kind, "invalid_spec")
assert(string.find(err.message, "swarm.operator(\"ghost\", fn)", 1, true), err.message)
