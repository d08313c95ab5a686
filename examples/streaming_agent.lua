-- A streaming subprocess agent: with `stream_mode = "ndjson_lines"` every stdout line is an
-- output event. Progress and partial events reach the engine as `worker_output` events while
-- the step runs (`swarm run --events ndjson` shows them); the last `final` is the result.
local swarm = require("swarm")
local F = swarm.flow

return swarm.blueprint({
  id = "streaming_agent",
  agents = {
    count_words = {
      kind = "subprocess",
      spec = {
        program = "sh",
        stream_mode = "ndjson_lines",
        args = {
          "-c",
          [[
text=$(cat)
printf '{"type":"progress","stage":"read","note":"%d bytes"}\n' "${#text}"
words=$(printf '%s' "$text" | wc -w)
printf '{"type":"partial","chunk":{"kind":"inline","value":%d}}\n' "$words"
printf '{"type":"final","content":{"kind":"inline","value":{"words":%d}},"ok":true}\n' "$words"
]],
        },
      },
    },
  },
  flow = F.step({ agent = "count_words", input = F.p("$.text"), out = "$.count" }),
})
