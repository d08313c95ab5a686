-- std.layers: timing, logging, cache and concurrency, each through swarm.run; and the
-- swarm.semaphore primitive that concurrency stands on.
local swarm = require("swarm")
local expect = require("support.expect")
local layers = require("std.layers")
local F = swarm.flow

local function line_here()
  local _, where = pcall(error, "", 3)
  return where:match(":(%d+): $")
end

-- swarm.semaphore ----------------------------------------------------------------------------
local sem = swarm.semaphore(2)
expect.eq(sem:limit(), 2)
expect.eq(sem:available(), 2)
local permit = sem:acquire()
expect.eq(sem:available(), 1, "acquire takes a permit")
permit:release()
permit:release()
expect.eq(sem:available(), 2, "release gives it back once")
local a, b = sem:with(function(x, y)
  expect.eq(sem:available(), 1, "held while the function runs")
  return x + y, "second"
end, 1, 2)
expect.eq(a, 3)
expect.eq(b, "second")
expect.eq(sem:available(), 2)
expect.raises(function()
  sem:with(function() error("inside", 0) end)
end, { "inside" })
expect.eq(sem:available(), 2, "an error inside `with` releases the permit")
expect.raises(function() swarm.semaphore(0) end, { "swarm.semaphore: expected a positive integer limit, got 0" })
expect.raises(function() swarm.semaphore(1.5) end, { "expected a positive integer limit, got 1.5" })

-- timing: one entry per attempt, measured by the clock given ---------------------------------
local ticks = 0
local function clock()
  ticks = ticks + 5
  return ticks
end
local done = {}
local timing_stats = {}
swarm.layer("timing", layers.timing({
  clock = clock,
  stats = timing_stats,
  keep = 2,
  on_done = function(entry) done[#done + 1] = entry end,
}))
local tries = 0
local ctx = swarm.run(swarm.blueprint({
  id = "timed",
  layers = { "timing" },
  agents = {
    flaky = function()
      tries = tries + 1
      if tries < 3 then error("not yet", 0) end
      return "finally"
    end,
    held = function() return swarm.block("hold") end,
    quick = function(x) return x end,
  },
  flow = F.seq({
    F.step({ agent = "flaky", retry = { max_attempts = 3 } }),
    F.step({ agent = "quick", input = 1 }),
    F.try({ body = F.step({ agent = "held" }) }),
  }),
}))
expect.eq(ctx.flaky, "finally")
expect.eq(#done, 5, "one report per attempt: three of flaky, one of quick, one of held")
local seen = {}
for i, entry in ipairs(done) do
  seen[i] = entry.agent .. "#" .. entry.attempt .. ":" .. entry.status .. ":" .. entry.ms
  assert(type(entry.task_id) == "string" and entry.task_id ~= "", "entries carry the task id")
end
expect.eq(table.concat(seen, " "), "flaky#1:failed:5 flaky#2:failed:5 flaky#3:pass:5 quick#1:pass:5 held#1:blocked:5")
expect.eq(done[1].task_id, done[3].task_id, "retries are attempts of one task")
expect.eq(timing_stats.count, 5)
expect.json(timing_stats.by_agent.flaky, '{"blocked":0,"count":3,"failed":2,"max_ms":5,"pass":1,"total_ms":15}')
expect.json(timing_stats.by_agent.held, '{"blocked":1,"count":1,"failed":0,"max_ms":5,"pass":0,"total_ms":5}')
expect.eq(#timing_stats.attempts, 2, "stats keep the latest `keep` entries")
expect.eq(timing_stats.attempts[1].agent, "quick")
expect.eq(timing_stats.attempts[2].agent, "held")
-- The default clock is CPU milliseconds: a number, never negative.
local cpu = {}
swarm.layer("cpu_timing", layers.timing({ on_done = function(entry) cpu[#cpu + 1] = entry.ms end }))
swarm.run(swarm.blueprint({ id = "cpu", layers = { "cpu_timing" }, agents = { quick = function(x) return x end }, flow = F.step({ agent = "quick" }) }))
expect.eq(#cpu, 1)
assert(type(cpu[1]) == "number" and cpu[1] >= 0, "cpu ms: " .. tostring(cpu[1]))

-- logging: one line as an attempt starts, one as it ends -------------------------------------
local lines = {}
swarm.layer("logging", layers.logging({ log = function(line) lines[#lines + 1] = line end }))
tries = 0
swarm.run(swarm.blueprint({
  id = "logged",
  layers = { "logging" },
  agents = {
    flaky = function()
      tries = tries + 1
      if tries < 2 then error("first\n  try", 0) end
      return "ok"
    end,
    held = function() return swarm.block("hold") end,
    boom = function() error("kaboom", 0) end,
  },
  flow = F.seq({
    F.step({ agent = "flaky", retry = { max_attempts = 2 } }),
    F.try({ body = F.step({ agent = "held" }) }),
    F.try({ body = F.step({ agent = "boom" }) }),
  }),
}))
expect.eq(table.concat(lines, "\n"), table.concat({
  "swarm: flaky attempt 1 started",
  "swarm: flaky attempt 1 failed: first try",
  "swarm: flaky attempt 2 started",
  "swarm: flaky attempt 2 ok",
  "swarm: held attempt 1 started",
  "swarm: held attempt 1 blocked",
  "swarm: boom attempt 1 started",
  "swarm: boom attempt 1 failed: kaboom",
}, "\n"), "log lines")
lines = {}
swarm.layer("terse", layers.logging({
  log = function(line) lines[#lines + 1] = line end,
  prefix = "",
  format = function(event) return event.phase .. " " .. event.agent .. (event.status and (" " .. event.status) or "") end,
}))
swarm.run(swarm.blueprint({ id = "terse", layers = { "terse" }, agents = { quick = function(x) return x end }, flow = F.step({ agent = "quick" }) }))
expect.eq(table.concat(lines, "|"), "start quick|done quick pass", "a custom format")

-- cache: repeated inputs are answered without the agent --------------------------------------
local calls = {}
local function counting(name, ms)
  return function(x)
    calls[name] = (calls[name] or 0) + 1
    if ms then swarm.sleep(ms) end
    return { by = name, doubled = x * 2 }
  end
end
local cache_stats = {}
swarm.layer("cache", layers.cache({ stats = cache_stats }))
-- Five lanes at once over two distinct inputs: the lanes with a repeated input wait for the
-- first one instead of calling the agent again.
ctx = swarm.run(swarm.blueprint({
  id = "cached",
  layers = { "cache" },
  agents = { double = counting("double", 20) },
  flow = F.fanout({ items = { 1, 2, 1, 2, 1 }, bind = "$.x", out = "$.r", collect = "$.y",
    body = F.step({ agent = "double", input = F.p("$.x"), out = "$.y" }) }),
}))
expect.json(ctx.r, '[{"by":"double","doubled":2},{"by":"double","doubled":4},{"by":"double","doubled":2},'
  .. '{"by":"double","doubled":4},{"by":"double","doubled":2}]', "cached answers")
expect.eq(calls.double, 2, "one call per distinct input")
expect.json(cache_stats, '{"entries":2,"evictions":0,"hits":3,"misses":2}', "cache stats")
-- Per agent by default: the same input to another agent is another entry; per_agent = false shares.
calls = {}
local two_agents = function(layer)
  return swarm.blueprint({
    id = "two_agents",
    layers = { layer },
    agents = { double = counting("double"), twice = counting("twice") },
    flow = F.seq({ F.step({ agent = "double", input = 3 }), F.step({ agent = "twice", input = 3 }) }),
  })
end
ctx = swarm.run(two_agents("cache"))
expect.eq(ctx.twice.by, "twice", "keyed on the agent too")
swarm.layer("shared_cache", layers.cache({ per_agent = false }))
ctx = swarm.run(two_agents("shared_cache"))
expect.eq(ctx.twice.by, "double", "per_agent = false shares entries between agents")
expect.eq(calls.double, 2)
expect.eq(calls.twice, 1)
-- Only successes are cached.
calls = {}
local fail_first = 0
swarm.layer("cache_failures", layers.cache())
local flaky_bp = swarm.blueprint({
  id = "uncached_failure",
  layers = { "cache_failures" },
  agents = {
    flaky = function(x)
      fail_first = fail_first + 1
      if fail_first == 1 then error("cold start", 0) end
      if fail_first == 2 then return swarm.block("busy") end
      return x
    end,
  },
  flow = F.seq({
    F.try({ body = F.step({ agent = "flaky", input = "q", out = "$.a" }) }),
    F.try({ body = F.step({ agent = "flaky", input = "q", out = "$.b" }) }),
    F.step({ agent = "flaky", input = "q", out = "$.c" }),
    F.step({ agent = "flaky", input = "q", out = "$.d" }),
  }),
})
ctx = swarm.run(flaky_bp)
expect.eq(fail_first, 3, "a failure and a block are not cached; the success is")
expect.eq(ctx.d, "q")
-- Least recently used entries are evicted first: 1 2 1 3 1 with room for two evicts 2, not 1.
calls = {}
local lru_stats = {}
swarm.layer("small_cache", layers.cache({ max_entries = 2, stats = lru_stats }))
swarm.run(swarm.blueprint({
  id = "lru",
  layers = { "small_cache" },
  agents = { double = counting("double") },
  flow = F.fanout({ items = { 1, 2, 1, 3, 1, 2 }, bind = "$.x", out = "$.r", max_concurrency = 1,
    body = F.step({ agent = "double", input = F.p("$.x"), out = "$.y" }) }),
}))
expect.eq(calls.double, 4, "1, 2, 3 and 2 again")
expect.json(lru_stats, '{"entries":2,"evictions":2,"hits":2,"misses":4}', "lru stats")
-- A custom key; nil skips the cache.
calls = {}
swarm.layer("keyed_cache", layers.cache({
  key = function(ctx) if ctx.input.id then return tostring(ctx.input.id) end end,
}))
ctx = swarm.run(swarm.blueprint({
  id = "keyed",
  layers = { "keyed_cache" },
  agents = { echo = function(x) calls.echo = (calls.echo or 0) + 1 return x.v end },
  flow = F.seq({
    F.step({ agent = "echo", input = { id = 1, v = "first" }, out = "$.a" }),
    F.step({ agent = "echo", input = { id = 1, v = "second" }, out = "$.b" }),
    F.step({ agent = "echo", input = { v = "third" }, out = "$.c" }),
    F.step({ agent = "echo", input = { v = "third" }, out = "$.d" }),
  }),
}))
expect.eq(ctx.b, "first", "same key, cached answer")
expect.eq(calls.echo, 3, "no key, no caching")

-- concurrency: at most n attempts in flight, served in arrival order -------------------------
local in_flight, peak = 0, 0
local started = {}
local function tracked(x)
  in_flight = in_flight + 1
  peak = math.max(peak, in_flight)
  started[#started + 1] = x
  swarm.sleep(20)
  in_flight = in_flight - 1
  return x
end
local function lanes(layer, n, max_concurrency)
  local items = {}
  for i = 1, n do items[i] = i end
  return swarm.blueprint({
    id = "lanes",
    layers = { layer },
    agents = { work = tracked },
    flow = F.fanout({ items = items, bind = "$.x", out = "$.r", collect = "$.y", max_concurrency = max_concurrency,
      body = F.step({ agent = "work", input = F.p("$.x"), out = "$.y" }) }),
  })
end
swarm.layer("two_at_a_time", layers.concurrency(2))
ctx = swarm.run(lanes("two_at_a_time", 6))
expect.json(ctx.r, "[1,2,3,4,5,6]")
expect.eq(peak, 2, "never more than two in flight, and two at some point")
expect.eq(in_flight, 0)
-- Without the layer the same fanout runs all six at once, so the limit above is the layer's.
swarm.layer("no_limit", { before = function() end })
peak, started = 0, {}
swarm.run(lanes("no_limit", 6))
expect.eq(peak, 6)
-- One at a time: lanes go in the order they asked.
swarm.layer("single_file", layers.concurrency(1))
peak, started = 0, {}
swarm.run(lanes("single_file", 6))
expect.eq(peak, 1)
expect.eq(table.concat(started, " "), "1 2 3 4 5 6", "first come, first served")
-- A shared semaphore limits every layer built on it, across runs at once.
local shared = swarm.semaphore(3)
swarm.layer("shared_a", layers.concurrency(shared))
swarm.layer("shared_b", layers.concurrency(shared))
peak = 0
local engine = swarm.default_engine()
local run_a = engine:start(lanes("shared_a", 4))
local run_b = engine:start(lanes("shared_b", 4))
run_a:wait()
run_b:wait()
expect.eq(peak, 3, "two layers, one limit")
expect.eq(shared:available(), 3, "every permit came back")

-- A timed-out attempt gives its permit back, whether it held one or was still waiting.
local one = swarm.semaphore(1)
swarm.layer("one_at_a_time", layers.concurrency(one))
local function statuses(r)
  local out = {}
  for i, lane in ipairs(r) do out[i] = lane.status end
  return table.concat(out, " ")
end
local function timeouts(lane_steps)
  return swarm.blueprint({
    id = "timeouts",
    layers = { "one_at_a_time" },
    agents = { slow = function() swarm.sleep(150) return "slow" end, quick = function() return "quick" end },
    flow = F.fanout({ items = { 1, 2, 3 }, bind = "$.x", out = "$.r", join = "all_settled",
      body = F.branch({ cond = F.p("$.x"):eq(1), on_true = lane_steps[1],
        on_false = F.branch({ cond = F.p("$.x"):eq(2), on_true = lane_steps[2], on_false = lane_steps[3] }) }) }),
  })
end
-- The holder times out: the two waiting behind it still get their turn.
ctx = swarm.run(timeouts({
  F.step({ agent = "slow", timeout_ms = 30 }), F.step({ agent = "quick" }), F.step({ agent = "quick" }),
}))
expect.eq(statuses(ctx.r), "rejected fulfilled fulfilled", "a cancelled holder released its permit")
expect.eq(one:available(), 1)
-- A waiter times out: it leaves the queue, and the one behind it goes next.
ctx = swarm.run(timeouts({
  F.step({ agent = "slow" }), F.step({ agent = "quick", timeout_ms = 30 }), F.step({ agent = "quick" }),
}))
expect.eq(statuses(ctx.r), "fulfilled rejected fulfilled", "a cancelled waiter left the queue")
expect.eq(one:available(), 1)

-- Option errors name the caller's line ------------------------------------------------------
local line = line_here() expect.raises(function() layers.cache({ max_entry = 3 }) end, {
  "tests/lua/std_layers.lua:" .. line .. ": std.layers.cache: unknown option 'max_entry' (options: key, max_entries, per_agent, stats)",
})
expect.raises(function() layers.concurrency(0) end, { "std.layers.concurrency: expects a limit >= 1, got 0" })
expect.raises(function() layers.concurrency("2") end, { "expects an integer limit or a swarm.semaphore, got string" })
expect.raises(function() layers.timing({ keep = -1 }) end, { "std.layers.timing: `keep` must be a non-negative integer" })
expect.raises(function() layers.logging({ log = "stdout" }) end, { "std.layers.logging: `log` must be a function, got string" })
