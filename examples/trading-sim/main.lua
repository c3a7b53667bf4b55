-- trading-sim: a trading simulator on simulated prices. The exchange (market.lua) runs
-- in this program and publishes quotes over HTTP on a loopback port; a watch fetches a
-- quote twice a second with hersh.http (the poll waits, the loop does not); each quote
-- moves the moving averages of the book kept in the context and may trade. A tick prints
-- a stats line every 10 seconds. Commands sent to /watcher/message print their answer
-- to stdout, that is into the program's logs: GET /programs/{id}/logs; `live` waits in
-- the reducer on a fresh quote from the exchange.
package.path = "/app/?.lua;" .. package.path
local hersh = require "hersh"
local market = require "market"
local trader = require "trader"
local commands = require "commands"

local SEED = math.tointeger(tonumber(os.getenv("SEED") or "")) or 42
local CASH = 10000

-- The trader first: it gets the WatcherAPI `hersh run` serves (the exchange has its own).
local w = hersh.watcher{ id = "trading-sim" }
local EXCHANGE = market.start_exchange{ seed = SEED }

w:manage(function(msg, ctx)
  local client = ctx:memo("market", function() return market.client(EXCHANGE) end)
  if ctx:trigger().reason == "init" then
    ctx:set("book", trader.new_book(CASH, client.symbols))
    ctx:set("paused", false)
    ctx:print(string.format("Trading simulator: %s, $%d cash, seed %d (send help for the commands)",
      table.concat(client.symbols, " "), CASH, SEED))
  end

  local quote = ctx:watch_call("prices", 0.5, function()
    local q, err = client:quote()
    if err then error(err) end -- the watch's error, logged; trading goes on at the next quote
    return q or hersh.SKIP
  end)
  local stats = ctx:watch_tick("stats", 10)

  if quote:triggered() and quote.value then
    local made
    ctx:update("book", function(book)
      made = trader.on_quote(book, quote.value, ctx:get("paused"))
      return book
    end)
    for _, t in ipairs(made) do ctx:print(trader.describe(t)) end
  end
  if stats:triggered() and stats.value.count > 1 then
    local book = ctx:get("book")
    ctx:print(string.format("Stats: %d quotes, %d trades, value $%.2f", book.quotes, book.trade_count,
      trader.value(book)))
  end
  if msg then
    for _, line in ipairs(commands.handle(ctx, msg.content)) do ctx:print(line) end
  end
end)

w:cleanup(function(ctx)
  local book = ctx:get("book")
  if book then ctx:print(string.format("Cleanup: final value $%.2f", trader.value(book))) end
end)

assert(w:start())
