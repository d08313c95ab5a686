-- Resumes a journaled run from Lua (driven by tests/journal_lua.rs): `path` is the journal,
-- `id` the interrupted run, `module` (optional) a module returning the run's blueprint. Returns
-- the final ctx as JSON; a refused resume raises its error.
local path, id, module = ...
local swarm = require("swarm")

local engine = swarm.engine({ state = path })
local bp = module and require(module) or nil
local run = engine:resume(id, bp)
assert(run.id == id, "a resumed run keeps its id")
return swarm.json.encode(run:wait())
