-- The simulated exchange and its client. The exchange is a watcher of its own in this
-- program: every quarter second it moves each price one step of a random walk from its
-- opening price, drawn from a seeded generator (the same SEED gives the same walk on
-- every machine), and publishes the latest quote over HTTP on a loopback port of the
-- program (its WatcherAPI: GET /watcher/context). The client reads it with hersh.http,
-- as it would read a real price feed; nothing leaves the program: it needs no network.
local hersh = require "hersh"

local market = {}

local Market = {}
Market.__index = Market

market.OPENING = { BTC = 67000, ETH = 3500, SOL = 150 }
market.SYMBOLS = { "BTC", "ETH", "SOL" }
market.VOLATILITY = 0.004 -- standard deviation of one step's relative change

-- A linear congruential generator (Numerical Recipes' constants) on 32 bits.
local function next_uniform(self)
  self.rng = (1664525 * self.rng + 1013904223) & 0xffffffff
  return self.rng / 4294967296
end

-- About a standard normal draw: the sum of 12 uniforms, less 6.
local function next_normal(self)
  local s = 0
  for _ = 1, 12 do s = s + next_uniform(self) end
  return s - 6
end

function market.new(opts)
  opts = opts or {}
  local self = setmetatable({ rng = (opts.seed or 42) & 0xffffffff, ticks = 0, prices = {},
    opening = {}, symbols = market.SYMBOLS }, Market)
  for _, sym in ipairs(self.symbols) do
    self.opening[sym] = market.OPENING[sym]
    self.prices[sym] = market.OPENING[sym]
  end
  return self
end

-- The next quote: {tick = n, time = epoch s, prices = {SYM = price}} (a new table).
function Market:quote()
  self.ticks = self.ticks + 1
  local prices = {}
  for _, sym in ipairs(self.symbols) do
    local p = self.prices[sym] * (1 + market.VOLATILITY * next_normal(self))
    p = math.floor(p * 100 + 0.5) / 100
    self.prices[sym] = p
    prices[sym] = p
  end
  return { tick = self.ticks, time = os.time(), prices = prices }
end

-- Starts the exchange (a watcher stepping every `interval` seconds, serving on a free
-- loopback port); returns the URL of its quotes.
function market.start_exchange(opts)
  local walk = market.new(opts)
  local exchange = assert(hersh.watcher{ id = "exchange", api = { port = 0 } })
  exchange:manage(function(_, ctx)
    if ctx:watch_tick("step", opts.interval or 0.25):triggered() then ctx:set("quote", walk:quote()) end
  end)
  assert(exchange:start())
  return string.format("http://127.0.0.1:%d/watcher/context", exchange:api_port())
end

local Client = {}
Client.__index = Client

-- A client of the exchange at `url`.
function market.client(url)
  return setmetatable({ url = url, symbols = market.SYMBOLS, opening = market.OPENING }, Client)
end

-- The latest quote (nil before the first step), or nil, err. It waits on the exchange:
-- call it in a poll or a reducer, where waiting blocks nothing else.
function Client:quote()
  local res, err = hersh.http.get(self.url, { timeout = 2 })
  if not res then return nil, "exchange: " .. err end
  if res.status ~= 200 then return nil, "exchange: HTTP " .. res.status end
  local doc, bad = res:json()
  if not doc then return nil, "exchange: " .. bad end
  return doc.context.quote
end

return market
