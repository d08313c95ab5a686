-- Small assertions for the conformance scripts: failures say what was expected and what came.
local swarm = require("swarm")

local M = {}

--- `value` encodes to exactly `json` (canonical: sorted keys, compact).
function M.json(value, json, what)
  local got = swarm.json.encode(value)
  if got ~= json then
    error((what or "value") .. "\n  expected " .. json .. "\n  got      " .. got, 2)
  end
end

--- `fn` raises an error whose text contains every `needles` entry (plain text, not patterns).
function M.raises(fn, needles)
  local ok, err = pcall(fn)
  if ok then
    error("expected an error containing '" .. table.concat(needles, "', '") .. "', got none", 2)
  end
  local text = tostring(err)
  for _, needle in ipairs(needles) do
    if not string.find(text, needle, 1, true) then
      error("error '" .. text .. "' does not contain '" .. needle .. "'", 2)
    end
  end
  return err
end

function M.eq(got, want, what)
  if got ~= want then
    error((what or "value") .. ": expected " .. tostring(want) .. ", got " .. tostring(got), 2)
  end
end

--- Waits, yielding to the host, until `cond()` holds; raises naming `what` after 30 s.
function M.eventually(what, cond)
  local deadline = os.time() + 30
  while not cond() do
    if os.time() > deadline then
      error(what .. " did not happen within 30 s", 2)
    end
    swarm.sleep(5)
  end
end

return M
