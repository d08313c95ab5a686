-- input: {"topic": "lua"}
-- expect-json: {"done": true, "review": {"verdict": "approve"}, "review_retries": 2, "publish": "printed: lua!!!"}
--
-- std.pipeline: linear stages expanded into plain flow nodes (`swarm compile` shows them).
local swarm = require("swarm")
local P = require("std.pipeline")

local drafts = 0

return swarm.blueprint({
  id = "pipeline",
  agents = {
    -- Each draft is a little longer than the last.
    writer = function(ctx)
      drafts = drafts + 1
      return ctx.topic .. string.rep("!", drafts)
    end,
    -- Rejects drafts with fewer than three exclamation marks.
    critic = function(draft)
      local _, marks = draft:gsub("!", "")
      return { verdict = marks >= 3 and "approve" or "reject", marks = marks }
    end,
    printer = function(draft)
      return "printed: " .. draft
    end,
  },
  flow = P.pipeline({
    P.stage("draft")({ agent = "writer" }),
    -- While the verdict is "reject": run the draft stage again, then this one (at most 3 times).
    P.stage("review")({ agent = "critic", halt_on = { "reject" }, retry = { max = 3, fix = "draft" } }),
    P.stage("publish")({ agent = "printer", input = P.from("draft") }),
    done = "$.done",
  }),
})
