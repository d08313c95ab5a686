-- swarm.http.stream: lines, Server-Sent Events and raw chunks as they arrive; statuses,
-- timeouts and max_bytes over a whole stream; close.
local swarm = require("swarm")
local expect = require("support.expect")
local http = swarm.http
local base = HTTP

-- Lines: `\n` and `\r\n` endings, a blank line, and a last line without a newline, across
-- chunk boundaries.
local s = http.stream({ url = base .. "/lines" })
expect.eq(s.status, 200)
expect.eq(s.headers["content-type"], "text/plain")
local lines = {}
for line in s:lines() do
  lines[#lines + 1] = line
end
expect.json(lines, '["one","two","","three","four"]')
expect.eq(s:read(), nil, "an ended stream reads nil")

-- Server-Sent Events: comments skipped, data lines joined, ids kept, an event without data
-- not dispatched, an unfinished event at the end dropped.
local events = {}
for event in http.stream({ url = base .. "/sse" }):events() do
  events[#events + 1] = event
end
expect.eq(#events, 3)
expect.eq(events[1].event, "greet")
expect.eq(events[1].data, "hello")
expect.eq(events[1].id, nil)
expect.eq(events[2].event, "message")
expect.eq(events[2].data, "line 1\nline 2")
expect.eq(events[2].id, "7")
expect.eq(events[3].data, "no space")
expect.eq(events[3].id, "7", "the last event id stays")

-- read(): the body in chunks, then nil.
local body = {}
local raw = http.stream({ url = base .. "/lines" })
for chunk in raw.read, raw do
  body[#body + 1] = chunk
end
expect.eq(table.concat(body), "one\ntwo\r\n\nthree\nfour")

-- POST streams, with a JSON body (as a model's API takes).
local posted = http.stream({ method = "POST", url = base .. "/echo", json = { q = 1 } })
local text = {}
for chunk in posted.read, posted do
  text[#text + 1] = chunk
end
expect.eq(swarm.json.decode(table.concat(text)).method, "POST")

-- A stream starts reading before the body ends: /hold never ends.
local held = http.stream({ url = base .. "/hold", timeout_ms = 10000 })
local first = held:lines()()
expect.eq(first, "tick")
held:close()
expect.eq(held:read(), nil, "a closed stream reads nil")

-- timeout_ms bounds the whole stream, not each chunk.
local timed = http.stream({ url = base .. "/hold", timeout_ms = 200 })
local ticks = 0
local err = expect.raises(function()
  for _ in timed:lines() do
    ticks = ticks + 1
  end
end, { "timed out after 200 ms" })
expect.eq(err.kind, "http")
expect.eq(err.reason, "timeout")
assert(ticks >= 1, "lines arrived before the deadline")

-- max_bytes bounds everything the stream reads.
local capped = http.stream({ url = base .. "/chunked/10000", max_bytes = 4096 })
local too_large = expect.raises(function()
  for _ in capped.read, capped do
  end
end, { "max_bytes" })
expect.eq(too_large.reason, "too_large")

-- A status of 400 or more raises at once, with the start of the body.
local refused = expect.raises(function() http.stream({ url = base .. "/status/500" }) end, { "500 Internal Server Error" })
expect.eq(refused.status, 500)
expect.eq(refused.body, "status 500")
assert(tostring(http.stream({ url = base .. "/lines" })):find("^swarm.http.Stream%(200 "), "tostring of a stream")
