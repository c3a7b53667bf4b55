-- The trading book and its strategy, as plain data and functions (the book lives in
-- the watcher's context, so /watcher/context shows it).
--
-- Strategy: a moving-average crossover per symbol. When the short average crosses
-- above the long one (a golden cross) it buys for TRADE_SIZE dollars; when it crosses
-- below (a death cross) it sells the whole position.
local trader = {}

trader.SHORT, trader.LONG = 3, 8 -- moving-average windows, in quotes
trader.TRADE_SIZE = 1000         -- dollars per buy
trader.MAX_TRADES = 100          -- trades the book remembers

function trader.new_book(cash, symbols)
  local book = { cash = cash, start_value = cash, positions = {}, history = {}, trades = {},
    trade_count = 0, last_cross = {}, quotes = 0, symbols = symbols }
  for _, sym in ipairs(symbols) do
    book.positions[sym] = 0
    book.history[sym] = {}
  end
  return book
end

local function average(list, n)
  if #list < n then return nil end
  local s = 0
  for i = #list - n + 1, #list do s = s + list[i] end
  return s / n
end

local function record(book, trade)
  book.trade_count = book.trade_count + 1
  trade.id = book.trade_count
  book.trades[#book.trades + 1] = trade
  if #book.trades > trader.MAX_TRADES then table.remove(book.trades, 1) end
  return trade
end

local function buy(book, sym, price, dollars, reason, time)
  dollars = math.min(dollars, book.cash)
  if dollars < 0.01 then return nil end
  local amount = dollars / price
  book.cash = book.cash - dollars
  book.positions[sym] = book.positions[sym] + amount
  return record(book, { side = "BUY", symbol = sym, price = price, amount = amount, value = dollars,
    reason = reason, time = time })
end

local function sell(book, sym, price, amount, reason, time)
  amount = math.min(amount, book.positions[sym])
  if amount * price < 0.01 then return nil end
  book.positions[sym] = book.positions[sym] - amount
  book.cash = book.cash + amount * price
  return record(book, { side = "SELL", symbol = sym, price = price, amount = amount,
    value = amount * price, reason = reason, time = time })
end

-- A new quote: the averages move; unless paused, a crossover trades. Returns the
-- trades made (a list, maybe empty).
function trader.on_quote(book, quote, paused)
  local made = {}
  book.quotes = book.quotes + 1
  book.prices = quote.prices
  for _, sym in ipairs(book.symbols) do
    local h = book.history[sym]
    h[#h + 1] = quote.prices[sym]
    if #h > trader.LONG then table.remove(h, 1) end
    local short, long = average(h, trader.SHORT), average(h, trader.LONG)
    if short and long then
      local side = short > long and "above" or "below"
      local crossed = book.last_cross[sym] and book.last_cross[sym] ~= side
      book.last_cross[sym] = side
      if crossed and not paused then
        local t
        if side == "above" then
          t = buy(book, sym, quote.prices[sym], trader.TRADE_SIZE, "golden_cross", quote.time)
        else
          t = sell(book, sym, quote.prices[sym], book.positions[sym], "death_cross", quote.time)
        end
        made[#made + 1] = t
      end
    end
  end
  return made
end

function trader.value(book)
  local v = book.cash
  for _, sym in ipairs(book.symbols) do
    v = v + book.positions[sym] * ((book.prices or {})[sym] or 0)
  end
  return v
end

-- Equal weights: each symbol and the cash get the same share of the value.
function trader.rebalance(book, time)
  local made = {}
  if not book.prices then return made end
  local target = trader.value(book) / (#book.symbols + 1)
  for _, sym in ipairs(book.symbols) do -- sells first, so the buys have the cash
    local price = book.prices[sym]
    local excess = book.positions[sym] * price - target
    if excess > 0.01 then made[#made + 1] = sell(book, sym, price, excess / price, "rebalance", time) end
  end
  for _, sym in ipairs(book.symbols) do
    local price = book.prices[sym]
    local missing = target - book.positions[sym] * price
    if missing > 0.01 then made[#made + 1] = buy(book, sym, price, missing, "rebalance", time) end
  end
  return made
end

function trader.describe(t)
  return string.format("%s %s %.6f @ $%.2f = $%.2f (%s)", t.side, t.symbol, t.amount, t.price, t.value, t.reason)
end

return trader
