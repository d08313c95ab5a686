-- swarm.blueprint: turns what a script wrote into the blueprint wire shape (docs/agents.md).
--
-- Agents may be a list of agent tables or a map name -> agent table | function. An inline
-- function becomes `{kind = "lua", spec = {fn = "<blueprint id>/<agent name>"}}` and is kept
-- in the host VM under that id. The result remembers where each agent and node was declared
-- (see `sources_of`), which the compiler uses to put `file:line` on its errors.

local native, node_sites, is_node = ...

local Blueprint = { __name = "swarm.Blueprint" }

-- blueprint table -> { blueprint = site, agents = {index -> site}, nodes = {pointer -> site} }
local sources = setmetatable({}, { __mode = "k" })
-- The last blueprint built under each id: a host that picks up a run left waiting (a
-- restarted `swarm serve`) finds the blueprint of a run started from a script here.
local by_id = {}

local function array(t)
  return setmetatable(t, native.array_mt)
end

local function fail(message)
  local site = native.site()
  error((site and site .. ": " or "") .. "swarm.blueprint: " .. message, 0)
end

local top_fields = {
  id = true,
  flow = true,
  agents = true,
  operators = true,
  layers = true,
  hints = true,
  strategy = true,
  metadata = true,
  spawner_hints = true,
  schema_version = true,
}

-- kind -> the fields holding its child nodes, in order, from the host's description of each
-- node kind: the same fields, and so the same pointers, as the host's own walks.
local child_fields = {}
for _, shape in ipairs(native.node_shapes) do
  local fields = {}
  for _, field in ipairs(shape.fields) do
    if field.role == "node" or field.role == "node_list" then
      fields[#fields + 1] = field
    end
  end
  child_fields[shape.kind] = fields
end

--- Records the declaration site of every builder-made node under its pointer in the tree.
local function collect_node_sites(node, pointer, out)
  if type(node) ~= "table" then
    return
  end
  out[pointer] = node_sites[node]
  for _, field in ipairs(child_fields[node.kind] or {}) do
    local child = node[field.wire]
    if field.role == "node" then
      collect_node_sites(child, pointer .. "/" .. field.wire, out)
    elseif type(child) == "table" then
      for i, item in ipairs(child) do
        collect_node_sites(item, pointer .. "/" .. field.wire .. "/" .. (i - 1), out)
      end
    end
  end
end

local function copy(t)
  local c = {}
  for k, v in pairs(t) do
    c[k] = v
  end
  return c
end

--- Normalizes one agent. `name` is the map key when agents came as a map.
local function normalize_agent(bp_id, name, agent, site)
  if type(agent) == "function" then
    local id = bp_id .. "/" .. name
    native.register_fn(id, agent)
    return { name = name, kind = "lua", spec = { fn = id } }, native.fn_site(agent) or site
  end
  if type(agent) ~= "table" then
    fail("agent '" .. tostring(name) .. "' must be a table or a function, got " .. type(agent))
  end
  local def = copy(agent)
  if name ~= nil then
    if def.name ~= nil and def.name ~= name then
      fail("agent under key '" .. name .. "' is named '" .. tostring(def.name) .. "'")
    end
    def.name = name
  end
  if type(def.name) ~= "string" or def.name == "" then
    fail("every agent in a list needs a `name`")
  end
  if type(def.spec) == "table" and type(def.spec.fn) == "function" then
    local fn = def.spec.fn
    local id = bp_id .. "/" .. def.name
    native.register_fn(id, fn)
    def.spec = copy(def.spec)
    def.spec.fn = id
    site = native.fn_site(fn) or site
  end
  return def, site
end

--- A list part first (in order), then map entries sorted by key, so output is deterministic.
local function entries(t, what)
  local out = {}
  for i = 1, #t do
    out[#out + 1] = { nil, t[i] }
  end
  local keys = {}
  for k in pairs(t) do
    if math.type(k) ~= "integer" or k < 1 or k > #t then
      if type(k) ~= "string" then
        fail(what .. " keys must be names (strings), got " .. type(k))
      end
      keys[#keys + 1] = k
    end
  end
  table.sort(keys)
  for _, k in ipairs(keys) do
    out[#out + 1] = { k, t[k] }
  end
  return out
end

--- Builds a blueprint. Passing an already built blueprint returns it unchanged. `site` is
--- where the script called `swarm.blueprint` (captured natively: `return swarm.blueprint{...}`
--- is a tail call, which leaves no Lua frame to inspect).
---@param spec table
---@param site string?
---@return table
local function blueprint(spec, site)
  if getmetatable(spec) == Blueprint then
    return spec
  end
  if type(spec) ~= "table" then
    fail("expects a table, got " .. type(spec))
  end
  for key in pairs(spec) do
    if not top_fields[key] then
      local names = {}
      for name in pairs(top_fields) do
        names[#names + 1] = name
      end
      table.sort(names)
      fail("unknown field '" .. tostring(key) .. "' (fields: " .. table.concat(names, ", ") .. ")")
    end
  end
  if type(spec.id) ~= "string" or spec.id == "" then
    fail("`id` must be a non-empty string")
  end
  if not is_node(spec.flow) then
    fail("`flow` must be a flow node (F.seq{...}, F.step{...}, ...)")
  end
  local where = { blueprint = site, agents = {}, nodes = {} }

  local agents = {}
  if spec.agents ~= nil then
    if type(spec.agents) ~= "table" then
      fail("`agents` must be a list or a map of agents")
    end
    for _, entry in ipairs(entries(spec.agents, "agents")) do
      local def, agent_site = normalize_agent(spec.id, entry[1], entry[2], site)
      agents[#agents + 1] = def
      where.agents[#agents] = agent_site
    end
  end

  local operators = {}
  if spec.operators ~= nil then
    if type(spec.operators) ~= "table" then
      fail("`operators` must be a list or a map of operators")
    end
    for _, entry in ipairs(entries(spec.operators, "operators")) do
      local op = entry[2]
      if type(op) ~= "table" then
        fail("operator '" .. tostring(entry[1]) .. "' must be a table")
      end
      op = copy(op)
      op.name = op.name or entry[1]
      operators[#operators + 1] = op
    end
  end

  local layers = {}
  for i, key in ipairs(spec.layers or {}) do
    if type(key) ~= "string" then
      fail("`layers` must be a list of layer names")
    end
    layers[i] = key
  end

  collect_node_sites(spec.flow, "", where.nodes)

  local bp = setmetatable({
    id = spec.id,
    flow = spec.flow,
    agents = array(agents),
    operators = array(operators),
    layers = spec.spawner_hints == nil and array(layers) or nil,
    spawner_hints = spec.spawner_hints,
    hints = spec.hints,
    strategy = spec.strategy,
    metadata = spec.metadata,
    schema_version = spec.schema_version,
  }, Blueprint)
  sources[bp] = where
  by_id[spec.id] = bp
  return bp
end

local function sources_of(bp)
  return sources[bp]
end

return blueprint, sources_of, by_id
