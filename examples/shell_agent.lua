-- A subprocess agent in plain mode: the step's input arrives on stdin as JSON, and the JSON the
-- program prints on stdout is the step's result. Plain `sh`, no jq: the script embeds its input
-- in its answer instead of parsing it. SWARM_AGENT and SWARM_ATTEMPT (with SWARM_TASK_ID and
-- SWARM_TOKEN) are set for every attempt.
local swarm = require("swarm")
local F = swarm.flow

return swarm.blueprint({
  id = "shell_agent",
  agents = {
    wrap = {
      kind = "subprocess",
      spec = {
        program = "sh",
        args = {
          "-c",
          [[
input=$(cat)
printf '{"agent":"%s","attempt":%s,"bytes":%d,"order":%s}' \
  "$SWARM_AGENT" "$SWARM_ATTEMPT" "${#input}" "$input"
]],
        },
        -- The attempt fails, and the process group is killed, past this.
        timeout_ms = 5000,
      },
    },
  },
  flow = F.step({ agent = "wrap", input = F.p("$.order"), out = "$.wrapped" }),
})
