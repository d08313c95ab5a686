-- TLS is rustls with the Mozilla roots: a server whose certificate is self-signed is refused
-- (the runner sets TLS to such a server's https URL), and the error says why.
local swarm = require("swarm")
local expect = require("support.expect")

local err = expect.raises(function() swarm.http.get(TLS .. "/secret?token=t") end, { "TLS", "certificate" })
expect.eq(err.kind, "http")
expect.eq(err.reason, "tls")
expect.eq(err.status, nil)
assert(not err.message:find("token=t", 1, true), err.message)
-- The same refusal for a stream.
local streamed = expect.raises(function() swarm.http.stream({ url = TLS }) end, { "certificate" })
expect.eq(streamed.reason, "tls")
