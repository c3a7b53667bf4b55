-- core.run_for on a loop whose clock went stale, with a handle alive and no timer
-- (an HTTP server: the runner's WatcherAPI): it must return. It used to block in the
-- poll for good when its timer fired in the timer phase that opens the run (found by
-- fuzz/host_http.c).
local hersh = require "hersh"
local core = require "hersh.core"
local w = assert(hersh.watcher{ id = "idle" }) -- serves the WatcherAPI on --port
local t = os.clock()
while os.clock() - t < 0.05 do end -- busy: the loop's cached time falls behind
assert(core.run_for(0.001))
assert(core.run_for(0))
assert(w:stop())
print("returned")
