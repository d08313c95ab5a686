-- The built-in layers and the output store (docs/layers.md, docs/engine.md).
local swarm = require("swarm")
local expect = require("support.expect")
local F = swarm.flow

local function with_notes(engine, bp, init)
  local notes = {}
  local run = engine:start(bp, init or {}, {
    on_event = function(e)
      if e.kind == "layer_note" then
        notes[#notes + 1] = e
      end
    end,
  })
  return run:wait(), notes
end

local engine = swarm.engine({ offload_bytes = 200 })
local echo_runtime = function(input, task) return { input = input, runtime = task.runtime, agent = task.agent } end

-- audit: a note when each attempt starts and finishes.
local ctx, notes = with_notes(engine, swarm.blueprint({
  id = "audited",
  layers = { "audit" },
  agents = { a = echo_runtime },
  flow = F.seq({ F.step({ agent = "a", input = 1 }), F.step({ agent = "a", input = 2 }) }),
}))
expect.eq(#notes, 4, "two notes per attempt")
expect.eq(notes[1].layer, "audit")
expect.eq(notes[1].note.phase, "started")
expect.eq(notes[2].note.phase, "finished")
expect.eq(notes[2].note.status, "pass")
assert(type(notes[2].note.elapsed_ms) == "number")

-- alias and sink put their settings into the runtime hints.
ctx = swarm.run(swarm.blueprint({
  id = "hinted",
  layers = { "alias", "sink" },
  hints = { global = { sink = "http://127.0.0.1:9/sink" } },
  metadata = { project_name_alias = "apollo" },
  agents = { a = echo_runtime },
  flow = F.step({ agent = "a" }),
}))
expect.eq(ctx.a.runtime.project_name_alias, "apollo")
expect.eq(ctx.a.runtime.data_sink_endpoint, "http://127.0.0.1:9/sink")
local ok, err = pcall(swarm.compile, swarm.blueprint({ id = "nosink", layers = { "sink" }, agents = { a = echo_runtime }, flow = F.step({ agent = "a" }) }))
expect.eq(err.kind, "unknown_layer")
assert(string.find(err.message, "layer 'sink': set hints.global.sink", 1, true), err.message)

-- resolver: by a table, or by a function.
local routing = { draft = function() return "draft" end, final = function() return "final" end }
ctx = swarm.run(swarm.blueprint({
  id = "resolved",
  layers = { "resolver" },
  hints = { global = { resolver = { draft = "final" } } },
  agents = routing,
  flow = F.step({ agent = "draft" }),
}))
expect.eq(ctx.draft, "final", "rerouted by the table")
swarm.resolver(function(job) if job.input == "promote" then return "final" end end)
ctx = swarm.run(swarm.blueprint({
  id = "resolved_fn",
  layers = { "resolver" },
  agents = routing,
  flow = F.seq({ F.step({ agent = "draft", input = "promote", out = "$.a" }), F.step({ agent = "draft", input = "keep", out = "$.b" }) }),
}))
expect.eq(ctx.a, "final", "rerouted by the function")
expect.eq(ctx.b, "draft", "nil keeps the agent")

-- long_hold: a note once an attempt runs past the threshold.
ctx, notes = with_notes(engine, swarm.blueprint({
  id = "held",
  layers = { "long_hold" },
  hints = { global = { long_hold = { threshold_ms = 10 } } },
  agents = { slow = function() swarm.sleep(60) return "done" end, quick = function() return "done" end },
  flow = F.seq({ F.step({ agent = "slow" }), F.step({ agent = "quick" }) }),
}))
expect.eq(#notes, 1, "only the slow attempt")
expect.eq(notes[1].note.long_hold, true)
expect.eq(notes[1].note.agent, "slow")
expect.eq(notes[1].note.threshold_ms, 10)

-- senior_escalation: a failure is put to the senior, whose answer passes the step.
swarm.senior(function(question)
  return { decision = "accept anyway", because = question.original.error }
end)
ctx = swarm.run(swarm.blueprint({
  id = "escalated",
  layers = { "senior_escalation" },
  agents = { shaky = function() error("too shaky") end },
  flow = F.step({ agent = "shaky" }),
}))
expect.eq(ctx.shaky.senior_answer.decision, "accept anyway")
assert(string.find(ctx.shaky.original.error, "too shaky", 1, true), ctx.shaky.original.error)

-- The output store and input_inject: a large output becomes a ref; later steps get the refs.
ctx = engine:start(swarm.blueprint({
  id = "offloaded",
  layers = { "input_inject" },
  agents = {
    big = function() return string.rep("x", 1000) end,
    reader = function(input, task) return task.runtime.input_refs end,
  },
  flow = F.seq({ F.step({ agent = "big" }), F.step({ agent = "reader" }) }),
})):wait()
assert(type(ctx.big.ref) == "string" and ctx.big.ref:sub(1, 4) == "out-", "the ctx holds a ref")
expect.eq(ctx.big.size, 1002, "the size of its JSON")
expect.eq(engine:output(ctx.big.ref), string.rep("x", 1000), "the store has the value")
expect.eq(#ctx.reader, 1)
expect.eq(ctx.reader[1], ctx.big.ref, "input_inject passed the ref on")
expect.eq(swarm.output.get(ctx.big.ref), nil, "another engine's store does not have it")
