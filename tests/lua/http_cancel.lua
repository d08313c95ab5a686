-- swarm.http under the engine: an attempt that ends (its step's timeout_ms, a cancelled run)
-- drops the request it was waiting on, and a thousand fanout lanes hold requests open at once.
local swarm = require("swarm")
local expect = require("support.expect")
local F = swarm.flow
local http = swarm.http
local base = HTTP

local function stats()
  return http.get(base .. "/stats").json
end

-- A step whose request never finishes times out; the server sees the connection go.
local before = stats().dropped
local hung = swarm.blueprint({
  id = "hung_request",
  agents = { fetch = function() return http.get(base .. "/hold", { timeout_ms = 600000 }).body end },
  flow = F.try({
    body = F.step({ agent = "fetch", timeout_ms = 100, out = "$.body" }),
    catch = F.assign({ at = "$.timed_out", value = true }),
    err_at = "$.error",
  }),
})
local out = swarm.run(hung, {})
expect.eq(out.timed_out, true)
expect.eq(out.error.kind, "timeout")
expect.eventually("the timed-out request's connection closing", function() return stats().dropped > before end)

-- A run cancelled while its agent reads a stream: the stream's connection closes too.
local reading = 0
local streamer = swarm.blueprint({
  id = "cancelled_stream",
  agents = {
    read = function()
      for _ in http.stream({ url = base .. "/hold", timeout_ms = 600000 }):lines() do
        reading = reading + 1
      end
    end,
  },
  flow = F.step({ agent = "read" }),
})
local engine = swarm.engine({})
local dropped = stats().dropped
local run = engine:start(streamer, {})
expect.eventually("the stream delivering lines", function() return reading >= 2 end)
run:cancel()
local ok, err = pcall(run.wait, run)
assert(not ok)
expect.eq(err.kind, "cancelled")
expect.eventually("the cancelled stream's connection closing", function() return stats().dropped > dropped end)

-- A thousand lanes, each holding a request open: the server's /gate/1000 answers none until a
-- thousand wait at once, so the run finishes only if every lane's request is open together.
local lanes = {}
for i = 1, 1000 do
  lanes[i] = i
end
local wide = swarm.blueprint({
  id = "wide_fanout",
  agents = { fetch = function() return http.get(base .. "/gate/1000", { timeout_ms = 30000 }).body end },
  flow = F.fanout({ items = lanes, out = "$.bodies", collect = "$.body", body = F.step({ agent = "fetch", out = "$.body" }) }),
})
local result = swarm.run(wide, {})
expect.eq(#result.bodies, 1000)
expect.eq(result.bodies[1000], "open together")
expect.eq(stats().max_in_flight, 1000, "every lane's request was open at the same time")
