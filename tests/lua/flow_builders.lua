-- swarm.flow builders emit exactly the wire format (docs/flows.md).
local swarm = require("swarm")
local expect = require("support.expect")
local F = swarm.flow

-- Expressions --------------------------------------------------------------------------------
expect.json(F.p("$.a.b"), '{"at":"$.a.b","op":"path"}', "path")
expect.json(F.p('$["a"]'), '{"at":"$.a","op":"path"}', "paths are stored in canonical form")
expect.json(F.p('$["x.y"][0]'), '{"at":"$[\\"x.y\\"][0]","op":"path"}', "bracket keys and indexes")
expect.json(F.lit(3), '{"op":"lit","value":3}', "lit int")
expect.json(F.lit(2.5), '{"op":"lit","value":2.5}', "lit float")
expect.json(F.lit(nil), '{"op":"lit","value":null}', "lit nil is null")
expect.json(F.lit({ a = { 1, 2 } }), '{"op":"lit","value":{"a":[1,2]}}', "lit table")
expect.json(F.lit(swarm.array({})), '{"op":"lit","value":[]}', "empty array literal")

local x = F.p("$.x")
for _, op in ipairs({ "eq", "ne", "lt", "lte", "gt", "gte" }) do
  expect.json(x[op](x, 1), '{"lhs":{"at":"$.x","op":"path"},"op":"' .. op .. '","rhs":{"op":"lit","value":1}}', op)
end
local arith = { add = x + 1, sub = x - 1, mul = x * 1, div = x / 1, mod = x % 1 }
for op, e in pairs(arith) do
  expect.json(e, '{"lhs":{"at":"$.x","op":"path"},"op":"' .. op .. '","rhs":{"op":"lit","value":1}}', op)
end
expect.json(2 - x, '{"lhs":{"op":"lit","value":2},"op":"sub","rhs":{"at":"$.x","op":"path"}}', "raw on the left")
expect.json(x:Not(), '{"arg":{"at":"$.x","op":"path"},"op":"not"}', "not")
expect.json(x:exists(), '{"arg":{"at":"$.x","op":"path"},"op":"exists"}', "exists")
expect.json(x:len(), '{"arg":{"at":"$.x","op":"path"},"op":"len"}', "len")
expect.json(
  F.lit({ "a", "b" }):contains(x),
  '{"haystack":{"op":"lit","value":["a","b"]},"needle":{"at":"$.x","op":"path"},"op":"in"}',
  "contains"
)
expect.json(F.all({ x, true }), '{"args":[{"at":"$.x","op":"path"},{"op":"lit","value":true}],"op":"and"}', "all")
expect.json(F.any({}), '{"args":[],"op":"or"}', "empty any")
expect.json(x:And(false), '{"args":[{"at":"$.x","op":"path"},{"op":"lit","value":false}],"op":"and"}', "And")
expect.json(x:Or(1), '{"args":[{"at":"$.x","op":"path"},{"op":"lit","value":1}],"op":"or"}', "Or")
expect.json(F.call("score", { x, 2 }), '{"args":[{"at":"$.x","op":"path"},{"op":"lit","value":2}],"op":"call_extern","ref":"score"}', "call")
expect.json(F.call("now"), '{"args":[],"op":"call_extern","ref":"now"}', "call without args")
expect.json(F.raw({ op = "lit", value = 1 }), '{"op":"lit","value":1}', "raw")

-- Nodes --------------------------------------------------------------------------------------
local step = F.step({ agent = "a", input = F.p("$.q"), out = "$.r" })
expect.json(step, '{"in":{"at":"$.q","op":"path"},"kind":"step","out":{"at":"$.r","op":"path"},"ref":"a"}', "step")
expect.json(
  F.step({ agent = "w" }),
  '{"in":{"at":"$","op":"path"},"kind":"step","out":{"at":"$.w","op":"path"},"ref":"w"}',
  "step defaults: the whole ctx in, $.<agent> out"
)
expect.json(
  F.step({ agent = "a", input = "text", out = F.p("$.r"), timeout_ms = 50, retry = { max_attempts = 3 } }),
  '{"in":{"op":"lit","value":"text"},"kind":"step","out":{"at":"$.r","op":"path"},"ref":"a",'
    .. '"retry":{"backoff_factor":1.0,"backoff_ms":0,"max_attempts":3,"on":["failed","timeout"]},"timeout_ms":50}',
  "a raw value in an expression position is a literal; retry defaults are explicit"
)
expect.json(F.seq({}), '{"children":[],"kind":"seq"}', "empty seq")
expect.json(F.seq({ step }), '{"children":[' .. swarm.json.encode(step) .. '],"kind":"seq"}', "seq")
expect.json(F.assign({ at = "$.n", value = x + 1 }), '{"at":{"at":"$.n","op":"path"},"kind":"assign","value":'
  .. swarm.json.encode(x + 1) .. "}", "assign")
expect.json(
  F.branch({ cond = x:eq(1), on_true = step }),
  '{"cond":' .. swarm.json.encode(x:eq(1)) .. ',"else":{"children":[],"kind":"seq"},"kind":"branch","then":'
    .. swarm.json.encode(step) .. "}",
  "branch: on_true/on_false become then/else; a missing one does nothing"
)
expect.json(
  F.loop({ counter = "$.i", cond = F.p("$.i"):lt(3), max = 5, body = step }),
  '{"body":' .. swarm.json.encode(step) .. ',"cond":' .. swarm.json.encode(F.p("$.i"):lt(3))
    .. ',"counter":{"at":"$.i","op":"path"},"kind":"loop","max":5}',
  "loop"
)
expect.json(
  F.fanout({ items = F.p("$.xs"), body = step, out = "$.rs" }),
  '{"bind":{"at":"$.item","op":"path"},"body":' .. swarm.json.encode(step)
    .. ',"items":{"at":"$.xs","op":"path"},"join":"all","kind":"fanout","out":{"at":"$.rs","op":"path"}}',
  "fanout defaults: bind $.item, join all"
)
expect.json(
  F.fanout({ items = { 1, 2 }, bind = "$.n", body = step, join = "all_settled", out = "$.rs", max_concurrency = 4, collect = "$.r" }),
  '{"bind":{"at":"$.n","op":"path"},"body":' .. swarm.json.encode(step)
    .. ',"collect":{"at":"$.r","op":"path"},"items":{"op":"lit","value":[1,2]},"join":"all_settled","kind":"fanout",'
    .. '"max_concurrency":4,"out":{"at":"$.rs","op":"path"}}',
  "fanout extensions"
)
expect.json(
  F.try({ body = step, catch = F.seq({}), err_at = "$.err" }),
  '{"body":' .. swarm.json.encode(step) .. ',"catch":{"children":[],"kind":"seq"},"err_at":{"at":"$.err","op":"path"},"kind":"try"}',
  "try"
)
expect.json(F.try({ body = step }), '{"body":' .. swarm.json.encode(step) .. ',"catch":{"children":[],"kind":"seq"},"kind":"try"}', "try without catch or err_at")
assert(F.loop_ == F.loop and F.try_ == F.try, "mlua-swarm DSL aliases")

-- Builder errors name the script line and the field ------------------------------------------
expect.raises(function() F.p("a.b") end, { "flow_builders.lua:", "F.p: invalid path `a.b` at byte 0" })
expect.raises(function() F.step({ out = "$.x" }) end, { "flow_builders.lua:", "F.step: `agent`" })
expect.raises(function() F.step({ agent = "a", inptu = 1 }) end, { "F.step: unknown field 'inptu'", "input" })
expect.raises(function() F.step({ agent = "a", out = "$.a..b" }) end, { "F.step: `out`: invalid path" })
expect.raises(function() F.step({ agent = "a", out = 3 }) end, { "`out` must be a path string" })
expect.raises(function() F.step({ agent = "a", timeout_ms = -1 }) end, { "`timeout_ms` must be a positive integer" })
expect.raises(function() F.step({ agent = "a", retry = { max_attempts = 0 } }) end, { "retry.max_attempts" })
expect.raises(function() F.step({ agent = "a", retry = { max_attempts = 2, on = { "crashed" } } }) end, { "retry.on" })
expect.raises(function() F.seq({ 1 }) end, { "F.seq: `[1]` must be a flow node" })
expect.raises(function() F.branch({ on_true = step }) end, { "F.branch: `cond` is required" })
expect.raises(function() F.loop({ counter = "$.i", body = step }) end, { "F.loop: `max`" })
expect.raises(function() F.fanout({ items = {}, body = step, out = "$.o", join = "first" }) end, { "`join` must be all, any, race or all_settled" })
expect.raises(function() F.try({ catch = step }) end, { "F.try: `body` must be a flow node" })
local err = expect.raises(function()
  F.step({ agent = 42 })
end, { "flow_builders.lua:" })
assert(string.find(tostring(err), "flow_builders.lua:" .. 107 .. ":", 1, true), "the error names the exact line: " .. tostring(err))
