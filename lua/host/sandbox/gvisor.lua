-- The gVisor sandbox driver: a program runs in a runsc container, whose kernel is
-- gVisor's (the Sentry, a user-space kernel) and not the host's: the program's
-- system calls never reach the host kernel, only the Sentry's own, few, filtered ones.
-- bwrap shares the host kernel with the program; this driver is for programs whose
-- authors are not trusted.
--
-- Each start is an OCI bundle of its own (<dir>/bundles/<container>, root's alone):
-- config.json, written with the JSON encoder, holds the read-only root (the image),
-- the host's /usr and /etc for FROM hersh, the hersh runtime, /state read-write, a
-- private /tmp, the program's argv and environment (set inside only: runsc itself gets
-- an empty one, and the variables are in no command line). runsc runs with the Host's
-- own --root (<dir>/root), --network=none (or host, for network "host") and
-- --platform=ptrace. The runsc process is the Host's child in the program's cgroup
-- (the limits hold for the Sentry and the Gofer too), started through setpriv
-- --pdeathsig KILL so that it dies with the Host (bwrap's --die-with-parent), and
-- --attached: the sandbox dies with it.
--
-- runsc has no way to hand the program a descriptor, so the published port cannot be
-- passed in: the program listens on a unix socket (gvisor.listen_path, told by
-- HERSH_LISTEN_UNIX) in a host folder bound at /dev/hersh (--host-uds=create), and
-- the Host relays its port there (src/http/relay.c).
--
-- The program runs as the Host's sandbox user inside too (opts.uid, gid), whatever the
-- image's USER: runsc maps no user namespace here, and the Gofer writes /state as the
-- user inside, so that what it writes there is the sandbox user's, as under bwrap.
--
-- Nothing is left after an exit: the container is deleted (runsc delete) and its
-- bundle removed before the exit is reported; gvisor.prepare removes what a Host
-- killed with -9 left.
local core = require "hersh.core"
local json = require "hersh.json"
local sys = require "hersh.os"
local bwrap = require "host.sandbox.bwrap"
local random = require "host.random"

local fs = sys.fs

local gvisor = { name = "gvisor", path = "/usr/bin/runsc", listen_path = "/dev/hersh/api.sock",
  SETPRIV = "/usr/bin/setpriv" }

-- The same images as bwrap's: they are shared by build id, and /dev/hersh is made in
-- the sandbox's own /dev, never in the image.
gvisor.skeleton = bwrap.skeleton

local API_MOUNT = "/dev/hersh"
local PRIVATE = tonumber("700", 8)
local PRIVATE_FILE = tonumber("600", 8)
local DEFAULT_TMP_SIZE = 64 * 1024 * 1024

-- The processes being stopped: their grace timer (gone with their exit).
local stopping = setmetatable({}, { __mode = "k" })
-- The container id and bundle of each process of gvisor.spawn.
local containers = setmetatable({}, { __mode = "k" })

local function quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

-- runsc's command line for `args` under the driver's --root.
local function runsc(root, ...)
  local argv = { gvisor.path, "--root", root, "--platform=ptrace" }
  for i = 1, select("#", ...) do argv[#argv + 1] = select(i, ...) end
  return argv
end

-- A shell command line of argv, bounded: the check and the start-up clean-up wait for
-- runsc on the loop, which a hung runsc must not hold for long.
local function shell(argv)
  local q = { "timeout", "-k", "5", "30" }
  for _, a in ipairs(argv) do q[#q + 1] = quote(a) end
  return table.concat(q, " ")
end

local function mount(destination, type, source, options)
  return { destination = destination, type = type, source = source, options = options }
end

-- The OCI configuration of spec (see bwrap.command for its fields; uid and gid are
-- the user inside). -> table, or nil, err.
function gvisor.config(spec)
  for _, kv in ipairs(spec.env or {}) do
    if not kv:match("^[^=]+=") then return nil, "bad environment entry '" .. kv .. "': it wants NAME=VALUE" end
  end
  local mounts = {
    mount("/proc", "proc", "proc"),
    mount("/dev", "tmpfs", "tmpfs", { "nosuid", "mode=755" }),
    mount("/tmp", "tmpfs", "tmpfs", { "nosuid", "nodev", "size=" .. (spec.tmp_size or DEFAULT_TMP_SIZE) }),
  }
  local function bind(source, destination, mode)
    mounts[#mounts + 1] = mount(destination, "bind", source, { "rbind", mode, "nosuid", "nodev" })
  end
  if spec.base == "hersh" then
    bind("/usr", "/usr", "ro")
    bind("/etc", "/etc", "ro")
    if spec.runtime then
      bind(spec.runtime.bin, "/opt/hersh/bin/hersh", "ro")
      bind(spec.runtime.lua, "/opt/hersh/lua", "ro")
      if spec.runtime.include then bind(spec.runtime.include, "/opt/hersh/include", "ro") end
      if spec.runtime.lib then -- exactly these files, on a tmpfs of the sandbox
        mounts[#mounts + 1] = mount("/opt/hersh/lib", "tmpfs", "tmpfs", { "nosuid", "nodev", "mode=755" })
        for _, file in ipairs(spec.runtime.lib) do bind(file, "/opt/hersh/lib/" .. file:match("[^/]+$"), "ro") end
      end
    end
  end
  if spec.state_dir then bind(spec.state_dir, "/state", "rw") end
  if spec.api_dir then bind(spec.api_dir, API_MOUNT, "rw") end
  return {
    ociVersion = "1.0.2",
    process = {
      terminal = false, user = { uid = spec.uid or 0, gid = spec.gid or 0 }, args = spec.argv,
      env = json.array(spec.env or {}), cwd = spec.workdir or "/", noNewPrivileges = true,
    },
    root = { path = spec.rootfs, readonly = spec.writable_root ~= true },
    hostname = "hersh",
    mounts = mounts,
    linux = { namespaces = { { type = "pid" }, { type = "network" }, { type = "ipc" }, { type = "uts" },
      { type = "mount" } } },
  }
end

-- Whether runsc can start a container here: a trivial one is run once (cached).
local checked
function gvisor.check()
  if checked then return table.unpack(checked) end
  local why
  local f = io.open(gvisor.path, "r")
  local setpriv = io.open(gvisor.SETPRIV, "r")
  if setpriv then setpriv:close() end
  if not f then
    why = "gVisor is not installed (" .. gvisor.path .. "; apt-get install runsc)"
  elseif not setpriv then
    f:close()
    why = gvisor.SETPRIV .. " (util-linux) is missing"
  else
    f:close()
    local status = io.open("/proc/self/status", "r")
    local uid = status and status:read("a"):match("\nUid:%s+%d+%s+(%d+)")
    if status then status:close() end
    if uid ~= "0" then why = "gVisor's runsc needs the Host to run as root (it runs as uid " .. tostring(uid) .. ")" end
  end
  if not why then
    local mktemp = io.popen("mktemp -d")
    local dir = mktemp and mktemp:read("l")
    if mktemp then mktemp:close() end
    local ok = dir and fs.mkdir_p(dir .. "/rootfs/usr") and fs.mkdir_p(dir .. "/root")
      and fs.symlink("usr/lib", dir .. "/rootfs/lib") and fs.symlink("usr/lib64", dir .. "/rootfs/lib64")
    local config = ok and json.encode{ ociVersion = "1.0.2", process = { args = { "/usr/bin/true" }, cwd = "/",
      user = { uid = 65534, gid = 65534 } }, root = { path = "rootfs", readonly = true },
      mounts = { mount("/usr", "bind", "/usr", { "rbind", "ro" }) } }
    ok = ok and fs.write_file(dir .. "/config.json", config)
    local out = ok and io.popen(shell(runsc(dir .. "/root", "--network=none", "run", "--bundle", dir, "check"))
      .. " 2>&1")
    local said = out and out:read("a") or ""
    local ran = out and out:close()
    if dir then fs.remove_tree(dir) end
    if not ran then
      why = "gVisor cannot start a container here: " .. (said:match("([^\n]+)\n?$") or "runsc failed")
    end
  end
  checked = why and { nil, why } or { true }
  return table.unpack(checked)
end

-- Makes the driver's folder (dir/root: runsc's state; dir/bundles) and removes what a
-- Host killed before left there: its containers (killed, deleted) and bundles.
function gvisor.prepare(dir)
  local ok, err = fs.mkdir_p(dir .. "/root", PRIVATE)
  if ok then ok, err = fs.mkdir_p(dir .. "/bundles", PRIVATE) end
  if ok then ok, err = fs.chmod(dir, PRIVATE) end
  if not ok then return nil, err end
  gvisor.dir = dir
  local root = dir .. "/root"
  local list = io.popen(shell(runsc(root, "list", "-quiet")) .. " 2>/dev/null")
  for id in (list and list:read("a") or ""):gmatch("[^\n]+") do
    os.execute(shell(runsc(root, "kill", "--all", id, "KILL")) .. " >/dev/null 2>&1")
    os.execute(shell(runsc(root, "delete", "--force", id)) .. " >/dev/null 2>&1")
  end
  if list then list:close() end
  for _, name in ipairs(fs.list(dir .. "/bundles") or {}) do fs.remove_tree(dir .. "/bundles/" .. name) end
  return true
end

-- runsc `args...` in the background; then(code) when it has ended.
local function run_async(args, after)
  local proc = sys.spawn{ argv = runsc(gvisor.dir .. "/root", table.unpack(args)), env = {}, cwd = "/",
    on_exit = function(code) if after then after(code) end end }
  if not proc and after then after(nil) end
end

-- Whether runsc still holds state of container id (`run` deletes its container when
-- the program ends; a killed runsc leaves it).
local function has_state(id)
  for _, name in ipairs(fs.list(gvisor.dir .. "/root") or {}) do
    if name:find(id, 1, true) then return true end
  end
  return false
end

-- Deletes container c and removes its bundle; then done().
local function clean(c, done)
  local function finish()
    fs.remove_tree(c.bundle)
    done()
  end
  if has_state(c.id) then return run_async({ "delete", "--force", c.id }, finish) end
  finish()
end

-- What ended the program: runsc exits with its code, or 128 + n for a signal n;
-- 128 with its "running container: ..." line when the program never started.
function gvisor.exit_report(code, signal, oom_killed, setup_error)
  if code == 128 and setup_error then
    return { exit_code = nil, exit_signal = nil, oom_killed = oom_killed == true, error = setup_error }
  end
  return bwrap.exit_report(code, signal, oom_killed)
end

-- Runs spec in a container: sys.spawn(opts) of runsc. opts.uid, gid: the user inside
-- (runsc itself runs as root); opts.fds are not handed on (runsc cannot): the program
-- listens on gvisor.listen_path in spec.api_dir. opts.on_exit gets the exit report once
-- the container is gone. -> process, or nil, err, code.
function gvisor.spawn(spec, opts)
  if not gvisor.dir then return nil, "the gvisor driver has no folder (gvisor.prepare)", "ESTATE" end
  local inside = {}
  for k, v in pairs(spec) do inside[k] = v end
  inside.uid, inside.gid = opts.uid or spec.uid, opts.gid or spec.gid
  local config, config_err = gvisor.config(inside)
  if not config then return nil, config_err, "EINVAL" end
  local id = "hersh-" .. (opts.cgroup or "build"):gsub("[^%w%-_.]", "_") .. "-" .. random.hex(4)
  local c = { id = id, bundle = gvisor.dir .. "/bundles/" .. id }
  local ok, err, code = fs.mkdir_p(c.bundle, PRIVATE)
  if ok then ok, err, code = fs.write_file(c.bundle .. "/config.json", json.encode(config), PRIVATE_FILE) end
  if ok and spec.api_dir then -- the program's socket folder, emptied: the user inside makes the socket
    fs.remove_tree(spec.api_dir)
    ok, err, code = fs.mkdir_p(spec.api_dir, PRIVATE)
    if ok then ok, err, code = fs.chown(spec.api_dir, inside.uid or 0, inside.gid or 0) end
  end
  if not ok then
    fs.remove_tree(c.bundle)
    return nil, err, code
  end
  local o = {}
  for k, v in pairs(opts) do o[k] = v end
  o.argv = runsc(gvisor.dir .. "/root", "--network=" .. (spec.network == "host" and "host" or "none"),
    "--host-uds=create", "run", "--bundle", c.bundle, id)
  table.insert(o.argv, 1, "--")
  table.insert(o.argv, 1, "KILL")
  table.insert(o.argv, 1, "--pdeathsig")
  table.insert(o.argv, 1, gvisor.SETPRIV)
  o.env, o.cwd, o.fds, o.uid, o.gid = {}, "/", nil, nil, nil
  local proc
  local setup_error
  o.on_line = function(stream, line)
    local why = stream == "stderr" and line:match("^running container: (.+)$")
    if why then setup_error = why:sub(1, 300) end
    if opts.on_line then return opts.on_line(stream, line) end
  end
  o.on_exit = function(exit_code, signal, oom_killed)
    local timer = stopping[proc]
    if timer then
      timer:stop()
      stopping[proc] = nil
    end
    clean(c, function()
      if opts.on_exit then return opts.on_exit(gvisor.exit_report(exit_code, signal, oom_killed, setup_error)) end
    end)
  end
  local spawn_err, spawn_code
  proc, spawn_err, spawn_code = sys.spawn(o)
  if not proc then
    fs.remove_tree(c.bundle)
    return nil, spawn_err, spawn_code
  end
  containers[proc] = c
  return proc
end

-- Stops a process of gvisor.spawn: SIGTERM to every process of the container (runsc
-- kill --all); after `grace` seconds, SIGKILL to them, and to runsc itself if it is
-- still there then (the sandbox dies with it).
function gvisor.stop(proc, grace)
  local c = containers[proc]
  if not proc:running() or stopping[proc] or not c then return end
  run_async{ "kill", "--all", c.id, "TERM" }
  stopping[proc] = core.timer(grace, function()
    stopping[proc] = nil
    if not proc:running() then return end
    run_async({ "kill", "--all", c.id, "KILL" }, function()
      if proc:running() then proc:kill("KILL") end
    end)
  end)
end

return gvisor
