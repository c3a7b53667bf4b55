-- bench/api/counter.lua -- the program bench/api/run.sh serves with `hersh run`, and the
-- one the Host benchmarks run (bench/lib.lua): one watcher (the first, so it serves the
-- WatcherAPI) that counts "tick" messages in its context and otherwise does nothing; it
-- idles until stopped.
local hersh = require "hersh"

local w = assert(hersh.watcher{ id = "counter" })
w:manage(function(msg, ctx)
  if ctx:trigger().reason == "init" then ctx:set("n", 0) return end
  if msg and msg.content == "tick" then ctx:update("n", function(n) return n + 1 end) end
end)
assert(w:start())
