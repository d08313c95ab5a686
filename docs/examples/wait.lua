-- expect-json: {"approval": {"by": "nobody", "ok": false}, "late": {"kind": "timeout", "pointer": "/children/0/body"}}
--
-- `wait`: the flow stops until a signal named `approve` is delivered to the run
-- (`swarm runs signal RUN_ID approve --value JSON`, `run:signal("approve", v)`), and writes its
-- value at `out`. Run as it is, nobody answers: after `timeout_ms` the wait fails with kind
-- `timeout`, which the `try` catches. Try `swarm run docs/examples/wait.lua --detach` with a
-- longer timeout, then signal it.
local swarm = require("swarm")
local F = swarm.flow

return swarm.blueprint({
  id = "wait",
  agents = {},
  flow = F.seq({
    F.try({
      body = F.wait({ signal = "approve", out = "$.approval", timeout_ms = 20 }),
      err_at = "$.late",
      catch = F.assign({ at = "$.approval", value = { ok = false, by = "nobody" } }),
    }),
  }),
})
