-- bench/engine_yield.lua -- the per-run cost of a reducer that waits: N messages to a
-- Lua reducer that returns at once, then to one that yields once on hersh.sleep(0)
-- (resumed on the next loop turn), each on a fresh watcher on one loop.
-- Usage: lua5.4 bench/engine_yield.lua BUILD [N]
local build = assert(arg[1], "usage: engine_yield.lua BUILD [N]")
local n = tonumber(arg[2]) or 100000
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
package.cpath = build .. "/lua/?.so;" .. package.cpath
local hersh = require "hersh"

local function clock()
  return hersh.now() -- wall seconds, sub-microsecond resolution
end

-- Runs n message runs of `body`; the seconds they took, from the first send to the last
-- run's end.
local function measure(body)
  local w = assert(hersh.watcher { signal_capacity = n + 10, max_log_entries = 1000 })
  local done = 0
  w:manage(function(msg)
    if msg then
      body()
      done = done + 1
    end
  end)
  assert(w:start())
  assert(hersh.wait(function() return w:state() == "Ready" end, 10))
  local t0 = clock()
  for _ = 1, n do assert(w:send("x")) end
  assert(hersh.wait(function() return done == n end, 600), "the runs did not finish")
  local took = clock() - t0
  assert(w:kill())
  return took
end

local plain = measure(function() end)
local yielding = measure(function() hersh.sleep(0) end)
local function line(name, s)
  print(string.format("engine_yield: %-26s %8d runs  %7.3f s  %9.0f runs/s  %6.2f us/run",
    name, n, s, n / s, s / n * 1e6))
end
line("reducer returns at once", plain)
line("reducer yields once (sleep 0)", yielding)
print(string.format("engine_yield: one wait costs %.2f us per run (a coroutine resume on the next loop turn)",
  (yielding - plain) / n * 1e6))
