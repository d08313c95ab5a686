-- The environment every script call reads through, built once per VM (docs/agents.md).
--
-- Each call gets a fresh globals table whose metatable points at `base`, so whatever a call
-- assigns stays in its own table. `base` itself is reachable from no script: the metatable is
-- protected, and the VM's real globals are emptied once this has run. Library tables are
-- read-only proxies, so one call cannot change `string`, `table` or `math` for the next.
--
-- Functions that catch errors (`pcall`, `xpcall`, `coroutine.resume`, `coroutine.close`,
-- `load`) call `tripped()` afterwards: once a call has hit a limit, the limit's error is
-- raised again there, so no script can catch its way past it.

local G, native = ...

local error, next, rawget, select, tostring, type = G.error, G.next, G.rawget, G.select, G.tostring, G.type
local raw_pcall, raw_xpcall, raw_load, raw_rawset = G.pcall, G.xpcall, G.load, G.rawset
local raw_setmetatable, raw_collectgarbage, concat = G.setmetatable, G.collectgarbage, G.table.concat
local raw_resume, raw_close = G.coroutine.resume, G.coroutine.close
local tripped, current_env, write_line = native.tripped, native.current_env, native.write_line
local note_seeded = native.note_seeded
local raw_randomseed, raw_move = G.math.randomseed, G.table.move

-- From here on a global name is a bug: it would read the VM's real (soon empty) globals.
local _ENV <const> = nil

-- Read-only tables, by table, with the name their errors use.
local frozen = {}

local function readonly(name, fields)
  local proxy = {}
  raw_setmetatable(proxy, {
    __index = fields,
    __newindex = function(_, key)
      error("cannot modify the read-only table '" .. name .. "' (field '" .. tostring(key) .. "')", 2)
    end,
    -- `pairs(string)` lists the library without handing out the table behind the proxy.
    __pairs = function()
      return function(_, key)
        return next(fields, key)
      end, proxy, nil
    end,
    __metatable = false,
  })
  frozen[proxy] = name
  return proxy
end

local function check(...)
  tripped()
  return ...
end

-- The real string table stays behind string values' metatable; `string.dump` goes first.
G.string.dump = nil

-- `string.rep` builds its result in C, where no hook runs: `string.rep("", 1 << 60)` would copy
-- nothing 2^60 times. An empty result is returned at once, and one larger than what the call
-- may still allocate fails as running out of memory does, before anything is allocated.
-- Replaced in the real table, so `("x"):rep(n)` is checked too.
local raw_rep, tointeger = G.string.rep, G.math.tointeger
local memory_left = native.memory_left
function G.string.rep(s, n, sep)
  local count = tointeger(n)
  local ts, tsep = type(s), type(sep)
  if count == nil or (ts ~= "string" and ts ~= "number") or (sep ~= nil and tsep ~= "string" and tsep ~= "number") then
    -- A wrong argument: Lua's own error says which.
    return raw_rep(s, n, sep)
  end
  local unit = #tostring(s) + (sep ~= nil and #tostring(sep) or 0)
  if count <= 0 or unit == 0 then
    return ""
  end
  if unit * (count + 0.0) > memory_left() then
    error("not enough memory", 0)
  end
  return raw_rep(s, count, sep)
end
G.getmetatable("").__metatable = false

--- A copy of a library table, to change some functions before it is frozen.
local function copy(lib)
  local fields = {}
  for key, value in next, lib do
    fields[key] = value
  end
  return fields
end

-- A seed set by one call would fix the numbers the next call draws: the VM reseeds itself
-- after a call that seeded (see `reseed` below).
local math = copy(G.math)
function math.randomseed(...)
  note_seeded()
  return raw_randomseed(...)
end

-- `table.move` walks its whole range in C, where no hook runs: a range of 2^62 would hold a
-- VM for centuries without allocating a byte.
local MAX_MOVE = 1 << 26
local table = copy(G.table)
function table.move(a1, f, e, t, a2)
  if type(f) == "number" and type(e) == "number" and e - f >= MAX_MOVE then
    error("table.move: too many elements to move (at most " .. MAX_MOVE .. " in a script)", 2)
  end
  return raw_move(a1, f, e, t, a2)
end

local coroutine = {}
for key, fn in next, G.coroutine do
  coroutine[key] = fn
end
function coroutine.resume(...)
  return check(raw_resume(...))
end
function coroutine.close(...)
  return check(raw_close(...))
end

local gc_options = { collect = true, count = true, step = true }

local base = {
  _VERSION = G._VERSION,
  assert = G.assert,
  error = G.error,
  getmetatable = G.getmetatable,
  ipairs = G.ipairs,
  next = G.next,
  pairs = G.pairs,
  rawequal = G.rawequal,
  rawget = G.rawget,
  rawlen = G.rawlen,
  select = G.select,
  tonumber = G.tonumber,
  tostring = G.tostring,
  type = G.type,
  string = readonly("string", G.string),
  table = readonly("table", table),
  math = readonly("math", math),
  utf8 = readonly("utf8", G.utf8),
  coroutine = readonly("coroutine", coroutine),
  os = readonly("os", { clock = G.os.clock, date = G.os.date, difftime = G.os.difftime, time = G.os.time }),
}

function base.pcall(...)
  return check(raw_pcall(...))
end

function base.xpcall(...)
  return check(raw_xpcall(...))
end

local function expect_table(fn, t)
  if type(t) ~= "table" then
    error("bad argument #1 to '" .. fn .. "' (table expected, got " .. type(t) .. ")", 3)
  end
end

function base.rawset(t, key, value)
  expect_table("rawset", t)
  local name = frozen[t]
  if name then
    error("rawset: the table '" .. name .. "' is read-only", 2)
  end
  -- Called under pcall so an error (a bad argument) names the script's line, not this file's.
  local ok, err = raw_pcall(raw_rawset, t, key, value)
  if not ok then
    error(err, 2)
  end
  return t
end

function base.setmetatable(t, mt)
  expect_table("setmetatable", t)
  -- A finalizer would run at some later collection, possibly during another call.
  if type(mt) == "table" and rawget(mt, "__gc") ~= nil then
    error("setmetatable: __gc metamethods are not available in scripts", 2)
  end
  local ok, err = raw_pcall(raw_setmetatable, t, mt)
  if not ok then
    error(err, 2)
  end
  return t
end

--- Text chunks only; without an environment, the calling script's globals.
function base.load(chunk, name, _mode, env)
  if env == nil then
    env = current_env()
  end
  local ok, fn, err = raw_pcall(raw_load, chunk, name, "t", env)
  tripped()
  if not ok then
    error(fn, 2)
  end
  return fn, err
end

function base.collectgarbage(option, ...)
  option = option or "collect"
  if not gc_options[option] then
    error("collectgarbage: option '" .. tostring(option) .. "' is not available in scripts (use collect, count or step)", 2)
  end
  local ok, result = raw_pcall(raw_collectgarbage, option, ...)
  if not ok then
    error(result, 2)
  end
  return result
end

function base.print(...)
  local parts = {}
  for i = 1, select("#", ...) do
    parts[i] = tostring((select(i, ...)))
  end
  write_line(concat(parts, "\t"))
end

--- `host.<name>` for each bridge: the raw call answers `ok, value_or_message`; a failure is
--- raised at the script's line.
local function make_host(raw_calls)
  local wrappers = {}
  for name, call in next, raw_calls do
    wrappers[name] = function(...)
      local ok, result = call(...)
      if not ok then
        error(result, 2)
      end
      return result
    end
  end
  return readonly("host", wrappers)
end

--- Runs a compiled script with its call's globals; errors come back as values, without the
--- cost of a traceback.
local function run(chunk, env)
  return raw_pcall(chunk, env)
end

local env_mt = { __index = base, __metatable = false }

local function reseed()
  raw_randomseed()
end

return env_mt, run, make_host, reseed
