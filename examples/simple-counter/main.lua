-- simple-counter: a watcher that sends itself "tick" every second and counts the
-- ticks in its context. Run by the Host from its Dockerfile, or directly:
--   ./build/hersh run examples/simple-counter/main.lua --port 0
local hersh = require "hersh"

local w
w = hersh.watcher{
  id = "simple-counter",
  env = { DEMO_NAME = "Simple Counter", DEMO_VERSION = "1.0.0" },
}

w:manage(function(msg, ctx)
  if ctx:trigger().reason == "init" then
    ctx:set("count", 0)
    ctx:print(ctx:env("DEMO_NAME") .. " " .. ctx:env("DEMO_VERSION") .. " started")
  end
  -- A clock: its first tick comes at once, then one a second. Each one queues a
  -- "tick" message, counted in a run of its own, like one sent through the WatcherAPI.
  local clock = ctx:watch_tick("clock", 1)
  if clock:triggered() then w:send("tick") end
  if msg and msg.content == "tick" then
    local n = ctx:update("count", function(n) return n + 1 end)
    ctx:print("Counter: " .. n)
  end
end)

w:cleanup(function(ctx)
  ctx:print("Cleanup: stopped at " .. tostring(ctx:get("count")))
end)

assert(w:start())
