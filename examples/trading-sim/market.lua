-- A simulated market client: prices of a few symbols, each a random walk from its
-- opening price, drawn from a seeded generator of its own (the same SEED gives the
-- same prices on every machine). No network: a real client would fetch quotes here.
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

return market
