-- A slow seq, to see the journal at work: start it, kill it (even with SIGKILL) part way,
-- then `swarm runs resume <id>` finishes it without running the finished steps again.
--   swarm run examples/long_seq.lua --input '{"log":"/tmp/steps.log"}'
--   swarm runs list    swarm runs show <id>    swarm runs resume <id>
local swarm = require("swarm")
local F = swarm.flow

local steps = {}
for i = 1, 10 do
  steps[i] = F.step({ agent = "work", input = F.p("$"), out = "$.step" .. i })
end

return swarm.blueprint({
  id = "long_seq",
  agents = {
    -- Takes a moment, and appends a line to the log, so you can count what really ran.
    work = function(ctx, task)
      swarm.sleep(300)
      if ctx.log then
        local log = assert(io.open(ctx.log, "a"))
        log:write(task.id, "\n")
        log:close()
      end
      return "done"
    end,
  },
  flow = F.seq(steps),
})
