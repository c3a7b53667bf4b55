-- The Host's orchestration policy (docs/policies.md): one Lua module of optional hooks
-- (admit, restart, health, on_event, place, routes), loaded from --policy FILE, reloaded
-- live (SIGHUP, POST /policy/reload). A hook the file leaves out is the default's
-- (host.policy_default). Each call of a hook runs within policy.BUDGET seconds
-- (hersh.os.call_within: the engine's deadline); one that raises, overruns or returns
-- nonsense is recorded as a policy_error event and the default decides instead.
-- Hooks never run Host operations themselves: what they ask (start, stop, restart,
-- send, create, update) runs after they return, outside the budget.
local core = require "hersh.core"
local sys = require "hersh.os"
local http = require "hersh.http"
local json = require "hersh.json"
local default = require "host.policy_default"
local restart_policy = require "host.restart_policy"
local sandbox = require "host.sandbox"

local policy = {}

policy.HOOKS = { "admit", "restart", "health", "on_event", "place", "routes" }
policy.BUDGET = 0.1       -- seconds one hook call may take
policy.LOAD_BUDGET = 1    -- seconds the file's chunk and its routes(router) may take
policy.ACTIONS_MAX = 10   -- start/stop/restart/send a policy may ask of one program ...
policy.ACTIONS_WINDOW = 60 -- ... within these seconds; more are refused
policy.QUEUE_MAX = 10000  -- events waiting for on_event; more are dropped (said once)
policy.TURN_MAX = 256     -- events given to on_event per loop turn
policy.HTTP_TIMEOUT = 10  -- seconds, the most a policy's ctx.http request may take

local HOOK = {}
for _, name in ipairs(policy.HOOKS) do HOOK[name] = true end

-- Events on_event never gets: its own failures would feed it endlessly.
local QUIET = { policy_error = true, policy_loaded = true }

local function iso_time(t)
  local secs = math.floor(t)
  return os.date("!%Y-%m-%dT%H:%M:%S", secs) .. string.format(".%03dZ", math.floor((t - secs) * 1000))
end

local ARRAY = getmetatable(json.array({})) -- how a JSON array is marked

-- A copy a hook may change or keep without touching the Host's tables.
local function deep_copy(v, seen)
  if type(v) ~= "table" then return v end
  seen = seen or {}
  if seen[v] then return seen[v] end
  local c = {}
  seen[v] = c
  for k, x in pairs(v) do c[deep_copy(k, seen)] = deep_copy(x, seen) end
  if getmetatable(v) == ARRAY then setmetatable(c, ARRAY) end
  return c
end

local function first_line(text)
  return (tostring(text):match("^[^\n]*"))
end

-- ---- loading -------------------------------------------------------------------------

-- The module in `file`, checked: a table of hooks (functions; restart a table with
-- decide and optionally normalize). A table with decide is a restart-only policy of
-- before: it is read as {restart = it}. -> module, hooks (their names) | nil, why
function policy.read(file)
  local chunk, load_err = loadfile(file, "t")
  if not chunk then return nil, "cannot load " .. file .. ": " .. tostring(load_err) end
  local ok, m, code = sys.call_within(policy.LOAD_BUDGET, chunk)
  if not ok then
    return nil, file .. ": " .. (code == "ETIMEOUT" and "its chunk ran past " .. policy.LOAD_BUDGET .. " s"
      or first_line(m))
  end
  if type(m) ~= "table" then return nil, file .. " must return a table of hooks, not a " .. type(m) end
  if type(m.decide) == "function" then m = { restart = m } end
  local hooks = {}
  for k, v in pairs(m) do
    if not HOOK[k] then
      return nil, file .. ": unknown hook " .. tostring(k) .. " (hooks: " .. table.concat(policy.HOOKS, ", ") .. ")"
    end
    if k == "restart" then
      if type(v) ~= "table" or type(v.decide) ~= "function"
        or (v.normalize ~= nil and type(v.normalize) ~= "function") then
        return nil, file .. ": restart must be a table with decide(policy, record, exit) (and normalize(given))"
      end
    elseif type(v) ~= "function" then
      return nil, file .. ": " .. k .. " must be a function, not a " .. type(v)
    end
    hooks[#hooks + 1] = k
  end
  table.sort(hooks)
  return m, hooks
end

-- ---- one policy, held by the Host -------------------------------------------------------

local Policy = {}
Policy.__index = Policy

-- policy.new(host, file or nil) -> policy | nil, why (the Host does not start).
function policy.new(h, file)
  local self = setmetatable({ h = h, file = file, module = {}, hooks = {}, routes = {}, loaded_at = core.now(),
    queue = { first = 1, last = 0 }, actions = {}, reloads = 0 }, Policy)
  if file then
    local ok, why = self:load()
    if not ok then return nil, why end
  end
  h.events:subscribe(function(e) self:heard(e) end)
  return self
end

-- Reads the file again; the policy in use changes only when all of it loads.
function Policy:load()
  local m, hooks = policy.read(self.file)
  if not m then return nil, hooks end
  local routes = {}
  if m.routes then
    local ok, why = self:collect_routes(m.routes, routes)
    if not ok then return nil, self.file .. ": routes: " .. why end
  end
  self.module, self.hooks, self.routes, self.loaded_at = m, hooks, routes, core.now()
  return true
end

-- SIGHUP and POST /policy/reload: -> true | nil, why (the old policy stays). Either way
-- an event says it.
function Policy:reload()
  if not self.file then return nil, "the Host was started without --policy: there is no file to reload" end
  local ok, why = self:load()
  if not ok then
    self:fail("load", nil, why)
    return nil, why
  end
  self.reloads = self.reloads + 1
  self.h.events:record(nil, "policy_loaded", { file = self.file, hooks = json.array(self.hooks) })
  return true
end

-- What GET /policy shows.
function Policy:view()
  local null = json.null
  return { file = self.file or null, hooks = json.array(deep_copy(self.hooks)),
    loaded_at = iso_time(self.loaded_at), reloads = self.reloads, budget = policy.BUDGET,
    last_error = self.last_error or null }
end

-- A failed hook (or load): an event, a line on stderr, GET /policy's last_error.
function Policy:fail(hook, program_id, why)
  why = first_line(why)
  self.last_error = { hook = hook, message = why, at = iso_time(core.now()), program_id = program_id or json.null }
  io.stderr:write("hersh host: policy ", hook, ": ", why, "\n")
  self.h.events:record(program_id, "policy_error", { hook = hook, reason = why })
end

-- What the Host does instead when a hook fails.
local INSTEAD = { routes = "answered 500" }

-- Calls the policy's fn(...) within the budget; check(results...) -> true, value |
-- false, what is wrong with them. -> true, value | false, why (the failure recorded).
function Policy:run(hook, program_id, fn, check, ...)
  local why
  if self.running then -- never nested: the Host runs no hook's action while one runs
    why = "called while " .. self.running .. " runs"
  else
    self.running = hook
    -- pcall: call_within raises when a deadline is armed already (never expected here)
    local out = table.pack(pcall(sys.call_within, policy.BUDGET, fn, ...))
    self.running = nil
    if out[1] then
      out = table.pack(table.unpack(out, 2, out.n))
    else
      out = { false, out[2], "ERROR" }
    end
    if not out[1] then
      why = out[3] == "ETIMEOUT" and "ran past its budget of " .. policy.BUDGET .. " s" or "raised: " .. first_line(out[2])
    else
      local ok, value = check(table.unpack(out, 2, out.n))
      if ok then return true, value end
      why = "returned " .. value
    end
  end
  self:fail(hook, program_id, why .. "; " .. (INSTEAD[hook] or "the default decided"))
  return false, why
end

-- ---- what hooks may read and ask --------------------------------------------------------

-- What a hook sees of a program: a copy.
local function summary(p)
  return { program_id = p.id, name = p.name, user_id = p.user_id, state = p.sup.record.state,
    labels = deep_copy(p.spec.labels or {}), isolation = p.isolation, revision = p.revision,
    restarts = p.sup.record.restarts or 0, error_msg = p.sup.record.error_msg, limits = deep_copy(p.spec.limits) }
end

-- Whether p matches filter {user_id, state, labels = {key = value}}.
local function matches(p, filter)
  if filter.user_id ~= nil and p.user_id ~= filter.user_id then return false end
  if filter.state ~= nil and p.sup.record.state ~= filter.state then return false end
  for k, v in pairs(filter.labels or {}) do
    if (p.spec.labels or {})[k] ~= v then return false end
  end
  return true
end

-- Whether the policy may act on p once more (policy.ACTIONS_MAX per ACTIONS_WINDOW).
-- Bounds any loop of hooks and events: an on_event that restarts the program whose
-- event it got, two programs that restart each other.
function Policy:may_act(p)
  local now = core.now()
  local a = self.actions[p.id]
  if not a or now - a.since >= policy.ACTIONS_WINDOW then
    a = { since = now, n = 0 }
    self.actions[p.id] = a
  end
  if a.n >= policy.ACTIONS_MAX then
    if not a.said then
      a.said = true
      self:fail("actions", p.id, "more than " .. policy.ACTIONS_MAX .. " actions on " .. p.id .. " within "
        .. policy.ACTIONS_WINDOW .. " s: refused until the window ends")
    end
    return false
  end
  a.n = a.n + 1
  return true
end

local function finite_positive(x)
  return type(x) == "number" and x > 0 and x < math.huge and x or nil
end

-- The table a hook gets as ctx. Reads answer at once; actions are queued in `todo` and
-- run after the hook returns. `hook` names it in errors.
function Policy:ctx(hook, todo)
  local h = self.h
  local ctx = { hook = hook, default_isolation = h.isolation, drivers = json.array(deep_copy(sandbox.names)) }
  function ctx.now() return core.now() end
  function ctx.program(ref)
    local p = h.programs[ref] or h.by_name[ref]
    return p and summary(p) or nil
  end
  function ctx.programs(filter)
    local list = {}
    for _, p in ipairs(h.order) do
      if matches(p, filter or {}) then list[#list + 1] = summary(p) end
    end
    return list
  end
  function ctx.log(text) io.stderr:write("hersh host: policy ", hook, ": ", first_line(text), "\n") end
  if not todo then return ctx end
  local function act(action)
    return function(ref, content)
      local p = h.programs[ref] or h.by_name[ref]
      if not p then return nil, "no program with the id or name " .. tostring(ref) end
      if action == "send" and type(content) ~= "string" then return nil, "send: the message must be a string" end
      if not self:may_act(p) then return nil, "too many policy actions on " .. p.id end
      todo[#todo + 1] = { action = action, id = p.id, content = content }
      return true
    end
  end
  ctx.start, ctx.stop, ctx.restart, ctx.send = act("start"), act("stop"), act("restart"), act("send")
  -- A request on the loop's client: never waits; fn(res, err), if given, runs later within the budget.
  function ctx.http(opts, fn)
    if type(opts) ~= "table" or type(opts.url) ~= "string" then return nil, "http: give {url, method, headers, body}" end
    if fn ~= nil and type(fn) ~= "function" then return nil, "http: the callback must be a function" end
    todo[#todo + 1] = { action = "http", opts = { url = opts.url, method = opts.method or "GET",
      headers = deep_copy(opts.headers), body = opts.body,
      timeout = math.min(finite_positive(opts.timeout) or policy.HTTP_TIMEOUT, policy.HTTP_TIMEOUT) }, fn = fn }
    return true
  end
  return ctx
end

-- Runs what a hook asked, now that it has returned.
function Policy:perform(todo, hook)
  local h = self.h
  for _, t in ipairs(todo) do
    if t.action == "http" then
      -- pcall: options the client refuses (a method that is no string) raise
      local called, ok, err = pcall(http.request, t.opts, function(res, http_err)
        if t.fn then self:run(hook, nil, t.fn, function() return true end, deep_copy(res), http_err) end
      end)
      if not (called and ok) then
        io.stderr:write("hersh host: policy ", hook, ": http ", t.opts.url, ": ", first_line(called and err or ok), "\n")
      end
    elseif t.action == "send" then
      local p = h.programs[t.id]
      if p and p.sup.record.state == "Ready" then
        http.request({ method = "POST", url = "http://127.0.0.1:" .. p.port .. "/watcher/message",
          headers = { ["Content-Type"] = "application/json" }, body = json.encode{ content = t.content },
          timeout = policy.HTTP_TIMEOUT }, function() end)
      end
    elseif h.programs[t.id] then
      local _, err = h:act(t.id, t.action)
      if err then io.stderr:write("hersh host: policy ", hook, ": ", t.action, " ", t.id, ": ", err.message, "\n") end
    end
  end
end

-- ---- the decision points ----------------------------------------------------------------

local function is_status(v, low, high)
  return math.type(v) == "integer" and v >= low and v <= high
end

-- admit(request, ctx) before a create, an update or a rollback (`operation`; p the
-- program updated): nil or true accepts it; false, status (4xx), message refuses; a
-- table is the request to take instead (the Host checks it again as a client's).
-- -> {refuse = {status, message}} | {request = table} | {} (as it is).
function Policy:admit(request, operation, p)
  local fn = self.module.admit
  if not fn then return {} end
  local ctx = self:ctx("admit")
  ctx.operation, ctx.current = operation, p and summary(p) or nil
  local ok, d = self:run("admit", p and p.id, fn, function(a, status, message)
    if a == nil or a == true then return true, {} end
    if a == false then
      if not is_status(status, 400, 499) then return false, "false with a status that is not a 4xx number" end
      if type(message) ~= "string" or message == "" then return false, "false without a message" end
      return true, { refuse = { status = status, message = message } }
    end
    if type(a) == "table" then return true, { request = a } end
    return false, "a " .. type(a) .. " (want true, false/status/message or a request table)"
  end, deep_copy(request), ctx)
  return ok and d or {}
end

-- place(request, ctx) at a create: {isolation = a driver name this Host knows}, or nil
-- (the default's choice). -> the name.
function Policy:place(request)
  local fn, ctx = self.module.place, self:ctx("place")
  if fn then
    local ok, name = self:run("place", nil, fn, function(d)
      if d == nil then return true, nil end -- nothing to say: the default decides
      if type(d) ~= "table" then return false, "a " .. type(d) .. " (want {isolation = name})" end
      if not sandbox.known(d.isolation) then
        return false, "isolation " .. tostring(d.isolation) .. " (drivers: " .. table.concat(sandbox.names, ", ") .. ")"
      end
      return true, d.isolation
    end, deep_copy(request), ctx)
    if ok and name then return name end
  end
  return default.place(request, ctx).isolation
end

-- health(record, probe) for each check of p: -> why it failed, or nil.
function Policy:health(p, res, err)
  local probe = { status = res and res.status, headers = res and deep_copy(res.headers), body = res and res.body,
    error = err and tostring(err) }
  local fn = self.module.health
  if fn then
    local ok, why = self:run("health", p.id, fn, function(healthy, reason)
      if healthy == true then return true, false end
      if healthy == false then return true, type(reason) == "string" and reason or "the policy's health check failed" end
      if healthy == nil then return true, nil end -- nothing to say: the default judges
      return false, "a " .. type(healthy) .. " (want true, false [, why] or nil)"
    end, self.h:view(p), probe)
    if ok and why ~= nil then return why or nil end
  end
  local healthy, why = default.health(nil, probe)
  return not healthy and why or nil
end

local function finite(x)
  return type(x) == "number" and x == x and x >= 0 and x < math.huge
end

local DEFAULT_DATA = assert(restart_policy.normalize(nil))

-- The restart module the state machine calls (program.policy_module): the policy's
-- restart within the budget, the default's when it has none or it fails.
function Policy:restart_module()
  local m = {}
  function m.normalize(given)
    local r = self.module.restart
    if not r then return restart_policy.normalize(given) end
    if not r.normalize then return given or {} end
    local refused
    local ok, p = self:run("restart", nil, r.normalize, function(p, message)
      if type(p) == "table" then return true, p end
      if p == nil and type(message) == "string" then
        refused = message
        return true, nil
      end
      return false, "from normalize a " .. type(p) .. " (want a table, or nil and a message)"
    end, deep_copy(given))
    if refused then return nil, refused end
    if ok then return p end
    return restart_policy.normalize(nil)
  end
  function m.decide(data, record, exit)
    local r = self.module.restart
    if not r then return restart_policy.decide(data, record, exit) end
    local ok, d = self:run("restart", record.program_id, r.decide, function(d)
      if type(d) ~= "table" then return false, "from decide a " .. type(d) end
      if d.action == "restart" and finite(d.delay) then return true, { action = "restart", delay = d.delay } end
      if d.action == "stop" then return true, { action = "stop" } end
      if d.action == "error" then
        return true, { action = "error", reason = type(d.reason) == "string" and d.reason or exit.message }
      end
      return false, "from decide the action " .. tostring(d.action) .. " (want restart with a delay >= 0, stop or error)"
    end, deep_copy(data), deep_copy(record), deep_copy(exit))
    if ok then return d end
    return restart_policy.decide(DEFAULT_DATA, record, exit)
  end
  return m
end

-- ---- on_event ----------------------------------------------------------------------------

-- Each stored event: queued for on_event, which gets it on a later loop turn (never
-- inside the step that made it), one at a time, in order.
function Policy:heard(e)
  if not self.module.on_event or QUIET[e.kind] then return end
  local q = self.queue
  if q.last - q.first + 1 >= policy.QUEUE_MAX then
    if not q.overflowed then
      q.overflowed = true
      self:fail("on_event", nil, "more than " .. policy.QUEUE_MAX .. " events wait for on_event: the newest are dropped")
    end
    return
  end
  q.last = q.last + 1
  q[q.last] = deep_copy(e)
  if not self.draining then self.draining = core.timer(0, function() self:drain() end) end
end

-- Gives the queued events to on_event, at most policy.TURN_MAX per loop turn (the loop
-- serves the others meanwhile); those its own actions cause join the queue's end.
function Policy:drain()
  self.draining = nil
  local q = self.queue
  for _ = 1, policy.TURN_MAX do
    if q.first > q.last then
      q.overflowed = false
      return
    end
    local e = q[q.first]
    q[q.first], q.first = nil, q.first + 1
    local fn = self.module.on_event
    if fn then
      local todo = {}
      local ok = self:run("on_event", e.program_id, fn, function() return true end, e, self:ctx("on_event", todo))
      if ok then self:perform(todo, "on_event") end
    end
  end
  if q.first <= q.last then self.draining = core.timer(0, function() self:drain() end) end
end

-- ---- routes --------------------------------------------------------------------------------

local METHODS = { GET = true, POST = true, PUT = true, DELETE = true, PATCH = true }

-- Calls the module's routes(router) within the load budget; router:get(path, fn), post,
-- put, delete, patch add a route; paths are exact and under /x/.
function Policy:collect_routes(fn, into)
  local router = {}
  local bad
  for method in pairs(METHODS) do
    router[method:lower()] = function(_, path, handler)
      if type(path) ~= "string" or not path:match("^/x/[%w%-._~/]+$") or path:find("//", 1, true) then
        bad = bad or ("route path " .. tostring(path) .. " must be under /x/ (letters, digits, - . _ ~ /)")
      elseif type(handler) ~= "function" then
        bad = bad or ("the handler of " .. method .. " " .. path .. " must be a function")
      else
        into[path] = into[path] or {}
        into[path][method] = handler
      end
    end
  end
  local ok, err, code = sys.call_within(policy.LOAD_BUDGET, fn, router)
  if not ok then return nil, code == "ETIMEOUT" and "ran past " .. policy.LOAD_BUDGET .. " s" or first_line(err) end
  if bad then return nil, bad end
  return true
end

-- A request under /x/: -> status, value (a table: JSON), or status, nil, message (an error).
-- A handler gets (req, ctx): req = {method, path, query, headers, body, json}; it returns
-- status, value, or ctx.create(body) / ctx.update(ref, body), which the Host answers.
function Policy:route(req)
  local methods = self.routes[req.path]
  if not methods then return 404, nil, "no route for " .. req.path end
  local fn = methods[req.method] or (req.method == "HEAD" and methods.GET)
  if not fn then
    local allowed = {}
    for m in pairs(methods) do allowed[#allowed + 1] = m end
    table.sort(allowed)
    return 405, nil, "use " .. table.concat(allowed, ", ")
  end
  local todo = {}
  local ctx = self:ctx("routes", todo)
  local OPERATION = {}
  function ctx.create(body) return setmetatable({ op = "create", body = deep_copy(body) }, OPERATION) end
  function ctx.update(ref, body) return setmetatable({ op = "update", ref = ref, body = deep_copy(body) }, OPERATION) end
  local decoded = req.body ~= "" and json.decode(req.body) or nil
  local headers = deep_copy(req.headers)
  headers.authorization = nil -- the Host's token is no business of a route
  local r = { method = req.method, path = req.path, query = deep_copy(req.query), headers = headers,
    body = req.body, json = decoded }
  local what = req.method .. " " .. req.path
  local ok, d = self:run("routes", nil, fn, function(status, value)
    if getmetatable(status) == OPERATION then return true, status end
    if not is_status(status, 200, 599) then return false, "a status that is not a number from 200 to 599" end
    if value ~= nil and type(value) ~= "table" then return false, "a " .. type(value) .. " body (want a table)" end
    return true, { status = status, value = value or {} }
  end, r, ctx)
  if not ok then return 500, nil, "the policy's route " .. what .. " " .. d end
  self:perform(todo, "routes")
  if d.op == "create" then
    local created, err = self.h:create(d.body)
    if not created then return err.status, nil, err.message end
    return 201, created
  elseif d.op == "update" then
    local updated, err = self.h:update(d.ref, d.body)
    if not updated then return err.status, nil, err.message end
    return 202, updated
  end
  return d.status, d.value
end

return policy
