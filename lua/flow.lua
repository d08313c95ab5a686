-- swarm.flow: builders for the flow IR (docs/flows.md).
--
-- Every builder returns a plain table in exactly the JSON wire shape, so what a script builds
-- is what `swarm compile` prints. Expressions carry a metatable for their methods and the
-- arithmetic operators; nodes remember the line that built them, so compile errors can point
-- at it.

local native = ...

---@class swarm.Expr
---@field op string

local Expr = {}
Expr.__index = Expr

local F = {}

-- Where each builder-made node was declared: node table -> "file:line". Weak, so nodes the
-- script drops do not pile up.
local sites = setmetatable({}, { __mode = "k" })

-- Errors name the script line that called the builder: the first frame outside this module.
local function fail(builder, message)
  error(native.site() .. ": F." .. builder .. ": " .. message, 0)
end

local function is_expr(x)
  return getmetatable(x) == Expr
end

local function make_expr(t)
  return setmetatable(t, Expr)
end

--- Any value in an expression position: an expression stays as it is, anything else is a literal.
local function unwrap(x)
  if is_expr(x) then
    return x
  end
  if x == nil then
    x = native.null
  end
  return make_expr({ op = "lit", value = x })
end

local function array(t)
  return setmetatable(t, native.array_mt)
end

--- A path position takes a string or `F.p"..."`; it is stored in canonical form.
local function path_of(builder, field, x)
  local text
  if type(x) == "string" then
    text = x
  elseif is_expr(x) and x.op == "path" then
    text = x.at
  else
    fail(builder, "`" .. field .. "` must be a path string like \"$.x\" or F.p\"$.x\", got " .. type(x))
  end
  local canonical, err = native.canonical_path(text)
  if not canonical then
    fail(builder, "`" .. field .. "`: " .. err)
  end
  return { op = "path", at = canonical }
end

local function is_node(x)
  return type(x) == "table" and type(x.kind) == "string" and not is_expr(x)
end

local function node_of(builder, field, x)
  if not is_node(x) then
    fail(builder, "`" .. field .. "` must be a flow node (F.step, F.seq, ...), got " .. type(x))
  end
  return x
end

local function check_fields(builder, spec, allowed)
  if type(spec) ~= "table" then
    fail(builder, "expects a table of fields, got " .. type(spec))
  end
  for key in pairs(spec) do
    if not allowed[key] then
      local names = {}
      for name in pairs(allowed) do
        names[#names + 1] = name
      end
      table.sort(names)
      fail(builder, "unknown field '" .. tostring(key) .. "' (fields: " .. table.concat(names, ", ") .. ")")
    end
  end
end

local function set(...)
  local s = {}
  for _, k in ipairs({ ... }) do
    s[k] = true
  end
  return s
end

local function node(t)
  sites[t] = native.site()
  return t
end

-- kind -> the options its builder takes, and the names of its enum fields, from the host's
-- description of each node kind, so a builder cannot take a field the host does not know.
local options, enums = {}, {}
for _, shape in ipairs(native.node_shapes) do
  local names = {}
  for _, field in ipairs(shape.fields) do
    if field.lua then
      names[field.lua] = true
    end
    if type(field.role) == "table" and field.role.enum then
      enums[shape.kind .. "." .. field.wire] = set(table.unpack(field.role.enum))
    end
  end
  options[shape.kind] = names
end

-- The host keeps these numbers as 32-bit counts or as milliseconds up to a year; a larger one
-- is an error here, at the script's line, rather than a wrapped or refused number later.
local MAX_COUNT = 4294967295
local MAX_MS = 365 * 24 * 3600 * 1000

local function positive_integer(builder, field, x, allow_zero, max)
  if x == nil then
    return nil
  end
  max = max or MAX_COUNT
  if math.type(x) ~= "integer" or x < 0 or (x == 0 and not allow_zero) or x > max then
    fail(
      builder,
      "`"
        .. field
        .. "` must be a "
        .. (allow_zero and "non-negative" or "positive")
        .. " integer of at most "
        .. max
        .. ", got "
        .. tostring(x)
    )
  end
  return x
end

-- Expressions ---------------------------------------------------------------------------------

--- A path expression: `F.p "$.a.b"`.
---@param at string
---@return swarm.Expr
function F.p(at)
  if type(at) ~= "string" then
    fail("p", "expects a path string, got " .. type(at))
  end
  local canonical, err = native.canonical_path(at)
  if not canonical then
    fail("p", err)
  end
  return make_expr({ op = "path", at = canonical })
end

--- A literal expression.
---@param value any
---@return swarm.Expr
function F.lit(value)
  if value == nil then
    value = native.null
  end
  return make_expr({ op = "lit", value = value })
end

--- Passes a hand-written wire expression through unchanged.
---@param ast table
---@return swarm.Expr
function F.raw(ast)
  if type(ast) ~= "table" or type(ast.op) ~= "string" then
    fail("raw", "expects a wire expression table with an `op` field")
  end
  return make_expr(ast)
end

local function list_of_exprs(builder, xs)
  if type(xs) ~= "table" then
    fail(builder, "expects a list of expressions")
  end
  local out = {}
  for i = 1, #xs do
    out[i] = unwrap(xs[i])
  end
  return array(out)
end

--- True when every expression is truthy (short-circuit).
---@param exprs any[]
---@return swarm.Expr
function F.all(exprs)
  return make_expr({ op = "and", args = list_of_exprs("all", exprs) })
end

--- True when any expression is truthy (short-circuit).
---@param exprs any[]
---@return swarm.Expr
function F.any(exprs)
  return make_expr({ op = "or", args = list_of_exprs("any", exprs) })
end

--- Calls a pure function registered with `swarm.extern`.
---@param name string
---@param args? any[]
---@return swarm.Expr
function F.call(name, args)
  if type(name) ~= "string" then
    fail("call", "expects the extern's name first")
  end
  return make_expr({ op = "call_extern", ref = name, args = list_of_exprs("call", args or {}) })
end

local function binary(op)
  return function(lhs, rhs)
    return make_expr({ op = op, lhs = unwrap(lhs), rhs = unwrap(rhs) })
  end
end

Expr.eq = binary("eq")
Expr.ne = binary("ne")
Expr.lt = binary("lt")
Expr.lte = binary("lte")
Expr.gt = binary("gt")
Expr.gte = binary("gte")
Expr.__add = binary("add")
Expr.__sub = binary("sub")
Expr.__mul = binary("mul")
Expr.__div = binary("div")
Expr.__mod = binary("mod")

function Expr:Not()
  return make_expr({ op = "not", arg = self })
end

function Expr:exists()
  return make_expr({ op = "exists", arg = self })
end

function Expr:len()
  return make_expr({ op = "len", arg = self })
end

--- `haystack:contains(needle)`: membership in an array.
function Expr:contains(needle)
  return make_expr({ op = "in", needle = unwrap(needle), haystack = self })
end

function Expr:And(other)
  return make_expr({ op = "and", args = array({ self, unwrap(other) }) })
end

function Expr:Or(other)
  return make_expr({ op = "or", args = array({ self, unwrap(other) }) })
end

-- Nodes ---------------------------------------------------------------------------------------

local retry_kinds = set("failed", "blocked", "timeout")

local function retry_of(spec)
  if spec == nil then
    return nil
  end
  check_fields("step", spec, set("max_attempts", "backoff_ms", "backoff_factor", "on"))
  if spec.max_attempts == nil then
    fail("step", "`retry.max_attempts` is required (an integer >= 1)")
  end
  local max = positive_integer("step", "retry.max_attempts", spec.max_attempts, false)
  local backoff = positive_integer("step", "retry.backoff_ms", spec.backoff_ms or 0, true, MAX_MS)
  local factor = spec.backoff_factor or 1
  if type(factor) ~= "number" or not (factor >= 0 and factor <= 1e6) then
    fail("step", "`retry.backoff_factor` must be a number from 0 to 1000000, got " .. tostring(factor))
  end
  local on = spec.on or { "failed", "timeout" }
  for _, kind in ipairs(on) do
    if not retry_kinds[kind] then
      fail("step", "`retry.on` takes failed, blocked or timeout, got '" .. tostring(kind) .. "'")
    end
  end
  local kinds = {}
  for i, kind in ipairs(on) do
    kinds[i] = kind
  end
  return { max_attempts = max, backoff_ms = backoff, backoff_factor = factor + 0.0, on = array(kinds) }
end

--- Dispatches `input` (default: the whole ctx) to `agent`; the result goes to `out`
--- (default: `$.<agent>`).
---@param spec {agent: string, input?: any, out?: string|swarm.Expr, timeout_ms?: integer, retry?: table}
function F.step(spec)
  check_fields("step", spec, options.step)
  if type(spec.agent) ~= "string" or spec.agent == "" then
    fail("step", "`agent` must be the name of an agent")
  end
  local input = spec.input
  if input == nil then
    input = F.p("$")
  end
  local out = spec.out
  if out == nil then
    out = native.key_path(spec.agent)
  end
  return node({
    kind = "step",
    ref = spec.agent,
    ["in"] = unwrap(input),
    out = path_of("step", "out", out),
    timeout_ms = positive_integer("step", "timeout_ms", spec.timeout_ms, false, MAX_MS),
    retry = retry_of(spec.retry),
  })
end

--- Runs nodes in order; the first error stops it.
---@param children table[]
function F.seq(children)
  if type(children) ~= "table" then
    fail("seq", "expects a list of nodes")
  end
  local list = {}
  for i = 1, #children do
    list[i] = node_of("seq", "[" .. i .. "]", children[i])
  end
  for key in pairs(children) do
    if math.type(key) ~= "integer" then
      fail("seq", "expects a list of nodes, found field '" .. tostring(key) .. "'")
    end
  end
  return node({ kind = "seq", children = array(list) })
end

--- Writes an expression's value at a path.
function F.assign(spec)
  check_fields("assign", spec, options.assign)
  if spec.at == nil then
    fail("assign", "`at` is required")
  end
  return node({ kind = "assign", at = path_of("assign", "at", spec.at), value = unwrap(spec.value) })
end

--- `cond` must be a boolean; a missing branch does nothing.
function F.branch(spec)
  check_fields("branch", spec, options.branch)
  if spec.cond == nil then
    fail("branch", "`cond` is required")
  end
  if spec.on_true == nil and spec.on_false == nil then
    fail("branch", "give `on_true`, `on_false` or both")
  end
  local empty = { kind = "seq", children = array({}) }
  return node({
    kind = "branch",
    cond = unwrap(spec.cond),
    ["then"] = spec.on_true and node_of("branch", "on_true", spec.on_true) or empty,
    ["else"] = spec.on_false and node_of("branch", "on_false", spec.on_false) or empty,
  })
end

--- counter := 0; while counter < max and cond is truthy: body; counter += 1.
function F.loop(spec)
  check_fields("loop", spec, options.loop)
  if spec.counter == nil then
    fail("loop", "`counter` is required (a path such as \"$.i\")")
  end
  if spec.max == nil then
    fail("loop", "`max` is required (a non-negative integer)")
  end
  positive_integer("loop", "max", spec.max, true)
  local cond = spec.cond
  if cond == nil then
    cond = true
  end
  return node({
    kind = "loop",
    counter = path_of("loop", "counter", spec.counter),
    cond = unwrap(cond),
    max = spec.max,
    body = node_of("loop", "body", spec.body),
  })
end

local joins = enums["fanout.join"]

--- One isolated lane per item of `items`, each with the item at `bind` (default `$.item`).
function F.fanout(spec)
  check_fields("fanout", spec, options.fanout)
  if spec.items == nil then
    fail("fanout", "`items` is required")
  end
  if spec.out == nil then
    fail("fanout", "`out` is required")
  end
  local join = spec.join or "all"
  if not joins[join] then
    fail("fanout", "`join` must be all, any, race or all_settled, got '" .. tostring(join) .. "'")
  end
  return node({
    kind = "fanout",
    items = unwrap(spec.items),
    bind = path_of("fanout", "bind", spec.bind or "$.item"),
    body = node_of("fanout", "body", spec.body),
    join = join,
    out = path_of("fanout", "out", spec.out),
    max_concurrency = positive_integer("fanout", "max_concurrency", spec.max_concurrency, true),
    collect = spec.collect ~= nil and path_of("fanout", "collect", spec.collect) or nil,
  })
end

--- On a body error: restore the ctx, write the error at `err_at`, run `catch`.
function F.try(spec)
  check_fields("try", spec, options.try)
  return node({
    kind = "try",
    body = node_of("try", "body", spec.body),
    catch = spec.catch and node_of("try", "catch", spec.catch) or { kind = "seq", children = array({}) },
    err_at = spec.err_at ~= nil and path_of("try", "err_at", spec.err_at) or nil,
  })
end

--- Waits for a signal: the flow (or the fanout lane) stops here until a signal named `signal`
--- is delivered to the run (`run:signal`, `swarm runs signal`), then writes its value at `out`.
--- `signal` is a name, or an expression giving it (`F.p"$.item.signal"`: each lane its own).
--- After `timeout_ms` the wait fails with kind `timeout`, which `F.try` can catch.
---@param spec {signal: string|swarm.Expr, out?: string|swarm.Expr, timeout_ms?: integer}
function F.wait(spec)
  check_fields("wait", spec, options.wait)
  local signal = spec.signal
  if type(signal) == "string" then
    if signal == "" then
      fail("wait", "`signal` must not be empty")
    end
  elseif is_expr(signal) then
    signal = signal
  else
    fail("wait", "`signal` must be a name (a string) or an expression such as F.p\"$.item.signal\", got " .. type(signal))
  end
  return node({
    kind = "wait",
    signal = signal,
    out = spec.out ~= nil and path_of("wait", "out", spec.out) or nil,
    timeout_ms = positive_integer("wait", "timeout_ms", spec.timeout_ms, false, MAX_MS),
  })
end

-- The names mlua-swarm's DSL uses, so its scripts port unchanged.
F.loop_ = F.loop
F.try_ = F.try
F.call_extern = F.call

return F, sites, is_node
