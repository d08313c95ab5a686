-- input: {"user": {"name": "Ada", "tags": ["admin", "ops"]}, "price": 7, "qty": 3}
-- expect-json: {"out": {"total": 21, "half": 3.5, "rem": 1, "neg_rem": 2, "int_div": 2.0, "is_admin": true, "has_email": false, "name_len": 3, "tag_count": 2, "cheap": false, "named": true, "either": true, "not_named": false, "same": true, "mixed": false, "greeting": "Hi, Ada!"}}
--
-- Every expression, evaluated by `assign` nodes (no agents needed).
local swarm = require("swarm")
local F = swarm.flow

-- An extern: a pure function an expression may call with F.call(name, {args}).
swarm.extern("greet", function(name)
  return "Hi, " .. name .. "!"
end)

local name = F.p("$.user.name")

return swarm.blueprint({
  id = "expressions",
  flow = F.seq({
    -- Arithmetic follows Lua 5.4: integers stay integers, `/` gives a float, `%` takes the
    -- divisor's sign.
    F.assign({ at = "$.out.total", value = F.p("$.price") * F.p("$.qty") }),
    F.assign({ at = "$.out.half", value = F.p("$.price") / 2 }),
    F.assign({ at = "$.out.rem", value = F.p("$.price") % 3 }),
    F.assign({ at = "$.out.neg_rem", value = F.lit(-7) % 3 }),
    F.assign({ at = "$.out.int_div", value = F.lit(6) / 3 }),
    -- Membership, existence, length.
    F.assign({ at = "$.out.is_admin", value = F.p("$.user.tags"):contains("admin") }),
    F.assign({ at = "$.out.has_email", value = F.p("$.user.email"):exists() }),
    F.assign({ at = "$.out.name_len", value = name:len() }),
    F.assign({ at = "$.out.tag_count", value = F.p("$.user.tags"):len() }),
    -- Comparisons and logic.
    F.assign({ at = "$.out.cheap", value = F.p("$.out.total"):lt(10) }),
    F.assign({ at = "$.out.named", value = F.all({ name:exists(), name:ne("") }) }),
    F.assign({ at = "$.out.either", value = F.any({ F.p("$.out.cheap"), F.p("$.out.is_admin") }) }),
    F.assign({ at = "$.out.not_named", value = F.p("$.out.named"):Not() }),
    F.assign({ at = "$.out.same", value = F.lit(1):eq(1.0) }),
    F.assign({ at = "$.out.mixed", value = F.lit(1):eq("1") }),
    -- An extern call.
    F.assign({ at = "$.out.greeting", value = F.call("greet", { name }) }),
  }),
})
