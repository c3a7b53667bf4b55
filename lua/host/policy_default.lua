-- The Host's own orchestration policy, written as a policy module (docs/policies.md):
-- every hook a --policy file leaves out, or whose call fails, is decided by this one.
-- It is called directly (it is the Host's code), never through the budget.
local health = require "host.health"
local restart_policy = require "host.restart_policy"

local default = {}

-- Every request that passed the Host's own checks is accepted as it is.
function default.admit()
  return true
end

-- Today's restart policy: decide and normalize, unchanged.
default.restart = restart_policy

-- A check passes on a 2xx answer in time.
function default.health(_, probe)
  local why = health.failure(probe.status and probe, probe.error)
  return why == nil, why
end

-- Nothing to do on an event.
function default.on_event() end

-- The driver the request names, else the Host's --isolation.
function default.place(request, ctx)
  return { isolation = request.isolation or ctx.default_isolation }
end

-- No route of its own.
function default.routes() end

return default
