-- A backend that accepts and never answers (spec/attack_proxy_spec.lua): on the socket
-- the Host hands over it answers GET /watcher/status, so that the Host finds it Ready,
-- and keeps every other request open, unanswered, for as long as it runs.
local core = require "hersh.core"

local held = {} -- a response collected would be answered 500: keep them all
assert(core.http_serve{ fd = core.runner_api.fd, handler = function(req, res)
  if req.path == "/watcher/status" then
    return res:send(200, '{"state":"Running"}\n', { ["Content-Type"] = "application/json" })
  end
  held[#held + 1] = res
end })
print("silent: serving")
core.serve()
