-- The Docker Swarm driver: a program runs as a Swarm service of one task, made and
-- watched through the Docker Engine API on its unix socket (hersh.http's unix_socket),
-- never through `docker` commands.
--
-- Each spawn: the program's image (host.image.oci: the built rootfs and the Hersh
-- runtime, non-root) is loaded once (POST /images/load); GET /events is streamed for
-- the containers labelled with the service's name, then the service is created: its
-- root read-only, every capability dropped, the program's user (the Host's sandbox
-- user, numeric), memory, pids and CPU limits, a volume hersh-state-<program> for
-- /state, a size-limited tmpfs /tmp, Swarm's restart condition "none" (the Host's own
-- restart policy decides: the same state machine and backoff as under bwrap), and the
-- program's socket folder bound at /dev/hersh: the program listens on a unix socket
-- there and the Host relays its 127.0.0.1 port to it, as for gVisor. Swarm publishes a
-- port on every address of a node (its PortConfig has no address), so it publishes none.
-- The container's "die" event is the exit (its exitCode, and an "oom" event before
-- it); the service is removed, then the exit is reported. Its output comes from the
-- service's logs endpoint (streamed) into the program's runtime log. A build's RUN
-- steps run in the bwrap sandbox on this machine, as for every driver.
--
-- Beyond the Host's node (docs/cluster.md, "Across nodes"): with a registry
-- (configure{registry}) the image is pushed there (host.image.registry) and named by
-- digest; with publish "node" the WatcherAPI is published on the task's node and the
-- Host's port forwarded there, the task followed through GET /tasks.
--
-- What holds and what does not (no-new-privileges and the seccomp profile are the
-- daemon's: dockerd --no-new-privileges --seccomp-profile FILE; the network is the
-- daemon's too): docs/cluster.md.
local core = require "hersh.core"
local http = require "hersh.http"
local json = require "hersh.json"
local sys = require "hersh.os"
local bwrap = require "host.sandbox.bwrap"
local oci = require "host.image.oci"
local registry = require "host.image.registry"
local random = require "host.random"

local fs = sys.fs
local swarm = { name = "swarm", socket = "/var/run/docker.sock", listen_path = "/dev/hersh/api.sock" }

swarm.skeleton = bwrap.skeleton

local API = "http://docker/v1.41"
local API_MOUNT = "/dev/hersh"
local TAIL = 200 -- lines of a program's output kept for the supervisor's tail
local MAX_LINE = 16 * 1024 -- bytes of a log line, as src/proc/capture.c
local DEFAULT_TMP_SIZE = 64 * 1024 * 1024
local LABEL = "dev.hersh.service"
swarm.DESTROY_WAIT = 15 -- seconds for the engine to remove a removed service's container

-- The images loaded into the engine or pushed to the registry (name -> the reference a
-- service names), and those on their way (name -> the callbacks waiting for it).
local loaded, loading = {}, {}
-- The images each program ran (program id -> {reference = name}), removed with it.
local images_of = {}

-- Which Engine socket to use (hersh host --docker-socket), and the registry
-- ("HOST:PORT", hersh host --registry) every node pulls the images from; without one,
-- images are loaded into this node's Engine alone.
--
-- publish "node" (hersh host --publish node): the program may run on any node, so no
-- socket folder of this machine can reach it. Its WatcherAPI listens on TCP in the
-- container, published in Swarm's host mode on a port the node picks; the Host learns
-- the task's node address (GET /nodes: Status.Addr) and port (the task's PortStatus)
-- and hands its own port's socket to systemd-socket-proxyd, which forwards each
-- connection there: the proxy, probes and health checks go through the Host's port as
-- for every driver. Without it, the socket relay (one node) stays.
function swarm.configure(opts)
  if opts.socket then swarm.socket = opts.socket end
  if opts.registry then swarm.registry = opts.registry end
  if opts.publish == "node" then swarm.listen_path = nil end
end

local function quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

-- A request to the Engine; done(res) or done(nil, err). Started from the loop, never
-- inside another request's callback (libcurl refuses that).
local function engine(method, path, body, done, opts)
  opts = opts or {}
  local headers
  if body then headers = { ["Content-Type"] = opts.content_type or "application/json" } end
  core.timer(0, function()
    local ok, err = http.request({ method = method, url = API .. path, unix_socket = swarm.socket, headers = headers,
      body = type(body) == "table" and json.encode(body) or body, timeout = opts.timeout or 60,
      connect_timeout = 5 }, function(res, req_err) done(res, req_err) end)
    if not ok then done(nil, err) end
  end)
end

-- The Engine's message of a failed answer.
local function why(res, err)
  if not res then return tostring(err) end
  local doc = json.decode(res.body or "")
  return string.format("%d %s", res.status, type(doc) == "table" and tostring(doc.message) or (res.body or ""):sub(1, 200))
end

local function url_query(t)
  return json.encode(t):gsub("[^%w%-_.~]", function(c) return string.format("%%%02X", c:byte()) end)
end

-- Whether the Engine answers on the socket and this node is a Swarm manager: asked
-- once, with curl (the loop may not run yet at the Host's start, and check() answers
-- at once).
local checked

-- GET path with curl in an empty environment (no proxy; nothing preloaded: a sanitizer
-- runtime hangs curl) -> the body.
local function curl_get(path)
  local p = io.popen("env -i /usr/bin/curl -sS --noproxy '*' --max-time 10 --unix-socket " .. quote(swarm.socket)
    .. " " .. API .. path .. " 2>&1")
  local out = p and p:read("a") or ""
  if p then p:close() end
  return out
end

function swarm.check()
  if checked and checked.socket == swarm.socket then return table.unpack(checked.result) end
  local out = curl_get("/info")
  local info = json.decode(out)
  local result
  if type(info) ~= "table" or type(info.Swarm) ~= "table" then
    result = { nil, "the Docker Engine does not answer on " .. swarm.socket .. ": " .. out:sub(1, 200):gsub("\n", " ") }
  elseif info.Swarm.LocalNodeState ~= "active" or info.Swarm.ControlAvailable ~= true then
    result = { nil, "the Docker Engine on " .. swarm.socket .. " is not a Swarm manager (docker swarm init)" }
  elseif not swarm.listen_path and not fs.stat(swarm.FORWARDER) then
    result = { nil, "--publish node forwards the Host's ports with " .. swarm.FORWARDER .. " (Debian's systemd), which is not here" }
  else
    result = { true }
    -- a daemon with a default bridge gives every container that network: then a
    -- program of network "none" (loopback only) cannot run here
    local bridge = json.decode(curl_get("/networks/bridge"))
    swarm.bridged = type(bridge) == "table" and bridge.Name == "bridge"
  end
  checked = { socket = swarm.socket, result = result }
  return table.unpack(result)
end

-- The Host's storage folder of the driver: services a Host killed before left (labelled
-- with this folder) are removed, with their containers.
function swarm.prepare(dir)
  local ok, err = fs.mkdir_p(dir, tonumber("700", 8))
  if not ok then return nil, err end
  swarm.dir = dir
  swarm.live = {}
  engine("GET", "/services?filters=" .. url_query{ label = { "dev.hersh.storage=" .. dir } }, nil, function(res)
    local list = res and res.status == 200 and json.decode(res.body) or {}
    for _, s in ipairs(type(list) == "table" and list or {}) do
      if type(s.Spec) == "table" and not swarm.live[s.Spec.Name] then
        engine("DELETE", "/services/" .. s.ID, nil, function() end)
      end
    end
  end)
  return true
end

-- Makes the image of a built folder known to the Engine once: pushed to the registry
-- (every node pulls it by digest), or loaded into this node's Engine. then(reference)
-- or then(nil, err).
local function ensure_image(spec, opts, after)
  local image_dir = spec.rootfs:match("^(.*)/rootfs$")
  local images_dir, build_id = image_dir:match("^(.*)/([^/]+)$")
  local repo, tag = "hersh/" .. build_id:lower(), "u" .. tostring(opts.uid or oci.DEFAULT_USER)
  local name = repo .. ":" .. tag
  if loaded[name] then return after(loaded[name]) end
  if loading[name] then
    table.insert(loading[name], after)
    return
  end
  loading[name] = { after }
  local function finish(reference, err)
    local waiting = loading[name]
    loading[name] = nil
    loaded[name] = reference
    for _, fn in ipairs(waiting) do fn(reference, err) end
  end
  local function archive()
    return oci.archive{ images_dir = images_dir, build_id = build_id, runtime = spec.runtime,
      uid = opts.uid, gid = opts.gid, name = name }
  end
  if swarm.registry then
    local image, err = archive()
    if not image then return finish(nil, err) end
    return registry.push(swarm.registry, repo, tag, image, finish)
  end
  engine("GET", "/images/" .. name .. "/json", nil, function(res)
    if res and res.status == 200 then return finish(name) end
    local image, err = archive()
    if not image then return finish(nil, err) end
    engine("POST", "/images/load?quiet=1", image.bytes, function(load_res, load_err)
      if not load_res or load_res.status ~= 200 or (load_res.body or ""):find('"error', 1, true) then
        return finish(nil, "cannot load the image: " .. why(load_res, load_err))
      end
      finish(name)
    end, { content_type = "application/x-tar", timeout = 300 })
  end)
end

-- ---- the process of a service -------------------------------------------------------
--
-- What the supervisor holds: running(), pid() (the container's on this node once it runs;
-- 0 before, which is what the record keeps: the process runs in the engine's hands),
-- kill(sig), note(text), tail(n), limits(), cgroup_dirs() (the container's cgroups,
-- for the Host's metrics).
local Proc = {}
Proc.__index = Proc

function Proc:running() return not self.ended end
function Proc:pid() return self.container_pid or 0 end
function Proc:limits() return { memory = true, pids = true, cpus = true } end

function Proc:cgroup_dirs()
  if not self.container then return nil end
  local dirs = {}
  for _, c in ipairs { "memory", "pids", "cpuacct", "cpu,cpuacct" } do
    dirs[#dirs + 1] = "/sys/fs/cgroup/" .. c .. "/docker/" .. self.container
  end
  return dirs
end

-- One line in the program's runtime log, in the format of the Host's capture
-- ("<time> <stream> <text>", src/proc/capture.c; whole seconds here), and in the tail.
-- The capture itself has no Lua binding that takes a stream's lines yet.
function Proc:line(stream, text)
  local f = self.log and io.open(self.log, "a")
  if f then
    f:write(os.date("!%Y-%m-%dT%H:%M:%S.000Z "), stream, " ", text, "\n")
    f:close()
  end
  self.lines[#self.lines + 1] = { time = os.time(), stream = stream, text = text }
  if #self.lines > TAIL then table.remove(self.lines, 1) end
  if self.on_line then self.on_line(stream, text) end
end

function Proc:note(text)
  return sys.log_note(self.log, text)
end

function Proc:tail(n)
  local out = {}
  for i = math.max(1, #self.lines - n + 1), #self.lines do out[#out + 1] = self.lines[i] end
  return out
end

-- The multiplexed log stream (8-byte frame heads: stream, 0, 0, 0, length) into lines.
function Proc:feed_logs(data)
  self.log_buf = self.log_buf .. data
  while #self.log_buf >= 8 do
    local kind, size = self.log_buf:byte(1), string.unpack(">I4", self.log_buf, 5)
    if #self.log_buf < 8 + size then break end
    local payload = self.log_buf:sub(9, 8 + size)
    self.log_buf = self.log_buf:sub(9 + size)
    local stream = kind == 2 and "stderr" or "stdout"
    local partial = (self.partial[stream] or "") .. payload
    for line in partial:gmatch("([^\n]*)\n") do self:line(stream, line) end
    partial = partial:match("[^\n]*$")
    while #partial >= MAX_LINE do -- a line without end is cut into pieces, as the capture does
      self:line(stream, partial:sub(1, MAX_LINE))
      partial = partial:sub(MAX_LINE + 1)
    end
    self.partial[stream] = partial
  end
end

-- The program has ended: its service is removed, and once its container is gone too
-- (the "destroy" event; bounded) the exit is reported, once: a delete that follows
-- finds no container holding the volume or the image.
function Proc:finish(report)
  if self.ended then return end
  self.ended, self.report = true, report
  if self.stop_timer then self.stop_timer:stop() end
  if not self.service then return self:reported() end
  engine("DELETE", "/services/" .. self.service, nil, function()
    self.removed = true
    if self.remote then -- the poll reports once the task has ended
      self.destroy_timer = core.timer(swarm.DESTROY_WAIT, function() self:reported() end)
      return
    end
    if not self.container or self.destroyed then return self:reported() end
    self.destroy_timer = core.timer(swarm.DESTROY_WAIT, function() self:reported() end)
  end)
end

function Proc:reported()
  if self.done then return end
  self.done = true
  swarm.live[self.name] = nil
  if self.destroy_timer then self.destroy_timer:stop() end
  if self.poll_timer then self.poll_timer:stop() end
  if self.forwarder and self.forwarder:running() then self.forwarder:kill("KILL") end
  if self.events then self.events:cancel() end
  if self.logs then self.logs:cancel() end
  for stream, rest in pairs(self.partial) do
    if rest ~= "" then self:line(stream, rest) end
  end
  if self.on_exit then self.on_exit(self.report) end
end

function Proc:on_event(ev)
  if type(ev) ~= "table" or ev.Type ~= "container" then return end
  local attrs = type(ev.Actor) == "table" and ev.Actor.Attributes or {}
  if ev.status == "start" then
    self.container = ev.id
    engine("GET", "/containers/" .. ev.id .. "/json", nil, function(res)
      local c = res and res.status == 200 and json.decode(res.body)
      if type(c) ~= "table" or type(c.State) ~= "table" or self.ended then return end
      self.container_pid = c.State.Pid
      self.refused = swarm.unconfined(c.State.Pid)
      if self.refused then self:kill("KILL") end
    end)
  elseif ev.status == "oom" then
    self.oom = true
  elseif ev.status == "destroy" then
    self.destroyed = true
    if self.removed then self:reported() end
  elseif ev.status == "die" then
    -- the engine says 128 + n for a signal n, as bwrap does without hersh-init
    local report = bwrap.exit_report(tonumber(attrs.exitCode), nil, self.oom)
    if self.refused then report.exit_code, report.exit_signal, report.error = nil, nil, self.refused end
    self:finish(report)
  end
end

-- Why the process pid (a container's, on this node) is not confined as every sandbox
-- must be, or nil: no_new_privs, a seccomp filter and no capabilities. Swarm's API
-- (1.41) sets the first two only daemon-wide (dockerd --no-new-privileges, its seccomp
-- profile), so the driver checks what the container got, and a program that did not
-- get them is killed at once. A container on another node cannot be read here.
function swarm.unconfined(pid)
  local f = io.open("/proc/" .. math.tointeger(pid or 0) .. "/status", "r")
  if not f then return nil end
  local status = f:read("a")
  f:close()
  if status:match("NoNewPrivs:%s*(%d)") ~= "1" then
    return "the Docker Engine runs containers without no_new_privs: start dockerd with --no-new-privileges"
  elseif status:match("Seccomp:%s*(%d)") ~= "2" then
    return "the Docker Engine runs containers without a seccomp filter (dockerd --seccomp-profile unconfined?)"
  elseif not (status:match("CapEff:%s*(%x+)") or ""):match("^0+$") then
    return "the container kept capabilities"
  end
  return nil
end

-- ---- publish "node": a task on any node ------------------------------------------
--
-- The Engine's events are those of its own node: a task elsewhere is followed through
-- GET /tasks of its service (API 1.41 has no task events), every TASK_POLL seconds.

swarm.FORWARDER = "/lib/systemd/systemd-socket-proxyd"
swarm.TASK_POLL = 0.5
local ENDED = { complete = true, failed = true, shutdown = true, rejected = true, orphaned = true, remove = true }

-- Forwards the Host's port (fd 3, listening) to addr:port, as the sandbox user; it
-- dies with the Host (a Host killed with -9 leaves no process holding its port).
function Proc:forward(addr, port)
  local proc, err = sys.spawn{ argv = { "/usr/bin/setpriv", "--pdeathsig", "KILL", "--", "/bin/sh", "-c",
    'LISTEN_PID=$$ exec "$0" "$1"', swarm.FORWARDER,
    addr .. ":" .. math.tointeger(port) }, env = { "LISTEN_FDS=1", "PATH=/usr/bin:/bin" },
    fds = { [3] = self.listen_fd }, uid = self.uid, gid = self.gid, cwd = "/" }
  if not proc then return self:finish({ error = "cannot forward the port to " .. addr .. ": " .. tostring(err) }) end
  self.forwarder = proc
end

-- One look at the service's task: once it runs, its node's address and port are
-- forwarded to; once it ended, so has the program.
function Proc:poll_task()
  self.poll_timer = nil
  if self.done then return end
  local filters = url_query{ service = { self.service } }
  engine("GET", "/tasks?filters=" .. filters, nil, function(res)
    local list = res and res.status == 200 and json.decode(res.body)
    local task = type(list) == "table" and list[1]
    local status = type(task) == "table" and task.Status or {}
    -- removed: reported once its task has ended (its container stopped) or the service
    -- is gone (the Engine then says 404)
    local gone = res and res.status == 404
    if self.removed and (gone or (type(list) == "table" and (not task or ENDED[status.State]))) then
      return self:reported()
    end
    if status.State == "running" and not self.forwarder and not self.ended then
      local ports = type(status.PortStatus) == "table" and status.PortStatus.Ports or {}
      local published = type(ports[1]) == "table" and ports[1].PublishedPort
      engine("GET", "/nodes/" .. tostring(task.NodeID), nil, function(nres)
        local node = nres and nres.status == 200 and json.decode(nres.body)
        local addr = type(node) == "table" and type(node.Status) == "table" and node.Status.Addr
        if self.ended or self.forwarder then return end
        if not (addr and published) then
          return self:finish({ error = "the Engine names no address and port of the task: " .. why(nres) })
        end
        self:forward(addr, published)
      end)
    elseif ENDED[status.State] and not self.ended then
      local cs = type(status.ContainerStatus) == "table" and status.ContainerStatus or {}
      local report = bwrap.exit_report(tonumber(cs.ExitCode), nil, false)
      if status.State == "rejected" or (cs.ExitCode == nil and status.Err) then
        report = { error = "the task was " .. status.State .. ": " .. tostring(status.Err) }
      end
      self:finish(report)
    end
    if not self.done then self.poll_timer = core.timer(swarm.TASK_POLL, function() self:poll_task() end) end
  end)
end

-- Kills the program: SIGKILL to its container; before it runs, or on another node
-- (publish "node"), its service goes.
function Proc:kill(sig)
  if self.ended then return end
  if self.remote then -- removing the service stops its task wherever it runs
    self.signalled = true
    return self:finish({ exit_code = nil, exit_signal = 9, oom_killed = false })
  end
  self.signalled = true
  if self.container then
    return engine("POST", "/containers/" .. self.container .. "/kill?signal=" .. (sig or "KILL"), nil, function() end)
  end
  self:finish({ exit_code = nil, exit_signal = 9, oom_killed = false,
    error = "stopped before its container ran" })
end

-- The service of spec (see bwrap.command for its fields): program argv, env, limits.
function swarm.service_spec(proc, spec, opts, image)
  local limits = opts.limits or {}
  local mounts = {
    { Type = "volume", Source = "hersh-state-" .. proc.program, Target = "/state",
      VolumeOptions = { Labels = { ["dev.hersh.program"] = proc.program } } },
    { Type = "tmpfs", Target = "/tmp", TmpfsOptions = { SizeBytes = spec.tmp_size or DEFAULT_TMP_SIZE } },
  }
  if spec.api_dir then mounts[#mounts + 1] = { Type = "bind", Source = spec.api_dir, Target = API_MOUNT } end
  local labels = { [LABEL] = proc.name, ["dev.hersh.program"] = proc.program, ["dev.hersh.storage"] = swarm.dir }
  local endpoint, networks = nil, spec.network == "host" and { { Target = "host" } } or nil
  if proc.remote then -- the WatcherAPI in the container, on a port its node picks (host mode: every address)
    endpoint = { Ports = { { Protocol = "tcp", TargetPort = oci.DEFAULT_PORT, PublishMode = "host" } } }
    networks = nil -- the node's default bridge: Swarm publishes no port of a container without one
  end
  return {
    Name = proc.name, Labels = labels, EndpointSpec = endpoint,
    TaskTemplate = {
      -- "host": the node's network, as bwrap's --share-net; otherwise none is attached
      -- (Swarm has no "none"), which on a daemon without a bridge is loopback alone
      Networks = networks,
      ContainerSpec = {
        Image = image, Command = spec.argv, Args = json.array{}, Env = spec.env or json.array{},
        Dir = spec.workdir or "/", User = string.format("%d:%d", opts.uid or oci.DEFAULT_USER,
          opts.gid or opts.uid or oci.DEFAULT_USER),
        Labels = labels, Hostname = "hersh", ReadOnly = true, Mounts = mounts, CapabilityDrop = { "ALL" },
        StopGracePeriod = 10 * 1000000000, Init = false,
      },
      Resources = { Limits = { MemoryBytes = limits.memory, Pids = limits.pids,
        NanoCPUs = limits.cpus and math.floor(limits.cpus * 1e9) or nil } },
      RestartPolicy = { Condition = "none" },
    },
    Mode = { Replicated = { Replicas = 1 } },
  }
end

-- Creates the service of proc, then streams its logs (and polls a remote one's task).
local function create_service(proc, spec, opts, image)
  engine("POST", "/services/create", swarm.service_spec(proc, spec, opts, image), function(cres, cerr)
    local doc = cres and cres.status == 201 and json.decode(cres.body)
    if proc.ended then -- killed meanwhile: what was made goes
      if type(doc) == "table" and doc.ID then engine("DELETE", "/services/" .. doc.ID, nil, function() end) end
      return
    end
    if type(doc) ~= "table" or not doc.ID then
      return proc:finish({ error = "cannot create the service: " .. why(cres, cerr) })
    end
    proc.service = doc.ID
    if proc.remote then proc:poll_task() end
    core.timer(0, function()
      if proc.done then return end
      proc.logs = http.stream({ url = API .. "/services/" .. doc.ID .. "/logs?follow=1&stdout=1&stderr=1",
        unix_socket = swarm.socket, connect_timeout = 5 }, {
        data = function(piece) proc:feed_logs(piece) end })
    end)
  end)
end

-- Runs spec as a service (a build step, writable_root: in bwrap here). -> process.
function swarm.spawn(spec, opts)
  if spec.writable_root then return bwrap.spawn(spec, opts) end
  if not swarm.dir then return nil, "the swarm driver has no folder (swarm.prepare)", "ESTATE" end
  local remote = not swarm.listen_path
  if not remote and spec.network ~= "host" and swarm.bridged then
    return nil, "network \"none\" needs an Engine whose containers get no network (dockerd --bridge none):"
      .. " the one on " .. swarm.socket .. " gives them its bridge", "ESTATE"
  end
  local program = (opts.cgroup or "program"):gsub("%.r%d+$", "")
  local proc = setmetatable({ program = program, log = opts.log, on_line = opts.on_line, on_exit = opts.on_exit,
    lines = {}, partial = {}, log_buf = "", started = core.now(),
    name = "hersh-" .. sys.sha256.hex(program):sub(1, 20) .. "-" .. random.hex(4), remote = remote,
    listen_fd = opts.fds and opts.fds[3], uid = opts.uid, gid = opts.gid }, Proc)
  if remote then
    local argv = oci.listening(spec.argv, oci.DEFAULT_PORT)
    if not argv then return nil, "--publish node runs only programs whose command is hersh run", "ESTATE" end
    if not proc.listen_fd then return nil, "--publish node: no port socket to forward", "ESTATE" end
    local env = {}
    for _, kv in ipairs(spec.env or {}) do
      if not kv:match("^LISTEN_FDS=") then env[#env + 1] = kv end
    end
    local copy = {}
    for k, v in pairs(spec) do copy[k] = v end
    copy.argv, copy.env = argv, json.array(env)
    spec = copy
  end
  swarm.live[proc.name] = true
  if spec.api_dir then -- the program's socket folder, emptied: the user inside makes the socket
    fs.remove_tree(spec.api_dir)
    local ok, err, code = fs.mkdir_p(spec.api_dir, tonumber("700", 8))
    if ok then ok, err, code = fs.chown(spec.api_dir, opts.uid or 0, opts.gid or 0) end
    if not ok then return nil, err, code end
  end
  ensure_image(spec, opts, function(image, err)
    if proc.ended then return end
    if not image then return proc:finish({ error = err }) end
    images_of[program] = images_of[program] or {}
    images_of[program][image] = true -- the reference: a pulled image goes by it too
    if proc.remote then return create_service(proc, spec, opts, image) end
    local buf = ""
    local filters = url_query{ type = { "container" }, label = { LABEL .. "=" .. proc.name } }
    local created = false
    proc.events = http.stream({ url = API .. "/events?filters=" .. filters, unix_socket = swarm.socket,
      connect_timeout = 5 }, {
      head = function(res)
        if created or proc.ended then return end
        created = true
        if res.status ~= 200 then return proc:finish({ error = "cannot watch the Engine's events: " .. res.status }) end
        create_service(proc, spec, opts, image)
      end,
      data = function(piece)
        buf = buf .. piece
        while true do
          local line, rest = buf:match("^([^\n]*)\n(.*)$")
          if not line then break end
          buf = rest
          proc:on_event(json.decode(line))
        end
      end,
      done = function(_, derr)
        if not proc.ended then return proc:finish({ error = "the Engine's event stream ended: " .. tostring(derr) }) end
        proc:reported()
      end,
    })
    if not proc.events then proc:finish({ error = "cannot watch the Engine's events" }) end
  end)
  return proc
end

-- Stops a process of swarm.spawn: SIGTERM to its container, SIGKILL after grace
-- seconds; one that has no container yet is removed at once.
function swarm.stop(proc, grace)
  if getmetatable(proc) ~= Proc then return bwrap.stop(proc, grace) end
  if proc.ended or proc.stop_timer then return end
  if proc.remote or not proc.container then return proc:kill("KILL") end
  proc.signalled = true
  engine("POST", "/containers/" .. proc.container .. "/kill?signal=TERM", nil, function() end)
  proc.stop_timer = core.timer(grace, function()
    proc.stop_timer = nil
    proc:kill("KILL")
  end)
end

-- Once a program is deleted: its volume (unless keep_state), and the images it ran
-- that no container uses any more (the engine refuses the others).
function swarm.release(program, keep_state)
  if not keep_state then engine("DELETE", "/volumes/hersh-state-" .. program, nil, function() end) end
  for reference in pairs(images_of[program] or {}) do
    engine("DELETE", "/images/" .. reference, nil, function(res)
      if not (res and res.status == 200) then return end
      for name, ref in pairs(loaded) do
        if ref == reference then loaded[name] = nil end
      end
    end)
  end
  images_of[program] = nil
end

return swarm
