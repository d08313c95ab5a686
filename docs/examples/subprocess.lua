-- input: {"text": "one two three"}
-- expect-json: {"plain": {"words": 3}, "raw": {"raw": "not json", "stderr": ""}, "arg": {"text": "one two three"}, "env": {"agent": "env", "attempt": "1"}, "ndjson": {"words": 3}, "sse": "done", "framed": {"ok": true}, "kept": [{"served": 1}, {"served": 2}]}
--
-- Subprocess agents: a program per attempt (or kept alive), its input as JSON on stdin.
local swarm = require("swarm")
local F = swarm.flow

local function sh(script, spec)
  spec = spec or {}
  spec.program = "sh"
  spec.args = { "-c", script }
  return { kind = "subprocess", spec = spec }
end

return swarm.blueprint({
  id = "subprocess",
  agents = {
    -- Plain mode: stdout parsed as JSON is the result.
    plain = sh([[printf '{"words": %d}' "$(wc -w)"]]),
    -- stdout that is not JSON comes back as {raw, stderr}.
    raw = sh([[cat >/dev/null; echo "not json"]]),
    -- use_stdin = false: the input JSON is the last argument ($1 of the script here; sh -c
    -- takes the word after the script as $0, hence the "sh").
    arg = { kind = "subprocess", spec = { program = "sh", args = { "-c", 'printf "%s" "$1"', "sh" }, use_stdin = false } },
    -- The engine sets SWARM_TASK_ID, SWARM_ATTEMPT, SWARM_AGENT and SWARM_TOKEN.
    env = sh([[printf '{"agent": "%s", "attempt": "%s"}' "$SWARM_AGENT" "$SWARM_ATTEMPT"]]),
    -- ndjson_lines: one output event per line; the last `final` is the result.
    ndjson = sh([[
n=$(wc -w)
echo '{"type":"progress","stage":"counting"}'
echo '{"type":"partial","chunk":{"kind":"inline","value":"half way"}}'
printf '{"type":"final","content":{"kind":"inline","value":{"words":%d}},"ok":true}\n' "$n"
]], { stream_mode = "ndjson_lines" }),
    -- sse_events: `data:` lines, a blank line ends an event.
    sse = sh([[
cat >/dev/null
printf 'data: {"type":"progress","stage":"start"}\n\n'
printf 'event: ignored\ndata: {"type":"final",\ndata: "content":{"kind":"inline","value":"done"},"ok":true}\n\n'
]], { stream_mode = "sse_events" }),
    -- length_prefixed: a 4-byte big-endian length, then that many bytes of JSON.
    framed = sh([[
cat >/dev/null
body='{"type":"final","content":{"kind":"inline","value":{"ok":true}},"ok":true}'
printf '\000\000\000\'"$(printf '%03o' ${#body})"
printf '%s' "$body"
]], { stream_mode = "length_prefixed" }),
    -- keep_alive: one long-lived child answers a request line per attempt.
    kept = sh([[
served=0
while IFS= read -r request; do
  served=$((served + 1))
  # Every event of an answer carries the request's id back.
  id=${request#*\"id\":}
  id=${id%%,*}
  printf '{"type":"final","id":%s,"content":{"kind":"inline","value":{"served":%d}},"ok":true}\n' "$id" "$served"
done
]], { keep_alive = true, pool_size = 1, timeout_ms = 5000 }),
  },
  flow = F.seq({
    F.step({ agent = "arg", input = F.p("$"), out = "$.arg" }),
    F.step({ agent = "plain", input = F.p("$.text"), out = "$.plain" }),
    F.step({ agent = "raw", out = "$.raw" }),
    F.step({ agent = "env", out = "$.env" }),
    F.step({ agent = "ndjson", input = F.p("$.text"), out = "$.ndjson" }),
    F.step({ agent = "sse", out = "$.sse" }),
    F.step({ agent = "framed", out = "$.framed" }),
    F.fanout({
      items = { 1, 2 },
      max_concurrency = 1,
      body = F.step({ agent = "kept", input = F.p("$.item"), out = "$.reply" }),
      collect = "$.reply",
      out = "$.kept",
    }),
  }),
})
