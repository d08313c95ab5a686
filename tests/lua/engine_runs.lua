-- swarm.run, engine:start / run:wait / run:cancel, inline agents and what they can do
-- (docs/engine.md).
local swarm = require("swarm")
local expect = require("support.expect")
local F = swarm.flow

-- Every node kind, through the default engine.
local calls = 0
local bp = swarm.blueprint({
  id = "kinds",
  agents = {
    double = function(n)
      calls = calls + 1
      return n * 2
    end,
    echo = { kind = "rust_fn", spec = { fn_id = "echo" } },
    boom = function()
      error("exploded")
    end,
    gate = function(input)
      return swarm.block({ why = input })
    end,
  },
  flow = F.seq({
    F.assign({ at = "$.n", value = 3 }),
    F.step({ agent = "double", input = F.p("$.n"), out = "$.doubled" }),
    F.branch({
      cond = F.p("$.doubled"):gt(5),
      on_true = F.assign({ at = "$.big", value = true }),
      on_false = F.assign({ at = "$.big", value = false }),
    }),
    F.loop({ counter = "$.i", max = 4, cond = F.p("$.i"):lt(3), body = F.step({ agent = "echo", input = F.p("$.i"), out = "$.last" }) }),
    F.fanout({ items = { 1, 2, 3 }, bind = "$.x", out = "$.lanes", collect = "$.y",
      body = F.step({ agent = "double", input = F.p("$.x"), out = "$.y" }) }),
    F.try({ body = F.step({ agent = "boom", out = "$.never" }), err_at = "$.boom_error",
      catch = F.assign({ at = "$.recovered", value = true }) }),
    F.try({ body = F.step({ agent = "gate", input = "please", out = "$.never" }), err_at = "$.blocked" }),
  }),
})
local ctx = swarm.run(bp, { seed = 1 })
expect.eq(ctx.doubled, 6, "step")
expect.eq(ctx.big, true, "branch")
expect.eq(ctx.i, 3, "loop counter")
expect.eq(ctx.last, 2, "loop body")
expect.json(ctx.lanes, "[2,4,6]", "fanout collect in item order")
expect.eq(calls, 4, "one call per step")
expect.eq(ctx.recovered, true, "try catch")
expect.eq(ctx.boom_error.kind, "failed")
expect.eq(ctx.boom_error.step, "boom")
assert(string.find(ctx.boom_error.message, "engine_runs.lua:", 1, true), "the error names the agent's line: " .. ctx.boom_error.message)
assert(string.find(ctx.boom_error.message, "exploded", 1, true))
assert(not string.find(ctx.boom_error.message, "traceback", 1, true), "only the first frame")
expect.eq(ctx.blocked.kind, "blocked")
expect.json(ctx.blocked.value, '{"why":"please"}', "swarm.block carries its value")
expect.eq(ctx.never, nil, "try rolled back")

-- A failing run raises a structured error.
local ok, err = pcall(swarm.run, swarm.blueprint({
  id = "fails",
  agents = { nope = { kind = "rust_fn", spec = { fn_id = "fail" } } },
  flow = F.step({ agent = "nope", input = "bad input" }),
}))
assert(not ok)
expect.eq(err.kind, "failed")
expect.eq(err.step, "nope")
expect.eq(err.message, "bad input")
assert(type(err.run_id) == "string" and err.run_id:sub(1, 2) == "r-", "the error names the run")
assert(string.find(tostring(err), "failed in step 'nope'", 1, true), tostring(err))

-- A blueprint that does not compile raises the compile error.
local ok2, err2 = pcall(swarm.run, swarm.blueprint({ id = "bad", flow = F.step({ agent = "ghost" }) }))
assert(not ok2)
expect.eq(err2.kind, "unresolved_ref")

-- engine:start gives a run handle; on_event sees every event in order.
local engine = swarm.engine({ max_spawn_depth = 4 })
local seen = {}
local run = engine:start(bp, {}, {
  on_event = function(event)
    seen[#seen + 1] = event
  end,
})
assert(type(run.id) == "string", "run.id")
local result = run:wait()
expect.eq(result.doubled, 6)
expect.eq(seen[1].kind, "run_started")
expect.eq(seen[#seen].kind, "run_finished")
expect.eq(seen[#seen].status, "finished")
for i, event in ipairs(seen) do
  expect.eq(event.seq, i, "seq increases by one")
  expect.eq(event.run_id, run.id, "every event names the run")
end
assert(run:finished())

-- Cancelling a run mid-flight.
local slow = swarm.blueprint({
  id = "slow",
  agents = { wait = function() swarm.sleep(60000) return 1 end },
  flow = F.fanout({ items = { 1, 2, 3 }, out = "$.r", body = F.step({ agent = "wait" }) }),
})
local cancelled_events, attempts_started = 0, 0
local long = engine:start(slow, {}, {
  on_event = function(event)
    if event.kind == "task_cancelled" then
      cancelled_events = cancelled_events + 1
    elseif event.kind == "attempt_started" then
      attempts_started = attempts_started + 1
    end
  end,
})
expect.eventually("three attempts starting", function() return attempts_started == 3 end)
long:cancel()
local ok3, err3 = pcall(long.wait, long)
assert(not ok3)
expect.eq(err3.kind, "cancelled")
expect.eq(cancelled_events, 3, "every in-flight task is cancelled")

-- Externs and bridges.
swarm.extern("twice", function(x) return x * 2 end)
swarm.bridge("shout", function(s) return s:upper() end)
local ext = swarm.run(swarm.blueprint({
  id = "ext",
  agents = { loud = function(s) return host.shout(s) end },
  flow = F.seq({
    F.assign({ at = "$.v", value = F.call("twice", { 21 }) }),
    F.step({ agent = "loud", input = "hi", out = "$.s" }),
  }),
}))
expect.eq(ext.v, 42, "swarm.extern via call_extern")
expect.eq(ext.s, "HI", "swarm.bridge via host.<name>")

-- The task an agent receives; recursive dispatch and its depth limit.
local recursive = swarm.blueprint({
  id = "recursive",
  agents = {
    count = function(n, task)
      assert(type(task.id) == "string" and task.attempt == 1 and task.agent == "count")
      assert(#task.token > 20, "the worker token is there")
      task.emit({ type = "progress", stage = "counting", note = tostring(n) })
      if n == 0 then
        return 0
      end
      return 1 + task:dispatch("count", n - 1)
    end,
  },
  flow = F.step({ agent = "count", input = F.p("$.n"), out = "$.depth" }),
})
expect.eq(engine:start(recursive, { n = 2 }):wait().depth, 2, "task:dispatch")
local deep_ok, deep_err = pcall(function()
  return engine:start(recursive, { n = 10 }):wait()
end)
assert(not deep_ok)
assert(string.find(tostring(deep_err), "depth_exceeded", 1, true), tostring(deep_err))

-- The ctx is a JSON object.
expect.raises(function() engine:start(recursive, 5) end, { "the init ctx must be a table" })
expect.raises(function() engine:start(recursive, "/x/bp.lua") end, { "got string", "wrap it, (require(" })
