-- SHA-256 (FIPS 180-4) in pure Lua 5.4. Words are 32-bit values kept in 64-bit
-- integers; sums may carry garbage above bit 31, which only the masked results
-- (a, e and the schedule words, the ones later shifted right) must shed.
local sha256 = {}

local unpack, pack, rep, format = string.unpack, string.pack, string.rep, string.format

local M = 0xffffffff

local K = {
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
}

local H0 = {
  0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
}

local BLOCK = ">" .. rep("I4", 16)

-- Runs `count` 64-byte blocks of s, starting at byte pos, into the state H.
local function compress(H, s, pos, count)
  local w = {}
  local h1, h2, h3, h4, h5, h6, h7, h8 = H[1], H[2], H[3], H[4], H[5], H[6], H[7], H[8]
  for _ = 1, count do
    w[1], w[2], w[3], w[4], w[5], w[6], w[7], w[8],
    w[9], w[10], w[11], w[12], w[13], w[14], w[15], w[16] = unpack(BLOCK, s, pos)
    pos = pos + 64
    for i = 17, 64 do
      local x, y = w[i - 15], w[i - 2]
      local s0 = ((x >> 7) | (x << 25)) ~ ((x >> 18) | (x << 14)) ~ (x >> 3)
      local s1 = ((y >> 17) | (y << 15)) ~ ((y >> 19) | (y << 13)) ~ (y >> 10)
      w[i] = (w[i - 16] + s0 + w[i - 7] + s1) & M
    end
    local a, b, c, d, e, f, g, h = h1, h2, h3, h4, h5, h6, h7, h8
    for i = 1, 64 do
      local S1 = ((e >> 6) | (e << 26)) ~ ((e >> 11) | (e << 21)) ~ ((e >> 25) | (e << 7))
      local ch = (e & f) ~ (~e & g)
      local t1 = h + S1 + ch + K[i] + w[i]
      local S0 = ((a >> 2) | (a << 30)) ~ ((a >> 13) | (a << 19)) ~ ((a >> 22) | (a << 10))
      local maj = (a & b) ~ (a & c) ~ (b & c)
      h, g, f = g, f, e
      e = (d + t1) & M
      d, c, b = c, b, a
      a = (t1 + S0 + maj) & M
    end
    h1, h2, h3, h4 = (h1 + a) & M, (h2 + b) & M, (h3 + c) & M, (h4 + d) & M
    h5, h6, h7, h8 = (h5 + e) & M, (h6 + f) & M, (h7 + g) & M, (h8 + h) & M
  end
  H[1], H[2], H[3], H[4], H[5], H[6], H[7], H[8] = h1, h2, h3, h4, h5, h6, h7, h8
end

local Hasher = {}
Hasher.__index = Hasher

-- Feeds more bytes; returns the hasher so calls chain. Only whole blocks are
-- hashed; the tail waits in buf for the next call.
function Hasher:update(s)
  if type(s) ~= "string" then
    error("sha256: string expected, got " .. type(s), 2)
  end
  local n = #s
  self.len = self.len + n
  local pos = 1
  local buf = self.buf
  if #buf > 0 then
    local need = 64 - #buf
    if n < need then
      self.buf = buf .. s
      return self
    end
    compress(self.h, buf .. s:sub(1, need), 1, 1)
    pos = need + 1
  end
  local count = (n - pos + 1) // 64
  if count > 0 then
    compress(self.h, s, pos, count)
    pos = pos + count * 64
  end
  self.buf = s:sub(pos)
  return self
end

-- The 32-byte digest of everything fed so far. The hasher is left as it was, so
-- it can keep taking input.
function Hasher:digest()
  local h = { table.unpack(self.h) }
  local buf = self.buf
  -- 0x80, zeros up to 56 mod 64, then the length in bits, big-endian
  local zeros = (55 - #buf) % 64
  local tail = buf .. "\128" .. rep("\0", zeros) .. pack(">I8", self.len * 8)
  compress(h, tail, 1, #tail // 64)
  return pack(">I4I4I4I4I4I4I4I4", h[1], h[2], h[3], h[4], h[5], h[6], h[7], h[8])
end

function Hasher:hex()
  return (self:digest():gsub(".", function(c) return format("%02x", c:byte()) end))
end

function sha256.new()
  return setmetatable({ h = { table.unpack(H0) }, buf = "", len = 0 }, Hasher)
end

function sha256.digest(s)
  return sha256.new():update(s):digest()
end

-- 64 lowercase hex digits.
function sha256.hex(s)
  return sha256.new():update(s):hex()
end

return sha256
