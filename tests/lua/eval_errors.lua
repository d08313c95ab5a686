-- A runtime evaluation error names the node it arose in (its pointer, with the field), the
-- file and line that built that node, and for a missing path the nearest existing key.
local swarm = require("swarm")
local expect = require("support.expect")
local F = swarm.flow

local compare = swarm.blueprint({
  id = "compare",
  agents = { score = function() return 3 end },
  flow = F.seq({
    F.step({ agent = "score", out = "$.score" }),
    F.branch({ cond = F.p("$.score"):gt("high"), on_true = F.assign({ at = "$.big", value = true }) }),
  }),
})
local ok, err = pcall(swarm.run, compare, {})
expect.eq(ok, false, "comparing a number with a string fails")
expect.eq(err.kind, "eval", "kind")
expect.eq(err.message, "type error in gt: cannot compare number with string", "message")
expect.eq(err.pointer, "/children/1/cond", "the branch's cond")
expect.eq(err.file, "tests/lua/eval_errors.lua", "the file that built the branch")
expect.eq(err.line, 12, "the line of F.branch")
expect.eq(
  tostring(err),
  "tests/lua/eval_errors.lua:12: eval at /children/1/cond: type error in gt: cannot compare number with string",
  "the text"
)

local typo = swarm.blueprint({
  id = "typo",
  agents = { answer = function() return 42 end },
  flow = F.seq({
    F.step({ agent = "answer", out = "$.result" }),
    F.step({ agent = "answer", input = F.p("$.reslt"), out = "$.again" }),
  }),
})
ok, err = pcall(swarm.run, typo, {})
expect.eq(ok, false, "a missing path fails")
expect.eq(err.message, "path not found: $.reslt (did you mean $.result?)", "the nearest key is suggested")
expect.eq(err.step, "answer", "the step")
expect.eq(err.pointer, "/children/1/in", "the step's input")
expect.eq(err.line, 33, "the line of the second F.step")
