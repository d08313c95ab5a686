-- Errors keep their structure: a table an agent raises, and what task:dispatch, swarm.run and
-- run:wait raise, are plain tables `{kind, message, step?, value?}`, never userdata. Numbers the
-- host takes are range-checked, never wrapped.
local swarm = require("swarm")
local expect = require("support.expect")
local F = swarm.flow

-- A table raised in an inline agent fails the attempt with its message and keeps it as the value.
local raised = swarm.run(swarm.blueprint({
  id = "raised",
  agents = {
    coded = function()
      error({ code = 7, message = "boom" })
    end,
    bare = function()
      error({ code = 8 })
    end,
  },
  flow = F.seq({
    F.try({ body = F.step({ agent = "coded", out = "$.x" }), err_at = "$.coded" }),
    F.try({ body = F.step({ agent = "bare", out = "$.x" }), err_at = "$.bare" }),
  }),
}))
expect.eq(raised.coded.kind, "failed", "the attempt failed")
expect.eq(raised.coded.message, "boom", "the table's message is the error's message")
expect.json(raised.coded.value, '{"code":7,"message":"boom"}', "the raised table is the error's value")
expect.eq(raised.coded.step, "coded")
expect.eq(raised.bare.message, 'the agent raised {"code":8}', "a table without a message: its JSON")
expect.json(raised.bare.value, '{"code":8}')

-- task:dispatch raises a plain table; depth_exceeded is its kind, not text to parse.
local engine = swarm.engine({ max_spawn_depth = 2 })
local seen = {}
local deep = swarm.blueprint({
  id = "deep",
  agents = {
    dive = function(n, task)
      local ok, err = pcall(task.dispatch, task, "dive", n + 1)
      if ok then
        return err
      end
      seen[#seen + 1] = err
      local ok2, err2 = pcall(function()
        return task:dispatch("dive", n + 1)
      end)
      assert(not ok2)
      seen[#seen + 1] = err2
      return { kind = err.kind, depth = n }
    end,
  },
  flow = F.step({ agent = "dive", input = 0, out = "$.r" }),
})
local out = engine:start(deep, {}):wait()
expect.eq(out.r.kind, "depth_exceeded", "the sub-task's refusal kind")
expect.eq(#seen, 2)
for _, err in ipairs(seen) do
  expect.eq(type(err), "table", "task:dispatch raises a table, not " .. type(err))
  expect.eq(err.kind, "depth_exceeded")
  expect.eq(err.step, "dive")
  assert(string.find(err.message, "spawn depth", 1, true), err.message)
  assert(not string.find(err.message, "stack traceback", 1, true), err.message)
end

-- A failed sub-task: kind failed, its value kept.
local failing = swarm.blueprint({
  id = "failing",
  agents = {
    boss = function(_, task)
      local ok, err = pcall(task.dispatch, task, "worker", {})
      assert(not ok)
      return err
    end,
    worker = function()
      error({ message = "nope", code = 3 })
    end,
  },
  flow = F.step({ agent = "boss", out = "$.err" }),
})
local err = swarm.run(failing).err
expect.eq(err.kind, "failed")
expect.eq(err.step, "worker")
expect.json(err.value, '{"code":3,"message":"nope"}')
local bad = swarm.run(swarm.blueprint({
  id = "bad_dispatch",
  agents = {
    boss = function(_, task)
      local ok, e = pcall(task.dispatch, task, 42)
      assert(not ok)
      return e
    end,
  },
  flow = F.step({ agent = "boss", out = "$.err" }),
})).err
expect.eq(bad.kind, "dispatch")
assert(string.find(bad.message, "must be a name", 1, true), bad.message)

-- swarm.run and run:wait raise tables too, for a failed run and for a wrong argument.
local ok, run_err = pcall(swarm.run, failing, "not a table")
assert(not ok)
expect.eq(type(run_err), "table", "swarm.run raises a table")
expect.eq(run_err.kind, "invalid_argument")
assert(string.find(run_err.message, "the init ctx must be a table", 1, true), run_err.message)
local boom = swarm.blueprint({
  id = "boom",
  agents = { coded = function() error({ code = 9, message = "bang" }) end },
  flow = F.step({ agent = "coded", out = "$.x" }),
})
ok, run_err = pcall(swarm.run, boom)
assert(not ok)
expect.eq(type(run_err), "table")
expect.eq(run_err.kind, "failed")
expect.eq(run_err.message, "bang")
expect.json(run_err.value, '{"code":9,"message":"bang"}')
ok, run_err = pcall(function()
  return engine:start(boom):wait()
end)
assert(not ok)
expect.eq(type(run_err), "table", "run:wait raises a table")
expect.eq(run_err.kind, "failed")

-- Numbers are range-checked and never wrapped.
expect.raises(function()
  swarm.engine({ max_spawn_depth = 4294967296 })
end, { "structured_errors.lua:123: swarm.engine: `max_spawn_depth` must be a whole number from 1 to 4294967295, got 4294967296" })
expect.raises(function()
  swarm.engine({ max_spawn_depth = 0 })
end, { "`max_spawn_depth`" })
expect.raises(function()
  swarm.engine({ offload_bytes = -1 })
end, { "`offload_bytes`" })
expect.raises(function()
  swarm.sleep(1e300)
end, { "structured_errors.lua:", "swarm.sleep: `ms` must be milliseconds from 0 to", "got 1e300" })
expect.raises(function()
  engine:mint({ role = "observer", ttl = 1e300 })
end, { "engine:mint: `ttl` must be seconds from 0 to" })
expect.raises(function()
  engine:mint({ role = "observer", max_uses = -1 })
end, { "engine:mint: `max_uses`" })
expect.raises(function()
  engine:mint({ role = "observer", depth = 4294967296 })
end, { "engine:mint: `depth`" })
expect.raises(function()
  F.loop({ counter = "$.i", max = 1000000000000, body = F.assign({ at = "$.x", value = 1 }) })
end, { "structured_errors.lua:", "F.loop: `max` must be a non-negative integer of at most 4294967295, got 1000000000000" })
expect.raises(function()
  F.loop({ counter = "$.i", max = 1e12, body = F.assign({ at = "$.x", value = 1 }) })
end, { "structured_errors.lua:", "F.loop: `max`" })
expect.raises(function()
  F.step({ agent = "a", timeout_ms = 1 << 62 })
end, { "structured_errors.lua:", "`timeout_ms` must be a positive integer of at most" })
expect.raises(function()
  F.step({ agent = "a", retry = { max_attempts = 1 << 40 } })
end, { "structured_errors.lua:", "`retry.max_attempts`" })
expect.raises(function()
  F.step({ agent = "a", retry = { max_attempts = 2, backoff_factor = 0 / 0 } })
end, { "structured_errors.lua:", "`retry.backoff_factor`" })
expect.raises(function()
  F.fanout({ items = {}, out = "$.o", body = F.assign({ at = "$.x", value = 1 }), max_concurrency = 1 << 33 })
end, { "structured_errors.lua:", "`max_concurrency`" })
-- A hand-written table goes through the same checks when it is compiled: the node is named.
expect.raises(function()
  swarm.run({
    id = "raw",
    flow = { kind = "loop", counter = { op = "path", at = "$.i" }, cond = { op = "lit", value = true }, max = 1000000000000, body = { kind = "seq", children = {} } },
  })
end, { "loop `max` must be a whole number from 0 to 4294967295, got 1000000000000" })

-- A sub-task on an agent the blueprint lacks is refused by kind, before any task is made.
local nowhere = swarm.run(swarm.blueprint({
  id = "nowhere",
  agents = {
    boss = function(_, task)
      local ok, e = pcall(task.dispatch, task, "ghost", {})
      assert(not ok)
      return e
    end,
  },
  flow = F.step({ agent = "boss", out = "$.err" }),
})).err
expect.eq(nowhere.kind, "no_route", "the refusal's kind")
assert(string.find(nowhere.message, "no agent 'ghost' in blueprint 'nowhere'", 1, true), nowhere.message)
