-- bench/engine_replay.lua -- replay speed (docs/replay.md): N message runs of a reducer
-- that reads the run's time and a random number and writes the context are recorded
-- whole (trace = "all"), then `hersh replay` runs them again; runs per second of each.
-- Usage: lua5.4 bench/engine_replay.lua BUILD [N]
local build = assert(arg[1], "usage: engine_replay.lua BUILD [N]")
local n = tonumber(arg[2]) or 100000
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
package.cpath = build .. "/lua/?.so;" .. package.cpath
local hersh = require "hersh"

local dir = assert(io.popen("mktemp -d /tmp/hersh-bench.XXXXXX")):read("l")
local script, trace = dir .. "/reducer.lua", dir .. "/bench.trace"
local f = assert(io.open(script, "w"))
f:write([[
local hersh = require "hersh"
local w = hersh.watcher{ id = "bench", trace = "all", api = false, signal_capacity = ]] .. (n + 10) .. [[ }
w:manage(function(msg, ctx)
  if not msg then return end
  local s = ctx:get("sum") or { n = 0, total = 0 }
  s.n = s.n + 1
  s.total = s.total + ctx:random(1, 6)
  s.at = ctx:now()
  ctx:set("sum", s)
end)
return w
]])
f:close()

local w = dofile(script)
assert(w:start())
assert(hersh.wait(function() return w:state() == "Ready" end, 10))
local t0 = hersh.now()
for _ = 1, n do assert(w:send("x")) end
assert(hersh.wait(function() return w:pending().user == 0 and w:state() == "Ready" end, 600))
local recorded = hersh.now() - t0
f = assert(io.open(trace, "w"))
f:write(assert(w:trace()))
f:close()
assert(w:kill())

t0 = hersh.now()
local p = assert(io.popen(string.format("%s/hersh replay %s %s", build, trace, script)))
local out = p:read("a")
local ok = p:close()
local replayed = hersh.now() - t0
assert(ok and out:find("identical", 1, true), "the replay diverged: " .. out)
local function line(name, s, runs)
  print(string.format("engine_replay: %-30s %8d runs  %7.3f s  %9.0f runs/s", name, runs, s, runs / s))
end
line("recorded (trace all)", recorded, n)
line("replayed (hersh replay)", replayed, n + 1)
os.execute("rm -rf '" .. dir .. "'")
