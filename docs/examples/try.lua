-- expect-json: {"draft": "v1", "error": {"kind": "failed", "message": "the printer is out of paper", "step": "print", "value": "the printer is out of paper"}, "fallback": "saved v1 for later"}
--
-- `try`: when the body fails, the ctx is put back as it was before the body, the error is
-- written at `err_at`, and `catch` runs.
local swarm = require("swarm")
local F = swarm.flow

return swarm.blueprint({
  id = "try",
  agents = {
    print = { kind = "rust_fn", spec = { fn_id = "fail" } },
    save = function(draft)
      return "saved " .. draft .. " for later"
    end,
  },
  flow = F.seq({
    F.assign({ at = "$.draft", value = "v1" }),
    F.try({
      body = F.seq({
        F.assign({ at = "$.printing", value = true }), -- rolled back when the body fails
        F.step({ agent = "print", input = "the printer is out of paper", out = "$.printed" }),
      }),
      err_at = "$.error",
      catch = F.step({ agent = "save", input = F.p("$.draft"), out = "$.fallback" }),
    }),
  }),
})
