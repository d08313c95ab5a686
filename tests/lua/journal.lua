-- swarm.engine{state = PATH} journals to SQLite, and engine:resume's refusals (docs/engine.md).
-- Resuming a run killed with SIGKILL is tested through real processes in tests/journal_lua.rs.
local swarm = require("swarm")
local expect = require("support.expect")
local F = swarm.flow

local dir = os.tmpname()
os.remove(dir)
local path = dir .. "-journal.db"

local function cleanup()
  for _, suffix in ipairs({ "", "-wal", "-shm" }) do
    os.remove(path .. suffix)
  end
end

local ok, failure = pcall(function()
  local engine = swarm.engine({ state = path, offload_bytes = 200 })
  assert(io.open(path, "rb"), "the journal file is created")

  local bp = swarm.blueprint({
    id = "journaled",
    agents = {
      big = function() return string.rep("y", 500) end,
      add = function(n) return n + 1 end,
    },
    flow = F.seq({
      F.step({ agent = "add", input = 1, out = "$.two" }),
      F.step({ agent = "big", out = "$.big" }),
    }),
  })
  local run = engine:start(bp, { seed = true })
  local ctx = run:wait()
  expect.eq(ctx.two, 2)
  assert(type(ctx.big.ref) == "string", "a large output is stored, the ctx holds its ref")

  -- The outputs live in the journal file: another engine on the same file reads them back.
  local again = swarm.engine({ state = path })
  expect.eq(again:output(ctx.big.ref), string.rep("y", 500), "the output was read from the file")

  -- Only an interrupted run resumes; the error says why, with a kind to branch on.
  local err = expect.raises(function() engine:resume(run.id) end, { run.id, "is finished", "only an interrupted run" })
  expect.eq(err.kind, "not_resumable")
  expect.eq(err.run_id, run.id)
  err = expect.raises(function() again:resume("r-nope") end, { "no run r-nope" })
  expect.eq(err.kind, "no_such_run")
  err = expect.raises(function() swarm.engine():resume(run.id) end, { "journals nothing", "state = PATH" })
  expect.eq(err.kind, "no_journal")

  expect.raises(function() engine:resume(run.id, bp, "/x/bp.lua") end, { "opts must be a table", "wrap it, (require(" })
  expect.raises(function() engine:resume(nil) end, { "the run id must be a string" })

  -- Bad `state` values are refused by name.
  expect.raises(function() swarm.engine({ state = "" }) end, { "`state` is empty" })
  expect.raises(function() swarm.engine({ state = 42 }) end, { "bad option `state`" })
  -- A file that is not a journal is refused, naming it, and left as it was.
  local junk = dir .. "-junk.db"
  local f = assert(io.open(junk, "wb"))
  f:write(string.rep("not sqlite ", 100))
  f:close()
  expect.raises(function() swarm.engine({ state = junk }) end, { "cannot open the journal", junk })
  f = assert(io.open(junk, "rb"))
  expect.eq(f:read("a"), string.rep("not sqlite ", 100), "the file is untouched")
  f:close()
  os.remove(junk)
end)
cleanup()
if not ok then
  error(failure, 0)
end
