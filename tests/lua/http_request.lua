-- swarm.http.request / get / post against the local test server (HTTP, a global the runner
-- sets): bodies, JSON both ways, headers, query, statuses, redirects, limits and every error.
local swarm = require("swarm")
local expect = require("support.expect")
local http = swarm.http
local base = HTTP

-- GET, with a query and headers; the echo shows what arrived.
local r = http.get(base .. "/echo?a=1", { headers = { ["X-Trace"] = "t-1", Accept = "application/json" }, query = { b = 2 } })
expect.eq(r.status, 200)
expect.eq(r.headers["content-type"], "application/json")
expect.eq(r.json.method, "GET")
expect.eq(r.json.query, "a=1&b=2")
expect.eq(r.json.headers["x-trace"], "t-1")
assert(r.json.headers["user-agent"]:find("^swarm/"), "a user agent naming swarm")
expect.eq(r.url, base .. "/echo")
assert(type(r.body) == "string" and r.body:find('"method":"GET"', 1, true), "the raw body is kept")

-- POST with `json`: encoded, and the content type set; with `body`: sent as given.
local p = http.post(base .. "/echo", { json = { n = 1, list = swarm.array({}), none = swarm.null } })
expect.eq(p.json.method, "POST")
expect.eq(p.json.headers["content-type"], "application/json")
expect.eq(p.json.body, '{"list":[],"n":1,"none":null}')
local raw = http.request({ method = "put", url = base .. "/echo", body = "a\0b", headers = { ["content-type"] = "text/x" } })
expect.eq(raw.json.method, "PUT")
expect.eq(raw.json.body, "a\0b")
expect.eq(raw.json.headers["content-type"], "text/x")

-- A JSON content type over a body that is not JSON: the body, no `json`.
local broken = http.get(base .. "/json_broken")
expect.eq(broken.json, nil)
expect.eq(broken.body, "{not json")

-- A status of 400 or more raises kind "http" with the status, headers and body.
local err = expect.raises(function() http.get(base .. "/status/429?retry_after=3") end, { "429 Too Many Requests" })
expect.eq(err.kind, "http")
expect.eq(err.reason, "status")
expect.eq(err.status, 429)
expect.eq(err.headers["retry-after"], "3")
expect.eq(err.body, "status 429")
expect.eq(err.file, "tests/lua/http_request.lua")
assert(tostring(err):find("^tests/lua/http_request.lua:%d+: http: GET "), tostring(err))
assert(not err.message:find("retry_after", 1, true), "a message shows no query: " .. err.message)
local e500 = expect.raises(function() http.post(base .. "/status/503", { body = "x" }) end, { "POST", "503" })
expect.eq(e500.status, 503)
-- Statuses under 400 are answers, not errors.
expect.eq(http.get(base .. "/status/204").status, 204)

-- A refused connection.
local refused = expect.raises(function() http.get("http://127.0.0.1:1/x?token=secret") end, { "cannot connect" })
expect.eq(refused.reason, "connect")
expect.eq(refused.status, nil)
assert(not refused.message:find("secret", 1, true), refused.message)

-- max_bytes: a declared length past it, and a chunked body past it.
expect.eq(#http.get(base .. "/bytes/1000", { max_bytes = 1000 }).body, 1000)
local big = expect.raises(function() http.get(base .. "/bytes/1001", { max_bytes = 1000 }) end, { "max_bytes" })
expect.eq(big.reason, "too_large")
local chunked = expect.raises(function() http.get(base .. "/chunked/5000", { max_bytes = 4096 }) end, { "max_bytes" })
expect.eq(chunked.reason, "too_large")
expect.eq(#http.get(base .. "/chunked/5000").body, 5000)

-- timeout_ms bounds the whole exchange.
local slow = expect.raises(function() http.get(base .. "/slow/5000", { timeout_ms = 50 }) end, { "timed out after 50 ms" })
expect.eq(slow.reason, "timeout")
expect.eq(http.get(base .. "/slow/1", { timeout_ms = 5000 }).body, "done")

-- Redirects: followed up to `redirects` (10 by default), refused past it.
expect.eq(http.get(base .. "/redirect/3").json.path, "/echo")
expect.eq(http.get(base .. "/redirect/9").url, base .. "/echo")
local loop = expect.raises(function() http.get(base .. "/loop") end, { "stopped after 10 redirects" })
expect.eq(loop.reason, "redirect")
expect.eq(loop.status, 302)
expect.raises(function() http.get(base .. "/redirect/3", { redirects = 2 }) end, { "stopped after 2 redirects" })
local unfollowed = http.get(base .. "/redirect/3", { redirects = 0 })
expect.eq(unfollowed.status, 302)
expect.eq(unfollowed.headers.location, "/redirect/2")
-- A 303 after a POST is a GET without the body; a relative location resolves.
local other = http.post(base .. "/see_other", { body = "payload" })
expect.eq(other.json.method, "GET")
expect.eq(other.json.body, "")
expect.eq(http.get(base .. "/relative").json.path, "/echo")
-- A 307 keeps method and body; to another origin it drops the credentials.
local offsite = http.post(base .. "/offsite", {
  body = "kept",
  headers = { Authorization = "Bearer sk-do-not-forward", ["x-api-key"] = "k", ["x-other"] = "stays" },
})
expect.eq(offsite.json.method, "POST")
expect.eq(offsite.json.body, "kept")
expect.eq(offsite.json.headers["host"]:match("^localhost:") ~= nil, true, "the redirect went to localhost")
expect.eq(offsite.json.headers.authorization, nil)
expect.eq(offsite.json.headers["x-api-key"], nil)
expect.eq(offsite.json.headers["x-other"], "stays")
-- Same origin keeps them.
local same = http.get(base .. "/redirect/1", { headers = { Authorization = "Bearer t" } })
expect.eq(same.json.headers.authorization, "Bearer t")

-- Calls the script got wrong: kind invalid_argument, naming the option.
local function wrong(fn, needles)
  local e = expect.raises(fn, needles)
  expect.eq(e.kind, "invalid_argument")
end
wrong(function() http.request({ url = base, bogus = 1 }) end, { "swarm.http.request", "unknown option `bogus`" })
wrong(function() http.request({}) end, { "`url` is required" })
wrong(function() http.get(base, { method = "POST" }) end, { "swarm.http.get", "unknown option `method`" })
wrong(function() http.get(42) end, { "expects a URL" })
wrong(function() http.request({ url = base, body = "a", json = {} }) end, { "not both" })
wrong(function() http.request({ url = base, body = {} }) end, { "`body` must be a string" })
wrong(function() http.request({ url = base, timeout_ms = 0 }) end, { "`timeout_ms` must be a whole number" })
wrong(function() http.request({ url = base, redirects = 11 }) end, { "`redirects` must be a whole number from 0 to 10" })
wrong(function() http.request({ url = base, method = "NOT A METHOD" }) end, { "not an HTTP method" })
wrong(function() http.request({ url = base, headers = { ["bad name"] = "x" } }) end, { "not a header name" })
local secret_header = expect.raises(function()
  http.request({ url = base, headers = { Authorization = "Bearer sk-\n-line" } })
end, { "the value of 'Authorization' is not a header value" })
assert(not secret_header.message:find("sk-", 1, true), "a bad header value is not repeated")
-- A URL that is not one, or not http(s), is an http failure of kind request.
local notaurl = expect.raises(function() http.get("not a url?key=s") end, { "not a URL" })
expect.eq(notaurl.reason, "request")
assert(not notaurl.message:find("key=s", 1, true), notaurl.message)
expect.raises(function() http.get("ftp://127.0.0.1/x") end, { "`ftp:` URLs are not supported" })

-- A sandboxed script has no swarm.http (nor swarm): only a bridge reaches the network.
swarm.bridge("fetch_status", function(url) return http.get(url).status end)
local bp = swarm.blueprint({
  id = "sandboxed_http",
  agents = {
    probe = { kind = "lua", spec = { source = "return { swarm = type(swarm), require = type(require) }" } },
    bridged = { kind = "lua", spec = { source = "return host.fetch_status(_CTX.url)" } },
  },
  flow = swarm.flow.seq({
    swarm.flow.step({ agent = "probe", out = "$.probe" }),
    swarm.flow.step({ agent = "bridged", input = swarm.flow.p("$"), out = "$.status" }),
  }),
})
local out = swarm.run(bp, { url = base .. "/echo" })
expect.eq(out.probe.swarm, "nil")
expect.eq(out.probe.require, "nil")
expect.eq(out.status, 200)

-- Layers call swarm.http too: a `before` hook fetches a hint the agent then reads.
swarm.layer("fetch_hint", {
  before = function(ctx)
    ctx.runtime.hint = http.get(base .. "/echo", { query = { hint = "from-layer" } }).json.query
  end,
})
local layered = swarm.blueprint({
  id = "layered_http",
  layers = { "fetch_hint" },
  agents = { read_hint = function(_, task) return task.runtime.hint end },
  flow = swarm.flow.step({ agent = "read_hint", out = "$.hint" }),
})
expect.eq(swarm.run(layered, {}).hint, "hint=from-layer")
