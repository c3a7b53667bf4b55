-- core.run_for on a loop whose clock went stale, with a handle alive and no timer
-- (an HTTP server): it must return. It used to block in the poll for good when its
-- timer fired in the timer phase that opens the run (found by fuzz/host_http.c).
local core = require "hersh.core"
local server = assert(core.http_serve{ port = 0, handler = function(_, res) res:send(200, "x") end })
local t = os.clock()
while os.clock() - t < 0.05 do end -- busy: the loop's cached time falls behind
assert(core.run_for(0.001))
assert(core.run_for(0))
server:close()
print("returned")
