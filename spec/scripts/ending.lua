-- A watcher that ends on its own at the first run, as arg[1] says:
--   stop   returns hersh.stop   -> Stopped, cleanup runs   (exit 0)
--   kill   returns hersh.kill   -> Killed, no cleanup      (exit 1)
--   crash  raises, with a policy that crashes at the first failure -> Crashed, cleanup runs (exit 1)
--   limit  breaks max_watches   -> Crashed, cleanup runs   (exit 1)
local hersh = require "hersh"
local how = assert(arg[1], "usage: ending.lua stop|kill|crash|limit")

local w = assert(hersh.watcher {
  id = "ending-" .. how,
  max_watches = 1,
  recovery = { min_failures = 1, max_failures = 1 },
})
w:manage(function(msg, ctx)
  print("RUN " .. ctx:trigger().reason)
  if how == "stop" then return hersh.stop("done") end
  if how == "kill" then return hersh.kill("killed on purpose") end
  if how == "crash" then error("crashed on purpose") end
  if how == "limit" then
    ctx:watch_tick("one", 60)
    ctx:watch_tick("two", 60)
  end
end)
w:cleanup(function() print("CLEANUP " .. how) end)
assert(w:start())
