-- hersh.os.fs_watch and file_id (src/lua/lfswatch.c): file system events on the loop
-- (inotify through libuv), and the identity of the file behind a name or a handle.
local hersh = require "hersh"
local sys = require "hersh.os"
local h = require "helpers"
local P = require "scripts.process"

local function write(path, text, mode)
  local f = assert(io.open(path, mode or "ab"))
  assert(f:write(text))
  assert(f:close())
end

describe("sys.fs_watch", function()
  local dir

  before_each(function() dir = P.tmpdir() end)
  after_each(function() os.execute("rm -rf " .. P.quote(dir)) end)

  it("calls back with the name and the kind of change of what changes in a directory", function()
    local seen = {}
    local w = assert(sys.fs_watch(dir, function(name, event) seen[#seen + 1] = { name, event } end))
    assert.is_true(w:active())
    write(dir .. "/a.log", "one\n")
    assert.is_true(h.wait(function() return #seen > 0 end))
    assert.equal("a.log", seen[1][1])
    assert.is_true(seen[1][2] == "rename" or seen[1][2] == "change")
    seen = {}
    assert(os.rename(dir .. "/a.log", dir .. "/a.log.1"))
    assert.is_true(h.wait(function()
      for _, e in ipairs(seen) do if e[1] == "a.log" and e[2] == "rename" then return true end end
    end))
    w:stop()
    assert.is_false(w:active())
    seen = {}
    write(dir .. "/b.log", "two\n")
    hersh.run_for(0.1)
    assert.same({}, seen, "no call after stop")
    w:stop() -- twice is fine
  end)

  it("returns nil, message, ENOENT for a path that does not exist", function()
    local w, err, code = sys.fs_watch(dir .. "/missing", function() end)
    assert.is_nil(w)
    assert.truthy(err:find("missing", 1, true), err)
    assert.equal("ENOENT", code)
  end)

  it("raises for a caller's bug", function()
    assert.has_error(function() sys.fs_watch(dir) end)
    assert.has_error(function() sys.fs_watch(nil, function() end) end)
  end)

  it("keeps calling back after a callback raises, and may stop itself from a callback", function()
    local r = h.isolated(string.format([[
      local sys = require "hersh.os"
      local n, stopped = 0, 0
      local w1 = assert(sys.fs_watch(%q, function() n = n + 1 error("boom in fs_watch") end))
      local w2
      w2 = assert(sys.fs_watch(%q, function() stopped = stopped + 1 w2:stop() end))
      for i = 1, 3 do
        local f = assert(io.open(%q .. "/x" .. i, "w")) f:write("x") f:close()
        h.wait(function() return n >= i end)
      end
      return { n = n, stopped = stopped, active = w1:active() }
    ]], dir, dir, dir))
    assert.is_true(r.n >= 3)
    assert.equal(1, r.stopped)
    assert.is_true(r.active)
  end)
end)

describe("sys.file_id", function()
  it("is the same for a name and the file opened from it, and changes when the name is replaced", function()
    local dir = P.tmpdir()
    finally(function() os.execute("rm -rf " .. P.quote(dir)) end)
    local path = dir .. "/log"
    write(path, "old\n")
    local f = assert(io.open(path, "rb"))
    local id = assert(sys.file_id(path))
    assert.equal(id, sys.file_id(f))
    assert(os.rename(path, path .. ".1"))
    write(path, "new\n")
    assert.not_equal(id, sys.file_id(path))
    assert.equal(id, sys.file_id(f))
    f:close()
    assert.has_error(function() sys.file_id(f) end)
    local none, err, code = sys.file_id(dir .. "/missing")
    assert.is_nil(none)
    assert.is_string(err)
    assert.equal("ENOENT", code)
  end)
end)
