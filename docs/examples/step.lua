-- expect-json: {"first": {"tries": 3}, "slow": {"kind": "timeout", "step": "sleepy"}}
--
-- `step`: `input` defaults to the whole ctx and `out` to `$.<agent>`; `timeout_ms` bounds each
-- attempt and `retry` makes new attempts of the same task.
local swarm = require("swarm")
local F = swarm.flow

local calls = 0

return swarm.blueprint({
  id = "step",
  agents = {
    -- Fails on its first two attempts, then answers.
    flaky = function(_, task)
      calls = calls + 1
      if task.attempt < 3 then
        error("not yet (attempt " .. task.attempt .. ")")
      end
      return { tries = calls }
    end,
    -- Takes longer than its step allows.
    sleepy = function()
      swarm.sleep(1000)
      return "too late"
    end,
  },
  flow = F.seq({
    F.step({
      agent = "flaky",
      out = "$.first",
      retry = { max_attempts = 3, backoff_ms = 10, backoff_factor = 2, on = { "failed" } },
    }),
    F.try({
      body = F.step({ agent = "sleepy", timeout_ms = 50, retry = { max_attempts = 2 } }),
      err_at = "$.slow",
    }),
  }),
})
