-- flaky: a worker whose watcher brings its own recovery policy. Two levels of
-- orchestration, both in Lua:
--   inside the program, the watcher's recovery policy (hersh.watcher{recovery = ...})
--   decides what a failed run leads to: a retry, a wait (WaitRecover), or a crash;
--   a crash ends `hersh run` with exit status 1, and the Host's restart policy
--   (policy.lua, given to `hersh host --policy`) decides when to start it again.
--
-- Messages: "work" does one unit of work; "fail" fails one run (the watcher retries);
-- "break" makes every run fail until the watcher crashes. With BROKEN=1 in its
-- environment it is broken from the start, at every boot.
local hersh = require "hersh"

io.stdout:setvbuf("line") -- print() lands in the logs at once, not when the buffer fills

local STATE_DIR = os.getenv("HERSH_STATE_DIR") or "/state"

-- Boots are counted in /state, which outlives the process.
local function count_boot()
  local f = io.open(STATE_DIR .. "/boots", "r")
  local n = (f and tonumber(f:read("l") or "") or 0) + 1
  if f then f:close() end
  f = assert(io.open(STATE_DIR .. "/boots", "w"))
  f:write(n, "\n")
  f:close()
  return math.tointeger(n)
end

local boot = count_boot()
local broken = os.getenv("BROKEN") == "1"

local w = hersh.watcher{
  id = "flaky",
  recovery = {
    min_failures = 2,      -- from the 2nd failure in a row: WaitRecover for base_delay
    max_failures = 3,      -- the 3rd crashes the watcher (and ends the process)
    base_delay = 0.5,
    light_delays = { 0.2 }, -- the 1st failure: a retry after 0.2 s
    -- The default decision (hersh.recovery.decide), told in the logs.
    decide = function(n, err, policy)
      local d = hersh.recovery.decide(n, err, policy)
      print(string.format("recovery: failure %d (%s): %s in %g s", n, err:match("[^\n]*"), d.action, d.delay or 0))
      return d
    end,
  },
}

w:manage(function(msg, ctx)
  if ctx:trigger().reason == "init" then
    ctx:set("done", 0)
    ctx:print(string.format("flaky: boot %d%s", boot, broken and " (broken)" or ""))
  end
  if broken then error("broken: every run fails", 0) end
  if not msg then return end
  if msg.content == "work" then
    local n = ctx:update("done", function(n) return n + 1 end)
    ctx:print("work: " .. n .. " done")
  elseif msg.content == "fail" then
    error("asked to fail once", 0)
  elseif msg.content == "break" then
    broken = true
    error("broken on request", 0)
  end
end)

w:cleanup(function(ctx)
  ctx:print(string.format("cleanup: boot %d ends with %s done", boot, tostring(ctx:get("done"))))
end)

assert(w:start())
