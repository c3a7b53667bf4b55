-- The commands the simulator answers on /watcher/message. Each handler gets the
-- reducer's ctx and returns the lines to print (they land in the program's logs).
local trader = require "trader"

local commands = {}

local RULE = string.rep("=", 64)

local function money(x)
  return string.format("$%.2f", x)
end

local function percent(now, before)
  return string.format("%+.2f%%", (now / before - 1) * 100)
end

local function framed(title, lines)
  local out = { RULE, " " .. title, RULE }
  for _, l in ipairs(lines) do out[#out + 1] = l end
  out[#out + 1] = RULE
  return out
end

local function no_quote_yet(book)
  return not book.prices
end

local handlers = {}

function handlers.help()
  return framed("Commands", {
    "status (s)      the simulator at a glance",
    "portfolio (p)   positions, cash and value",
    "trades (t)      the last 10 trades",
    "prices          the latest quote",
    "live (l)        a fresh quote, fetched from the exchange now",
    "pause, resume   stop and restart trading (prices go on)",
    "rebalance (r)   equal weights for every symbol and the cash",
  })
end

function handlers.status(ctx)
  local book = ctx:get("book")
  local value = trader.value(book)
  return framed("Status", {
    string.format("Trading:   %s", ctx:get("paused") and "paused" or "active"),
    string.format("Quotes:    %d", book.quotes),
    string.format("Trades:    %d", book.trade_count),
    string.format("Value:     %s (%s since the start)", money(value), percent(value, book.start_value)),
    string.format("Cash:      %s", money(book.cash)),
  })
end

function handlers.portfolio(ctx)
  local book = ctx:get("book")
  local lines = { string.format("%-6s %14s %14s %14s", "Symbol", "Amount", "Price", "Value") }
  for _, sym in ipairs(book.symbols) do
    local price = (book.prices or {})[sym] or 0
    lines[#lines + 1] = string.format("%-6s %14.6f %14s %14s", sym, book.positions[sym], money(price),
      money(book.positions[sym] * price))
  end
  lines[#lines + 1] = string.format("%-6s %14s %14s %14s", "Cash", "", "", money(book.cash))
  lines[#lines + 1] = string.format("%-6s %14s %14s %14s", "Total", "", "", money(trader.value(book)))
  return framed("Portfolio", lines)
end

function handlers.trades(ctx)
  local book = ctx:get("book")
  local lines = {}
  for i = math.max(1, #book.trades - 9), #book.trades do
    local t = book.trades[i]
    lines[#lines + 1] = string.format("#%-4d %s %s", t.id, os.date("!%H:%M:%S", t.time), trader.describe(t))
  end
  local title = string.format("Trades (last %d of %d)", #lines, book.trade_count)
  if #lines == 0 then lines[1] = "no trades yet" end
  return framed(title, lines)
end

function handlers.prices(ctx)
  local book, market = ctx:get("book"), ctx:memo("market", function() error("no market") end)
  if no_quote_yet(book) then return framed("Prices", { "no quote yet" }) end
  local lines = {}
  for _, sym in ipairs(book.symbols) do
    lines[#lines + 1] = string.format("%-6s %14s  %s since the open", sym, money(book.prices[sym]),
      percent(book.prices[sym], market.opening[sym]))
  end
  return framed(string.format("Prices (quote %d)", book.quotes), lines)
end

-- The reducer waits here on the exchange (hersh.http): polls, ticks and the WatcherAPI
-- go on meanwhile, and messages sent now are handled after this one.
function handlers.live(ctx)
  local client = ctx:memo("market", function() error("no market") end)
  local quote, err = client:quote()
  if not quote then return { "Live quote: " .. (err or "no quote yet") } end
  local lines = {}
  for _, sym in ipairs(client.symbols) do
    lines[#lines + 1] = string.format("%-6s %14s", sym, money(quote.prices[sym]))
  end
  return framed(string.format("Live quote (exchange step %d)", quote.tick), lines)
end

function handlers.pause(ctx)
  ctx:set("paused", true)
  return { "Trading paused: prices go on, no trades until resume" }
end

function handlers.resume(ctx)
  ctx:set("paused", false)
  return { "Trading resumed" }
end

function handlers.rebalance(ctx)
  local made
  ctx:update("book", function(book)
    made = trader.rebalance(book, math.floor(ctx:now())) -- the run's recorded time: replays
    return book
  end)
  local lines = {}
  for _, t in ipairs(made) do lines[#lines + 1] = trader.describe(t) end
  if #lines == 0 then lines[1] = no_quote_yet(ctx:get("book")) and "no quote yet" or "already balanced" end
  return framed("Rebalance", lines)
end

commands.ALIASES = { s = "status", p = "portfolio", t = "trades", price = "prices", r = "rebalance",
  l = "live", h = "help", ["?"] = "help" }

-- The lines answering `text` (a command name or alias, blanks around it ignored).
function commands.handle(ctx, text)
  local name = text:match("^%s*(.-)%s*$"):lower()
  name = commands.ALIASES[name] or name
  local handler = handlers[name]
  if not handler then return { "Unknown command: " .. text .. " (try help)" } end
  return handler(ctx)
end

return commands
