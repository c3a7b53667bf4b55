-- A script written the way the README writes them: it does not check what
-- hersh.watcher returns. It stops itself at its first message.
local hersh = require "hersh"
local w = hersh.watcher { id = "plain" }
w:manage(function(msg)
  if msg then return hersh.stop("done") end
end)
w:start()
