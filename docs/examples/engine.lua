-- expect-json: {"report": {"child": {"doubled": 42}, "events": ["run_started", "task_created", "attempt_started", "attempt_finished", "run_finished"], "verified": true, "refused": "role_violation", "caught": "failed"}}
--
-- The engine from Lua: an agent that starts runs of another blueprint on an engine of its own,
-- follows their events, and mints and checks a token. Agents run as coroutines, so waiting
-- on a run here does not block other work.
local swarm = require("swarm")
local F = swarm.flow

local child = swarm.blueprint({
  id = "child",
  agents = {
    double = function(n)
      return n * 2
    end,
    fail = { kind = "rust_fn", spec = { fn_id = "fail" } },
  },
  flow = F.branch({
    cond = F.p("$.n"):gte(0),
    on_true = F.step({ agent = "double", input = F.p("$.n"), out = "$.doubled" }),
    on_false = F.step({ agent = "fail", input = "negative" }),
  }),
})

return swarm.blueprint({
  id = "engine",
  agents = {
    supervise = function()
      local engine = swarm.engine({ token_secret = "docs example", max_spawn_depth = 4 })
      local events = swarm.array({})
      local run = engine:start(child, { n = 21 }, {
        on_event = function(event)
          events[#events + 1] = event.kind
        end,
      })
      local ctx = run:wait()

      -- A failed run raises a structured error: {kind, message, step, value, run_id}.
      local ok, err = pcall(swarm.run, child, { n = -1 })
      assert(not ok and err.run_id)

      local token = engine:mint({ role = "observer", ttl = 60 })
      local refused_ok, refusal = engine:verify(token, "cancel_task")
      assert(refused_ok == nil)
      return {
        child = { doubled = ctx.doubled },
        events = events,
        verified = engine:verify(token, "read_trace"),
        refused = refusal.kind,
        caught = err.kind,
      }
    end,
  },
  flow = F.step({ agent = "supervise", input = swarm.null, out = "$.report" }),
})
