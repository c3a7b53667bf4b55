-- The program of spec/watcher_metrics_spec.lua, under `hersh run`: one watcher whose id
-- holds what the Prometheus format must escape (a double quote, a backslash) and a byte
-- that is not UTF-8. Message "fail" fails its run; any other succeeds. Argument: DIR
-- (unused, from P.run_with_dir).
local hersh = require "hersh"

local w = assert(hersh.watcher {
  id = 'odd"id\\x\255',
  -- a failed run is retried only long after any test has ended
  recovery = { min_failures = 100, max_failures = 100, base_delay = 600, max_delay = 600, light_delays = { 600 } },
})

w:manage(function(msg, ctx)
  if not msg then
    ctx:set("seen", 0)
    ctx:memo("answer", function() return 42 end)
    return
  end
  ctx:set("seen", ctx:get("seen") + 1)
  if msg.content == "fail" then error("failed on purpose") end
end)

assert(w:start())
