-- An operator's policy for the Host (docs/policies.md):
--   ./build/hersh host --policy examples/custom-policy/policy.lua
-- Each hook is optional; what is left out (here: health, place) is the Host's default.
-- Every call runs within a budget of 0.1 s; a hook that raises, overruns or returns
-- nonsense is a policy_error event, and the Host decides as if it were not there.
--
--   admit     a quota of 3 programs per user, a memory ceiling of 1 GiB (the default
--             limit of a program that gives none)
--   restart   restarts after 1, 2 and 3 seconds, then gives up (Error)
--   on_event  a Slack-style message to $HERSH_POLICY_NOTIFY_URL when a program enters
--             Error; programs labelled depends_on=<name> restarted when <name> is back
--             after a restart
--   routes    POST /x/deploy: create a program, or update the one of that name
local json = require "hersh.json" -- a policy runs in the Host: its modules are at hand

local QUOTA = 3                           -- programs per user_id
local MEMORY_CEILING = 1024 * 1024 * 1024 -- bytes
local NOTIFY_URL = os.getenv("HERSH_POLICY_NOTIFY_URL") -- read once, at each (re)load

local policy = {}

-- ---- admission ------------------------------------------------------------------------

function policy.admit(request, ctx)
  if ctx.operation == "create" and #ctx.programs{ user_id = request.user_id } >= QUOTA then
    return false, 403, "user " .. request.user_id .. " already has " .. QUOTA .. " programs, the quota of this Host"
  end
  local limits = request.limits or {}
  if limits.memory and limits.memory > MEMORY_CEILING then
    return false, 403, "limits.memory " .. limits.memory .. " is above the ceiling of " .. MEMORY_CEILING .. " bytes"
  end
  if limits.memory then return true end
  limits.memory = MEMORY_CEILING
  request.limits = limits
  return request -- the request changed: the Host checks it again and takes it
end

-- ---- restarts (the shape of lua/host/restart_policy.lua) ------------------------------------

local restart = {
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
function restart.normalize(given)
  if given == nil then given = {} end
  if type(given) ~= "table" then return nil, "restart_policy must be an object {delays, max_restarts, reset_after}" end
  for k in pairs(given) do
    if k ~= "delays" and k ~= "max_restarts" and k ~= "reset_after" then
      return nil, "unknown restart_policy field " .. tostring(k)
    end
  end
  local p = { delays = {}, max_restarts = given.max_restarts or restart.max_restarts,
    reset_after = given.reset_after or restart.reset_after }
  for i, d in ipairs(given.delays or restart.delays) do
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

-- A failure: exit = {kind = "exited" | "spawn_failed" | "not_ready" | "unhealthy", code,
-- signal, message}; record.restarts counts the restarts so far. Returns {action =
-- "restart", delay = s}, {action = "error", reason = text} or {action = "stop"}.
function restart.decide(p, record, exit)
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

policy.restart = restart

-- ---- events ---------------------------------------------------------------------------------

local restarting = {} -- program id -> true between its restart and its next Ready

function policy.on_event(event, ctx)
  local p = event.program_id and ctx.program(event.program_id)
  if not p then return end
  if event.kind == "error" and NOTIFY_URL then
    -- Slack's incoming webhooks take {"text": ...}; the request never blocks the Host.
    ctx.http{ method = "POST", url = NOTIFY_URL, headers = { ["Content-Type"] = "application/json" },
      body = json.encode{ text = (p.name or p.program_id) .. " entered Error: " .. tostring(event.details.reason) } }
  elseif event.kind == "restarting" or (event.kind == "stopping" and event.details.restart) then
    restarting[p.program_id] = true
  elseif event.kind == "ready" and restarting[p.program_id] then
    restarting[p.program_id] = nil
    for _, dependent in ipairs(ctx.programs{ labels = { depends_on = p.name or p.program_id } }) do
      ctx.restart(dependent.program_id) -- at most 10 a minute per program: a cycle ends there
    end
  end
end

-- ---- routes -----------------------------------------------------------------------------------

-- POST /x/deploy {name, user_id, dockerfile, src_files, ...}: the body of POST /programs,
-- with a name; an update when a program has that name. Same token as the rest of the API.
function policy.routes(router)
  router:post("/x/deploy", function(req, ctx)
    local body = req.json
    if type(body) ~= "table" or type(body.name) ~= "string" then
      return 400, { error = "Bad Request", code = 400, message = "give the body of POST /programs, with a name" }
    end
    if ctx.program(body.name) then return ctx.update(body.name, body) end
    return ctx.create(body)
  end)
end

return policy
