-- input: {"n": 5}
-- expect-json: {"about": {"agent": "inspect", "attempt": 1}, "fact": 120, "verdict": {"kind": "blocked", "step": "guard", "value": {"reason": "too big", "n": 120}}}
--
-- Inline agents: `function(input, task)`. Returning passes, `return swarm.block(v)` blocks,
-- raising an error fails the attempt; `task:dispatch` runs another agent as a sub-task.
local swarm = require("swarm")
local F = swarm.flow

return swarm.blueprint({
  id = "inline_agents",
  agents = {
    -- What the task says about itself.
    inspect = function(_, task)
      task.emit({ type = "progress", stage = "inspecting" }) -- a worker_output event
      return {
        agent = task.agent,
        attempt = task.attempt,
        has_id = type(task.id) == "string",
        has_token = type(task.token) == "string",
      }
    end,
    -- A recursive swarm: each level dispatches the next as a sub-task.
    fact = function(n, task)
      if n <= 1 then
        return 1
      end
      return n * task:dispatch("fact", n - 1)
    end,
    -- A verdict rather than a failure.
    guard = function(n)
      if n > 100 then
        return swarm.block({ reason = "too big", n = n })
      end
      return n
    end,
  },
  flow = F.seq({
    F.step({ agent = "inspect", input = swarm.null, out = "$.about" }),
    F.step({ agent = "fact", input = F.p("$.n"), out = "$.fact" }),
    F.try({ body = F.step({ agent = "guard", input = F.p("$.fact") }), err_at = "$.verdict" }),
  }),
})
