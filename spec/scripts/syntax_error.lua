-- A script that does not compile: `hersh run` must exit 2 and say where.
local hersh = require "hersh"

local w = = hersh.watcher { id = "never" }
