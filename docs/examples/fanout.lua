-- input: {"words": ["kiwi", "fig", "banana"]}
-- expect-json: {"lengths": [4, 3, 6], "first_ok": "FIG", "fastest": "fig", "settled": [{"status": "fulfilled", "value": "KIWI"}, {"status": "rejected", "reason": {"kind": "failed", "step": "picky"}}, {"status": "fulfilled", "value": "BANANA"}]}
--
-- `fanout`: one isolated lane per item, the item written at `bind` in the lane's copy of the
-- ctx; the lanes' results are combined by `join` and written at `out`.
local swarm = require("swarm")
local F = swarm.flow

return swarm.blueprint({
  id = "fanout",
  agents = {
    measure = function(word)
      return #word
    end,
    -- Sleeps as many tens of milliseconds as the word has letters, so shorter words finish first.
    slow_upper = function(word)
      swarm.sleep(10 * #word)
      return word:upper()
    end,
    -- Refuses words with an "f".
    picky = function(word)
      if word:find("f") then
        error("no f, please")
      end
      return word:upper()
    end,
  },
  flow = F.seq({
    -- all (the default): every lane's result in item order; `collect` picks one value per lane
    -- instead of its whole ctx. Two lanes at a time.
    F.fanout({
      items = F.p("$.words"),
      bind = "$.word",
      body = F.step({ agent = "measure", input = F.p("$.word"), out = "$.len" }),
      collect = "$.len",
      out = "$.lengths",
      max_concurrency = 2,
    }),
    -- any: the first lane to succeed (a lane that fails is not enough to fail the fanout).
    F.fanout({
      items = { "kiwi", "fig" },
      body = F.step({ agent = "slow_upper", input = F.p("$.item"), out = "$.up" }),
      collect = "$.up",
      join = "any",
      out = "$.first_ok",
    }),
    -- race: the first lane to settle, success or failure; the others are cancelled.
    F.fanout({
      items = F.p("$.words"),
      bind = "$.word",
      body = F.step({ agent = "slow_upper", input = F.p("$.word"), out = "$.up" }),
      collect = "$.word",
      join = "race",
      out = "$.fastest",
    }),
    -- all_settled: every lane, as {status = "fulfilled", value} or {status = "rejected", reason}.
    F.fanout({
      items = F.p("$.words"),
      bind = "$.word",
      body = F.step({ agent = "picky", input = F.p("$.word"), out = "$.up" }),
      collect = "$.up",
      join = "all_settled",
      out = "$.settled",
    }),
  }),
})
