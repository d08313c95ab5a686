-- A keep-alive subprocess agent: one long-lived shell answers every step, so a step costs a
-- pipe round trip instead of a process start. Each request is one JSON line on stdin,
--   {"agent":..,"attempt":..,"id":..,"input":..,"task_id":..,"token":..}
-- (keys sorted), and the answer is NDJSON output events ending in a `final`, each carrying the
-- request's `id` back (an answer with another id is refused and the child replaced). The
-- counter and the pid show the same child serving every request.
local swarm = require("swarm")
local F = swarm.flow

return swarm.blueprint({
  id = "keep_alive",
  agents = {
    counter = {
      kind = "subprocess",
      spec = {
        program = "sh",
        keep_alive = true,
        pool_size = 1,
        timeout_ms = 5000, -- per request; a child that times out is killed and replaced
        args = {
          "-c",
          [[
served=0
while IFS= read -r request; do
  served=$((served + 1))
  id=${request#*\"id\":}
  id=${id%%,*}
  # "input" comes before "task_id", so the input is what lies between them.
  input=${request#*\"input\":}
  input=${input%,\"task_id\":*}
  printf '{"type":"final","id":%s,"content":{"kind":"inline","value":{"served":%d,"pid":%d,"echo":%s}},"ok":true}\n' \
    "$id" "$served" "$$" "$input"
done
]],
        },
      },
    },
  },
  flow = F.fanout({
    items = F.p("$.items"),
    bind = "$.item",
    out = "$.replies",
    collect = "$.reply",
    body = F.step({ agent = "counter", input = F.p("$.item"), out = "$.reply" }),
  }),
})
