-- A script that raises while it loads: `hersh run` must exit 2 with the error.
local hersh = require "hersh"
local w = hersh.watcher { id = "load-error" }
w:manage(function() end)
error("deliberate load failure")
