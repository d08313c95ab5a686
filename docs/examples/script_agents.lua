-- input: {"text": "the cat and the hat"}
-- expect-json: {"summary": {"words": 5, "agent": "count", "attempt": 1, "first": "the"}, "limited": {"kind": "failed", "step": "spin", "value": {"limit": "max_instructions", "max": 100000}}, "refused": {"kind": "failed", "step": "picky"}}
--
-- Sandboxed script agents: untrusted Lua run on a pool of VMs with limits. The input is
-- `_CTX` (and as JSON text in `_PROMPT`); `host.<name>` calls a bridge the blueprint module
-- registered with `swarm.bridge`.
local swarm = require("swarm")
local F = swarm.flow

-- The only way out of the sandbox: trusted functions of the host VM.
swarm.bridge("first_word", function(text)
  return text:match("%a+")
end)

local count = [[
local words = 0
for _ in _CTX.text:gmatch("%a+") do
  words = words + 1
end
return { words = words, agent = _AGENT, attempt = _ATTEMPT, first = host.first_word(_CTX.text) }
]]

return swarm.blueprint({
  id = "script_agents",
  agents = {
    count = { kind = "lua", spec = { source = count } },
    -- Runs forever; the instruction limit stops it.
    spin = { kind = "lua", spec = { source = "while true do end", max_instructions = 100000 } },
    -- `{value = ..., ok = false}` fails the attempt with that value.
    picky = { kind = "lua", spec = { source = "return { value = 'not today', ok = false }", timeout_ms = 1000 } },
  },
  flow = F.seq({
    F.step({ agent = "count", input = F.p("$"), out = "$.summary" }),
    F.try({ body = F.step({ agent = "spin", input = swarm.null }), err_at = "$.limited" }),
    F.try({ body = F.step({ agent = "picky", input = swarm.null }), err_at = "$.refused" }),
  }),
})
