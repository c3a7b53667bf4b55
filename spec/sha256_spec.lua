-- SHA-256 against the FIPS 180-4 vectors and against sha256sum.
local sha256 = require "host.sha256"

-- Random bytes from Lua's own generator, seeded so every run tests the same strings.
local function random_bytes(n)
  local t = {}
  for i = 1, n do t[i] = string.char(math.random(0, 255)) end
  return table.concat(t)
end

local sha256sum = require("scripts.process").sha256sum

describe("sha256", function()
  local vectors = {
    { "empty", "", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" },
    { "abc", "abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" },
    { "448 bits", "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
      "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1" },
    { "896 bits", "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmno"
      .. "ijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu",
      "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1" },
    { "one million a", string.rep("a", 1000000),
      "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0" },
  }
  for _, v in ipairs(vectors) do
    it("FIPS vector: " .. v[1], function()
      assert.equal(v[3], sha256.hex(v[2]))
    end)
  end

  it("hex is 64 lowercase hex digits, digest 32 bytes", function()
    assert.matches("^[0-9a-f]+$", sha256.hex("x"))
    assert.equal(64, #sha256.hex("x"))
    assert.equal(32, #sha256.digest("x"))
  end)

  describe("matches sha256sum on random binary strings", function()
    math.randomseed(20240601)
    -- lengths around the padding edges (55/56, 63/64) and several blocks
    for _, n in ipairs({ 1, 3, 55, 56, 57, 63, 64, 65, 119, 120, 128, 1000, 4097, 70001 }) do
      local s = random_bytes(n)
      it(n .. " bytes", function()
        assert.equal(sha256sum(s), sha256.hex(s))
      end)
    end
  end)

  it("feeding in pieces gives the one-shot hash, and digest does not end the hasher", function()
    math.randomseed(7)
    local s = random_bytes(5000)
    local h = sha256.new()
    local pos = 1
    while pos <= #s do
      local n = math.random(0, 150)
      h:update(s:sub(pos, pos + n - 1))
      pos = pos + n
    end
    assert.equal(sha256sum(s), h:hex())
    assert.equal(sha256sum(s), h:hex())
    h:update("more")
    assert.equal(sha256sum(s .. "more"), h:hex())
  end)

  it("raises on a non-string (a caller's bug)", function()
    assert.has_error(function() sha256.hex(42) end, "sha256: string expected, got number")
    assert.has_error(function() sha256.new():update(nil) end)
  end)
end)
