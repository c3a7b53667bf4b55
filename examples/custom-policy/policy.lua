-- A restart policy for the Host, in place of the default (lua/host/restart_policy.lua):
--   ./build/hersh host --policy examples/custom-policy/policy.lua
-- The Host asks it what to do each time a program fails (its process exits, cannot be
-- spawned, or does not answer /watcher/status in time). This one restarts after a
-- fixed list of delays, then gives up: the program goes to Error.
--
-- The shape is the default's: policy data, normalize (optional) and decide. Both are
-- pure functions of their arguments: no I/O, no clock.
local policy = {
  delays = { 1, 2, 3 }, -- seconds before the 1st, 2nd, 3rd restart; the last repeats
  max_restarts = 3,     -- restarts in a row; the next failure is an Error
  reset_after = 30,     -- seconds in Ready that forgive the earlier restarts
}

local function positive(x)
  return type(x) == "number" and x == x and x > 0 and x < math.huge
end

-- The program's restart_policy from POST /programs (nil, or an object overriding some
-- fields) -> the complete policy kept on the program, or nil, message (the Host answers
-- 400). GET /programs/{id} shows the result as restart_policy.
function policy.normalize(given)
  if given == nil then given = {} end
  if type(given) ~= "table" then return nil, "restart_policy must be an object {delays, max_restarts, reset_after}" end
  for k in pairs(given) do
    if k ~= "delays" and k ~= "max_restarts" and k ~= "reset_after" then
      return nil, "unknown restart_policy field " .. tostring(k)
    end
  end
  local p = { delays = {}, max_restarts = given.max_restarts or policy.max_restarts,
    reset_after = given.reset_after or policy.reset_after }
  for i, d in ipairs(given.delays or policy.delays) do
    if not positive(d) then return nil, "restart_policy delays must be positive numbers" end
    p.delays[i] = d
  end
  if #p.delays == 0 then return nil, "restart_policy delays must not be empty" end
  if math.type(p.max_restarts) ~= "integer" or p.max_restarts < 0 then
    return nil, "restart_policy max_restarts must be a whole number >= 0"
  end
  if not positive(p.reset_after) then return nil, "restart_policy reset_after must be a positive number" end
  return p
end

-- A failure: exit = {kind = "exited" | "spawn_failed" | "not_ready", code, signal,
-- message}; record.restarts counts the restarts so far. Returns {action = "restart",
-- delay = s}, {action = "error", reason = text} or {action = "stop"}.
function policy.decide(p, record, exit)
  if exit.kind == "exited" and exit.code == 0 and exit.signal == nil then
    return { action = "stop" } -- the program finished: nothing to restart
  end
  local n = record.restarts or 0
  if n >= p.max_restarts then
    return { action = "error",
      reason = string.format("%s; the custom policy gave up after %d restarts", exit.message, n) }
  end
  return { action = "restart", delay = p.delays[math.min(n + 1, #p.delays)] }
end

return policy
