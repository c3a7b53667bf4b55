-- A `hersh run` script that drives the loop itself with hersh.run(), as a program's
-- main.lua may. Argument: DIR (for the release file). Message "hold" keeps the run busy
-- until DIR/h exists (at most 60 s). Markers the specs wait for go to stderr.
local hersh = require "hersh"

local dir = assert(arg[1], "usage: self_run.lua DIR")

local marks = dofile(arg[0]:match("^(.*)/") .. "/script_marks.lua")
local mark = marks.mark

local w = assert(hersh.watcher { id = "self-run", timeout = 120, cleanup_timeout = 30 })

w:manage(function(msg)
  if not msg or msg.content ~= "hold" then return end
  mark("HOLD-START")
  marks.wait_file(dir .. "/h", 60)
  mark("HOLD-END")
end)

w:cleanup(function() mark("CLEANUP-END") end)

assert(w:start())
hersh.run()
mark("RUN-RETURNED " .. w:state())
