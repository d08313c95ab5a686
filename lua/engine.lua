-- The engine as scripts use it: swarm.engine{...}, swarm.default_engine(), swarm.run, and
-- the Engine and Run objects. Natives answer `ok, value_or_error`; these wrappers raise the
-- structured error tables (`{kind, message, step?, value?, run_id?}`) that scripts catch.

local native, swarm = ...

---@class swarm.Run
---@field id string
local Run = {}
Run.__index = Run
Run.__name = "swarm.Run"

--- Waits for the run; returns the final ctx or raises the run's error.
---@return table ctx
function Run:wait()
  local ok, result = self._native:wait()
  if not ok then
    error(result, 2)
  end
  return result
end

--- Cancels the run: attempts in flight stop and their tasks become `cancelled`.
function Run:cancel()
  self._native:cancel()
end

--- Delivers signal `name` with `value` to the run: every wait waiting on the name takes it, or
--- the next wait for it does. Returns how many waits it reached now (0: buffered); a run that
--- is not in flight raises `{kind = "not_waiting"}`.
---@param name string
---@param value any
---@return integer waits
function Run:signal(name, value)
  if type(name) ~= "string" then
    error("run:signal: the signal's name must be a string, got " .. type(name), 2)
  end
  local ok, result = self._native:signal(name, value)
  if not ok then
    error(result, 2)
  end
  return result
end

--- Whether the run has ended.
---@return boolean
function Run:finished()
  return self._native:finished()
end

function Run:__tostring()
  return "swarm.Run(" .. self.id .. ")"
end

---@class swarm.Engine
local Engine = {}
Engine.__index = Engine
Engine.__name = "swarm.Engine"

local function wrap_run(handle)
  return setmetatable({ id = handle.id, _native = handle }, Run)
end

local function wrap_engine(handle)
  return setmetatable({ _native = handle }, Engine)
end

--- Starts a run of a blueprint (built or compiled) over `init` (default: an empty ctx).
---@param bp table|userdata
---@param init table?
---@param opts {on_event: fun(event: table)}?
---@return swarm.Run
function Engine:start(bp, init, opts)
  local ok, result = self._native:start(bp, init, opts)
  if not ok then
    error(result, 2)
  end
  return wrap_run(result)
end

--- Continues an interrupted run of this engine's journal (`swarm.engine{state = PATH}`) under
--- its id: the steps that passed are replayed from the journal, not run again. The blueprint is
--- `bp` when given, else the file the run was started from (`swarm run FILE`).
---@param run_id string
---@param bp table|userdata?
---@param opts {on_event: fun(event: table)}?
---@return swarm.Run
function Engine:resume(run_id, bp, opts)
  if type(run_id) ~= "string" then
    error("engine:resume: the run id must be a string, got " .. type(run_id), 2)
  end
  if opts ~= nil and type(opts) ~= "table" then
    -- `engine:resume(id, require("bp"))` passes require's second result, the path.
    local hint = type(opts) == "string" and ' (require returns the module and its path: wrap it, (require("bp")))' or ""
    error("engine:resume: opts must be a table, got " .. type(opts) .. hint, 2)
  end
  local ok, result = self._native:resume(run_id, bp, opts)
  if not ok then
    error(result, 2)
  end
  return wrap_run(result)
end

--- Mints a token: `{role=, agent_id=, scopes=, ttl= (seconds), max_uses=, task=}`.
---@param grant table
---@return string token
function Engine:mint(grant)
  return self._native:mint(grant)
end

--- `true`, or `nil, err` with `err.kind` one of the token error kinds.
---@return boolean|nil, table?
function Engine:verify(token, verb, task_id)
  local ok, err = self._native:verify(token, verb, task_id)
  if ok then
    return true
  end
  return nil, err
end

--- A stored output (`{ref = "out-…", size = N}` in a ctx) by its ref, or nil.
---@param ref string
---@return any
function Engine:output(ref)
  return self._native:output(ref)
end

--- `run:signal(name, value)` for a run in flight on this engine, by its id.
---@param run_id string
---@param name string
---@param value any
---@return integer waits
function Engine:signal(run_id, name, value)
  if type(run_id) ~= "string" or type(name) ~= "string" then
    error("engine:signal: expects (run_id, name, value) with a string id and name", 2)
  end
  local ok, result = self._native:signal(run_id, name, value)
  if not ok then
    error(result, 2)
  end
  return result
end

--- The open waits of the runs in flight on this engine: `{run_id, signal, pointer?, task_id?,
--- deadline_ms?, question?}` each.
---@return table[]
function Engine:pending()
  return self._native:pending()
end

--- Revokes a token: `true`, or `nil, err`.
function Engine:revoke(token)
  local ok, err = self._native:revoke(token)
  if ok then
    return true
  end
  return nil, err
end

function Engine:__tostring()
  return "swarm.Engine"
end

--- A new engine: `{token_secret=, max_spawn_depth=, offload_bytes=, state=}`; `state` is a journal
--- file (SQLite, created if missing) or `"memory"` (the default) for none.
---@param opts table?
---@return swarm.Engine
function swarm.engine(opts)
  return wrap_engine(native.engine(opts))
end

local default

--- The VM's shared engine.
---@return swarm.Engine
function swarm.default_engine()
  if default == nil then
    default = wrap_engine(native.default_engine())
  end
  return default
end

--- Compiles, starts and waits: returns the final ctx or raises the run's error.
---@param bp table|userdata
---@param init table?
---@param opts {on_event: fun(event: table)}?
---@return table ctx
function swarm.run(bp, init, opts)
  local engine = swarm.default_engine()
  local ok, run = engine._native:start(bp, init, opts)
  if not ok then
    error(run, 2)
  end
  local done, result = run:wait()
  if not done then
    error(result, 2)
  end
  return result
end
