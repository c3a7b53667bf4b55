-- Path checks for uploaded files, COPY sources and image paths.
local paths = require "host.paths"

describe("paths.check_relative", function()
  local accepted = {
    { "app.lua", "app.lua" },
    { "lib/util.lua", "lib/util.lua" },
    { "./app.lua", "app.lua" },
    { "a//b///c", "a/b/c" },
    { "a/./b/./c", "a/b/c" },
    { ".hidden", ".hidden" },
    { "...", "..." },
    { "a..b/c..", "a..b/c.." },
    { "with space/ü.lua", "with space/ü.lua" },
    { string.rep("x", 255), string.rep("x", 255) },
    { string.rep("d/", 2047) .. "f", string.rep("d/", 2047) .. "f" },
  }
  for _, c in ipairs(accepted) do
    it("accepts " .. paths.quote(c[1]), function()
      assert.equal(c[2], paths.check_relative(c[1]))
    end)
  end

  local refused = {
    { "", "empty path" },
    { "/etc/passwd", "absolute path" },
    { "//x", "absolute path" },
    { "..", "'..' is not allowed" },
    { "../x", "'..' is not allowed" },
    { "a/../../x", "'..' is not allowed" },
    { "a/..", "'..' is not allowed" },
    { "a\0b", "NUL byte" },
    { "a\nb", "control character" },
    { "a\tb", "control character" },
    { "a\127b", "control character" },
    { "a\\b", "backslash" },
    { "..\\x", "backslash" },
    { "dir/", "cannot end with /" },
    { "dir/.", "cannot end with /" },
    { ".", "cannot end with /" },
    { "./", "cannot end with /" },
    { string.rep("x", 256), "longer than 255 bytes" },
    { "a/" .. string.rep("x", 256) .. "/b", "longer than 255 bytes" },
    { string.rep("d/", 2048) .. "f", "longer than 4096 bytes" },
  }
  for _, c in ipairs(refused) do
    it("refuses " .. paths.quote(c[1]) .. ": " .. c[2], function()
      local p, err = paths.check_relative(c[1])
      assert.is_nil(p)
      assert.is_truthy(err:find(c[2], 1, true), err)
    end)
  end

  local dirs = {
    { ".", "." }, { "./", "." }, { ".//./", "." }, { "src/", "src" }, { "src/.", "src" },
    { "a/b/", "a/b" },
  }
  for _, c in ipairs(dirs) do
    it("with dir, accepts " .. paths.quote(c[1]), function()
      assert.equal(c[2], paths.check_relative(c[1], { dir = true }))
    end)
  end

  it("with dir, still refuses .., absolute and empty paths", function()
    for _, p in ipairs({ "../", "/src/", "", "a/../" }) do
      assert.is_nil(paths.check_relative(p, { dir = true }))
    end
  end)

  it("raises on a non-string (a caller's bug)", function()
    assert.has_error(function() paths.check_relative(nil) end)
    assert.has_error(function() paths.check_relative(1) end)
  end)
end)

describe("paths.resolve", function()
  local cases = {
    { "/app", "/", "/app" },
    { "/app/", "/", "/app" },
    { "app", "/", "/app" },
    { "lib", "/app", "/app/lib" },
    { "./lib/./x/", "/app", "/app/lib/x" },
    { ".", "/app", "/app" },
    { "/", "/app", "/" },
    { "//opt//x", "/app", "/opt/x" },
  }
  for _, c in ipairs(cases) do
    it(paths.quote(c[1]) .. " from " .. c[2] .. " is " .. c[3], function()
      assert.equal(c[3], paths.resolve(c[1], c[2]))
    end)
  end

  local refused = {
    { "..", "'..'" }, { "/app/../etc", "'..'" }, { "", "empty path" }, { "a\0", "NUL" },
    { "a\\b", "backslash" }, { "/" .. string.rep("x", 256), "255" },
  }
  for _, c in ipairs(refused) do
    it("refuses " .. paths.quote(c[1]), function()
      local p, err = paths.resolve(c[1], "/app")
      assert.is_nil(p)
      assert.is_truthy(err:find(c[2], 1, true), err)
    end)
  end

  it("counts the base in the 4096-byte limit", function()
    local base = "/" .. string.rep("d/", 2000) .. "d"
    assert.is_nil(paths.resolve(string.rep("e/", 60), base))
  end)
end)

describe("paths.check_files", function()
  it("returns the table keyed by normalized paths", function()
    local out = assert(paths.check_files({ ["./a.lua"] = "1", ["lib//b.lua"] = "2", Dockerfile = "" }))
    assert.same({ ["a.lua"] = "1", ["lib/b.lua"] = "2", Dockerfile = "" }, out)
  end)

  local refused = {
    { "a bad path", { ["../x"] = "" }, 'file "../x": \'..\' is not allowed' },
    { "an absolute path", { ["/x"] = "" }, 'file "/x": absolute path' },
    { "a folder key", { ["src/"] = "" }, 'file "src/": a file path cannot end' },
    { "two names for one file", { ["a"] = "1", ["./a"] = "2" }, "names the same file" },
    { "a file that is also a folder", { ["a"] = "1", ["a/b/c"] = "2" }, 'file "a" is also the folder of "a/b/c"' },
    { "a deeper conflict", { ["a/b"] = "1", ["a/b/c"] = "2" }, 'file "a/b" is also the folder' },
    { "a non-string content", { a = 1 }, "content must be a string" },
    { "a non-string key", { [1] = "x" }, "must be a string" },
  }
  for _, c in ipairs(refused) do
    it("refuses " .. c[1], function()
      local out, err = paths.check_files(c[2])
      assert.is_nil(out)
      assert.is_truthy(err:find(c[3], 1, true), err)
    end)
  end

  it("refuses a non-table", function()
    assert.is_nil(paths.check_files("x"))
  end)
end)

describe("paths.quote", function()
  it("escapes control bytes and quotes, and cuts long paths", function()
    assert.equal('"a\\x0ab\\x22"', paths.quote('a\nb"'))
    assert.equal(82, #paths.quote(string.rep("x", 200)))
  end)
end)

describe("paths.byte_less", function()
  it("orders by bytes, shorter prefix first", function()
    local t = { "b", "a/b", "a", "B", "a-b", "\200", "ab" }
    table.sort(t, paths.byte_less)
    assert.same({ "B", "a", "a-b", "a/b", "ab", "b", "\200" }, t)
  end)
end)
