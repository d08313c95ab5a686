-- Durable waits and signals (docs/flows.md "wait", docs/engine.md "Waits and signals"): the
-- `wait` node, `swarm.wait` in inline agents, `run:signal`, buffering, timeouts, fanout lanes
-- waiting on names of their own, events and the run's `waiting` state. What survives a process
-- (the journal, `swarm run --detach`, `swarm runs signal`) is tested through the real binary
-- in tests/integration/waits_cli.rs.
local swarm = require("swarm")
local expect = require("support.expect")
local F = swarm.flow

local engine = swarm.default_engine()

--- Waits until `run` has an open wait for `signal`.
local function waiting_for(run, signal)
  expect.eventually("run " .. run.id .. " waiting for " .. signal, function()
    for _, w in ipairs(engine:pending()) do
      if w.run_id == run.id and w.signal == signal then
        return true
      end
    end
    return false
  end)
end

local function kinds(events)
  local out = {}
  for _, e in ipairs(events) do
    out[#out + 1] = e.kind
  end
  return table.concat(out, ",")
end

-- A wait node writes the signal's value at `out`; the run is `waiting` meanwhile, with
-- `run_waiting` naming the signal, and `run_signalled` when it arrives.
do
  local events = {}
  local bp = swarm.blueprint({
    id = "approval",
    agents = { draft = function(input) return "draft for " .. input.who end },
    flow = F.seq({
      F.step({ agent = "draft", out = "$.draft" }),
      F.wait({ signal = "approve", out = "$.approval" }),
      F.assign({ at = "$.done", value = true }),
    }),
  })
  local run = engine:start(bp, { who = "ann" }, { on_event = function(e) events[#events + 1] = e end })
  waiting_for(run, "approve")
  expect.eventually("run_waiting", function() return kinds(events):find("run_waiting", 1, true) ~= nil end)
  for _, e in ipairs(events) do
    if e.kind == "run_waiting" then
      expect.json(e.signals, '["approve"]', "run_waiting names the signals")
    end
  end
  expect.eq(run:signal("approve", { ok = true, by = "bob" }), 1, "the signal reached one wait")
  local ctx = run:wait()
  expect.json(ctx.approval, '{"by":"bob","ok":true}', "the signal's value at out")
  expect.eq(ctx.done, true, "the flow went on")
  expect.eq(ctx.draft, "draft for ann")
  local signalled
  for _, e in ipairs(events) do
    if e.kind == "run_signalled" then
      signalled = e
    end
  end
  assert(signalled, "run_signalled was published: " .. kinds(events))
  expect.eq(signalled.signal, "approve")
  expect.eq(signalled.waits, 1)
  -- A run that ended waits for nothing.
  local err = expect.raises(function() run:signal("approve", true) end, { "not waiting" })
  expect.eq(err.kind, "not_waiting")
  expect.eq(err.run_id, run.id)
end

-- Signals sent before their wait are buffered per name, first in first out; a wait without
-- `out` drops the value.
do
  local bp = swarm.blueprint({
    id = "buffered",
    agents = {},
    flow = F.seq({
      F.wait({ signal = "gate" }),
      F.wait({ signal = "n", out = "$.first" }),
      F.wait({ signal = "n", out = "$.second" }),
      F.wait({ signal = "gate" }),
    }),
  })
  local run = engine:start(bp)
  waiting_for(run, "gate")
  expect.eq(run:signal("n", 1), 0, "nothing waits on n yet: buffered")
  expect.eq(run:signal("n", 2), 0)
  expect.eq(run:signal("gate", "open"), 1)
  waiting_for(run, "gate")
  run:signal("gate", "again")
  local ctx = run:wait()
  expect.eq(ctx.first, 1, "first in")
  expect.eq(ctx.second, 2, "first out")
  expect.eq(ctx.gate, nil, "a wait without out writes nothing")
end

-- A wait times out with kind `timeout` at the wait node; `try` catches it.
do
  local bp = swarm.blueprint({
    id = "deadline",
    agents = {},
    flow = F.try({
      body = F.wait({ signal = "never", out = "$.v", timeout_ms = 30 }),
      err_at = "$.err",
      catch = F.assign({ at = "$.timed_out", value = true }),
    }),
  })
  local ctx = swarm.run(bp)
  expect.eq(ctx.timed_out, true)
  expect.eq(ctx.err.kind, "timeout")
  expect.eq(ctx.err.pointer, "/body")
  assert(ctx.err.message:find("never", 1, true), ctx.err.message)
  -- Uncaught, it fails the run with the wait's file and line.
  local err = expect.raises(function()
    swarm.run(swarm.blueprint({ id = "late", agents = {}, flow = F.wait({ signal = "never", timeout_ms = 10 }) }))
  end, { "timeout", "waits.lua:" })
  expect.eq(err.kind, "timeout")
end

-- Fanout lanes each wait on a name of their own (an expression on the lane's ctx); a signal
-- to a name several lanes wait on reaches all of them.
do
  local bp = swarm.blueprint({
    id = "lanes",
    agents = {},
    flow = F.fanout({
      items = F.p("$.items"),
      bind = "$.item",
      out = "$.answers",
      collect = "$.answer",
      body = F.seq({
        F.wait({ signal = F.p("$.item.signal"), out = "$.answer" }),
        F.wait({ signal = "all", out = "$.all" }),
      }),
    }),
  })
  local run = engine:start(bp, { items = { { signal = "a" }, { signal = "b" }, { signal = "c" } } })
  for _, name in ipairs({ "a", "b", "c" }) do
    waiting_for(run, name)
  end
  expect.eq(run:signal("b", "B"), 1, "one lane waits on b")
  expect.eq(run:signal("c", "C"), 1)
  expect.eq(run:signal("a", "A"), 1)
  expect.eventually("three lanes on 'all'", function()
    local n = 0
    for _, w in ipairs(engine:pending()) do
      if w.run_id == run.id and w.signal == "all" then
        n = n + 1
      end
    end
    return n == 3
  end)
  expect.eq(run:signal("all", true), 3, "a signal to a shared name reaches every lane waiting on it")
  expect.json(run:wait().answers, '["A","B","C"]', "each lane took its own signal, in item order")
  -- A computed name must be a non-empty string.
  local err = expect.raises(function()
    swarm.run(swarm.blueprint({ id = "bad", agents = {}, flow = F.wait({ signal = F.p("$.n") }) }), { n = 3 })
  end, { "wait signal must be a name", "number" })
  expect.eq(err.kind, "eval")
  expect.eq(err.pointer, "/signal")
end

-- Inside an inline agent, swarm.wait (or task:wait) waits; the task is suspended meanwhile.
do
  local events = {}
  local bp = swarm.blueprint({
    id = "agent_waits",
    agents = {
      ask = function(input, task)
        local answer = swarm.wait("answer")
        local second = task:wait("answer")
        local ok, late = pcall(swarm.wait, "never", { timeout_ms = 20 })
        assert(not ok, "the wait timed out")
        return { answer = answer, second = second, late = late.kind, q = input.q }
      end,
      slow = function()
        -- Uncaught, a timed-out wait times the attempt out: retry.on = {"timeout"} applies.
        return swarm.wait("never", { timeout_ms = 10 })
      end,
    },
    flow = F.seq({
      F.step({ agent = "ask", out = "$.asked" }),
      F.try({ body = F.step({ agent = "slow", retry = { max_attempts = 2, on = { "timeout" } } }), err_at = "$.slow" }),
    }),
  })
  local run = engine:start(bp, { q = "why?" }, { on_event = function(e) events[#events + 1] = e end })
  waiting_for(run, "answer")
  local pending
  for _, w in ipairs(engine:pending()) do
    if w.run_id == run.id then
      pending = w
    end
  end
  assert(pending.task_id, "an agent's wait names its task")
  run:signal("answer", 42)
  waiting_for(run, "answer")
  run:signal("answer", 43)
  local ctx = run:wait()
  expect.json(ctx.asked, '{"answer":42,"late":"timeout","q":"why?","second":43}')
  expect.eq(ctx.slow.kind, "timeout")
  local seen = kinds(events)
  assert(seen:find("task_suspended,run_waiting", 1, true), seen)
  assert(seen:find("task_resumed", 1, true), seen)
  local attempts = 0
  for _, e in ipairs(events) do
    if e.kind == "attempt_finished" and e.agent == "slow" then
      expect.eq(e.status, "timeout")
      attempts = attempts + 1
    end
  end
  expect.eq(attempts, 2, "the timed-out attempt was retried")
  -- Outside an agent there is no task to wait for.
  expect.raises(function() swarm.wait("x") end, { "only an inline agent can wait", "F.wait" })
  local bad = engine:start(swarm.blueprint({
    id = "bad_wait",
    agents = { w = function() return swarm.wait("x", { timeout_ms = 0 }) end },
    flow = F.step({ agent = "w" }),
  }))
  expect.raises(function() bad:wait() end, { "timeout_ms must be a whole number" })
end

-- Cancelling a waiting run ends it cancelled, and its waits are gone.
do
  local run = engine:start(swarm.blueprint({ id = "cancel_me", agents = {}, flow = F.wait({ signal = "go" }) }))
  waiting_for(run, "go")
  run:cancel()
  local err = expect.raises(function() run:wait() end, { "cancelled" })
  expect.eq(err.kind, "cancelled")
  for _, w in ipairs(engine:pending()) do
    assert(w.run_id ~= run.id, "a cancelled run has no open wait")
  end
end

-- engine:signal reaches a run by id; the builder checks its fields.
do
  local run = engine:start(swarm.blueprint({ id = "by_id", agents = {}, flow = F.wait({ signal = "go", out = "$.go" }) }))
  waiting_for(run, "go")
  expect.eq(engine:signal(run.id, "go", "went"), 1)
  expect.eq(run:wait().go, "went")
  expect.eq(expect.raises(function() engine:signal("r-nope", "go", 1) end, { "r-nope" }).kind, "not_waiting")
  expect.raises(function() F.wait({}) end, { "F.wait", "`signal` must be a name" })
  expect.raises(function() F.wait({ signal = "" }) end, { "must not be empty" })
  expect.raises(function() F.wait({ signal = "a", timeout_ms = 0 }) end, { "timeout_ms" })
  expect.raises(function() F.wait({ signal = "a", typo = 1 }) end, { "unknown field 'typo'" })
  local node = F.wait({ signal = "a", out = "$.x", timeout_ms = 5 })
  expect.json(node, '{"kind":"wait","out":{"at":"$.x","op":"path"},"signal":"a","timeout_ms":5}')
end

-- A `remote` operator seat: each question is a wait for its own signal, answered from outside
-- (here engine:signal, as `swarm runs signal` or a client would); engine:pending shows it.
do
  local bp = swarm.blueprint({
    id = "remote_seat",
    operators = { { name = "reviewer", kind = "remote" } },
    agents = {
      review = {
        kind = "operator",
        spec = { operator_ref = "reviewer" },
        profile = { system_prompt = "Review {{ title }}" },
      },
    },
    flow = F.seq({
      F.step({ agent = "review", input = { title = "first" }, out = "$.first" }),
      F.step({ agent = "review", input = { title = "second" }, out = "$.second" }),
    }),
  })
  local run = engine:start(bp)
  local function question()
    local found
    expect.eventually("a question to the reviewer", function()
      for _, w in ipairs(engine:pending()) do
        if w.run_id == run.id and w.question and w.question.operator == "reviewer" then
          found = w
        end
      end
      return found ~= nil
    end)
    return found
  end
  local q1 = question()
  expect.eq(q1.question.prompt, "Review first")
  expect.eq(q1.question.agent, "review")
  assert(q1.signal:match("^reviewer%.%x+$"), q1.signal)
  engine:signal(run.id, q1.signal, { ok = true })
  local q2
  expect.eventually("the second question", function()
    local q = question()
    if q.signal ~= q1.signal then
      q2 = q
    end
    return q2 ~= nil
  end)
  expect.eq(q2.question.prompt, "Review second")
  engine:signal(run.id, q2.signal, "fine")
  local ctx = run:wait()
  expect.json(ctx.first, '{"ok":true}')
  expect.eq(ctx.second, "fine")
end
