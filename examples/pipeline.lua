-- The standard library: std.pipeline writes the flow (stages, a verdict gate, retry with a
-- fix stage), std.layers adds a logging layer. Both are plain Lua on the public API.
local swarm = require("swarm")
local P = require("std.pipeline")
local layers = require("std.layers")

swarm.layer("log", layers.logging({ log = function(line) io.stderr:write(line, "\n") end }))

local drafts = 0

return swarm.blueprint({
  id = "pipeline",
  layers = { "log" },
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
    P.stage("review")({ agent = "critic", halt_on = { "reject" }, retry = { max = 3, fix = "draft" } }),
    P.stage("publish")({ agent = "printer", input = P.from("draft") }),
    done = "$.done",
  }),
})
