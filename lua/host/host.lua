-- The Host: programs registered in SQLite, each driven by a supervisor, published on
-- ports of their own, and the operations the REST API offers on them. Every
-- operation answers at once: builds, spawns and probes run on the loop meanwhile.
local core = require "hersh.core"
local cjson = require "cjson"
local build = require "host.build"
local build_id = require "host.build_id"
local dockerfile = require "host.dockerfile"
local paths = require "host.paths"
local program = require "host.program"
local ports = require "host.ports"
local registry = require "host.registry"
local sandbox = require "host.sandbox"
local supervisor = require "host.supervisor"

local fs = core.fs
local host = {}

host.MAX_FILES = 1000
host.USER_ID = "^[a-z0-9][a-z0-9_-]*$"

local Host = {}
Host.__index = Host

local function iso_time(t)
  local secs = math.floor(t)
  return os.date("!%Y-%m-%dT%H:%M:%S", secs) .. string.format(".%03dZ", math.floor((t - secs) * 1000))
end

local function random_hex(bytes)
  local f = assert(io.open("/dev/urandom", "rb"))
  local raw = f:read(bytes)
  f:close()
  return (raw:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

-- An operation's failure: HTTP status, message, and for 409 the current state.
local function refuse(status, message, state)
  return nil, { status = status, message = message, state = state }
end

-- ---- one program -------------------------------------------------------------------

function Host:dirs(id)
  local root = self.storage .. "/programs/" .. id
  return { root = root, src = root .. "/src", state = root .. "/state", logs = root .. "/logs" }
end

-- What GET /programs/{id} shows.
function Host:view(p)
  local r = p.sup.record
  local null = cjson.null
  local proc_limits -- whether the machine enforces them, as the running process found
  if p.spec.limits then
    for _, proc in pairs(p.sup.procs) do proc_limits = proc:limits() end
  end
  return {
    program_id = p.id, user_id = p.user_id, build_id = p.build_id, state = r.state,
    proxy_url = "http://127.0.0.1:" .. p.port, publish_port = p.port,
    created_at = p.created_at, updated_at = p.updated_at,
    error_msg = r.error_msg or null, exit_code = r.exit_code or null, restarts = r.restarts or 0,
    next_restart_at = r.next_restart_at and iso_time(r.next_restart_at) or null, pid = r.pid or null,
    limits = p.spec.limits or null, limits_enforced = proc_limits or null,
    network = p.spec.network or "none", restart_policy = r.policy,
  }
end

-- A registered program, with its supervisor. `restored` gives the record fields a
-- Host restart brings back (state, error_msg, exit_code).
function Host:attach(row, restored)
  local id = row.program_id
  local plan = assert(dockerfile.parse(row.spec.dockerfile)) -- checked at create
  local p = { id = id, user_id = row.user_id, build_id = row.build_id, port = row.publish_port,
    spec = row.spec, created_at = row.created_at, updated_at = row.updated_at, followers = {} }
  local dirs = self:dirs(id)
  local record, record_err = program.new{ state = restored and restored.state, error_msg = restored and restored.error_msg,
    exit_code = restored and restored.exit_code, policy = row.spec.restart_policy }
  if not record then return nil, record_err end
  local sup, err = supervisor.new{
    record = record,
    id = id, plan = plan, build_id = row.build_id, dirs = dirs, images_dir = self.storage .. "/images",
    spec = row.spec, driver = self.driver, runtime = self.runtime, user = self.user, port = row.publish_port,
    build_timeout = self.build_timeout,
    publish = function() return self.ports:hand_over(p.port) end,
    on_change = function(record) self:changed(p, record) end,
    on_release = function(keep_state) self:released(p, keep_state) end,
  }
  if not sup then return nil, err end
  p.sup = sup
  self.programs[id] = p
  self.order[#self.order + 1] = p
  return p
end

-- The states in which no process serves the program's port: the Host answers on it.
local QUIET = { Created = true, Stopped = true, Error = true, Restarting = true }

function Host:changed(p, record)
  if record.state == "Deleted" then return end
  p.updated_at = iso_time(record.updated_at or core.now())
  self.registry:update_state(p.id, { state = record.state, error_msg = record.error_msg,
    exit_code = record.exit_code, restarts = record.restarts, updated_at = p.updated_at })
  if QUIET[record.state] then self.ports:answer(p.port) end
end

function Host:released(p, keep_state)
  self.registry:delete(p.id)
  self.ports:release(p.port)
  local dirs = self:dirs(p.id)
  if keep_state then
    fs.remove_tree(dirs.src)
    fs.remove_tree(dirs.logs)
  else
    fs.remove_tree(dirs.root)
  end
  self.programs[p.id] = nil
  for i, q in ipairs(self.order) do
    if q == p then table.remove(self.order, i) break end
  end
  for _, done in ipairs(p.on_deleted or {}) do done() end
end

-- ---- operations --------------------------------------------------------------------

-- Validates a create request; returns the normalized parts or nil, error.
local function validate(body)
  if type(body) ~= "table" or body[1] ~= nil then -- cjson 2.1 gives arrays no mark of their own
    return refuse(400, "the body must be a JSON object")
  end
  for k, v in pairs(body) do -- an explicit null is the same as leaving the field out
    if v == cjson.null then body[k] = nil end
  end
  local user_id = body.user_id
  if type(user_id) ~= "string" or #user_id < 1 or #user_id > 64 or not user_id:match(host.USER_ID) then
    return refuse(400, "user_id must be 1-64 of [a-z0-9_-], starting with a letter or a digit")
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
  return { user_id = user_id, dockerfile = body.dockerfile, plan = plan, files = files, env = env,
    limits = limits, network = network, restart_policy = body.restart_policy }
end

local function write_files(dir, files)
  for rel, content in pairs(files) do
    local path = dir .. "/" .. rel
    local ok, err = fs.mkdir_p(path:match("^(.*)/[^/]*$"))
    if ok then ok, err = fs.write_file(path, content) end
    if not ok then return nil, err end
  end
  return true
end

function Host:create(body)
  local req, err = validate(body)
  if not req then return nil, err end
  local bid = build_id.compute(req.dockerfile, req.files)
  local id = req.user_id .. "-" .. bid .. "-" .. random_hex(4)
  local port, fd_or_err = self.ports:take()
  if not port then return refuse(503, fd_or_err) end
  local dirs = self:dirs(id)
  local tmp = dirs.root .. ".new"
  local ok, fs_err = fs.mkdir_p(tmp .. "/src")
  if ok then ok, fs_err = write_files(tmp .. "/src", req.files) end
  if ok then ok, fs_err = fs.mkdir_p(tmp .. "/state") end
  if ok then ok, fs_err = fs.chown(tmp .. "/state", self.user.uid, self.user.gid) end
  if ok then ok, fs_err = fs.mkdir_p(tmp .. "/logs") end
  if ok then ok, fs_err = os.rename(tmp, dirs.root) end
  if not ok then
    fs.remove_tree(tmp)
    self.ports:release(port)
    return refuse(500, "cannot store the program: " .. tostring(fs_err))
  end
  local now = iso_time(core.now())
  local row = { program_id = id, user_id = req.user_id, build_id = bid, publish_port = port, desired = "stopped",
    state = "Created", created_at = now, updated_at = now,
    spec = { dockerfile = req.dockerfile, env = req.env, limits = req.limits, network = req.network,
      restart_policy = req.restart_policy } }
  local p, attach_err = self:attach(row)
  if not p then -- an invalid restart policy: nothing was recorded yet
    fs.remove_tree(dirs.root)
    self.ports:release(port)
    return refuse(400, "restart_policy: " .. tostring(attach_err))
  end
  local stored, db_err = self.registry:insert(row)
  if not stored then
    self.programs[id] = nil
    table.remove(self.order)
    fs.remove_tree(dirs.root)
    self.ports:release(port)
    return refuse(500, "cannot record the program: " .. tostring(db_err))
  end
  return { program_id = id, build_id = bid, state = "Created", proxy_url = "http://127.0.0.1:" .. port,
    publish_port = port, created_at = now }
end

function Host:get(id)
  local p = self.programs[id]
  if not p then return refuse(404, "no program " .. tostring(id)) end
  return p
end

function Host:list(filter)
  local out = {}
  for _, p in ipairs(self.order) do
    if (not filter.user_id or p.user_id == filter.user_id) and (not filter.state or p.sup.record.state == filter.state) then
      out[#out + 1] = self:view(p)
    end
  end
  return out
end

local MESSAGES = { start = "start requested", stop = "stop requested", restart = "restart requested" }

-- start, stop or restart: the desired state is recorded before the answer.
function Host:act(id, action)
  local p, err = self:get(id)
  if not p then return nil, err end
  local ok, why = p.sup[action](p.sup)
  if not ok then return refuse(409, why, p.sup.record.state) end
  if action ~= "restart" then
    self.registry:set_desired(id, action == "start" and "running" or "stopped")
  end
  return { program_id = id, state = p.sup.record.state, message = MESSAGES[action] }
end

-- Deletes; `done` is called once the processes are gone, the port free and the files
-- removed.
function Host:delete(id, keep_state, done)
  local p, err = self:get(id)
  if not p then return nil, err end
  p.on_deleted = p.on_deleted or {}
  p.on_deleted[#p.on_deleted + 1] = done
  local ok, why = p.sup:delete(keep_state)
  if not ok then return refuse(409, why, p.sup.record.state) end
  return true
end

function Host:source(id)
  local p, err = self:get(id)
  if not p then return nil, err end
  local src = self:dirs(id).src
  local files = {}
  for path in pairs(build.list_files(src)) do files[path] = fs.read_file(src .. "/" .. path) end
  return { program_id = id, dockerfile = p.spec.dockerfile, files = files, retrieved_at = iso_time(core.now()) }
end

function Host:log_path(id, kind)
  local p, err = self:get(id)
  if not p then return nil, err end
  if kind ~= "runtime" and kind ~= "build" then
    return refuse(400, "type must be \"runtime\" or \"build\", not \"" .. tostring(kind) .. "\"")
  end
  return self:dirs(id).logs .. "/" .. kind .. ".log", p
end

-- ---- start-up ----------------------------------------------------------------------

-- host.open{storage, driver = "bwrap", runtime = {bin, lua}, user = {uid, gid},
-- ports = {first, last}, build_timeout} -> Host. Programs found in the registry are
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

function host.open(opts)
  local storage = opts.storage
  for _, dir in ipairs{ storage, storage .. "/programs", storage .. "/images" } do
    local ok, err = fs.mkdir_p(dir)
    if not ok then return nil, err end
  end
  local reachable, why = check_reachable(storage)
  if not reachable then return nil, why end
  local driver, driver_err = sandbox.get(opts.driver)
  if not driver then return nil, driver_err end
  local reg, reg_err = registry.open(storage .. "/host.db")
  if not reg then return nil, reg_err end
  local self = setmetatable({
    storage = storage, driver = driver, runtime = opts.runtime, user = opts.user or { uid = 65534, gid = 65534 },
    ports = ports.new(opts.ports or {}), registry = reg, build_timeout = opts.build_timeout,
    programs = {}, order = {},
  }, Host)
  local rows, rows_err = reg:all()
  if not rows then return nil, rows_err end
  for _, row in ipairs(rows) do
    fs.remove_tree(self:dirs(row.program_id).root .. ".new") -- a create the Host died in
    local port, port_err = self.ports:take(row.publish_port)
    -- Whatever ran before the Host stopped is gone: a program comes back Stopped (or in
    -- Error), and starts again if it was meant to run.
    local restored = { state = row.state == "Error" and "Error" or (row.state == "Created" and "Created" or "Stopped"),
      error_msg = row.error_msg, exit_code = row.exit_code }
    if not port then
      restored = { state = "Error", error_msg = "cannot hold port " .. row.publish_port .. ": " .. port_err }
    end
    local p = self:attach(row, restored)
    if p and port and row.desired == "running" then p.sup:start() end
  end
  return self
end

return host
