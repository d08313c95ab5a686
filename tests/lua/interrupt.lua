-- Lua that never yields is still stoppable: a CPU-bound inline agent, a Lua layer and Lua
-- called from a C function answer a step's timeout_ms and a run's cancel().
local swarm = require("swarm")
local F = swarm.flow
local expect = require("support.expect")

local function spin()
  while true do
  end
end

-- The kind of a run's error, whether it is raised as a table or a string.
local function kind_of(err)
  if type(err) == "table" then
    return err.kind
  end
  return tostring(err)
end

-- A step's timeout_ms stops an agent that loops forever; try catches it as `timeout`.
local timed = swarm.blueprint({
  id = "timed",
  agents = { spin = spin },
  flow = F.try({
    body = F.step({ agent = "spin", timeout_ms = 50 }),
    err_at = "$.err",
    catch = F.assign({ at = "$.caught", value = true }),
  }),
})
local ctx = swarm.run(timed, {})
assert(ctx.caught == true, "the timeout was caught")
assert(ctx.err.kind == "timeout", "a timed-out loop fails with kind timeout, got " .. tostring(ctx.err.kind))

-- A retry policy retries a looping attempt like any timed-out one.
local attempts = 0
local retried = swarm.blueprint({
  id = "retried",
  agents = {
    flaky = function()
      attempts = attempts + 1
      if attempts < 3 then
        spin()
      end
      return "done"
    end,
  },
  flow = F.step({ agent = "flaky", timeout_ms = 30, retry = { max_attempts = 3, on = { "timeout" } }, out = "$.out" }),
})
assert(swarm.run(retried, {}).out == "done", "the third attempt passes")
assert(attempts == 3, "two attempts timed out, got " .. attempts)

-- Where the agent cannot yield (inside a sort comparator, called from C), the deadline still
-- stops it, as a timeout.
local sorting = swarm.blueprint({
  id = "sorting",
  agents = {
    sort = function()
      table.sort({ 3, 2, 1 }, function()
        spin()
      end)
    end,
  },
  flow = F.step({ agent = "sort", timeout_ms = 50 }),
})
local ok, err = pcall(swarm.run, sorting, {})
assert(not ok and kind_of(err):find("timeout"), "a loop in a comparator times out: " .. tostring(kind_of(err)))

-- So does a loop inside a coroutine the agent made itself.
local own = swarm.blueprint({
  id = "own_coroutine",
  agents = {
    nested = function()
      coroutine.wrap(spin)()
    end,
  },
  flow = F.step({ agent = "nested", timeout_ms = 50 }),
})
ok, err = pcall(swarm.run, own, {})
assert(not ok and kind_of(err):find("timeout"), "a loop in the agent's own coroutine times out")

-- A Lua layer that loops is stopped by the step's timeout too.
swarm.layer("spinning", { before = spin })
local layered = swarm.blueprint({
  id = "layered",
  layers = { "spinning" },
  agents = { echo = { kind = "rust_fn", spec = { fn_id = "echo" } } },
  flow = F.step({ agent = "echo", timeout_ms = 50 }),
})
ok, err = pcall(swarm.run, layered, {})
assert(not ok and kind_of(err):find("timeout"), "a looping layer times out")

-- run:cancel() reaches a run whose agent loops: the loop gives the thread back now and then.
local engine = swarm.engine({})
local spinning = false
local function spin_on()
  spinning = true
  spin()
end
local forever = swarm.blueprint({ id = "forever", agents = { spin = spin_on }, flow = F.step({ agent = "spin" }) })
local run = engine:start(forever, {})
expect.eventually("the agent spinning", function() return spinning end)
run:cancel()
ok, err = pcall(run.wait, run)
assert(not ok and kind_of(err):find("cancel"), "a cancelled run ends cancelled: " .. tostring(kind_of(err)))

-- Other lanes keep going while one lane loops, and the loop does not starve the clock.
local lanes = swarm.blueprint({
  id = "lanes",
  agents = {
    work = function(n)
      if n == 1 then
        spin()
      end
      swarm.sleep(5)
      return n
    end,
  },
  flow = F.fanout({
    items = { 1, 2, 3 },
    bind = "$.n",
    join = "all_settled",
    out = "$.lanes",
    body = F.step({ agent = "work", input = F.p("$.n"), out = "$.r", timeout_ms = 100 }),
    collect = "$.r",
  }),
})
local settled = swarm.run(lanes, {}).lanes
assert(settled[1].status == "rejected", "the looping lane timed out")
assert(settled[2].value == 2 and settled[3].value == 3, "the other lanes finished")

-- A flow that never dispatches (a long loop of assign) answers cancel(): once it has looped a
-- while (an extern counts the rounds), the cancel must reach it mid-loop.
local rounds = 0
swarm.extern("count_round", function()
  rounds = rounds + 1
  return rounds
end)
local counting = swarm.blueprint({
  id = "counting",
  flow = F.loop({ counter = "$.i", max = 1000000000, cond = true, body = F.assign({ at = "$.x", value = F.call("count_round", {}) }) }),
})
run = engine:start(counting, {})
expect.eventually("the loop runs", function()
  return rounds > 1000
end)
run:cancel()
ok, err = pcall(run.wait, run)
assert(not ok and kind_of(err):find("cancel"), "a loop of assign is cancelled")

-- A bridge that loops, called from a sandboxed script agent, is stopped by the step's timeout.
swarm.bridge("spin_bridge", spin)
local bridged = swarm.blueprint({
  id = "bridged",
  agents = { script = { kind = "lua", spec = { source = "return host.spin_bridge()" } } },
  flow = F.step({ agent = "script", timeout_ms = 50 }),
})
ok, err = pcall(swarm.run, bridged, {})
assert(not ok and kind_of(err):find("timeout"), "a looping bridge times out: " .. tostring(kind_of(err)))
