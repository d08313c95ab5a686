-- Reviews a batch of drafts. Each draft gets its own lane: it is scored, revised while the
-- score is under the threshold (at most three rounds), and the final text is collected.
-- Publishing may fail; the flow records why and carries on.
local swarm = require("swarm")
local F = swarm.flow

--- A stand-in reviewer: longer drafts with a full stop score higher.
local function score(draft)
  local s = math.min(#draft / 40, 1.0)
  if draft:sub(-1) ~= "." then
    s = s / 2
  end
  return { score = s }
end

local function revise(draft)
  if draft:sub(-1) ~= "." then
    return draft .. "."
  end
  return draft .. " It has been revised to say more."
end

return swarm.blueprint({
  id = "review",
  agents = {
    score = score,
    revise = revise,
    publish = { kind = "rust_fn", spec = { fn_id = "echo" } },
  },
  flow = F.seq({
    F.assign({ at = "$.threshold", value = 0.7 }),
    F.fanout({
      items = F.p("$.drafts"),
      bind = "$.draft",
      out = "$.reviewed",
      collect = "$.draft",
      max_concurrency = 8,
      body = F.seq({
        F.step({ agent = "score", input = F.p("$.draft"), out = "$.review" }),
        F.loop({
          counter = "$.rounds",
          max = 3,
          cond = F.p("$.review.score"):lt(F.p("$.threshold")),
          body = F.seq({
            F.step({ agent = "revise", input = F.p("$.draft"), out = "$.draft" }),
            F.step({ agent = "score", input = F.p("$.draft"), out = "$.review" }),
          }),
        }),
      }),
    }),
    F.try({
      body = F.step({ agent = "publish", input = F.p("$.reviewed"), out = "$.published", timeout_ms = 5000 }),
      catch = F.assign({ at = "$.published", value = false }),
      err_at = "$.publish_error",
    }),
    F.branch({
      cond = F.p("$.reviewed"):len():gt(0),
      on_true = F.assign({ at = "$.status", value = "done" }),
      on_false = F.assign({ at = "$.status", value = "nothing to review" }),
    }),
  }),
})
