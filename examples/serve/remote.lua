-- A served script with a remote agent: its attempts wait on queue "words" until a worker outside
-- the host claims them (examples/remote_worker.py, or curl). Serve it:
--
--   swarm serve examples/serve/remote.lua --listen 127.0.0.1:8080
--   python3 examples/remote_worker.py --api http://127.0.0.1:8080 \
--       --token-file examples/serve/.swarm/operator.token --queue words
--
-- and start a run from a third terminal (or see examples/serve/remote_curl.sh for the whole
-- exchange with curl over a Unix socket):
--
--   curl -s -H "Authorization: Bearer $(cat examples/serve/.swarm/operator.token)" \
--        -d '{"blueprint":"count_words","input":{"text":"the quick brown fox"}}' \
--        http://127.0.0.1:8080/v1/runs
local swarm = require("swarm")
local F = swarm.flow

swarm.expose(swarm.blueprint({
  id = "count_words",
  agents = {
    -- A worker that claims an attempt must call within lease_ms (any call of the attempt
    -- renews it) or the attempt fails with kind "timeout" ("lease expired").
    count = { kind = "remote", spec = { queue = "words", lease_ms = 10000 } },
    report = function(input)
      return string.format("%d words, the longest %q", input.words, tostring(input.longest))
    end,
  },
  flow = F.seq({
    F.step({ agent = "count", out = "$.counted", retry = { max_attempts = 3, on = { "timeout" } } }),
    F.step({ agent = "report", input = F.p("$.counted"), out = "$.report" }),
  }),
}))
