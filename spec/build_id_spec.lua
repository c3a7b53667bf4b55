-- The build id: same payload, same id; any change, another id.
local build_id = require "host.build_id"
local sha256sum = require("scripts.process").sha256sum

local DF = "FROM hersh\nCOPY app.lua /app/\nCMD [\"hersh\", \"run\", \"/app/app.lua\"]\n"
local FILES = { ["app.lua"] = "print('hi')\n", ["lib/util.lua"] = "return {}\n", ["z"] = "" }

describe("build_id", function()
  it("is build- and 12 lowercase hex digits", function()
    assert.matches("^build%-[0-9a-f]+$", build_id.compute(DF, FILES))
    assert.equal(#"build-" + 12, #build_id.compute(DF, FILES))
  end)

  it("writes the encoding down: D, then F per file in byte order, lengths prefixed", function()
    local enc = build_id.encoding("FROM scratch", { b = "22", ["B"] = "", a = "1" })
    assert.equal("D12:FROM scratch" .. "F1:B0:" .. "F1:a1:1" .. "F1:b2:22", enc)
  end)

  -- Each payload next to its encoding, written out by hand as docs/dockerfile.md states
  -- it; the expected id is the SHA-256 of those bytes from coreutils' sha256sum, so
  -- neither host.sha256 nor build_id.encoding decides what the answer should be.
  local VECTORS = {
    { "FROM hersh, no files", "FROM hersh", {}, "D10:FROM hersh" },
    { "the Dockerfile and three files (a folder, an empty one)", DF, FILES,
      "D67:" .. DF .. "F7:app.lua12:print('hi')\n" .. "F12:lib/util.lua10:return {}\n" .. "F1:z0:" },
    { "names sorted by bytes: upper case first, '/' after '-' and before letters",
      "FROM scratch", { b = "2", B = "1", ["a/b"] = "3", ["a-b"] = "4" },
      "D12:FROM scratch" .. "F1:B1:1" .. "F3:a-b1:4" .. "F3:a/b1:3" .. "F1:b1:2" },
    { "NUL bytes, a multi-byte name, lengths of more than one digit",
      "", { ["\xc3\xa9t\xc3\xa9.txt"] = "a\0b", big = string.rep("x", 1000) },
      "D0:" .. "F3:big1000:" .. string.rep("x", 1000) .. "F9:\xc3\xa9t\xc3\xa9.txt3:a\0b" },
  }

  for _, v in ipairs(VECTORS) do
    it("is build- and the first 12 hex digits of sha256sum of the written-out encoding: " .. v[1], function()
      assert.equal("build-" .. sha256sum(v[4]):sub(1, 12), build_id.compute(v[2], v[3]))
      assert.equal(v[4], build_id.encoding(v[2], v[3]))
    end)
  end

  it("has the value docs/dockerfile.md gives for FROM hersh with no files, whatever the files argument", function()
    local doc = assert(io.open("docs/dockerfile.md")):read("a")
    assert.truthy(doc:find('`FROM hersh` with no files is `sha256("D10:FROM hersh")`', 1, true),
      "docs/dockerfile.md no longer states the example")
    assert.truthy(doc:find('"F" .. #path .. ":" .. path .. #content .. ":" .. content', 1, true),
      "docs/dockerfile.md no longer states the encoding of a file")
    -- printf 'D10:FROM hersh' | sha256sum: 14e0af718d5af255ceebaf0cd83e590d3dba0673...
    local want = "build-14e0af718d5a"
    assert.equal(want, "build-" .. sha256sum("D10:FROM hersh"):sub(1, 12))
    assert.equal(want, build_id.compute("FROM hersh"))
    assert.equal(want, build_id.compute("FROM hersh", {}))
  end)

  it("gives one id for equal payloads held in different tables", function()
    local copy = {}
    for k, v in pairs(FILES) do copy[k] = v end
    local want = "build-" .. sha256sum(VECTORS[2][4]):sub(1, 12)
    assert.equal(want, build_id.compute(DF, copy))
  end)

  it("does not depend on the order the table was filled in", function()
    local names = {}
    for i = 1, 40 do names[i] = string.format("f%02d/%s.lua", i % 7, string.char(96 + i % 26)) end
    local forward, backward = {}, {}
    for i = 1, #names do forward[names[i]] = "content " .. i end
    for i = #names, 1, -1 do backward[names[i]] = "content " .. i end
    assert.equal(build_id.compute(DF, forward), build_id.compute(DF, backward))
  end)

  describe("changes with", function()
    local base = build_id.compute(DF, FILES)
    local function with(path, content)
      local t = {}
      for k, v in pairs(FILES) do t[k] = v end
      t[path] = content
      return t
    end
    local cases = {
      { "any byte of the Dockerfile", function()
        local out = {}
        for i = 1, #DF do
          local b = DF:byte(i)
          out[#out + 1] = build_id.compute(DF:sub(1, i - 1) .. string.char((b + 1) % 256) .. DF:sub(i + 1), FILES)
        end
        return out
      end },
      { "a trailing newline in the Dockerfile", function() return { build_id.compute(DF .. "\n", FILES) } end },
      { "a file's content", function() return { build_id.compute(DF, with("app.lua", "print('hI')\n")) } end },
      { "an empty file's content", function() return { build_id.compute(DF, with("z", "\0")) } end },
      { "a file's name", function()
        local t = with("app.lua", nil)
        t["App.lua"] = FILES["app.lua"]
        return { build_id.compute(DF, t) }
      end },
      { "an added empty file", function() return { build_id.compute(DF, with("new", "")) } end },
      { "a removed file", function() return { build_id.compute(DF, with("z", nil)) } end },
      { "a file moved into a folder", function()
        local t = with("app.lua", nil)
        t["src/app.lua"] = FILES["app.lua"]
        return { build_id.compute(DF, t) }
      end },
    }
    for _, c in ipairs(cases) do
      it(c[1], function()
        for _, id in ipairs(c[2]()) do assert.not_equal(base, id) end
      end)
    end
  end)

  describe("has no ambiguous splits", function()
    local pairs_of_payloads = {
      { "name/content", { ab = "c" }, { a = "bc" } },
      { "content/next name", { a = "b", c = "d" }, { a = "bc", [""] = "d" } },
      { "Dockerfile/file", { ["ile"] = "" }, { } , "FROM hersh\nF", "FROM hersh\nF3:ile0:" },
      { "digits in names", { ["1"] = "2:3" }, { ["1:2"] = "3" } },
      { "one file or two", { a = "F1:b0:" }, { a = "", b = "" } },
    }
    for _, c in ipairs(pairs_of_payloads) do
      it(c[1], function()
        local d1, d2 = c[4] or DF, c[5] or DF
        assert.not_equal(build_id.encoding(d1, c[2]), build_id.encoding(d2, c[3]))
        assert.not_equal(build_id.compute(d1, c[2]), build_id.compute(d2, c[3]))
      end)
    end

    it("the Dockerfile and a file", function()
      assert.not_equal(build_id.compute("FROM hersh", { x = "" }), build_id.compute("FROM hershx", {}))
    end)
  end)

  it("sorts paths by bytes, whatever the locale", function()
    local enc = build_id.encoding("", { ["\200"] = "", ["a/b"] = "", ["a-b"] = "", ab = "", Z = "" })
    assert.equal("D0:F1:Z0:F3:a-b0:F3:a/b0:F2:ab0:F1:\2000:", enc)
  end)

  it("raises on wrong types (a caller's bug)", function()
    assert.has_error(function() build_id.compute(nil, {}) end)
    assert.has_error(function() build_id.compute(DF, "files") end)
    assert.has_error(function() build_id.compute(DF, { a = 1 }) end)
    assert.has_error(function() build_id.compute(DF, { [1] = "x" }) end)
  end)
end)
