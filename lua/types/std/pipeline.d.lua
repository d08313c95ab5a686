---@meta std.pipeline
-- LuaLS definitions for `require("std.pipeline")`: linear pipelines expanded into `swarm.flow`.

---@class std.pipeline.StageSpec
---@field agent string
---@field input swarm.ExprLike? default: the previous stage's out
---@field out swarm.PathLike? default: `$.<id>`
---@field halt_on string[]?
---@field retry {max: integer, fix: string}?

---@class std.pipeline.Stage

---@class std.pipeline.Spec
---@field [integer] std.pipeline.Stage
---@field done swarm.PathLike?
---@field chain boolean?

---@class std.pipeline
local pipeline = {}
--- `P.stage "id" { agent = ... }`.
---@param id string
---@return fun(spec: std.pipeline.StageSpec): std.pipeline.Stage
function pipeline.stage(id) end
--- The out path of stage `id`, as an input.
---@param id string
---@return swarm.Expr
function pipeline.from(id) end
---@param spec std.pipeline.Spec
---@return swarm.Node
function pipeline.pipeline(spec) end

return pipeline
