-- The default restart policy of a program: data plus `decide` (and `normalize`, which
-- checks a user's policy at create time). A user may replace the whole module: the hook
-- `restart` of the Host's policy (host.policy, docs/policies.md), which the Host sets as
-- `program.policy_module`; the reducer only calls `decide`, and `normalize` if present.
local restart_policy = {
  mode = "on-failure",  -- "on-failure" | "always" | "no"
  base_delay = 0.1,     -- seconds before the first restart, doubled for each next one
  max_delay = 60,       -- cap of that doubling
  reset_after = 10,     -- seconds in Ready that forgive earlier restarts
  max_restarts = 10,    -- restarts without such a reset; the next failure is an Error
}

restart_policy.MODES = { ["on-failure"] = true, always = true, no = true }

local NUMBERS = { base_delay = true, max_delay = true, reset_after = true, max_restarts = true }

local function is_finite(x)
  return type(x) == "number" and x == x and x > -math.huge and x < math.huge
end

-- A user's policy (nil, a mode string, or a table of overrides; `restart` is the API's
-- name for `mode`) -> a complete policy table, or nil, message. The result is a copy:
-- later edits of the user's table do not leak into a record.
function restart_policy.normalize(given)
  if given == nil then
    given = {}
  elseif type(given) == "string" then
    given = { mode = given }
  elseif type(given) ~= "table" then
    return nil, "restart policy must be a mode string or an object"
  end
  for k in pairs(given) do
    if k ~= "mode" and k ~= "restart" and not NUMBERS[k] then
      return nil, "unknown restart policy field " .. tostring(k)
    end
  end
  if given.mode ~= nil and given.restart ~= nil and given.mode ~= given.restart then
    return nil, "restart policy: mode and restart disagree"
  end
  local p = {}
  p.mode = given.mode or given.restart or restart_policy.mode
  if not restart_policy.MODES[p.mode] then
    return nil, "restart policy mode must be on-failure, always or no, not " .. tostring(p.mode)
  end
  for k in pairs(NUMBERS) do
    local v = given[k]
    if v == nil then v = restart_policy[k] end
    if not is_finite(v) or v < 0 then
      return nil, "restart policy " .. k .. " must be a finite number >= 0"
    end
    p[k] = v
  end
  if p.base_delay <= 0 then
    return nil, "restart policy base_delay must be > 0"
  end
  if p.max_delay < p.base_delay then
    return nil, "restart policy max_delay must be >= base_delay"
  end
  if p.max_restarts ~= math.floor(p.max_restarts) then
    return nil, "restart policy max_restarts must be a whole number"
  end
  return p
end

-- A failure while Starting or Ready (exit: {kind = "exited"|"spawn_failed"|"not_ready"|"unhealthy",
-- code, signal, message}) -> {action = "restart", delay = s} | {action = "error",
-- reason = text} | {action = "stop"} (a clean exit under on-failure: the program is
-- done, not broken). record.restarts is already reset by the reducer when the program
-- was Ready long enough.
function restart_policy.decide(policy, record, exit)
  local clean = exit.kind == "exited" and exit.code == 0 and exit.signal == nil
  if policy.mode == "no" then
    return { action = "error", reason = exit.message .. " (restart policy \"no\")" }
  end
  if clean and policy.mode == "on-failure" then
    return { action = "stop" }
  end
  local n = record.restarts or 0
  if n >= policy.max_restarts then
    return { action = "error",
      reason = string.format("%s; gave up after %d restarts", exit.message, n) }
  end
  -- Multiplying by a power of two is exact, so the delays are 0.1, 0.2, 0.4, ... exactly.
  return { action = "restart", delay = math.min(policy.base_delay * 2 ^ n, policy.max_delay) }
end

return restart_policy
