-- swarm.gate, engine:mint / verify / revoke, swarm.token.decode / encode (docs/engine.md).
local swarm = require("swarm")
local expect = require("support.expect")

-- The gate table as docs/engine.md has it.
assert(swarm.gate.allowed("worker", "post_result"))
assert(swarm.gate.allowed("operator", "mint_worker_token"))
assert(swarm.gate.allowed("observer", "read_trace"))
assert(swarm.gate.allowed("senior", "inject_directive"))
assert(not swarm.gate.allowed("observer", "cancel_task"))
assert(not swarm.gate.allowed("worker", "answer_query"))
expect.eq(#swarm.gate.roles, 4, "roles")
expect.eq(#swarm.gate.verbs, 24, "verbs")
expect.raises(function() swarm.gate.allowed("wizard", "heartbeat") end, { "wizard" })

local engine = swarm.engine({ token_secret = "a test secret" })

-- A worker token bound to a task.
local tok = engine:mint({ role = "worker", agent_id = "writer", task = "t-1" })
assert(engine:verify(tok, "post_result", "t-1"))
local ok, err = engine:verify(tok, "post_result", "t-2")
expect.eq(ok, nil)
expect.eq(err.kind, "task_mismatch")
ok, err = engine:verify(tok, "answer_query")
expect.eq(err.kind, "role_violation")

-- Decoding is unverified and shows every field; a tampered field breaks the signature.
local fields = swarm.token.decode(tok)
expect.eq(fields.role, "worker")
expect.eq(fields.agent_id, "writer")
expect.eq(fields.expire_at, math.huge, "no ttl: never expires")
assert(#fields.sig == 64 and #fields.nonce > 0)
expect.eq(swarm.token.encode(fields), tok, "encode(decode(t)) == t")
for field, value in pairs({ role = "senior", agent_id = "someone", scopes = { "*" }, expire_at = 1, max_uses = 5, nonce = "00" }) do
  local forged = swarm.token.decode(tok)
  forged[field] = value
  local forged_ok, forged_err = engine:verify(swarm.token.encode(forged), "post_result", "t-1")
  expect.eq(forged_ok, nil, "tampered " .. field)
  expect.eq(forged_err.kind, "bad_signature", "tampered " .. field)
end
ok, err = engine:verify("not a token", "post_result")
expect.eq(err.kind, "malformed")

-- Uses, expiry, revocation.
local once = engine:mint({ role = "observer", max_uses = 1 })
assert(engine:verify(once, "read_trace"))
ok, err = engine:verify(once, "read_trace")
expect.eq(err.kind, "uses_exhausted")
local brief = engine:mint({ role = "observer", ttl = 0 })
ok, err = engine:verify(brief, "read_trace")
expect.eq(err.kind, "expired")
local revocable = engine:mint({ role = "observer" })
assert(engine:revoke(revocable))
ok, err = engine:verify(revocable, "read_trace")
expect.eq(err.kind, "revoked")

-- Another engine: same secret, but no record of this token; another secret: bad signature.
local twin = swarm.engine({ token_secret = "a test secret" })
ok, err = twin:verify(tok, "post_result", "t-1")
expect.eq(err.kind, "unknown_token")
ok, err = swarm.engine({ token_secret = "another secret" }):verify(tok, "post_result", "t-1")
expect.eq(err.kind, "bad_signature")

-- Errors never carry the token.
assert(not string.find(err.message, tok, 1, true))
assert(not string.find(err.message, fields.sig, 1, true))

expect.raises(function() engine:mint({ role = "root" }) end, { "engine:mint", "root" })
expect.raises(function() engine:mint({ role = "worker", colour = "red" }) end, { "unknown field `colour`" })
expect.raises(function() swarm.engine({ state = true }) end, { "bad option `state`" })
