-- expect: exit 2
--
-- A blueprint that does not compile: `swarm check` (and `swarm run`) list every problem with
-- the file and line it comes from, and exit with 2.
local swarm = require("swarm")
local F = swarm.flow

return swarm.blueprint({
  id = "compile_error",
  layers = { "no_such_layer" },
  agents = {
    tool = { kind = "rust_fn", spec = { fn_id = "echo", colour = "blue" } },
  },
  flow = F.seq({
    F.step({ agent = "tool" }),
    F.step({ agent = "ghost" }),
  }),
})
