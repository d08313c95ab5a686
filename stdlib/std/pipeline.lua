-- std.pipeline: linear pipelines of agent stages, expanded into plain `swarm.flow` nodes.
--
--   local P = require("std.pipeline")
--   local flow = P.pipeline({
--     P.stage("draft")({ agent = "writer" }),
--     P.stage("review")({ agent = "critic", halt_on = { "reject" }, retry = { max = 2, fix = "draft" } }),
--     P.stage("publish")({ agent = "printer", input = P.from("draft") }),
--     done = "$.done",
--   })
--
-- A stage is one step: `agent` reads `input` and writes `out`. Verdicts are read at
-- `<out>.verdict` (the pipeline's `verdict` option changes the suffix); a missing verdict
-- matches nothing. Gates are opt-in: a stage halts the pipeline only with `gate = true`, its
-- own `halt_on`, or a `retry`. Every function returns plain data, so `swarm compile` prints
-- exactly what runs.

local swarm = require("swarm")
local F = swarm.flow

local M = {}

local Expr = getmetatable(F.p("$"))
local Stage = { __name = "std.pipeline.Stage" }
local From = { __name = "std.pipeline.From" }

local internal = require("std._internal")
local caller_site = internal.caller_site
local sorted_keys = internal.sorted_keys

local function raise(site, message)
  error((site and site .. ": " or "") .. "std.pipeline: " .. message, 0)
end

local function check_fields(site, what, spec, allowed)
  for key in pairs(spec) do
    if not allowed[key] then
      local fields = table.concat(sorted_keys(allowed), ", ")
      raise(site, what .. ": unknown field '" .. tostring(key) .. "' (fields: " .. fields .. ")")
    end
  end
end

--- A path string or `F.p` in canonical form, or an error naming `what`.
local function path_text(site, what, x)
  local text
  if type(x) == "string" then
    text = x
  elseif getmetatable(x) == Expr and x.op == "path" then
    text = x.at
  else
    raise(site, what .. " must be a path string like \"$.x\" or F.p\"$.x\", got " .. type(x))
  end
  local ok, parsed = pcall(F.p, text)
  if not ok then
    raise(site, what .. ": " .. tostring(parsed):gsub("^.-F%.p: ", ""))
  end
  return parsed.at
end

--- A non-empty list of verdict values, copied into a JSON array.
local function verdicts(site, what, list)
  if type(list) ~= "table" or #list == 0 then
    raise(site, what .. " must be a non-empty list of verdicts, like { \"reject\" }")
  end
  local copy = {}
  for key, value in pairs(list) do
    if math.type(key) ~= "integer" then
      raise(site, what .. " must be a list, found field '" .. tostring(key) .. "'")
    end
    if type(value) ~= "string" and type(value) ~= "number" and type(value) ~= "boolean" then
      raise(site, what .. " holds strings, numbers or booleans, got " .. type(value))
    end
  end
  for i = 1, #list do
    copy[i] = list[i]
  end
  return swarm.array(copy)
end

local stage_fields = {
  agent = true,
  input = true,
  out = true,
  timeout_ms = true,
  gate = true,
  halt_on = true,
  skip_on = true,
  retry = true,
}
local retry_fields = { max = true, fix = true, counter = true, input = true, out = true }

--- Declares a stage: `P.stage "review" { agent = "critic", ... }`.
---
--- Fields: `agent` (required), `input` (an expression or `P.from "stage"`; default: the
--- previous stage's out when the pipeline chains, else the whole ctx), `out` (default
--- `$.<id>`), `timeout_ms`, `gate` (true: halt on the pipeline's `halt_on`; false: never halt,
--- wins over the rest), `halt_on` (verdicts that halt here), `skip_on` (verdicts of the
--- input that skip this stage), `retry = {max, fix, counter?, input?, out?}`.
---@param id string a name made of letters, digits and `_`, not starting with a digit
---@return fun(spec: table): table stage
function M.stage(id)
  local site = caller_site()
  if type(id) ~= "string" or not id:match("^[%a_][%w_]*$") then
    raise(site, "P.stage: the id must be a name like \"review\" (letters, digits, _), got " .. tostring(id))
  end
  return function(spec)
    site = caller_site() or site
    local what = "stage '" .. id .. "'"
    if type(spec) ~= "table" or getmetatable(spec) ~= nil then
      raise(site, what .. ": expects a table of fields: P.stage \"" .. id .. "\" { agent = ... }")
    end
    check_fields(site, what, spec, stage_fields)
    if type(spec.agent) ~= "string" or spec.agent == "" then
      raise(site, what .. ": `agent` must be the name of an agent")
    end
    if spec.gate ~= nil and type(spec.gate) ~= "boolean" then
      raise(site, what .. ": `gate` must be true or false")
    end
    if spec.timeout_ms ~= nil and (math.type(spec.timeout_ms) ~= "integer" or spec.timeout_ms < 1) then
      raise(site, what .. ": `timeout_ms` must be a positive integer")
    end
    local stage = {
      id = id,
      site = site,
      agent = spec.agent,
      input = spec.input,
      out = path_text(site, what .. ": `out`", spec.out or ("$." .. id)),
      timeout_ms = spec.timeout_ms,
      gate = spec.gate,
      halt_on = spec.halt_on ~= nil and verdicts(site, what .. ": `halt_on`", spec.halt_on) or nil,
      skip_on = spec.skip_on ~= nil and verdicts(site, what .. ": `skip_on`", spec.skip_on) or nil,
    }
    local retry = spec.retry
    if retry ~= nil then
      if type(retry) ~= "table" then
        raise(site, what .. ": `retry` must be a table {max = N, fix = \"stage or agent\"}")
      end
      check_fields(site, what .. ": `retry`", retry, retry_fields)
      if math.type(retry.max) ~= "integer" or retry.max < 1 then
        raise(site, what .. ": `retry.max` must be an integer >= 1")
      end
      if type(retry.fix) ~= "string" or retry.fix == "" then
        raise(site, what .. ": `retry.fix` must name a stage or an agent")
      end
      if retry.fix == id then
        raise(site, what .. ": `retry.fix` names the stage itself; name the stage or agent that fixes its input")
      end
      stage.retry = {
        max = retry.max,
        fix = retry.fix,
        counter = path_text(site, what .. ": `retry.counter`", retry.counter or ("$." .. id .. "_retries")),
        input = retry.input,
        out = retry.out ~= nil and path_text(site, what .. ": `retry.out`", retry.out) or nil,
      }
    end
    return setmetatable(stage, Stage)
  end
end

--- Stands for the `out` path of the stage named `id`, in a stage's `input` (or `retry.input`).
--- It may name a stage declared further down.
---@param id string
---@return table placeholder
function M.from(id)
  local site = caller_site()
  if type(id) ~= "string" then
    raise(site, "P.from: expects a stage id, got " .. type(id))
  end
  return setmetatable({ stage = id, site = site }, From)
end

local pipeline_fields = { halt_on = true, halted_at = true, done = true, chain = true, verdict = true }

--- The path of the verdict inside the value at `base` (a canonical path).
local function verdict_path(base, suffix)
  return F.p(base .. "." .. suffix)
end

--- `cond` of a gate, retry or skip: the verdict is present and one of `list`.
local function matches(base, suffix, list)
  local verdict = verdict_path(base, suffix)
  return F.all({ verdict:exists(), F.lit(list):contains(verdict) })
end

--- Builds the flow: a `seq` of the stages in order, each gated stage a `branch` whose `else`
--- holds the rest of the pipeline.
---
--- Fields besides the stages: `halt_on` (verdicts for stages with `gate = true` or a `retry`
--- and no `halt_on` of their own), `halted_at` (where a halting gate writes its stage id;
--- default `$.halted_at`), `done` (a path set to true when no gate halted), `chain` (default
--- true: a stage without `input` reads the previous stage's out), `verdict` (the verdict's
--- path below a stage's out or input; default `verdict`).
---@param spec table
---@return table node a `seq` node
function M.pipeline(spec)
  local site = caller_site()
  if type(spec) ~= "table" then
    raise(site, "P.pipeline: expects a table of stages and options, got " .. type(spec))
  end
  local stages = {}
  local by_id = {}
  local entries = 0
  for key, value in pairs(spec) do
    if math.type(key) ~= "integer" and not pipeline_fields[key] then
      local fields = table.concat(sorted_keys(pipeline_fields), ", ")
      raise(site, "P.pipeline: unknown field '" .. tostring(key) .. "' (fields: " .. fields .. ", and the stages)")
    end
    if math.type(key) == "integer" then
      if getmetatable(value) ~= Stage then
        raise(site, "P.pipeline: entry " .. key .. " is not a stage (P.stage \"id\" {...}), got " .. type(value))
      end
      entries = entries + 1
    end
  end
  if entries ~= #spec then
    raise(site, "P.pipeline: the stages must be a list without holes (is one of them a nil variable?)")
  end
  for i = 1, #spec do
    local stage = spec[i]
    if by_id[stage.id] then
      raise(stage.site, "stage '" .. stage.id .. "' is declared twice in this pipeline")
    end
    by_id[stage.id] = stage
    stages[i] = stage
  end
  if #stages == 0 then
    raise(site, "P.pipeline: give at least one stage")
  end
  local halt_on = spec.halt_on ~= nil and verdicts(site, "P.pipeline: `halt_on`", spec.halt_on) or nil
  local halted_at = path_text(site, "P.pipeline: `halted_at`", spec.halted_at or "$.halted_at")
  local done = spec.done ~= nil and path_text(site, "P.pipeline: `done`", spec.done) or nil
  local chain = spec.chain
  if chain == nil then
    chain = true
  elseif type(chain) ~= "boolean" then
    raise(site, "P.pipeline: `chain` must be true or false")
  end
  local suffix = spec.verdict or "verdict"
  if type(suffix) ~= "string" or not pcall(F.p, "$." .. suffix) then
    raise(site, "P.pipeline: `verdict` must be a path below a stage's out, like \"verdict\" or \"parts.verdict\"")
  end

  local function names()
    local list = {}
    for i, stage in ipairs(stages) do
      list[i] = stage.id
    end
    return table.concat(list, ", ")
  end

  --- A stage input as an expression: placeholders become their stage's out path.
  local function resolve(stage, what, x)
    if getmetatable(x) == From then
      local target = by_id[x.stage]
      if target == nil then
        raise(x.site or stage.site, "stage '" .. stage.id .. "': " .. what .. " P.from \"" .. tostring(x.stage)
          .. "\" names no stage of this pipeline (stages: " .. names() .. ")")
      end
      return F.p(target.out)
    end
    return x
  end

  -- Inputs first: a retry that names another stage as its fix re-runs that stage's step.
  local steps = {}
  local inputs = {}
  local gated = {}
  local halts = {}
  local used_pipeline_halt_on = false
  for i, stage in ipairs(stages) do
    local what = "stage '" .. stage.id .. "'"
    local input = resolve(stage, "`input`", stage.input)
    if input == nil then
      input = (chain and i > 1) and F.p(stages[i - 1].out) or F.p("$")
    end
    inputs[stage.id] = input
    steps[stage.id] = function()
      return F.step({ agent = stage.agent, input = input, out = stage.out, timeout_ms = stage.timeout_ms })
    end
    gated[stage.id] = stage.gate == true or (stage.gate == nil and (stage.halt_on ~= nil or stage.retry ~= nil))
    if stage.gate == false and stage.halt_on ~= nil and stage.retry == nil then
      raise(stage.site, what .. ": `halt_on` with `gate = false` can never halt; drop one of them")
    end
    if gated[stage.id] or stage.retry ~= nil then
      halts[stage.id] = stage.halt_on or halt_on
      if halts[stage.id] == nil then
        raise(stage.site, what .. ": " .. (stage.retry and "`retry`" or "`gate = true`")
          .. " needs verdicts to act on: give `halt_on` on the stage or on the pipeline")
      end
      used_pipeline_halt_on = used_pipeline_halt_on or stage.halt_on == nil
    end
  end
  if halt_on ~= nil and not used_pipeline_halt_on then
    raise(site, "P.pipeline: `halt_on` applies to no stage: gates are opt-in, so set `gate = true` "
      .. "on the stages that should halt (or give them a `retry`)")
  end

  local function input_path(stage, what)
    local input = inputs[stage.id]
    if getmetatable(input) ~= Expr or input.op ~= "path" then
      raise(stage.site, "stage '" .. stage.id .. "': " .. what .. " needs the stage's `input` to be a path")
    end
    return input.at
  end

  --- The fix step of a retry: another stage's step, or a step of the named agent.
  local function fix_step(stage)
    local retry = stage.retry
    local target = by_id[retry.fix]
    if target ~= nil then
      if retry.input ~= nil or retry.out ~= nil then
        raise(stage.site, "stage '" .. stage.id .. "': `retry.input` and `retry.out` apply only when `retry.fix` "
          .. "names an agent; stage '" .. target.id .. "' brings its own")
      end
      return steps[target.id]()
    end
    local input = resolve(stage, "`retry.input`", retry.input)
    return F.step({
      agent = retry.fix,
      input = input == nil and F.p("$") or input,
      out = retry.out or input_path(stage, "`retry.fix` with an agent (it writes its fix to the stage's input)"),
    })
  end

  --- The nodes of one stage, before its gate.
  local function stage_nodes(stage)
    local nodes = { steps[stage.id]() }
    if stage.retry then
      nodes[2] = F.loop({
        counter = stage.retry.counter,
        cond = matches(stage.out, suffix, halts[stage.id]),
        max = stage.retry.max,
        body = F.seq({ fix_step(stage), steps[stage.id]() }),
      })
    end
    if stage.skip_on then
      local skip = matches(input_path(stage, "`skip_on`"), suffix, stage.skip_on)
      local body = #nodes == 1 and nodes[1] or F.seq(nodes)
      nodes = { F.branch({ cond = skip, on_true = F.seq({}), on_false = body }) }
    end
    return nodes
  end

  local rest = {}
  if done then
    rest[1] = F.assign({ at = done, value = true })
  end
  for i = #stages, 1, -1 do
    local stage = stages[i]
    local nodes = stage_nodes(stage)
    if gated[stage.id] then
      nodes[#nodes + 1] = F.branch({
        cond = matches(stage.out, suffix, halts[stage.id]),
        on_true = F.assign({ at = halted_at, value = stage.id }),
        on_false = F.seq(rest),
      })
    else
      for _, node in ipairs(rest) do
        nodes[#nodes + 1] = node
      end
    end
    rest = nodes
  end
  return F.seq(rest)
end

return M
