-- A served script for the HTTP API: `swarm serve examples/serve/api.lua --listen 127.0.0.1:8080`.
-- It exposes the approval blueprint, so a client holding the operator token (written to
-- examples/serve/.swarm/operator.token at start) can start runs, watch them and approve them:
--
--   TOKEN=$(cat examples/serve/.swarm/operator.token)
--   curl -s -H "Authorization: Bearer $TOKEN" -d '{"blueprint":"approval","input":{"title":"v2"}}' \
--        http://127.0.0.1:8080/v1/runs                                   # → {"run_id": "r-..."}
--   curl -s -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8080/v1/runs/RUN_ID/events  # SSE
--   curl -s -H "Authorization: Bearer $TOKEN" -d '{"value":{"ok":true,"by":"ann"}}' \
--        http://127.0.0.1:8080/v1/runs/RUN_ID/signals/approve
local swarm = require("swarm")
local F = swarm.flow

local approval = swarm.blueprint({
  id = "approval",
  agents = {
    draft = function(input)
      return { title = input.title, body = "Release notes for " .. input.title }
    end,
  },
  flow = F.seq({
    F.step({ agent = "draft", out = "$.draft" }),
    F.wait({ signal = "approve", out = "$.approval", timeout_ms = 24 * 3600 * 1000 }),
  }),
})

-- Reachable as "approval" (its id); `swarm.expose(bp, "name")` names it otherwise.
swarm.expose(approval)
