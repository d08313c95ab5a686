-- Sandboxed script agents next to a trusted inline one.
--
-- A script agent (`spec = {source = ...}`, or `{file = "path.lua"}` beside the blueprint) is
-- untrusted Lua: it runs in a pooled VM with no io, os.execute, debug or require, within
-- instruction, memory and time limits. It sees its input as `_CTX` (and as text in `_PROMPT`),
-- and reaches the host only through the bridges this module registers, as `host.<name>`.
--
--   swarm run examples/script_agent.lua --input '{"docs":[{"text":"The cat and the hat."}]}'
local swarm = require("swarm")
local F = swarm.flow

-- Trusted code the scripts may call: their only way out of the sandbox.
swarm.bridge("stopwords", function()
  return { "a", "an", "and", "in", "is", "of", "the", "to" }
end)

-- Counts a document's words and finds the most frequent one that is not a stopword.
local summarize = [[
local stop = {}
for _, word in ipairs(host.stopwords()) do
  stop[word] = true
end
local counts, words = {}, 0
for word in _CTX.text:lower():gmatch("%a+") do
  words = words + 1
  if not stop[word] then
    counts[word] = (counts[word] or 0) + 1
  end
end
local top, best = nil, 0
for word, n in pairs(counts) do
  if n > best or (n == best and word < top) then
    top, best = word, n
  end
end
-- `{value = ..., ok = false}` fails the step with that value.
return { value = { words = words, top = top }, ok = words > 0 }
]]

return swarm.blueprint({
  id = "script_agent",
  agents = {
    summarize = { kind = "lua", spec = { source = summarize, max_instructions = 1000000, timeout_ms = 1000 } },
    report = function(summaries)
      local lines = swarm.array({})
      for i, s in ipairs(summaries) do
        lines[i] = string.format("%d words, mostly about %s", s.words, s.top)
      end
      return lines
    end,
  },
  flow = F.seq({
    F.fanout({
      items = F.p("$.docs"),
      bind = "$.doc",
      out = "$.summaries",
      collect = "$.summary",
      body = F.step({ agent = "summarize", input = F.p("$.doc"), out = "$.summary" }),
    }),
    F.step({ agent = "report", input = F.p("$.summaries"), out = "$.report" }),
  }),
})
