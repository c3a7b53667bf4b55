-- The Host: programs registered in SQLite, each driven by a supervisor, published on
-- ports of their own, and the operations the REST API offers on them. Every
-- operation answers at once: builds, spawns and probes run on the loop meanwhile.
local core = require "hersh.core"
local http = require "hersh.http"
local sys = require "hersh.os"
local json = require "hersh.json"
local build = require "host.build"
local build_id = require "host.build_id"
local dockerfile = require "host.dockerfile"
local health = require "host.health"
local events = require "host.events"
local paths = require "host.paths"
local policy = require "host.policy"
local program = require "host.program"
local ports = require "host.ports"
local record_cache = require "host.record_cache"
local registry = require "host.registry"
local sandbox = require "host.sandbox"
local supervisor = require "host.supervisor"
local random = require "host.random"

local fs = sys.fs
local host = {}

host.MAX_FILES = 1000
-- The proxy's timeouts in seconds, unless a program sets its own (create field proxy).
host.PROXY_DEFAULTS = { connect_timeout = 10, timeout = 30 }
host.PROXY_MAX = 3600
host.USER_ID = "^[a-z0-9][a-z0-9_-]*$"
host.NAME_MAX = 63
host.LABELS_MAX = 64 -- labels of one program
host.LABEL_KEY = "^[%w][%w%._/-]*$"
host.LABEL_VALUE_MAX = 255
host.RETRY = 2 -- seconds between tries of a registry write the disk refused
-- The desired state of a program being deleted: a Host that restarts finishes the job.
host.DELETED, host.DELETED_KEEP_STATE = "deleted", "deleted_keep_state"

-- Modes: the sandbox user (and any other) may walk through the storage, programs/,
-- images/ and each programs/<id>/ to the images and the state folders (x, not r);
-- the registry, the sources and the logs are root's alone.
host.PASSAGE = tonumber("711", 8)
-- Who programs and builds run as on the host (nobody).
host.SANDBOX_USER = { uid = 65534, gid = 65534 }
host.PRIVATE_DIR = tonumber("700", 8)

local Host = {}
Host.__index = Host

local function iso_time(t)
  local secs = math.floor(t)
  return os.date("!%Y-%m-%dT%H:%M:%S", secs) .. string.format(".%03dZ", math.floor((t - secs) * 1000))
end

-- An operation's failure: HTTP status, message, and for 409 the current state.
local function refuse(status, message, state)
  return nil, { status = status, message = message, state = state }
end

-- A storage write that failed: 507 when the disk is full, else 500.
local function storage_failure(what, err, code)
  local full = code == "EFULL" or code == "ENOSPC"
  return refuse(full and 507 or 500, what .. ": " .. tostring(err) .. (full and " (the disk is full)" or ""))
end

-- Keeps trying a registry write that failed (a full disk) every host.RETRY seconds
-- until it passes; a newer write of the same `key` replaces it. The first failure and
-- the recovery are said on stderr.
function Host:retry(key, write, err)
  self.pending[key] = write
  if self.retry_timer then return end
  io.stderr:write("hersh host: cannot write the registry (", tostring(err), "): retrying every ",
    tostring(host.RETRY), " s\n")
  self.retry_timer = core.timer(host.RETRY, function()
    for k, w in pairs(self.pending) do
      if w() then self.pending[k] = nil end
    end
    if next(self.pending) == nil then
      self.retry_timer:stop()
      self.retry_timer = nil
      io.stderr:write("hersh host: the registry is written again\n")
    end
  end, host.RETRY)
end

-- Runs a registry write now, or keeps trying it (see retry).
function Host:write(key, write)
  local ok, err = write()
  if ok then
    self.pending[key] = nil
  else
    self:retry(key, write, err)
  end
end

-- ---- one program -------------------------------------------------------------------

function Host:dirs(id)
  local root = self.storage .. "/programs/" .. id
  return { root = root, src = root .. "/src", state = root .. "/state", logs = root .. "/logs", api = root .. "/api" }
end

-- The proxy's timeouts for p: its own, else the defaults.
function Host:proxy_timeouts(p)
  local own = p.spec.proxy or {}
  return { connect_timeout = own.connect_timeout or host.PROXY_DEFAULTS.connect_timeout,
    timeout = own.timeout or host.PROXY_DEFAULTS.timeout }
end

-- What GET /programs/{id} shows.
function Host:view(p)
  local r = p.sup.record
  local null = json.null
  local proc_limits -- whether the machine enforces them, as the running process found
  if p.spec.limits then
    for _, proc in pairs(p.sup.procs) do proc_limits = proc:limits() end
  end
  return {
    program_id = p.id, name = p.name or null, user_id = p.user_id, build_id = p.build_id, state = r.state,
    revision = p.revision, updating_revision = p.updating or null, failed_revision = p.failed_revision or null,
    failed_reason = p.failed_reason or null,
    proxy_url = "http://127.0.0.1:" .. p.port, publish_port = p.port,
    created_at = p.created_at, updated_at = p.updated_at,
    error_msg = r.error_msg or null, exit_code = r.exit_code or null, exit_signal = r.exit_signal or null,
    oom_killed = r.oom_killed == true, restarts = r.restarts or 0,
    last_exit_at = r.last_exit_at and iso_time(r.last_exit_at) or null,
    ready_at = r.ready_at and iso_time(r.ready_at) or null,
    next_restart_at = r.next_restart_at and iso_time(r.next_restart_at) or null, pid = r.pid or null,
    limits = p.spec.limits or null, limits_enforced = proc_limits or null, proxy = self:proxy_timeouts(p),
    network = p.spec.network or "none", restart_policy = r.policy, health = p.spec.health or null,
    isolation = p.isolation, labels = p.spec.labels or null,
  }
end

-- The record fields the registry keeps beside the state, for a restarted Host.
local RESTORED = { "error_msg", "exit_code", "exit_signal", "oom_killed", "last_exit_at", "ready_at" }

-- A registered program, with its supervisor. `restored` gives the record fields a
-- Host restart brings back (state and the RESTORED fields).
function Host:attach(row, restored)
  local id = row.program_id
  -- Parsed once per text: most programs of a Host share a few Dockerfiles, and parsing
  -- each of 10,000 at start took half of the start-up. A plan is never changed.
  local plan = self.plans[row.spec.dockerfile]
  if not plan then
    plan = assert(dockerfile.parse(row.spec.dockerfile)) -- checked at create
    self.plans[row.spec.dockerfile] = plan
  end
  local p = { id = id, name = row.name, revision = row.revision or 1, latest = row.latest or row.revision or 1,
    isolation = row.isolation or "bwrap",
    failed_revision = row.failed_revision, failed_reason = row.failed_reason,
    user_id = row.user_id, build_id = row.build_id, port = row.publish_port,
    spec = row.spec, created_at = row.created_at, updated_at = row.updated_at, followers = {},
    desired = row.desired or "stopped" }
  local dirs = self:dirs(id)
  -- A driver this Host cannot run (runsc gone since): the program stays in Error, and
  -- never runs under another, weaker one.
  local driver, driver_err = self:driver_of(p.isolation)
  if not driver then
    restored = { state = "Error", error_msg = "isolation " .. p.isolation .. " is not available: " .. driver_err }
    driver = sandbox.unavailable(p.isolation, driver_err)
  end
  local fields = { state = restored and restored.state, policy = row.spec.restart_policy, program_id = id }
  for _, k in ipairs(RESTORED) do fields[k] = restored and restored[k] end
  local record, record_err = program.new(fields)
  if not record then return nil, record_err end
  local sup, err = supervisor.new{
    record = record,
    id = id, plan = plan, build_id = row.build_id, dirs = dirs, images_dir = self.storage .. "/images",
    spec = row.spec, driver = driver, runtime = self.runtime, user = self.user, port = row.publish_port,
    revision = p.revision,
    build_timeout = self.build_timeout,
    publish = function() -- the port's socket to the process, or relayed to its unix socket
      if not driver.listen_path then return self.ports:hand_over(p.port) end
      return self.ports:relay(p.port, dirs.api .. "/" .. driver.listen_path:match("[^/]+$"))
    end,
    on_change = function(record) self:changed(p, record) end,
    on_event = function(kind, details) self:emit(p, kind, details) end,
    on_release = function(keep_state) self:released(p, keep_state) end,
    health_judge = function(res, err) return self.policy:health(p, res, err) end,
  }
  if not sup then return nil, err end
  p.sup = sup
  self:count_state(p, record.state)
  self.programs[id] = p
  if p.name then self.by_name[p.name] = p end
  self.order[#self.order + 1] = p
  p.slot = #self.order
  return p
end

-- Records a lifecycle event of p (host.events) and says it in p's runtime log as the
-- Host's line, "hersh: <message>" (a deleted program has no log left).
function Host:emit(p, kind, details)
  self:touch(p) -- an update's steps change what the record shows (its processes) with no state change
  details = details or {}
  details.name = p.name
  local event, err = self.events:record(p.id, kind, details)
  if not event then
    io.stderr:write("hersh host: cannot record a ", kind, " event of ", p.id, ": ", tostring(err), "\n")
  end
  if kind ~= "deleted" then p.sup:note("hersh: " .. events.message(kind, details)) end
end

-- The states in which no process serves the program's port: the Host answers on it.
local QUIET = { Created = true, Stopped = true, Error = true, Restarting = true }

-- What p's record shows changed: its cached JSON is stale, its proxy route too, and
-- the proxy's connections to it (the swap of an update: they may reach the old process).
function Host:touch(p)
  p.changed = http.epoch() -- the Lua proxy route's fresh_after; the fast path's is the table's
  self.cache:drop(p)
  self:route(p)
end

-- ---- the proxy's fast path ----------------------------------------------------------
-- api.serve hands the Host a route table (hersh.httpd.routes) that its server reads to
-- forward proxied requests in C, and to answer GET /programs/{id} and /health from the
-- texts the Lua routes gave last; every change of a program (touch) sets its entries
-- again from the same truth as Host:get (and forgets those texts), so the table never
-- answers what Lua would not.

-- The route of one key, an id or a name, as Host:get resolves it (an id first).
function Host:route_key(key)
  local p = self.programs[key] or self.by_name[key]
  if not p then return self.routes:remove(key) end
  local t = self:proxy_timeouts(p)
  self.routes:set(key, p.port, p.sup.record.state == "Ready", t.timeout, t.connect_timeout)
end

function Host:route(p)
  if not self.routes then return end
  self:route_key(p.id) -- forgets the record text C answers GET /programs/{id} with
  if p.name then self:route_key(p.name) end
  self.routes:set_health(nil) -- its count of programs may have changed
end

-- From now on the table follows every program.
function Host:use_routes(routes)
  self.routes = routes
  for _, p in ipairs(self.order) do self:route(p) end
end

-- Writes the state of p's record to the registry (retried when the disk refuses).
function Host:store_state(p, record)
  local s = { state = record.state, restarts = record.restarts, updated_at = p.updated_at }
  for _, k in ipairs(RESTORED) do s[k] = record[k] end
  self:write("state " .. p.id, function() return self.registry:update_state(p.id, s) end)
end

-- Moves p's count in self.state_counts (GET /metrics) to `state`; a deleted program
-- counts nowhere. Kept as states change, so that a scrape never walks the programs.
function Host:count_state(p, state)
  if p.counted_state == state then return end
  local counts = self.state_counts
  if p.counted_state then counts[p.counted_state] = counts[p.counted_state] - 1 end
  if state == "Deleted" then state = nil end
  if state then counts[state] = (counts[state] or 0) + 1 end
  p.counted_state = state
end

function Host:changed(p, record)
  self:count_state(p, record.state)
  if record.state == "Deleted" then return self:route(p) end -- not Ready any more
  self:touch(p)
  p.updated_at = iso_time(record.updated_at or core.now())
  self:store_state(p, record)
  if QUIET[record.state] then self.ports:answer(p.port) end
end

-- Removes a deleted program's files (but state/ when keep_state), then its record and
-- its port. The record goes last: until it is gone (a full disk: retried) its desired
-- state tells a restarted Host to finish the delete, and the port stays held, so no
-- new program can claim it.
function Host:forget(id, port, keep_state)
  local dirs = self:dirs(id)
  if keep_state then
    fs.remove_tree(dirs.src)
    fs.remove_tree(dirs.logs)
  else
    fs.remove_tree(dirs.root)
  end
  self.pending["state " .. id], self.pending["desired " .. id] = nil, nil
  self:write("delete " .. id, function()
    local ok, err, code = self.registry:delete(id)
    if ok then self.ports:release(port) end
    return ok, err, code
  end)
end

-- Takes p out of self.order in O(1): the last program takes its slot (the order of
-- self.order means nothing; listings follow the registry's).
function Host:unlist(p)
  local last = self.order[#self.order]
  self.order[p.slot], last.slot = last, p.slot
  self.order[#self.order] = nil
  self:touch(p)
end

function Host:released(p, keep_state)
  self:forget(p.id, p.port, keep_state)
  local driver = self.drivers[p.isolation] -- what a driver keeps outside the storage (swarm: a volume)
  if driver and driver.release then driver.release(p.id, keep_state) end
  self:emit(p, "deleted", { keep_state = keep_state or false })
  self.programs[p.id] = nil
  if p.name then self.by_name[p.name] = nil end
  self:count_state(p, "Deleted")
  self:unlist(p)
  for _, done in ipairs(p.on_deleted or {}) do done() end
end

-- ---- operations --------------------------------------------------------------------

-- The fields a create request may hold: any other is refused, so that a misspelt or
-- unsupported one is never silently ignored.
host.CREATE_FIELDS = { "dockerfile", "env", "health", "isolation", "labels", "limits", "name", "network", "proxy",
  "restart_policy", "src_files", "user_id" }
local KNOWN_FIELD = {}
for _, name in ipairs(host.CREATE_FIELDS) do KNOWN_FIELD[name] = true end

-- A request's labels (nil, or an object of at most host.LABELS_MAX names to strings)
-- -> the labels, or nil, message.
local function check_labels(labels)
  if labels == nil then return nil end
  if type(labels) ~= "table" or json.is_array(labels) or labels[1] ~= nil then
    return nil, "labels must be an object {name: value}"
  end
  local n = 0
  for k, v in pairs(labels) do
    n = n + 1
    if type(k) ~= "string" or #k > host.NAME_MAX or not k:match(host.LABEL_KEY) then
      return nil, "labels: a name must be 1-" .. host.NAME_MAX .. " of letters, digits and . _ / -, starting with a letter or a digit"
    end
    if type(v) ~= "string" or #v > host.LABEL_VALUE_MAX or v:find("%c") then
      return nil, "labels: the value of " .. k .. " must be a string of at most " .. host.LABEL_VALUE_MAX
        .. " bytes without control characters"
    end
  end
  if n > host.LABELS_MAX then return nil, "labels: at most " .. host.LABELS_MAX end
  if n == 0 then return nil end -- {} is no labels
  return labels
end

-- Validates a create request; returns the normalized parts or nil, error.
local function validate(body)
  if type(body) ~= "table" or json.is_array(body) or body[1] ~= nil then -- decoded arrays are marked, a Lua list is not
    return refuse(400, "the body must be a JSON object")
  end
  local unknown = {}
  for k in pairs(body) do
    if not KNOWN_FIELD[k] then unknown[#unknown + 1] = tostring(k) end
  end
  if #unknown > 0 then
    table.sort(unknown)
    return refuse(400, "unknown field" .. (#unknown > 1 and "s" or "") .. " " .. table.concat(unknown, ", ")
      .. " (known: " .. table.concat(host.CREATE_FIELDS, ", ") .. ")")
  end
  for k, v in pairs(body) do -- an explicit null is the same as leaving the field out
    if v == json.null then body[k] = nil end
  end
  local user_id = body.user_id
  if type(user_id) ~= "string" or #user_id < 1 or #user_id > 64 or not user_id:match(host.USER_ID) then
    return refuse(400, "user_id must be 1-64 of [a-z0-9_-], starting with a letter or a digit")
  end
  local name = body.name
  if name ~= nil and (type(name) ~= "string" or #name < 1 or #name > host.NAME_MAX
    or not name:match("^[a-z0-9][a-z0-9-]*$") or name:match("%-$")) then
    return refuse(400, "name must be 1-" .. host.NAME_MAX .. " lower-case letters, digits and '-',"
      .. " starting and ending with a letter or a digit")
  end
  if type(body.dockerfile) ~= "string" or body.dockerfile == "" then
    return refuse(400, "dockerfile must be a non-empty string")
  end
  local plan, err = dockerfile.parse(body.dockerfile)
  if not plan then return refuse(400, err) end
  local _, cmd_err = dockerfile.command(plan)
  if cmd_err then return refuse(400, cmd_err) end
  local src = body.src_files
  if src == nil then src = {} end
  if type(src) ~= "table" then return refuse(400, "src_files must be an object {path: content}") end
  local n = 0
  for k, v in pairs(src) do
    n = n + 1
    if type(k) ~= "string" or type(v) ~= "string" then
      return refuse(400, "src_files must map paths to string contents")
    end
  end
  if n > host.MAX_FILES then return refuse(400, "at most " .. host.MAX_FILES .. " files") end
  local files, files_err = paths.check_files(src)
  if not files then return refuse(400, "src_files: " .. files_err) end
  for _, step in ipairs(plan.steps) do
    if step.op == "copy" then
      local ok, copy_err = dockerfile.copy_targets(step, files)
      if not ok then return refuse(400, copy_err) end
    end
  end
  local env = body.env or {}
  if type(env) ~= "table" then return refuse(400, "env must be an object of strings") end
  for k, v in pairs(env) do
    if type(k) ~= "string" or not k:match("^[A-Za-z_][A-Za-z0-9_]*$") or type(v) ~= "string" then
      return refuse(400, "env must map names ([A-Za-z_][A-Za-z0-9_]*) to strings")
    end
    -- The sandbox gets its variables NUL-separated (bwrap --args): a NUL cannot pass.
    if v:find("\0", 1, true) then return refuse(400, "env: the value of " .. k .. " holds a NUL byte") end
  end
  local limits = body.limits
  if limits ~= nil then
    if type(limits) ~= "table" then return refuse(400, "limits must be an object {memory, pids, cpus}") end
    for k, v in pairs(limits) do
      if (k ~= "memory" and k ~= "pids" and k ~= "cpus") or type(v) ~= "number" or v <= 0 then
        return refuse(400, "limits: memory (bytes), pids and cpus must be positive numbers")
      end
      if k ~= "cpus" and math.type(v) ~= "integer" and v ~= math.floor(v) then
        return refuse(400, "limits: " .. k .. " must be a whole number")
      end
    end
    if limits.memory and limits.memory < 4 * 1024 * 1024 then
      return refuse(400, "limits: memory must be at least 4194304 bytes (4 MiB)")
    end
  end
  local network = body.network or "none"
  if network ~= "none" and network ~= "host" then return refuse(400, "network must be \"none\" or \"host\"") end
  local isolation = body.isolation -- nil: the Host's default (--isolation)
  if isolation ~= nil and not sandbox.known(isolation) then
    return refuse(400, "isolation must be \"" .. table.concat(sandbox.names, "\" or \"") .. "\", not "
      .. (type(isolation) == "string" and "\"" .. isolation:sub(1, 40) .. "\"" or "a " .. type(isolation)))
  end
  local proxy = body.proxy
  if proxy ~= nil then
    if type(proxy) ~= "table" or json.is_array(proxy) or proxy[1] ~= nil then
      return refuse(400, "proxy must be an object {connect_timeout, timeout}")
    end
    for k, v in pairs(proxy) do
      if k ~= "connect_timeout" and k ~= "timeout" then
        return refuse(400, "proxy: unknown field \"" .. tostring(k) .. "\" (known: connect_timeout, timeout)")
      end
      if v ~= json.null and (type(v) ~= "number" or not (v > 0 and v <= host.PROXY_MAX)) then
        return refuse(400, "proxy: " .. k .. " must be a number of seconds, above 0 and at most " .. host.PROXY_MAX)
      end
      if v == json.null then proxy[k] = nil end
    end
  end
  local checks, health_err = health.normalize(body.health)
  if health_err then return refuse(400, health_err) end
  local labels, labels_err = check_labels(body.labels)
  if labels_err then return refuse(400, labels_err) end
  return { user_id = user_id, name = name, dockerfile = body.dockerfile, plan = plan, files = files, env = env,
    limits = limits, network = network, restart_policy = body.restart_policy, proxy = proxy, health = checks,
    isolation = isolation, labels = labels }
end

-- A validated request as a policy's admit and place see it: the fields of a client's
-- body (src_files, not the parsed plan), which admit may return changed.
local function as_body(req)
  return { user_id = req.user_id, name = req.name, dockerfile = req.dockerfile, src_files = req.files, env = req.env,
    limits = req.limits, network = req.network, restart_policy = req.restart_policy, proxy = req.proxy,
    health = req.health, isolation = req.isolation, labels = req.labels }
end

-- req after the policy's admit (operation: create, update, rollback; p: the program
-- changed): refused with the policy's status and message, or the request it gave
-- instead, checked as a client's (one the Host refuses is the policy's fault: the
-- original stands).
function Host:admitted(req, operation, p)
  local d = self.policy:admit(as_body(req), operation, p)
  if d.refuse then return refuse(d.refuse.status, d.refuse.message) end
  if not d.request then return req end
  local again, err = validate(d.request)
  if again then return again end
  self.policy:fail("admit", p and p.id, "returned a request the Host refuses (" .. err.message .. "); the default decided")
  return req
end

-- The client's `hersh plan` and `apply` check a whole file with the same rules first.
host.validate = validate

local function write_files(dir, files)
  for rel, content in pairs(files) do
    local path = dir .. "/" .. rel
    local ok, err, code = fs.mkdir_p(path:match("^(.*)/[^/]*$"))
    if ok then ok, err, code = fs.write_file(path, content) end
    if not ok then return nil, err, code end
  end
  return true
end

-- A new program's folder: programs/<id>/ passable, src/ and logs/ root's, state/ the
-- sandbox user's alone.
local function make_program_dir(root, files, user)
  local ok, err, code = fs.mkdir_p(root .. "/src", host.PRIVATE_DIR)
  if ok then ok, err, code = fs.chmod(root, host.PASSAGE) end
  if ok then ok, err, code = write_files(root .. "/src", files) end
  if ok then ok, err, code = fs.mkdir_p(root .. "/state", host.PRIVATE_DIR) end
  if ok then ok, err, code = fs.chown(root .. "/state", user.uid, user.gid) end
  if ok then ok, err, code = fs.mkdir_p(root .. "/logs", host.PRIVATE_DIR) end
  return ok, err, code
end

function Host:create(body)
  local req, err = validate(body)
  if req then req, err = self:admitted(req, "create") end
  if not req then return nil, err end
  local holder = req.name and (self.by_name[req.name] or self.programs[req.name])
  if holder then return refuse(409, "the name " .. req.name .. " is taken by program " .. holder.id) end
  local isolation = self.policy:place(as_body(req))
  local usable, unusable = self:driver_of(isolation)
  if not usable then return refuse(400, "isolation " .. isolation .. " is not available on this Host: " .. unusable) end
  local bid = build_id.compute(req.dockerfile, req.files)
  local id = req.user_id .. "-" .. bid .. "-" .. random.hex(4)
  local port, fd_or_err = self.ports:take()
  if not port then return refuse(503, fd_or_err) end
  local dirs = self:dirs(id)
  local tmp = dirs.root .. ".new"
  local ok, fs_err, fs_code = make_program_dir(tmp, req.files, self.user)
  if ok then ok, fs_err = os.rename(tmp, dirs.root) end
  if not ok then
    fs.remove_tree(tmp)
    self.ports:release(port)
    return storage_failure("cannot store the program", fs_err, fs_code)
  end
  local now = iso_time(core.now())
  local row = { program_id = id, name = req.name, user_id = req.user_id, build_id = bid, publish_port = port,
    desired = "stopped", state = "Created", created_at = now, updated_at = now, files = req.files,
    isolation = isolation,
    spec = { dockerfile = req.dockerfile, env = req.env, limits = req.limits, network = req.network,
      restart_policy = req.restart_policy, proxy = req.proxy, health = req.health, labels = req.labels } }
  local p, attach_err = self:attach(row)
  if not p then -- an invalid restart policy: nothing was recorded yet
    fs.remove_tree(dirs.root)
    self.ports:release(port)
    return refuse(400, "restart_policy: " .. tostring(attach_err))
  end
  local stored, db_err, db_code = self.registry:insert(row)
  if not stored then
    self.programs[id] = nil
    if req.name then self.by_name[req.name] = nil end
    self:unlist(p)
    fs.remove_tree(dirs.root)
    self.ports:release(port)
    return storage_failure("cannot record the program", db_err, db_code)
  end
  self:emit(p, "created", { user_id = req.user_id, build_id = bid })
  return { program_id = id, name = req.name or json.null, revision = 1, build_id = bid, state = "Created",
    proxy_url = "http://127.0.0.1:" .. port, publish_port = port, created_at = now }
end

-- A program by its id or its name.
function Host:get(ref)
  local p = self.programs[ref] or self.by_name[ref]
  if not p then return refuse(404, "no program with the id or name " .. tostring(ref)) end
  return p
end

-- A listing's cursor: the position {created_at, program_id} of its last program, which
-- stays valid when that program is deleted. Opaque to clients.
local CURSOR = "^(%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ)~([a-z0-9][a-z0-9_-]*)$"

-- The programs of q {user_id, state, name, limit (nil: all), after (a cursor)}, oldest
-- first, filtered in the registry; and the cursor of the next page when there may be
-- more. -> list of programs, next | nil, refusal.
local KNOWN_STATE = {}
for _, state in ipairs(program.STATES) do KNOWN_STATE[state] = true end

function Host:list(q)
  if q.state ~= nil and not KNOWN_STATE[q.state] then
    return refuse(400, "state must be one of " .. table.concat(program.STATES, ", "))
  end
  local after
  if q.after ~= nil then
    local created_at, id = tostring(q.after):match(CURSOR)
    if not created_at then return refuse(400, "after must be the next cursor of a previous page") end
    after = { created_at = created_at, program_id = id }
  end
  local rows, err = self.registry:page{ user_id = q.user_id, state = q.state, name = q.name, after = after,
    limit = q.limit and q.limit + 1 } -- one more: is there a next page
  if not rows then return refuse(500, "cannot read the registry: " .. tostring(err)) end
  local out, next_cursor = {}, nil
  for i, row in ipairs(rows) do
    if q.limit and i > q.limit then
      local last = rows[q.limit]
      next_cursor = last.created_at .. "~" .. last.program_id
      break
    end
    local p = self.programs[row.program_id] -- nil: a deleted program whose record is not gone yet
    -- The state column follows the record at each change; a write the disk refused
    -- (retried) leaves it behind: the record itself decides.
    if p and (q.state == nil or p.sup.record.state == q.state) then out[#out + 1] = p end
  end
  return out, next_cursor
end

-- Records `desired` (nil: no change), then asks the supervisor for `action`. A write
-- that fails changes nothing (507 or 500); a request the supervisor refuses (409) puts
-- the old desired state back. So what the client is told is what a restart restores.
function Host:request(p, desired, action, ...)
  local before = p.desired
  if desired and desired ~= before then
    local ok, err, code = self.registry:set_desired(p.id, desired)
    if not ok then return storage_failure("cannot record the " .. action, err, code) end
    self.pending["desired " .. p.id] = nil
    p.desired = desired
  end
  local ok, why = p.sup[action](p.sup, ...)
  if ok then return true end
  if p.desired ~= before then
    p.desired = before
    self:write("desired " .. p.id, function() return self.registry:set_desired(p.id, before) end)
  end
  return refuse(409, why, p.sup.record.state)
end

local MESSAGES = { start = "start requested", stop = "stop requested", restart = "restart requested" }
local DESIRED = { start = "running", stop = "stopped" } -- a restart changes nothing

-- start, stop or restart: the desired state is recorded before the answer.
function Host:act(id, action)
  local p, err = self:get(id)
  if not p then return nil, err end
  local ok, why = self:request(p, DESIRED[action], action)
  if not ok then return nil, why end
  return { program_id = p.id, state = p.sup.record.state, message = MESSAGES[action] }
end

-- Deletes; `done` is called once the processes are gone, the port free and the files
-- removed. The delete is recorded first (desired "deleted"): a restart finishes it.
function Host:delete(id, keep_state, done)
  local p, err = self:get(id)
  if not p then return nil, err end
  p.on_deleted = p.on_deleted or {}
  p.on_deleted[#p.on_deleted + 1] = done -- before: a program with no process is released at once
  local ok, why = self:request(p, keep_state and host.DELETED_KEEP_STATE or host.DELETED, "delete", keep_state)
  if not ok then
    table.remove(p.on_deleted)
    return nil, why
  end
  return true
end

function Host:source(id)
  local p, err = self:get(id)
  if not p then return nil, err end
  local src = self:dirs(p.id).src
  local files = {}
  for path in pairs(build.list_files(src)) do
    local content, read_err = fs.read_file(src .. "/" .. path)
    if not content then return refuse(500, "cannot read the source: " .. tostring(read_err)) end
    files[path] = content
  end
  return { program_id = p.id, revision = p.revision, dockerfile = p.spec.dockerfile, files = files, retrieved_at = iso_time(core.now()) }
end

function Host:log_path(id, kind)
  local p, err = self:get(id)
  if not p then return nil, err end
  if kind ~= "runtime" and kind ~= "build" then
    return refuse(400, "type must be \"runtime\" or \"build\", not \"" .. tostring(kind) .. "\"")
  end
  return self:dirs(p.id).logs .. "/" .. kind .. ".log", p
end

-- ---- update in place, revisions, rollback ---------------------------------------------

-- The fields an update may not change; a PUT may leave them out.
local FIXED = { user_id = "user_id", name = "name", network = "network", isolation = "isolation" }

-- Deploys req (validated as at create) as the next revision of p: from Ready, beside
-- the running one (supervisor update); from Created, Stopped or Error, for the next
-- start. `rollback_of`: the kept revision it re-deploys. -> 202's body | nil, refusal.
function Host:deploy(p, req, rollback_of)
  if p.updating then
    return refuse(409, "revision " .. p.updating .. " of " .. p.id .. " is being deployed", p.sup.record.state)
  end
  local policy, policy_err = program.new{ policy = req.restart_policy }
  if not policy then return refuse(400, "restart_policy: " .. tostring(policy_err)) end
  local rev = p.latest + 1
  local bid = build_id.compute(req.dockerfile, req.files)
  local spec = { dockerfile = req.dockerfile, env = req.env, limits = req.limits, network = req.network,
    restart_policy = req.restart_policy, proxy = req.proxy, health = req.health, labels = req.labels }
  local staged = self:dirs(p.id).root .. "/src." .. rev
  local ok, err, code = fs.mkdir_p(staged, host.PRIVATE_DIR)
  if ok then ok, err, code = write_files(staged, req.files) end
  if ok then
    ok, err, code = self.registry:add_revision(p.id, { revision = rev, build_id = bid, spec = spec, files = req.files,
      created_at = iso_time(core.now()) })
  end
  if not ok then
    fs.remove_tree(staged)
    return storage_failure("cannot store revision " .. rev, err, code)
  end
  p.latest, p.updating = rev, rev
  self:touch(p)
  self:emit(p, "updating", { revision = rev, from_revision = p.revision, rollback_of = rollback_of })
  local started, why = p.sup:update{ revision = rev, plan = req.plan, build_id = bid, spec = spec, src_dir = staged,
    on_step = function(kind, details) self:emit(p, kind, details) end,
    on_done = function(done, reason)
      self:updated(p, { revision = rev, build_id = bid, spec = spec, staged = staged, policy = policy.policy,
        rollback_of = rollback_of }, done, reason)
    end }
  if not started then
    p.updating = nil
    self:touch(p)
    fs.remove_tree(staged)
    self:emit(p, "update_failed", { revision = rev, reason = why, running_revision = p.revision })
    return refuse(409, why, p.sup.record.state)
  end
  return { program_id = p.id, name = p.name or json.null, revision = rev, state = p.sup.record.state,
    message = (p.updating and "revision " .. rev .. " is being deployed" or "revision " .. rev .. " is in place") }
end

-- The end of a deploy: the new revision runs (its sources become src/), or the old one
-- keeps running and the failed revision is recorded with why.
function Host:updated(p, rev, ok, reason)
  p.updating = nil
  self:touch(p)
  if p.sup.record.state == "Deleted" then return fs.remove_tree(rev.staged) end -- its files go anyway
  if ok then
    local src = self:dirs(p.id).src
    fs.remove_tree(src)
    local moved, move_err = os.rename(rev.staged, src)
    if not moved then io.stderr:write("hersh host: cannot keep the sources of ", p.id, ": ", tostring(move_err), "\n") end
    p.revision, p.build_id, p.spec = rev.revision, rev.build_id, rev.spec
    p.failed_revision, p.failed_reason = nil, nil
    local r = {}
    for k, v in pairs(p.sup.record) do r[k] = v end
    r.policy = rev.policy
    p.sup.record = r
  else
    fs.remove_tree(rev.staged)
    p.failed_revision, p.failed_reason = rev.revision, reason
  end
  local row = { revision = p.revision, build_id = p.build_id, spec = p.spec, failed_revision = p.failed_revision,
    failed_reason = p.failed_reason }
  self:write("revision " .. p.id, function() return self.registry:set_revision(p.id, row) end)
  if not ok then
    self:emit(p, "update_failed", { revision = rev.revision, reason = reason, running_revision = p.revision })
  elseif rev.rollback_of then
    self:emit(p, "rolled_back", { revision = rev.revision, rollback_of = rev.rollback_of })
  else
    self:emit(p, "updated", { revision = rev.revision })
  end
end

-- PUT /programs/{id}: the body of a create; user_id, name, network and isolation cannot
-- change.
function Host:update(ref, body)
  local p, err = self:get(ref)
  if not p then return nil, err end
  if type(body) == "table" and body.user_id == nil then body.user_id = p.user_id end
  local req, req_err = validate(body)
  if req then req, req_err = self:admitted(req, "update", p) end
  if not req then return nil, req_err end
  local now = { user_id = p.user_id, name = p.name, network = p.spec.network or "none", isolation = p.isolation }
  for field in pairs(FIXED) do
    if req[field] ~= nil and req[field] ~= now[field] then
      return refuse(400, field .. " cannot change in an update (it is " .. tostring(now[field] or "unset")
        .. "): create a new program instead")
    end
  end
  return self:deploy(p, req)
end

-- The kept revisions of a program, newest first, without their sources or env (the
-- record never shows env: it may hold secrets).
function Host:revisions(ref)
  local p, err = self:get(ref)
  if not p then return nil, err end
  local rows, db_err = self.registry:revisions(p.id)
  if not rows then return refuse(500, "cannot read the revisions: " .. tostring(db_err)) end
  local list = {}
  for i, row in ipairs(rows) do
    local paths = {}
    for path in pairs(row.files) do paths[#paths + 1] = path end
    table.sort(paths)
    list[i] = { revision = row.revision, build_id = row.build_id, created_at = row.created_at,
      running = row.revision == p.revision, failed = row.revision == p.failed_revision,
      dockerfile = row.spec.dockerfile, files = json.array(paths), limits = row.spec.limits or json.null,
      restart_policy = row.spec.restart_policy or json.null, health = row.spec.health or json.null,
      proxy = row.spec.proxy or json.null }
  end
  return { program_id = p.id, name = p.name or json.null, revision = p.revision, keep = registry.KEEP_REVISIONS,
    revisions = json.array(list) }
end

-- POST /programs/{id}/rollback?revision=N: deploys kept revision N again, as a new one.
function Host:rollback(ref, n)
  local p, err = self:get(ref)
  if not p then return nil, err end
  local want = type(n) == "string" and n:match("^%d+$") and math.tointeger(tonumber(n))
  if not want then return refuse(400, "revision: give the number of a kept revision (see GET /programs/"
    .. (p.name or p.id) .. "/revisions)") end
  local rows, db_err = self.registry:revisions(p.id)
  if not rows then return refuse(500, "cannot read the revisions: " .. tostring(db_err)) end
  local kept = {}
  for _, row in ipairs(rows) do
    if row.revision == want then
      local s = row.spec
      local req, req_err = validate{ user_id = p.user_id, dockerfile = s.dockerfile, src_files = row.files,
        env = s.env, limits = s.limits, network = s.network, restart_policy = s.restart_policy, proxy = s.proxy,
        health = s.health, labels = s.labels }
      if req then req, req_err = self:admitted(req, "rollback", p) end
      if not req then return nil, req_err end
      return self:deploy(p, req, want)
    end
    kept[#kept + 1] = tostring(row.revision)
  end
  return refuse(404, "revision " .. want .. " of " .. p.id .. " is not kept (kept: " .. table.concat(kept, ", ") .. ")")
end

-- ---- start-up ----------------------------------------------------------------------

-- The sandbox driver called name, checked and prepared (its folder <storage>/<name>)
-- at its first use. -> driver, or nil, why it cannot run here.
function Host:driver_of(name)
  local driver = self.drivers[name]
  if driver then return driver end
  local why
  driver, why = sandbox.get(name)
  if not driver then return nil, why end
  if driver.prepare then
    local ok, err = driver.prepare(self.storage .. "/" .. name)
    if not ok then return nil, "cannot prepare its folder: " .. tostring(err) end
  end
  self.drivers[name] = driver
  return driver
end

-- host.open{storage, driver = "bwrap", isolation = "bwrap" (a create's default),
-- runtime = {bin, lua}, user = {uid, gid},
-- ports = {first, last}, build_timeout, events_max, policy = a policy file (host.policy)} -> Host. Programs found in the registry are
-- listed again with the same id and port; those meant to run are started.
-- The sandbox runs as an unprivileged user, which must be able to walk down to the
-- images and state folders: each folder on the way needs its "x" bit for others.
local function check_reachable(storage)
  local path = storage:sub(1, 1) == "/" and storage or (os.getenv("PWD") or ".") .. "/" .. storage
  local at = ""
  for part in path:gmatch("[^/]+") do
    at = at .. "/" .. part
    local st = fs.stat(at)
    if st and st.type == "dir" and st.mode & 1 == 0 then
      return nil, "the sandbox user cannot reach " .. storage .. ": " .. at
        .. " is not searchable by others (chmod o+x it, or choose another --storage)"
    end
  end
  return true
end

-- The modes of the storage, set at every start so that one an older Host made (0755
-- folders, 0644 files) is fixed too.
local function set_modes(storage, user)
  for _, dir in ipairs{ storage, storage .. "/programs", storage .. "/images" } do
    local ok, err = fs.mkdir_p(dir, host.PASSAGE)
    if ok then ok, err = fs.chmod(dir, host.PASSAGE) end
    if not ok then return nil, err end
  end
  for _, name in ipairs(fs.list(storage .. "/images") or {}) do
    local dir = storage .. "/images/" .. name
    local st = fs.stat(dir)
    if st and st.type == "dir" then
      local ok, err = build.protect(dir, user)
      if not ok then return nil, err end
    end
  end
  for _, name in ipairs(fs.list(storage .. "/programs") or {}) do
    local root = storage .. "/programs/" .. name
    local st = fs.stat(root)
    if st and st.type == "dir" then
      for dir, mode in pairs{ [root] = host.PASSAGE, [root .. "/src"] = host.PRIVATE_DIR,
        [root .. "/logs"] = host.PRIVATE_DIR, [root .. "/state"] = host.PRIVATE_DIR } do
        local sub = fs.stat(dir)
        if sub and sub.type == "dir" then
          local ok, err = fs.chmod(dir, mode)
          if not ok then return nil, err end
        end
      end
    end
  end
  return true
end

-- What a Host killed midway left: unfinished creates (<id>.new), folders of programs
-- with no record (a create that died before recording it), unfinished images
-- (<build>.tmp-*). A folder holding nothing but state/ is what a delete with
-- keep_state kept: it stays.
local function remove_leftovers(storage, known)
  for _, name in ipairs(fs.list(storage .. "/programs") or {}) do
    local path = storage .. "/programs/" .. name
    local entries = fs.list(path)
    local kept_state = entries and #entries == 1 and entries[1] == "state"
    if not known[name] and not kept_state then
      fs.remove_tree(path)
    else -- the staged sources of an update the Host did not finish
      for _, entry in ipairs(entries or {}) do
        if entry:match("^src%.%d+$") then fs.remove_tree(path .. "/" .. entry) end
      end
    end
  end
  for _, name in ipairs(fs.list(storage .. "/images") or {}) do
    if name:find(".tmp-", 1, true) then fs.remove_tree(storage .. "/images/" .. name) end
  end
end

-- The programs meant to run are started once the Host serves, from the loop's first
-- turn on: host.START_BATCH per turn, while fewer than host.STARTING of them are
-- Building or Starting. Starting 200 in host.open held the loop (and so the API) for
-- seconds. Until its turn a program shows the state it came back in (Stopped, ...).
host.START_BATCH = 8
host.STARTING = 32
host.START_PACE = 0.01 -- seconds between turns

local STARTING = { Building = true, Starting = true }

function Host:start_later(queue)
  if #queue == 0 then return end
  local next_i, busy = 1, {}
  self.start_timer = core.timer(0, function()
    local still = {}
    for _, p in ipairs(busy) do
      if STARTING[p.sup.record.state] then still[#still + 1] = p end
    end
    busy = still
    local batch = 0
    while next_i <= #queue and not self.holding and #busy < host.STARTING and batch < host.START_BATCH do
      local p = queue[next_i]
      next_i = next_i + 1
      -- a program deleted or stopped over the API meanwhile stays as it is now
      if self.programs[p.id] == p and p.desired == "running" and p.sup:start() then
        busy[#busy + 1] = p
        batch = batch + 1
      end
    end
    if next_i > #queue or self.holding then
      self.start_timer:stop()
      self.start_timer = nil
    end
  end, host.START_PACE)
end

-- No program waiting for its start is started any more (the Host is shutting down).
function Host:hold_starts()
  self.holding = true
  if self.start_timer then
    self.start_timer:stop()
    self.start_timer = nil
  end
end

function host.open(opts)
  local storage = opts.storage
  local moded, mode_err = set_modes(storage, opts.user or host.SANDBOX_USER)
  if not moded then return nil, mode_err end
  local reachable, why = check_reachable(storage)
  if not reachable then return nil, why end
  local driver, driver_err = sandbox.get(opts.driver)
  if not driver then return nil, driver_err end
  local isolation = opts.isolation or "bwrap"
  if not sandbox.known(isolation) then
    return nil, "--isolation must be " .. table.concat(sandbox.names, " or ") .. ", not " .. isolation
  end
  local reg, reg_err = registry.open(storage .. "/host.db")
  if not reg then return nil, reg_err end
  local ev, ev_err = events.open(reg.db, { max = opts.events_max })
  if not ev then return nil, ev_err end
  local self = setmetatable({
    storage = storage, driver = driver, drivers = { [driver.name] = driver }, isolation = isolation,
    runtime = opts.runtime, user = opts.user or host.SANDBOX_USER,
    ports = ports.new(opts.ports or {}), registry = reg, events = ev, build_timeout = opts.build_timeout,
    programs = {}, by_name = {}, order = {}, pending = {}, state_counts = {},
  }, Host)
  self.cache = record_cache.new(function(p) return self:view(p) end)
  -- Before any program is attached: their restart policies are the policy's.
  local pol, pol_err = policy.new(self, opts.policy)
  if not pol then return nil, "--policy " .. pol_err end
  self.policy = pol
  program.policy_module = pol:restart_module()
  self.plans = setmetatable({}, { __mode = "v" }) -- dockerfile text -> its plan, while a program uses it
  if isolation ~= driver.name then -- refused now rather than at each create
    local ok, why = self:driver_of(isolation)
    if not ok then return nil, "--isolation " .. isolation .. ": " .. why end
  end
  for _, name in ipairs(sandbox.names) do -- what a Host killed with -9 left in a driver's folder
    if fs.stat(storage .. "/" .. name) then self:driver_of(name) end
  end
  local rows, rows_err = reg:all()
  if not rows then return nil, rows_err end
  local known, live, queue = {}, {}, {}
  for _, row in ipairs(rows) do
    if row.desired == host.DELETED or row.desired == host.DELETED_KEEP_STATE then
      self.ports:take(row.publish_port) -- held until the record is gone
      self:forget(row.program_id, row.publish_port, row.desired == host.DELETED_KEEP_STATE)
      self.events:record(row.program_id, "deleted", { keep_state = row.desired == host.DELETED_KEEP_STATE })
    else
      known[row.program_id] = true
      live[#live + 1] = row
    end
  end
  remove_leftovers(storage, known)
  local latest, latest_err = reg:latest_revisions() -- the newest number given, kept or failed
  if not latest then return nil, latest_err end
  for _, row in ipairs(live) do
    row.latest = math.max(row.revision or 1, latest[row.program_id] or 1)
    local port, port_err = self.ports:take(row.publish_port)
    -- Whatever ran before the Host stopped is gone: a program comes back Stopped (or in
    -- Error), and starts again if it was meant to run.
    local restored = { state = row.state == "Error" and "Error" or (row.state == "Created" and "Created" or "Stopped"),
      error_msg = row.error_msg, exit_code = row.exit_code, exit_signal = row.exit_signal,
      oom_killed = row.oom_killed, last_exit_at = row.last_exit_at, ready_at = row.ready_at }
    if not port then
      restored = { state = "Error", error_msg = "cannot hold port " .. row.publish_port .. ": " .. port_err }
    end
    local p = self:attach(row, restored)
    if p and restored.state ~= row.state then -- the state filter of a listing reads the registry
      self:store_state(p, p.sup.record)
    end
    if p and not port then self:emit(p, "error", { reason = restored.error_msg }) end
    if p and port and row.desired == "running" then queue[#queue + 1] = p end
  end
  self:start_later(queue)
  return self
end

host.validate = validate -- for the fuzz target fuzz/lua_host.c

return host
