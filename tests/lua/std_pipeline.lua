-- std.pipeline: the flows it builds, byte for byte, and how they run.
local swarm = require("swarm")
local expect = require("support.expect")
local P = require("std.pipeline")
local F = swarm.flow

local function line_here()
  local _, where = pcall(error, "", 3)
  return where:match(":(%d+): $")
end

-- What it builds -----------------------------------------------------------------------------

-- No gates: a chain of steps, each reading the previous stage's out.
expect.json(
  P.pipeline({ P.stage("a")({ agent = "x" }), P.stage("b")({ agent = "y" }), P.stage("c")({ agent = "z", out = "$.result.c" }) }),
  '{"children":['
    .. '{"in":{"at":"$","op":"path"},"kind":"step","out":{"at":"$.a","op":"path"},"ref":"x"},'
    .. '{"in":{"at":"$.a","op":"path"},"kind":"step","out":{"at":"$.b","op":"path"},"ref":"y"},'
    .. '{"in":{"at":"$.b","op":"path"},"kind":"step","out":{"at":"$.result.c","op":"path"},"ref":"z"}'
    .. '],"kind":"seq"}',
  "a plain chain"
)

-- halt_on on the pipeline reaches only the stage with gate = true; chain = false reads the
-- whole ctx; P.from points forward; done closes the innermost else.
expect.json(
  P.pipeline({
    P.stage("check")({ agent = "checker", gate = true }),
    P.stage("ship")({ agent = "shipper", input = P.from("check"), timeout_ms = 500 }),
    P.stage("tell")({ agent = "teller" }),
    halt_on = { "stop" },
    halted_at = "$.why",
    done = "$.done",
    chain = false,
  }),
  '{"children":['
    .. '{"in":{"at":"$","op":"path"},"kind":"step","out":{"at":"$.check","op":"path"},"ref":"checker"},'
    .. '{"cond":{"args":['
    .. '{"arg":{"at":"$.check.verdict","op":"path"},"op":"exists"},'
    .. '{"haystack":{"op":"lit","value":["stop"]},"needle":{"at":"$.check.verdict","op":"path"},"op":"in"}'
    .. '],"op":"and"},'
    .. '"else":{"children":['
    .. '{"in":{"at":"$.check","op":"path"},"kind":"step","out":{"at":"$.ship","op":"path"},"ref":"shipper","timeout_ms":500},'
    .. '{"in":{"at":"$","op":"path"},"kind":"step","out":{"at":"$.tell","op":"path"},"ref":"teller"},'
    .. '{"at":{"at":"$.done","op":"path"},"kind":"assign","value":{"op":"lit","value":true}}'
    .. '],"kind":"seq"},'
    .. '"kind":"branch",'
    .. '"then":{"at":{"at":"$.why","op":"path"},"kind":"assign","value":{"op":"lit","value":"check"}}}'
    .. '],"kind":"seq"}',
  "a gate with the pipeline's halt_on"
)

-- retry with an agent as the fix: the fixer reads the ctx and writes the stage's input; the
-- loop runs while the verdict (here under `meta.verdict`) still matches. skip_on reads the
-- stage input's verdict; the last gate's else is an empty seq.
expect.json(
  P.pipeline({
    P.stage("review")({
      agent = "critic",
      input = F.p("$.text"),
      out = "$.notes",
      halt_on = { "bad", "worse" },
      retry = { max = 3, fix = "fixer", counter = "$.rounds" },
    }),
    P.stage("polish")({ agent = "editor", skip_on = { "perfect" } }),
    verdict = "meta.verdict",
  }),
  '{"children":['
    .. '{"in":{"at":"$.text","op":"path"},"kind":"step","out":{"at":"$.notes","op":"path"},"ref":"critic"},'
    .. '{"body":{"children":['
    .. '{"in":{"at":"$","op":"path"},"kind":"step","out":{"at":"$.text","op":"path"},"ref":"fixer"},'
    .. '{"in":{"at":"$.text","op":"path"},"kind":"step","out":{"at":"$.notes","op":"path"},"ref":"critic"}'
    .. '],"kind":"seq"},'
    .. '"cond":{"args":['
    .. '{"arg":{"at":"$.notes.meta.verdict","op":"path"},"op":"exists"},'
    .. '{"haystack":{"op":"lit","value":["bad","worse"]},"needle":{"at":"$.notes.meta.verdict","op":"path"},"op":"in"}'
    .. '],"op":"and"},'
    .. '"counter":{"at":"$.rounds","op":"path"},"kind":"loop","max":3},'
    .. '{"cond":{"args":['
    .. '{"arg":{"at":"$.notes.meta.verdict","op":"path"},"op":"exists"},'
    .. '{"haystack":{"op":"lit","value":["bad","worse"]},"needle":{"at":"$.notes.meta.verdict","op":"path"},"op":"in"}'
    .. '],"op":"and"},'
    .. '"else":{"children":['
    .. '{"cond":{"args":['
    .. '{"arg":{"at":"$.notes.meta.verdict","op":"path"},"op":"exists"},'
    .. '{"haystack":{"op":"lit","value":["perfect"]},"needle":{"at":"$.notes.meta.verdict","op":"path"},"op":"in"}'
    .. '],"op":"and"},'
    .. '"else":{"in":{"at":"$.notes","op":"path"},"kind":"step","out":{"at":"$.polish","op":"path"},"ref":"editor"},'
    .. '"kind":"branch",'
    .. '"then":{"children":[],"kind":"seq"}}'
    .. '],"kind":"seq"},'
    .. '"kind":"branch",'
    .. '"then":{"at":{"at":"$.halted_at","op":"path"},"kind":"assign","value":{"op":"lit","value":"review"}}}'
    .. '],"kind":"seq"}',
  "retry with a fix agent, then skip_on"
)

-- retry with a stage as the fix re-runs that stage's step; gate = false keeps the retry but
-- drops the halting branch; skip_on wraps the step and its retry loop together.
expect.json(
  P.pipeline({
    P.stage("draft")({ agent = "writer" }),
    P.stage("review")({ agent = "critic", gate = false, skip_on = { "final" }, retry = { max = 1, fix = "draft" } }),
    halt_on = { "reject" },
  }),
  '{"children":['
    .. '{"in":{"at":"$","op":"path"},"kind":"step","out":{"at":"$.draft","op":"path"},"ref":"writer"},'
    .. '{"cond":{"args":['
    .. '{"arg":{"at":"$.draft.verdict","op":"path"},"op":"exists"},'
    .. '{"haystack":{"op":"lit","value":["final"]},"needle":{"at":"$.draft.verdict","op":"path"},"op":"in"}'
    .. '],"op":"and"},'
    .. '"else":{"children":['
    .. '{"in":{"at":"$.draft","op":"path"},"kind":"step","out":{"at":"$.review","op":"path"},"ref":"critic"},'
    .. '{"body":{"children":['
    .. '{"in":{"at":"$","op":"path"},"kind":"step","out":{"at":"$.draft","op":"path"},"ref":"writer"},'
    .. '{"in":{"at":"$.draft","op":"path"},"kind":"step","out":{"at":"$.review","op":"path"},"ref":"critic"}'
    .. '],"kind":"seq"},'
    .. '"cond":{"args":['
    .. '{"arg":{"at":"$.review.verdict","op":"path"},"op":"exists"},'
    .. '{"haystack":{"op":"lit","value":["reject"]},"needle":{"at":"$.review.verdict","op":"path"},"op":"in"}'
    .. '],"op":"and"},'
    .. '"counter":{"at":"$.review_retries","op":"path"},"kind":"loop","max":1}'
    .. '],"kind":"seq"},'
    .. '"kind":"branch",'
    .. '"then":{"children":[],"kind":"seq"}}'
    .. '],"kind":"seq"}',
  "retry with a fix stage, gate = false, skip_on around both"
)

-- How it runs --------------------------------------------------------------------------------

local calls
local function reset()
  calls = {}
end
local function count(name)
  calls[name] = (calls[name] or 0) + 1
end

-- writer: "draft 1", "draft 2", ...; critic rejects until `good` drafts have been written.
local function review_agents(good)
  local drafts = 0
  return {
    writer = function()
      count("writer")
      drafts = drafts + 1
      return "draft " .. drafts
    end,
    critic = function(text)
      count("critic")
      if text == "draft " .. good then
        return { verdict = "approve", text = text }
      end
      return { verdict = "reject", text = text }
    end,
    printer = function(text)
      count("printer")
      return "printed " .. text
    end,
  }
end

local function review_flow(max)
  return P.pipeline({
    P.stage("draft")({ agent = "writer" }),
    P.stage("review")({ agent = "critic", halt_on = { "reject" }, retry = { max = max, fix = "draft" } }),
    P.stage("publish")({ agent = "printer", input = P.from("draft") }),
    done = "$.done",
  })
end

-- The critic approves the third draft; two retries are allowed, so the pipeline gets through.
reset()
local ctx = swarm.run(swarm.blueprint({ id = "review", agents = review_agents(3), flow = review_flow(2) }))
expect.eq(ctx.publish, "printed draft 3")
expect.eq(ctx.review_retries, 2, "two fix rounds")
expect.eq(calls.writer, 3)
expect.eq(calls.critic, 3)
expect.eq(ctx.done, true)
expect.eq(ctx.halted_at, nil, "nothing halted")

-- Only one retry allowed: the review still rejects, so the gate halts before publishing.
reset()
ctx = swarm.run(swarm.blueprint({ id = "review", agents = review_agents(3), flow = review_flow(1) }))
expect.eq(ctx.halted_at, "review")
expect.eq(ctx.review_retries, 1)
expect.eq(ctx.review.verdict, "reject")
expect.eq(calls.writer, 2)
expect.eq(calls.printer, nil, "stages after the halt do not run")
expect.eq(ctx.done, nil, "done is set only when no gate halted")

-- Approved on the first try: the retry loop does not run its body.
reset()
ctx = swarm.run(swarm.blueprint({ id = "review", agents = review_agents(1), flow = review_flow(2) }))
expect.eq(ctx.review_retries, 0)
expect.eq(calls.writer, 1)
expect.eq(ctx.publish, "printed draft 1")

-- A fix agent writes the stage's input; the stage reads the fixed input again.
reset()
ctx = swarm.run(swarm.blueprint({
  id = "fixing",
  agents = {
    check = function(n)
      count("check")
      return { verdict = n >= 3 and "pass" or "fail", n = n }
    end,
    bump = function(c)
      count("bump")
      return c.n + 1
    end,
  },
  flow = P.pipeline({
    P.stage("check")({ agent = "check", input = F.p("$.n"), halt_on = { "fail" }, retry = { max = 5, fix = "bump" } }),
  }),
}), { n = 1 })
expect.eq(ctx.n, 3, "the fixer wrote the stage's input")
expect.eq(ctx.check.verdict, "pass")
expect.eq(ctx.check_retries, 2)
expect.eq(calls.bump, 2)

-- Gates are opt-in: a stage without gate, halt_on or retry never halts, whatever its verdict.
reset()
local gate_agents = {
  judge = function() return { verdict = "stop" } end,
  after = function() count("after") return "ran" end,
}
ctx = swarm.run(swarm.blueprint({
  id = "ungated",
  agents = gate_agents,
  flow = P.pipeline({
    P.stage("judge")({ agent = "judge" }),
    P.stage("after")({ agent = "after" }),
    P.stage("gated")({ agent = "judge", input = 0, gate = true }),
    halt_on = { "stop" },
  }),
}))
expect.eq(ctx.after, "ran", "the ungated stage let the pipeline through")
expect.eq(ctx.halted_at, "gated", "the gated one halted it")

-- A gated stage whose output carries no verdict does not halt.
ctx = swarm.run(swarm.blueprint({
  id = "no_verdict",
  agents = { plain = function() return "just text" end, after = gate_agents.after },
  flow = P.pipeline({
    P.stage("plain")({ agent = "plain", halt_on = { "stop" } }),
    P.stage("after")({ agent = "after", input = 0 }),
  }),
}))
expect.eq(ctx.after, "ran")

-- skip_on: the stage is skipped when its input's verdict matches; the rest still runs.
local skip_flow = P.pipeline({
  P.stage("triage")({ agent = "triage" }),
  P.stage("deep")({ agent = "deep", skip_on = { "trivial" } }),
  P.stage("report")({ agent = "report", input = P.from("triage") }),
  done = "$.done",
})
local skip_agents = {
  triage = function(input) return { verdict = input.kind } end,
  deep = function() count("deep") return "analysed" end,
  report = function(t) count("report") return "report on " .. t.verdict end,
}
reset()
ctx = swarm.run(swarm.blueprint({ id = "skipping", agents = skip_agents, flow = skip_flow }), { kind = "trivial" })
expect.eq(calls.deep, nil, "skipped")
expect.eq(ctx.deep, nil)
expect.eq(ctx.report, "report on trivial")
expect.eq(ctx.done, true)
reset()
ctx = swarm.run(swarm.blueprint({ id = "skipping", agents = skip_agents, flow = skip_flow }), { kind = "hard" })
expect.eq(ctx.deep, "analysed", "not skipped")
expect.eq(calls.report, 1)

-- gate = false with a retry: fix up to max times, then go on whatever the verdict.
reset()
ctx = swarm.run(swarm.blueprint({
  id = "best_effort",
  agents = review_agents(99),
  flow = P.pipeline({
    P.stage("draft")({ agent = "writer" }),
    P.stage("review")({ agent = "critic", gate = false, retry = { max = 2, fix = "draft" } }),
    P.stage("publish")({ agent = "printer", input = P.from("draft") }),
    halt_on = { "reject" },
  }),
}))
expect.eq(ctx.review.verdict, "reject")
expect.eq(ctx.publish, "printed draft 3", "published after two fix rounds")
expect.eq(ctx.halted_at, nil)

-- The expanded flow is plain data: it survives compile and a JSON round trip unchanged.
local flow = review_flow(2)
local compiled = swarm.compile(swarm.blueprint({ id = "review", agents = review_agents(3), flow = flow }))
local wire = swarm.json.decode(compiled:to_json())
expect.eq(swarm.json.encode(wire.flow), swarm.json.encode(flow), "compile keeps the flow as built")

-- Errors name the stage and the line ---------------------------------------------------------
local line = line_here() local dangling = P.stage("b")({ agent = "y", input = P.from("nope") })
expect.raises(function() P.pipeline({ P.stage("a")({ agent = "x" }), dangling }) end, {
  "tests/lua/std_pipeline.lua:" .. line .. ": std.pipeline: stage 'b': `input` P.from \"nope\" names no stage of this pipeline (stages: a, b)",
})
line = line_here() local twice = P.stage("a")({ agent = "y" })
expect.raises(function() P.pipeline({ P.stage("a")({ agent = "x" }), twice }) end, {
  "tests/lua/std_pipeline.lua:" .. line .. ": std.pipeline: stage 'a' is declared twice in this pipeline",
})
line = line_here() expect.raises(function() P.stage("a")({ agent = "x", halt_onn = { "no" } }) end, {
  "tests/lua/std_pipeline.lua:" .. line .. ": std.pipeline: stage 'a': unknown field 'halt_onn' (fields: agent, gate, halt_on, input, out, retry, skip_on, timeout_ms)",
})
line = line_here() expect.raises(function() P.pipeline({ P.stage("a")({ agent = "x" }), halt_on = { "stop" } }) end, {
  "tests/lua/std_pipeline.lua:" .. line .. ": std.pipeline: P.pipeline: `halt_on` applies to no stage: gates are opt-in",
})
expect.raises(function() P.pipeline({ P.stage("a")({ agent = "x", gate = true }) }) end, {
  "stage 'a': `gate = true` needs verdicts to act on: give `halt_on` on the stage or on the pipeline",
})
expect.raises(function() P.pipeline({ P.stage("a")({ agent = "x", retry = { max = 1, fix = "y" } }) }) end, {
  "stage 'a': `retry` needs verdicts to act on",
})
expect.raises(function() P.stage("a")({ agent = "x", halt_on = { "no" }, retry = { max = 1, fix = "a" } }) end, {
  "stage 'a': `retry.fix` names the stage itself",
})
expect.raises(function() P.stage("a")({ agent = "x", retry = { max = 0, fix = "y" } }) end, {
  "stage 'a': `retry.max` must be an integer >= 1",
})
expect.raises(function() P.pipeline({ P.stage("a")({ agent = "x", gate = false, halt_on = { "no" } }) }) end, {
  "stage 'a': `halt_on` with `gate = false` can never halt",
})
expect.raises(function() P.pipeline({ P.stage("a")({ agent = "x", input = "text", skip_on = { "no" } }) }) end, {
  "stage 'a': `skip_on` needs the stage's `input` to be a path",
})
expect.raises(function()
  P.pipeline({
    P.stage("a")({ agent = "x" }),
    P.stage("b")({ agent = "y", halt_on = { "no" }, retry = { max = 1, fix = "a", out = "$.elsewhere" } }),
  })
end, { "stage 'b': `retry.input` and `retry.out` apply only when `retry.fix` names an agent; stage 'a' brings its own" })
expect.raises(function() P.stage("a")({ agent = "x", out = "a" }) end, { "stage 'a': `out`: " })
expect.raises(function() P.stage("two words") end, { "P.stage: the id must be a name like \"review\"" })
expect.raises(function() P.pipeline({}) end, { "P.pipeline: give at least one stage" })
expect.raises(function() P.pipeline({ F.step({ agent = "x" }) }) end, { "P.pipeline: entry 1 is not a stage" })
expect.raises(function() P.pipeline({ P.stage("a")({ agent = "x" }), verdict = "parts..verdict" }) end, {
  "P.pipeline: `verdict` must be a path below a stage's out",
})
local missing
expect.raises(function() P.pipeline({ P.stage("a")({ agent = "x" }), missing, P.stage("c")({ agent = "z" }) }) end, {
  "P.pipeline: the stages must be a list without holes",
})
