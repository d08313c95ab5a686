-- std._internal: helpers shared by the embedded std.* modules. Not part of the public API.

local M = {}

-- `file:line` of the nearest caller outside the embedded modules (their chunks are named
-- "[swarm]/..."), read through `error`'s level argument: the host VM has no `debug` library.
function M.caller_site()
  for level = 2, 40 do
    local _, where = pcall(error, "", level)
    if where ~= "" and where:sub(1, 8) ~= "[swarm]/" then
      return (where:gsub(": $", ""))
    end
  end
  return nil
end

-- The keys of `t`, sorted: the list of valid names an "unknown field" error shows.
function M.sorted_keys(t)
  local names = {}
  for name in pairs(t) do
    names[#names + 1] = name
  end
  table.sort(names)
  return names
end

return M
