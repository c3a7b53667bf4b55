-- A `hersh run` script that drives the loop itself with hersh.run(), as a program's
-- main.lua may. Argument: DIR (for the release file). Message "hold" keeps the run busy
-- until DIR/h exists (at most 60 s). Markers the specs wait for go to stderr.
local hersh = require "hersh"

local dir = assert(arg[1], "usage: self_run.lua DIR")

local function mark(text)
  io.stderr:write(text, "\n")
  io.stderr:flush()
end

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

local w = assert(hersh.watcher { id = "self-run", timeout = 120, cleanup_timeout = 30 })

w:manage(function(msg)
  if not msg or msg.content ~= "hold" then return end
  mark("HOLD-START")
  local deadline = hersh.now() + 60
  while not exists(dir .. "/h") and hersh.now() < deadline do end
  mark("HOLD-END")
end)

w:cleanup(function() mark("CLEANUP-END") end)

assert(w:start())
hersh.run()
mark("RUN-RETURNED " .. w:state())
