-- Handles of hersh.core let go of their Lua callbacks once they are done. A callback
-- that refers to its own handle (the usual `t = core.timer(..., function() t:stop()
-- end)`) is held by the registry; if the handle kept it until its __gc, neither could
-- ever be collected: a Host that probes every start leaked one timer per start.
local hersh = require "hersh"
local core = require "hersh.core"
local sys = require "hersh.os"

-- Live entries of the registry, after a full collection.
local function registry_entries()
  collectgarbage()
  collectgarbage()
  local n = 0
  for _ in pairs(debug.getregistry()) do n = n + 1 end
  return n
end

describe("core handles", function()
  it("a timer whose callback holds it is collected once it is done", function()
    local function round()
      local done = 0
      for _ = 1, 100 do
        local once, every
        once = core.timer(0, function() done = done + 1 once = once end)
        every = core.timer(0, function() every:stop() done = done + 1 end, 0.001)
      end
      assert.is_true(hersh.wait(function() return done == 200 end, 10))
      hersh.wait(function() return false end, 0.01) -- the close callbacks
    end
    round() -- warm-up: the registry's free list settles
    local before = registry_entries()
    round()
    round()
    assert.is_true(registry_entries() <= before + 2, "timers left in the registry")
  end)

  it("a process whose callbacks hold it is collected once it has exited", function()
    local function round()
      local exited = 0
      for _ = 1, 10 do
        local proc
        proc = assert(sys.spawn{ argv = { "/bin/true" }, env = {},
          on_line = function() return proc end,
          on_exit = function() exited = exited + 1 proc = proc end })
      end
      assert.is_true(hersh.wait(function() return exited == 10 end, 20))
      hersh.wait(function() return false end, 0.01)
    end
    round()
    local before = registry_entries()
    round()
    round()
    assert.is_true(registry_entries() <= before + 2, "processes left in the registry")
  end)
end)
