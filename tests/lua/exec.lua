-- swarm.exec runs a program from an inline agent without blocking the other lanes.
local swarm = require("swarm")
local expect = require("support.expect")
local F = swarm.flow

local r = swarm.exec({ program = "cat", stdin = "through cat" })
expect.eq(r.ok, true)
expect.eq(r.code, 0)
expect.eq(r.stdout, "through cat")

local failed = swarm.exec({ program = "sh", args = { "-c", "echo oops >&2; exit 3" } })
expect.eq(failed.ok, false)
expect.eq(failed.code, 3)
expect.eq(failed.stderr, "oops\n")

local env = swarm.exec({ program = "sh", args = { "-c", "printf %s \"$GREETING\"; pwd" }, env = { GREETING = "hi" }, cwd = "/" })
expect.eq(env.stdout, "hi/\n")

-- 1 MB through cat: stdin is written while stdout is read.
local big = string.rep("x", 1024 * 1024)
expect.eq(#swarm.exec({ program = "cat", stdin = big }).stdout, #big)

expect.raises(function() swarm.exec({ program = "/no/such/program" }) end, { "cannot start '/no/such/program'" })
expect.raises(function() swarm.exec({ programme = "cat" }) end, { "unknown field `programme`" })

-- Ten lanes each sleeping 300 ms in a child finish together, not one after another.
local started = os.time()
local ctx = swarm.run(swarm.blueprint({
  id = "exec_lanes",
  agents = { nap = function() return swarm.exec({ program = "sleep", args = { "0.3" } }).ok end },
  flow = F.fanout({ items = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 }, out = "$.r", collect = "$.nap", body = F.step({ agent = "nap" }) }),
}))
expect.json(ctx.r, "[true,true,true,true,true,true,true,true,true,true]", "every lane ran")
assert(os.time() - started <= 2, "the lanes overlapped")
