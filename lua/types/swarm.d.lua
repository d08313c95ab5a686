---@meta swarm
-- LuaLS definitions for the `swarm` module (see docs/), one to one with what the module table
-- exposes; `swarm types DIR` writes this file, `swarm init` points a `.luarc.json` at it.

---@alias swarm.Json nil|boolean|number|string|table|lightuserdata
---@alias swarm.PathLike string|swarm.Expr
---@alias swarm.ExprLike swarm.Expr|swarm.Json
---@alias swarm.Agent swarm.AgentDef|fun(input: any, task: swarm.Task): any

--- A flow expression, built by `swarm.flow` (`F.p`, `F.lit`, ...).
---@class swarm.Expr
---@operator add(swarm.ExprLike): swarm.Expr
---@operator sub(swarm.ExprLike): swarm.Expr
---@operator mul(swarm.ExprLike): swarm.Expr
---@operator div(swarm.ExprLike): swarm.Expr
---@operator mod(swarm.ExprLike): swarm.Expr
local Expr = {}
---@param x swarm.ExprLike
---@return swarm.Expr
function Expr:eq(x) end
---@param x swarm.ExprLike
---@return swarm.Expr
function Expr:ne(x) end
---@param x swarm.ExprLike
---@return swarm.Expr
function Expr:lt(x) end
---@param x swarm.ExprLike
---@return swarm.Expr
function Expr:lte(x) end
---@param x swarm.ExprLike
---@return swarm.Expr
function Expr:gt(x) end
---@param x swarm.ExprLike
---@return swarm.Expr
function Expr:gte(x) end
---@return swarm.Expr
function Expr:Not() end
--- True when the path exists (the only expression that tolerates a missing path).
---@return swarm.Expr
function Expr:exists() end
---@return swarm.Expr
function Expr:len() end
---@param needle swarm.ExprLike
---@return swarm.Expr
function Expr:contains(needle) end
---@param other swarm.ExprLike
---@return swarm.Expr
function Expr:And(other) end
---@param other swarm.ExprLike
---@return swarm.Expr
function Expr:Or(other) end

--- A flow node, built by `swarm.flow` (`F.step`, `F.seq`, ...).
---@class swarm.Node
---@field kind string

--- A step's retry policy: attempt n + 1 waits `backoff_ms * backoff_factor^(n - 1)`.
---@class swarm.Retry
---@field max_attempts integer attempts in all, the first included (>= 1)
---@field backoff_ms integer? default 0
---@field backoff_factor number? default 1
---@field on ("failed"|"blocked"|"timeout")[]? default: failed and timeout

---@class swarm.StepSpec
---@field agent string the agent to dispatch to
---@field input swarm.ExprLike? default: the whole ctx
---@field out swarm.PathLike? default: `$.<agent>`
---@field timeout_ms integer?
---@field retry swarm.Retry?

---@class swarm.AssignSpec
---@field at swarm.PathLike
---@field value swarm.ExprLike

---@class swarm.BranchSpec
---@field cond swarm.ExprLike
---@field on_true swarm.Node?
---@field on_false swarm.Node?

---@class swarm.LoopSpec
---@field counter swarm.PathLike?
---@field cond swarm.ExprLike?
---@field max integer
---@field body swarm.Node

---@class swarm.FanoutSpec
---@field items swarm.ExprLike
---@field bind swarm.PathLike?
---@field body swarm.Node
---@field join ("all"|"any"|"race"|"all_settled")? default "all"
---@field out swarm.PathLike?
---@field max_concurrency integer?
---@field collect swarm.PathLike?

---@class swarm.TrySpec
---@field body swarm.Node
---@field catch swarm.Node?
---@field err_at swarm.PathLike?

---@class swarm.WaitSpec
---@field signal string|swarm.ExprLike the signal's name, or an expression giving it
---@field out swarm.PathLike? where the signal's value goes
---@field timeout_ms integer? the wait fails with kind `timeout` after this long

--- The flow builders: `local F = swarm.flow`.
---@class swarm.flow
local F = {}
--- A path into the ctx: `F.p "$.a.b"`.
---@param at string
---@return swarm.Expr
function F.p(at) end
--- A literal value.
---@param value swarm.Json
---@return swarm.Expr
function F.lit(value) end
--- An expression given as its wire AST.
---@param ast table
---@return swarm.Expr
function F.raw(ast) end
---@param exprs swarm.ExprLike[]
---@return swarm.Expr
function F.all(exprs) end
---@param exprs swarm.ExprLike[]
---@return swarm.Expr
function F.any(exprs) end
--- Calls an extern registered with `swarm.extern(name, fn)`.
---@param name string
---@param args swarm.ExprLike[]?
---@return swarm.Expr
function F.call(name, args) end
--- The same as `F.call`.
---@param name string
---@param args swarm.ExprLike[]?
---@return swarm.Expr
function F.call_extern(name, args) end
---@param spec swarm.StepSpec
---@return swarm.Node
function F.step(spec) end
---@param children swarm.Node[]
---@return swarm.Node
function F.seq(children) end
---@param spec swarm.AssignSpec
---@return swarm.Node
function F.assign(spec) end
---@param spec swarm.BranchSpec
---@return swarm.Node
function F.branch(spec) end
---@param spec swarm.LoopSpec
---@return swarm.Node
function F.loop(spec) end
--- The same as `F.loop` (for editors that dislike the keyword-like name).
---@param spec swarm.LoopSpec
---@return swarm.Node
function F.loop_(spec) end
---@param spec swarm.FanoutSpec
---@return swarm.Node
function F.fanout(spec) end
---@param spec swarm.TrySpec
---@return swarm.Node
function F.try(spec) end
--- The same as `F.try`.
---@param spec swarm.TrySpec
---@return swarm.Node
function F.try_(spec) end
--- Waits for a signal delivered to the run (`run:signal`, `swarm runs signal`); its value goes
--- to `out`. After `timeout_ms` it fails with kind `timeout`.
---@param spec swarm.WaitSpec
---@return swarm.Node
function F.wait(spec) end

--- An agent table (inline functions are written directly in `agents`).
---@class swarm.AgentDef
---@field name string?
---@field kind "lua"|"rust_fn"|"subprocess"|"remote"|"operator"
---@field spec table?
---@field profile {system_prompt: string?}?

---@class swarm.OperatorDef
---@field name string
---@field kind "console"|"lua"|"remote"

---@class swarm.BlueprintSpec
---@field id string
---@field flow swarm.Node
---@field agents table<string, swarm.Agent>|swarm.AgentDef[]
---@field operators swarm.OperatorDef[]?
---@field layers string[]?
---@field hints table?
---@field strategy table?
---@field metadata table?
---@field spawner_hints {layers: string[]}? mlua-swarm's form of `layers`
---@field schema_version string? accepted from mlua-swarm blueprints, and ignored

--- A normalized blueprint (plain data; JSON round-trips).
---@class swarm.Blueprint: swarm.BlueprintSpec

--- What an inline agent receives as its second argument.
---@class swarm.Task
---@field id string
---@field attempt integer
---@field agent string
---@field token string the task's worker token
---@field runtime table hints the layers put in
local Task = {}
--- Sends an event (a `worker_output`) to the run's subscribers.
---@param event swarm.Json
function Task.emit(event) end
--- Starts a sub-task on the same blueprint's agents and returns its value; a failure raises a
--- `swarm.Error` table (`kind` `depth_exceeded`, `failed`, `timeout`, ...).
---@param agent string
---@param input any
---@return any
function Task:dispatch(agent, input) end
--- Waits for signal `name` to the run (the task is `suspended` meanwhile) and returns its
--- value; after `opts.timeout_ms` raises a `swarm.Error` of kind `timeout`. `swarm.wait` is the
--- same, for the agent running.
---@param name string
---@param opts {timeout_ms: integer?}?
---@return any
function Task:wait(name, opts) end
--- Publishes a `layer_note` event of the task under `layer` (what an agent reports about
--- itself, such as a model's token usage).
---@param layer string
---@param note swarm.Json
function Task:note(layer, note) end

--- A structured error (`kind`: `failed`, `blocked`, `timeout`, `cancelled`, `compile`,
--- `depth_exceeded`, a token error kind, ...).
---@class swarm.Error
---@field kind string
---@field message string
---@field step string?
---@field value any
---@field run_id string?
---@field errors table[]? every problem, for compile errors
---@field file string?
---@field line integer?

---@class swarm.Run
---@field id string
local Run = {}
--- Waits for the run; returns the final ctx or raises its `swarm.Error`.
---@return table ctx
function Run:wait() end
function Run:cancel() end
---@return boolean
function Run:finished() end
--- Delivers signal `name` with `value` to the run: every wait waiting on the name takes it, or
--- the next one does. Returns how many waits it reached now (0: buffered). A run that ended
--- raises `{kind = "not_waiting"}`.
---@param name string
---@param value any
---@return integer waits
function Run:signal(name, value) end

---@class swarm.StartOpts
---@field on_event fun(event: table)?

---@class swarm.Grant
---@field role "worker"|"operator"|"senior"|"observer"
---@field agent_id string?
---@field scopes string[]?
---@field ttl number? seconds
---@field max_uses integer?
---@field task string?

---@class swarm.Engine
local Engine = {}
---@param bp swarm.Blueprint|swarm.Compiled
---@param init table?
---@param opts swarm.StartOpts?
---@return swarm.Run
function Engine:start(bp, init, opts) end
--- Continues an interrupted run of the engine's journal under its id, replaying the steps that
--- passed; `bp` defaults to the file the run was started from. A run another process is
--- running raises `{kind = "already_running", pid = ...}`.
---@param run_id string
---@param bp (swarm.Blueprint|swarm.Compiled)?
---@param opts swarm.StartOpts?
---@return swarm.Run
function Engine:resume(run_id, bp, opts) end
---@param grant swarm.Grant
---@return string token
function Engine:mint(grant) end
---@param token string
---@param verb string
---@param task_id string?
---@return true|nil ok, swarm.Error? err
function Engine:verify(token, verb, task_id) end
---@param token string
---@return true|nil ok, swarm.Error? err
function Engine:revoke(token) end
---@param ref string
---@return any
function Engine:output(ref) end
--- `run:signal` for a run in flight on this engine, by its id.
---@param run_id string
---@param name string
---@param value any
---@return integer waits
function Engine:signal(run_id, name, value) end
--- The open waits of the runs in flight on this engine.
---@return {run_id: string, signal: string, pointer: string?, task_id: string?, deadline_ms: integer?, question: any}[]
function Engine:pending() end

---@class swarm.Compiled: userdata

---@class swarm.EngineOpts
---@field token_secret string?
---@field max_spawn_depth integer?
---@field offload_bytes integer?
---@field state string? a journal file (SQLite, created if missing), or "memory" (the default) for none

---@class swarm.ExecSpec
---@field program string
---@field args string[]?
---@field stdin string?
---@field env table<string, string>?
---@field cwd string?

---@class swarm.ExecResult
---@field ok boolean
---@field code integer?
---@field stdout string
---@field stderr string

--- What a layer's hooks see.
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

---@class swarm.LayerDef
---@field before fun(ctx: swarm.LayerCtx)?
---@field after fun(ctx: swarm.LayerCtx, result: swarm.LayerResult): swarm.LayerResult?
---@field wrap fun(ctx: swarm.LayerCtx, next: fun(ctx: swarm.LayerCtx): swarm.LayerResult): swarm.LayerResult?

---@class swarm.Permit
local Permit = {}
function Permit:release() end

---@class swarm.Semaphore
local Semaphore = {}
---@return swarm.Permit
function Semaphore:acquire() end
---@param fn fun(...): ...
---@return ...
function Semaphore:with(fn, ...) end
---@return integer
function Semaphore:available() end
---@return integer
function Semaphore:limit() end

---@class swarm.json
local json = {}
---@param value any
---@param opts {pretty: boolean?}?
---@return string
function json.encode(value, opts) end
---@param text string
---@return any
function json.decode(text) end
--- JSON null.
json.null = nil ---@type lightuserdata

---@class swarm.token
local token = {}
--- The fields of a token, unverified.
---@param tok string
---@return table fields
function token.decode(tok) end
---@param fields table
---@return string
function token.encode(fields) end

---@class swarm.gate
local gate = {}
---@param role string
---@param verb string
---@return boolean
function gate.allowed(role, verb) end
gate.roles = {} ---@type string[]
gate.verbs = {} ---@type string[]
--- role -> the verbs it may use.
gate.table = {} ---@type table<string, string[]>

---@class swarm.output
local output = {}
--- A stored output of the default engine by its ref, or nil.
---@param ref string
---@return any
function output.get(ref) end

---@class swarm.http.Options
---@field method string? default "GET"
---@field url string
---@field headers table<string, string|number>?
---@field query table<string, string|number|boolean>? appended to the URL's query, sorted by name
---@field body string? the request body as given
---@field json any? the request body as JSON (content-type application/json unless headers set one)
---@field timeout_ms integer? the whole exchange: connect, redirects and the body or stream (default 30000)
---@field max_bytes integer? the most the body (or the whole stream) may hold (default 64 MiB)
---@field redirects integer? how many redirects to follow, 0 to 10 (default 10); 0 returns the 3xx

---@class swarm.http.Response
---@field status integer
---@field headers table<string, string> lower-case names; repeated headers joined with ", "
---@field body string
---@field json any? the decoded body when its content type is JSON and it parses
---@field url string the final URL, without its query

--- What a failed request raises: `kind` "http" (or "invalid_argument" for a call made wrongly).
---@class swarm.http.Error: swarm.Error
---@field reason "status"|"connect"|"tls"|"timeout"|"too_large"|"redirect"|"body"|"request"
---@field status integer? the response's status, for reason "status" (and "redirect")
---@field headers table<string, string>? the refusing response's headers
---@field body string? the first 64 KiB of the refusing response's body
---@field url string?

---@class swarm.http.Event
---@field event string "message" unless the event named itself
---@field data string data lines joined with "\n"
---@field id string? the last event id the stream sent
---@field retry integer?

--- A response read as it arrives.
---@class swarm.http.Stream
---@field status integer
---@field headers table<string, string>
---@field url string
local Stream = {}
--- Iterates the body's lines (without `\n` or `\r\n`), yielding while it waits.
---@return fun(): string?
function Stream:lines() end
--- Iterates the body as Server-Sent Events.
---@return fun(): swarm.http.Event?
function Stream:events() end
--- The next chunk as it arrived, or nil at the end.
---@return string?
function Stream:read() end
--- Ends the stream and closes its connection.
function Stream:close() end

--- HTTP from the host VM (inline agents, layers, bridges, timers, the REPL): every call yields.
--- A status of 400 or more raises a `swarm.http.Error`, as does every failure.
---@class swarm.http
local http = {}
---@param opts swarm.http.Options
---@return swarm.http.Response
function http.request(opts) end
---@param url string
---@param opts swarm.http.Options?
---@return swarm.http.Response
function http.get(url, opts) end
---@param url string
---@param opts swarm.http.Options?
---@return swarm.http.Response
function http.post(url, opts) end
--- Sends the request and returns once the response's head arrived.
---@param opts swarm.http.Options
---@return swarm.http.Stream
function http.stream(opts) end

---@class swarm
swarm = {}
swarm.flow = F
swarm.json = json
swarm.token = token
swarm.gate = gate
swarm.output = output
swarm.http = http
--- JSON null (`null` in the REPL).
swarm.null = nil ---@type lightuserdata

--- Normalizes a blueprint spec; errors name the script line.
---@param spec swarm.BlueprintSpec
---@return swarm.Blueprint
function swarm.blueprint(spec) end
--- Compiles a blueprint; raises a `swarm.Error` (kind `compile`) listing every problem.
---@param bp swarm.Blueprint
---@return swarm.Compiled
function swarm.compile(bp) end
--- Compiles, starts on the default engine and waits: the final ctx, or raises.
---@param bp swarm.Blueprint|swarm.Compiled
---@param init table?
---@param opts swarm.StartOpts?
---@return table ctx
function swarm.run(bp, init, opts) end
---@param opts swarm.EngineOpts?
---@return swarm.Engine
function swarm.engine(opts) end
---@return swarm.Engine
function swarm.default_engine() end
--- Inside an inline agent: waits for signal `name` to the run and returns its value (see
--- `Task:wait`).
---@param name string
---@param opts {timeout_ms: integer?}?
---@return any
function swarm.wait(name, opts) end
--- Marks a table as a JSON array (`swarm.array{}` is `[]`).
---@param t table?
---@return table
function swarm.array(t) end
--- An agent's `return swarm.block(v)` blocks the attempt with `v`.
---@param value any
---@return table
function swarm.block(value) end
--- Exposes `fn` to scripts and agents as `host.<name>`.
---@param name string
---@param fn function
function swarm.bridge(name, fn) end
--- Registers an extern for `F.call(name, args)`.
---@param name string
---@param fn fun(...): any
function swarm.extern(name, fn) end
--- Registers a Lua operator for `kind = "lua"` operator seats.
---@param name string
---@param fn fun(input: any, info: table): any
function swarm.operator(name, fn) end
--- Registers a middleware layer that blueprints name in `layers`.
---@param name string
---@param def swarm.LayerDef
---@param opts table?
function swarm.layer(name, def, opts) end
--- Reroutes agents: `fn(agent, ctx)` returns the agent to use, or nil.
---@param fn fun(agent: string, ctx: swarm.LayerCtx): string?
function swarm.resolver(fn) end
--- Who answers a failed attempt for `senior_escalation`.
---@param fn fun(question: table): any
function swarm.senior(fn) end
---@param n integer
---@return swarm.Semaphore
function swarm.semaphore(n) end
--- Waits without blocking other lanes.
---@param ms number
function swarm.sleep(ms) end
--- Runs a program without blocking other lanes.
---@param spec swarm.ExecSpec
---@return swarm.ExecResult
function swarm.exec(spec) end

-- Only in a script run by `swarm serve FILE` ------------------------------------------------

---@class swarm.Timer
local Timer = {}

--- Stops the timer; a tick already running finishes.
function Timer:cancel() end

--- Runs `fn` as a coroutine every `ms` milliseconds (a slow tick delays the next one). Timers
--- start once the script has loaded, and a reload stops the old version's timers.
--- Only in `swarm serve`.
---@param ms integer
---@param fn fun()
---@return swarm.Timer
function swarm.every(ms, fn) end

--- Plain data that survives reloads: copied out of the old version into the new one before the
--- script runs again. Only in `swarm serve`.
---@type table
swarm.state = {}

--- Lets clients of the HTTP API (`swarm serve --listen`) start `bp` by `name` (default: its
--- id). A blueprint that does not compile raises here; a name exposed twice is an error. Each
--- reload replaces what is exposed with what the new version exposes. Only in `swarm serve`.
---@param bp swarm.Blueprint|table
---@param name? string
function swarm.expose(bp, name) end

--- Runs `fn(info)` in the new version after a successful reload; `info.changed` lists the files
--- that changed. Only in `swarm serve`.
---@param fn fun(info: {changed: string[]})
function swarm.on_reload(fn) end

return swarm
