-- A person approves a draft before it is published. The run waits for the signal `approve`
-- (for at most a day); meanwhile nothing runs, and the wait survives the process:
--
--   swarm run examples/approval.lua --input '{"title": "v2"}' --detach   # exits 3, waiting
--   swarm runs signal RUN_ID approve --value '{"ok": true, "by": "ann"}'  # carries it on
--
-- A day without an answer fails the wait with kind `timeout`, which the `try` turns into a
-- rejection.
local swarm = require("swarm")
local F = swarm.flow

return swarm.blueprint({
  id = "approval",
  agents = {
    draft = function(input)
      return { title = input.title, body = "Release notes for " .. input.title }
    end,
    publish = function(draft)
      return "published: " .. draft.title
    end,
  },
  flow = F.seq({
    F.step({ agent = "draft", out = "$.draft" }),
    F.try({
      body = F.wait({ signal = "approve", out = "$.approval", timeout_ms = 24 * 3600 * 1000 }),
      err_at = "$.no_answer",
      catch = F.assign({ at = "$.approval", value = { ok = false, by = "nobody" } }),
    }),
    F.branch({
      cond = F.p("$.approval.ok"):eq(true),
      on_true = F.step({ agent = "publish", input = F.p("$.draft"), out = "$.result" }),
      on_false = F.assign({ at = "$.result", value = "not published" }),
    }),
  }),
})
