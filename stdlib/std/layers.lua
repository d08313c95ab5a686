-- std.layers: ready-made middleware, written on the public `swarm` API (docs/layers.md).
--
-- Each function returns a layer definition for `swarm.layer`:
--
--   local layers = require("std.layers")
--   swarm.layer("cache", layers.cache({ max_entries = 100 }))
--   swarm.layer("two_at_a_time", layers.concurrency(2))
--
-- A definition is shared by every blueprint that lists its key, so the state a layer keeps
-- (cache entries, the concurrency limit, timing stats) spans all the runs that go through it.
-- Layers that keep counters fill an optional `stats` table the caller passes in.

local swarm = require("swarm")

local M = {}

local internal = require("std._internal")
local caller_site = internal.caller_site
local sorted_keys = internal.sorted_keys

local function fail(fn, message)
  local site = caller_site()
  error((site and site .. ": " or "") .. "std.layers." .. fn .. ": " .. message, 0)
end

local function check_opts(fn, opts, allowed)
  if opts == nil then
    return {}
  end
  if type(opts) ~= "table" then
    fail(fn, "expects a table of options, got " .. type(opts))
  end
  for key in pairs(opts) do
    if not allowed[key] then
      local names = table.concat(sorted_keys(allowed), ", ")
      fail(fn, "unknown option '" .. tostring(key) .. "' (options: " .. names .. ")")
    end
  end
  return opts
end

local function optional(fn, opts, key, kind)
  local value = opts[key]
  if value ~= nil and type(value) ~= kind then
    fail(fn, "`" .. key .. "` must be a " .. kind .. ", got " .. type(value))
  end
  return value
end

--- "pass", "blocked" or "failed": how an attempt ended, from its result table.
---@param result swarm.LayerResult
---@return "pass"|"blocked"|"failed"
local function status_of(result)
  if result.ok ~= false then
    return "pass"
  elseif result.blocked then
    return "blocked"
  end
  return "failed"
end

---@class swarm.LayerCtx
---@field task_id string
---@field attempt integer
---@field agent string
---@field runtime table
---@field operator string?
---@field input any

---@class swarm.LayerResult
---@field ok boolean
---@field value any
---@field blocked boolean?
---@field error string?

---@class swarm.LayerDef
---@field before fun(ctx: swarm.LayerCtx)?
---@field after (fun(ctx: swarm.LayerCtx, result: swarm.LayerResult): swarm.LayerResult?)?
---@field wrap (fun(ctx: swarm.LayerCtx, next: fun(ctx: swarm.LayerCtx): swarm.LayerResult): swarm.LayerResult)?

-- timing ------------------------------------------------------------------------------------

---@class std.layers.TimingEntry
---@field agent string
---@field attempt integer
---@field task_id string
---@field ms number milliseconds by the layer's clock
---@field status "pass"|"blocked"|"failed"

---@class std.layers.AgentTiming
---@field count integer attempts measured
---@field pass integer
---@field blocked integer
---@field failed integer
---@field total_ms number
---@field max_ms number

---@class std.layers.TimingStats
---@field count integer attempts measured, over every agent
---@field by_agent table<string, std.layers.AgentTiming>
---@field attempts std.layers.TimingEntry[] the latest `keep` entries, oldest first

---@class std.layers.TimingOpts
---@field clock (fun(): number)? milliseconds; default `os.clock() * 1000` (process CPU time)
---@field on_done fun(entry: std.layers.TimingEntry)? called as each attempt ends
---@field stats table? filled as a std.layers.TimingStats
---@field keep integer? how many entries `stats.attempts` keeps (default 100)

--- Measures each attempt and reports it to `on_done` and into `stats`.
---
--- The default clock is `os.clock`, the CPU time of the whole host process: it shows where Lua
--- agents burn time, but it is not wall time (an agent waiting in `swarm.sleep` or on a
--- subprocess costs next to nothing, and concurrent lanes add up). The host VM offers no
--- finer wall clock than `os.time`'s seconds; pass `clock` to measure with another, and use the
--- built-in `audit` layer, whose notes carry `elapsed_ms`, for wall time.
---@param opts std.layers.TimingOpts?
---@return swarm.LayerDef
function M.timing(opts)
  opts = check_opts("timing", opts, { clock = true, on_done = true, stats = true, keep = true })
  local clock = optional("timing", opts, "clock", "function") or function()
    return os.clock() * 1000
  end
  local on_done = optional("timing", opts, "on_done", "function")
  local stats = optional("timing", opts, "stats", "table") or {}
  local keep = opts.keep or 100
  if math.type(keep) ~= "integer" or keep < 0 then
    fail("timing", "`keep` must be a non-negative integer")
  end
  stats.count = stats.count or 0
  stats.by_agent = stats.by_agent or {}
  stats.attempts = stats.attempts or {}

  local function record(ctx, ms, result)
    local entry = {
      agent = ctx.agent,
      attempt = ctx.attempt,
      task_id = ctx.task_id,
      ms = ms,
      status = status_of(result),
    }
    stats.count = stats.count + 1
    local agent = stats.by_agent[entry.agent]
    if agent == nil then
      agent = { count = 0, pass = 0, blocked = 0, failed = 0, total_ms = 0, max_ms = 0 }
      stats.by_agent[entry.agent] = agent
    end
    agent.count = agent.count + 1
    agent[entry.status] = agent[entry.status] + 1
    agent.total_ms = agent.total_ms + ms
    agent.max_ms = math.max(agent.max_ms, ms)
    local attempts = stats.attempts
    attempts[#attempts + 1] = entry
    while #attempts > keep do
      table.remove(attempts, 1)
    end
    if on_done then
      on_done(entry)
    end
  end

  return {
    wrap = function(ctx, next)
      local started = clock()
      local result = next(ctx)
      record(ctx, clock() - started, result)
      return result
    end,
  }
end

-- logging -----------------------------------------------------------------------------------

---@class std.layers.LogEvent
---@field phase "start"|"done"
---@field agent string
---@field attempt integer
---@field task_id string
---@field status ("pass"|"blocked"|"failed")? when done
---@field error string? when failed

---@class std.layers.LoggingOpts
---@field log fun(line: string)? where lines go (default `print`)
---@field prefix string? put before every line (default "swarm: ")
---@field format (fun(event: std.layers.LogEvent): string)? builds a line (the prefix still applies)

--- The default line: `echo attempt 1 started`, then `echo attempt 1 ok`, `... blocked` or
--- `... failed: <message>`. A message is folded onto one line.
---@param event std.layers.LogEvent
---@return string
local function default_format(event)
  local head = event.agent .. " attempt " .. event.attempt
  if event.phase == "start" then
    return head .. " started"
  elseif event.status == "pass" then
    return head .. " ok"
  elseif event.status == "blocked" then
    return head .. " blocked"
  end
  return head .. " failed: " .. (event.error or "failed"):gsub("%s*\n%s*", " ")
end

--- Logs one line as each attempt starts and one as it ends (ok, blocked or failed). An attempt
--- cancelled in flight gets no second line.
---@param opts std.layers.LoggingOpts?
---@return swarm.LayerDef
function M.logging(opts)
  opts = check_opts("logging", opts, { log = true, prefix = true, format = true })
  local log = optional("logging", opts, "log", "function") or print
  local prefix = optional("logging", opts, "prefix", "string") or "swarm: "
  local format = optional("logging", opts, "format", "function") or default_format

  return {
    before = function(ctx)
      log(prefix .. format({ phase = "start", agent = ctx.agent, attempt = ctx.attempt, task_id = ctx.task_id }))
    end,
    after = function(ctx, result)
      local status = status_of(result)
      log(prefix .. format({
        phase = "done",
        agent = ctx.agent,
        attempt = ctx.attempt,
        task_id = ctx.task_id,
        status = status,
        error = status == "failed" and result.error or nil,
      }))
    end,
  }
end

-- cache -------------------------------------------------------------------------------------

---@class std.layers.CacheStats
---@field hits integer
---@field misses integer
---@field evictions integer
---@field entries integer

---@class std.layers.CacheOpts
---@field max_entries integer? least recently used entries go first past this (default 1000)
---@field per_agent boolean? key on the agent as well as the input (default true)
---@field key (fun(ctx: swarm.LayerCtx): string?)? a custom key; nil means "do not cache this one"
---@field stats table? filled as a std.layers.CacheStats

--- Least-recently-used map: key -> value, at most `max` entries.
local function lru(max, stats)
  local index = {}
  -- A ring with a sentinel: head.next is the most recent entry, head.prev the least.
  local head = {}
  head.next, head.prev = head, head
  local count = 0

  local function unlink(node)
    node.prev.next, node.next.prev = node.next, node.prev
  end
  local function push_front(node)
    node.prev, node.next = head, head.next
    head.next.prev = node
    head.next = node
  end

  local cache = {}
  function cache.get(key)
    local node = index[key]
    if node == nil then
      return nil
    end
    unlink(node)
    push_front(node)
    return node
  end
  function cache.put(key, value)
    local node = index[key]
    if node then
      node.value = value
      unlink(node)
      push_front(node)
      return
    end
    node = { key = key, value = value }
    index[key] = node
    push_front(node)
    count = count + 1
    while count > max do
      local last = head.prev
      unlink(last)
      index[last.key] = nil
      count = count - 1
      stats.evictions = stats.evictions + 1
    end
    stats.entries = count
  end
  return cache
end

--- Caches successful results by input: a repeated input is answered without calling the
--- agent. Keys are the canonical JSON of `ctx.input` (sorted keys), prefixed with the agent
--- unless `per_agent = false`. Blocked and failed results are not cached. Concurrent attempts
--- with the same key wait for the first one instead of all calling the agent.
---@param opts std.layers.CacheOpts?
---@return swarm.LayerDef
function M.cache(opts)
  opts = check_opts("cache", opts, { max_entries = true, per_agent = true, key = true, stats = true })
  local max = opts.max_entries or 1000
  if math.type(max) ~= "integer" or max < 1 then
    fail("cache", "`max_entries` must be a positive integer")
  end
  local per_agent = optional("cache", opts, "per_agent", "boolean")
  if per_agent == nil then
    per_agent = true
  end
  local key_of = optional("cache", opts, "key", "function")
  if key_of == nil then
    key_of = function(ctx)
      local input = swarm.json.encode(ctx.input)
      if per_agent then
        return ctx.agent .. "\0" .. input
      end
      return input
    end
  end
  local stats = optional("cache", opts, "stats", "table") or {}
  stats.hits, stats.misses, stats.evictions, stats.entries = 0, 0, 0, 0
  local entries = lru(max, stats)
  -- key -> { lock = semaphore(1), users = n }: one attempt per key calls the agent at a time.
  local pending = {}

  local function lookup_or_call(key, ctx, next)
    local hit = entries.get(key)
    if hit then
      stats.hits = stats.hits + 1
      return { ok = true, value = hit.value }
    end
    stats.misses = stats.misses + 1
    local result = next(ctx)
    if result.ok ~= false then
      entries.put(key, result.value)
    end
    return result
  end

  return {
    wrap = function(ctx, next)
      local key = key_of(ctx)
      if key == nil then
        return next(ctx)
      end
      if type(key) ~= "string" then
        error("std.layers.cache: `key` must return a string or nil, got " .. type(key))
      end
      if entries.get(key) == nil then
        local flight = pending[key]
        if flight == nil then
          flight = { lock = swarm.semaphore(1), users = 0 }
          pending[key] = flight
        end
        flight.users = flight.users + 1
        local ok, result = pcall(flight.lock.with, flight.lock, lookup_or_call, key, ctx, next)
        flight.users = flight.users - 1
        if flight.users == 0 then
          pending[key] = nil
        end
        if not ok then
          error(result, 0)
        end
        return result
      end
      return lookup_or_call(key, ctx, next)
    end,
  }
end

-- concurrency -------------------------------------------------------------------------------

--- At most `limit` attempts at once go through this layer; the others wait their turn, first
--- come first served. `limit` is a count, or a `swarm.semaphore(n)` to share one limit between
--- several layers (or to watch it with `sem:available()`). Waiting holds no task slot: the
--- attempt has started, and its timeout, if any, runs while it waits.
---@param limit integer|userdata
---@return swarm.LayerDef
function M.concurrency(limit)
  local permits
  if math.type(limit) == "integer" then
    if limit < 1 then
      fail("concurrency", "expects a limit >= 1, got " .. limit)
    end
    permits = swarm.semaphore(limit)
  elseif type(limit) == "userdata" and tostring(limit):sub(1, 16) == "swarm.Semaphore(" then
    permits = limit
  else
    fail("concurrency", "expects an integer limit or a swarm.semaphore, got " .. type(limit))
  end
  return {
    wrap = function(ctx, next)
      return permits:with(next, ctx)
    end,
  }
end

return M
