-- expect-json: {"echoed": {"a": 1}, "slept": {"ms": 20}, "failed": {"kind": "failed", "message": "no such thing", "step": "fail"}, "blocked": {"kind": "blocked", "step": "block", "value": "ask again"}}
--
-- The built-in `rust_fn` agents: echo, sleep, fail and block.
local swarm = require("swarm")
local F = swarm.flow

local function rust(id)
  return { kind = "rust_fn", spec = { fn_id = id } }
end

return swarm.blueprint({
  id = "rust_fn",
  agents = { echo = rust("echo"), sleep = rust("sleep"), fail = rust("fail"), block = rust("block") },
  flow = F.seq({
    F.step({ agent = "echo", input = { a = 1 }, out = "$.echoed" }),
    F.step({ agent = "sleep", input = { ms = 20 }, out = "$.slept" }),
    F.try({ body = F.step({ agent = "fail", input = "no such thing" }), err_at = "$.failed" }),
    F.try({ body = F.step({ agent = "block", input = "ask again" }), err_at = "$.blocked" }),
  }),
})
