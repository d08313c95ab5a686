---@meta std.layers
-- LuaLS definitions for `require("std.layers")`: middleware for `swarm.layer`.

---@class std.layers.TimingEntry
---@field agent string
---@field attempt integer
---@field task_id string
---@field ms number
---@field status "pass"|"blocked"|"failed"

---@class std.layers.TimingOpts
---@field clock (fun(): number)? milliseconds; default `os.clock` (CPU time)
---@field on_done fun(entry: std.layers.TimingEntry)?
---@field stats table? filled with count, by_agent and the latest `keep` attempts
---@field keep integer?

---@class std.layers.LoggingOpts
---@field log fun(line: string)?
---@field prefix string?
---@field format fun(event: table): string?

---@class std.layers.CacheOpts
---@field max_entries integer? default 1000
---@field per_agent boolean? default true
---@field key fun(ctx: swarm.LayerCtx): string?
---@field stats table?

---@class std.layers
local layers = {}
---@param opts std.layers.TimingOpts?
---@return swarm.LayerDef
function layers.timing(opts) end
---@param opts std.layers.LoggingOpts?
---@return swarm.LayerDef
function layers.logging(opts) end
---@param opts std.layers.CacheOpts?
---@return swarm.LayerDef
function layers.cache(opts) end
--- At most `n` attempts through the layer at once (or share a `swarm.semaphore`).
---@param limit integer|swarm.Semaphore
---@return swarm.LayerDef
function layers.concurrency(limit) end

return layers
