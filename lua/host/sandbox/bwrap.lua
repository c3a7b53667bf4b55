-- The bubblewrap sandbox driver: the command line that runs a program (or a build
-- step) with a read-only root made of the image's files (plus the host's /usr and
-- /etc for FROM hersh), /state read-write, a private size-limited /tmp, its own PID,
-- mount, IPC, UTS and network namespaces (only loopback), no capabilities,
-- no_new_privs, and it dies with its parent.
--
-- bwrap runs as an unprivileged host user (the spawn drops to it before exec), in a
-- user namespace of its own: the program may be uid 0 inside, but it can read and
-- write on the host only what that user may.
--
-- bwrap itself runs on the host, before any namespace exists: nothing of the program
-- reaches it but its argument vector. Its environment is empty (LD_PRELOAD there would
-- run the program's code on the host), the program's variables are set inside
-- (--clearenv, --setenv), its working directory is /, and its only descriptors are
-- the seccomp filter, the --setenv options, hersh-init's status descriptor (closed on
-- exec of the program: it never holds it) and those the program is handed. The
-- --setenv options come through a descriptor (--args), not the command line: every
-- local user can read /proc/<pid>/cmdline, and the variables may hold secrets.
--
-- The program runs under hersh-init (src/init), which reports how it really ended:
-- bwrap itself says "128 + n" for a signal n, like a program's own exit(128 + n).
--
-- bwrap.stop decides which processes a stop signals: see there.
local core = require "hersh.core"
local sys = require "hersh.os"

local bwrap = { name = "bwrap", path = "/usr/bin/bwrap" }

-- The grace timer of each process being stopped (gone with its exit).
local stopping = setmetatable({}, { __mode = "k" })

-- Where bwrap finds the seccomp filter (sys.sandbox.seccomp_fd); it closes it before
-- the program runs.
local SECCOMP_FD = 9
-- Where bwrap finds the --setenv options (sys.sandbox.args_fd).
local ARGS_FD = 10
-- Where hersh-init writes how the program ended (sys.sandbox.status_fd), and where
-- it is in the sandbox (bwrap's /dev is a tmpfs of its own, in every image).
local STATUS_FD = 11
local INIT_PATH = "/dev/.hersh-init"

local DEFAULT_TMP_SIZE = 64 * 1024 * 1024

-- The mount points an image's rootfs must hold so bwrap can mount onto its read-only
-- root (the build makes them): directories, then symbolic links to /usr.
bwrap.skeleton = {
  hersh = {
    dirs = { "usr", "etc", "dev", "proc", "tmp", "state", "opt/hersh/bin", "opt/hersh/lua",
      "opt/hersh/include", "opt/hersh/lib" },
    files = { "opt/hersh/bin/hersh" },
    links = { bin = "usr/bin", sbin = "usr/sbin", lib = "usr/lib", lib64 = "usr/lib64" },
  },
  scratch = { dirs = { "dev", "proc", "tmp", "state" }, files = {}, links = {} },
}

function bwrap.check()
  local f = io.open(bwrap.path, "r")
  if not f then return nil, "bubblewrap is not installed (" .. bwrap.path .. ")" end
  f:close()
  return true
end

local function push(argv, ...)
  for i = 1, select("#", ...) do argv[#argv + 1] = select(i, ...) end
end

-- spec: rootfs, base ("hersh" | "scratch"), state_dir (nil for a build step),
-- writable_root (a build step writes into rootfs), network ("none" | "host"),
-- tmp_size, uid, gid (inside), workdir, argv, env ({"K=V", ...}, the program's),
-- runtime = {bin, lua, include, lib} (FROM hersh; lib lists files), init (hersh-init
-- on the host: the program runs under it, which reports its end on STATUS_FD).
-- -> argv, env_args (the --setenv options bwrap reads from ARGS_FD), or nil, err for
-- an environment bwrap cannot set.
function bwrap.command(spec)
  local argv, env_args = { bwrap.path, "--clearenv", "--args", tostring(ARGS_FD) }, {}
  for _, kv in ipairs(spec.env or {}) do
    local k, v = kv:match("^([^=]+)=(.*)$")
    if not k then return nil, "bad environment entry '" .. kv .. "': it wants NAME=VALUE" end
    -- the --args descriptor is NUL-separated: a NUL would split the value into options
    if kv:find("\0", 1, true) then return nil, "the environment variable " .. k .. " holds a NUL byte" end
    push(env_args, "--setenv", k, v)
  end
  push(argv, "--seccomp", tostring(SECCOMP_FD))
  push(argv, spec.writable_root and "--bind" or "--ro-bind", spec.rootfs, "/")
  if spec.base == "hersh" then
    push(argv, "--ro-bind", "/usr", "/usr", "--ro-bind", "/etc", "/etc")
    if spec.runtime then -- the hersh runtime: the executable, its Lua modules, and for C
      push(argv, "--ro-bind", spec.runtime.bin, "/opt/hersh/bin/hersh") -- programs hersh.h and libhersh
      push(argv, "--ro-bind", spec.runtime.lua, "/opt/hersh/lua")
      if spec.runtime.include then push(argv, "--ro-bind", spec.runtime.include, "/opt/hersh/include") end
      if spec.runtime.lib then -- exactly these files, on a tmpfs made read-only after
        push(argv, "--tmpfs", "/opt/hersh/lib")
        for _, file in ipairs(spec.runtime.lib) do
          push(argv, "--ro-bind", file, "/opt/hersh/lib/" .. file:match("[^/]+$"))
        end
        push(argv, "--remount-ro", "/opt/hersh/lib")
      end
    end
  end
  push(argv, "--dev", "/dev", "--proc", "/proc")
  if spec.init then push(argv, "--ro-bind", spec.init, INIT_PATH) end
  if spec.state_dir then push(argv, "--bind", spec.state_dir, "/state") end
  push(argv, "--size", tostring(spec.tmp_size or DEFAULT_TMP_SIZE), "--tmpfs", "/tmp")
  push(argv, "--unshare-all")
  if spec.network == "host" then push(argv, "--share-net") end
  push(argv, "--unshare-user", "--uid", tostring(spec.uid or 0), "--gid", tostring(spec.gid or 0))
  push(argv, "--die-with-parent", "--cap-drop", "ALL", "--hostname", "hersh")
  push(argv, "--chdir", spec.workdir or "/", "--")
  if spec.init then push(argv, INIT_PATH, tostring(STATUS_FD)) end
  for _, a in ipairs(spec.argv) do argv[#argv + 1] = a end
  return argv, env_args
end

-- What ended the program -> {exit_code, exit_signal, oom_killed, error}, from
-- hersh-init's status ("exited N", "signaled N", "error <why>": the program's own),
-- else from bwrap's exit (code, or signal of bwrap itself): bwrap exits with the
-- program's code, or 128 + n when a signal n ended it, so then 129..192 are read as
-- that signal, as a shell does. oom_killed: the cgroup's OOM count. bwrap's own
-- failures (a mount it could not make; an execvp without hersh-init) exit 1 after
-- its "bwrap: ..." line (setup_error): the program never ran, so there is no exit
-- code, only the error.
function bwrap.exit_report(code, signal, oom_killed, setup_error, status)
  local r = { exit_code = code, exit_signal = signal, oom_killed = oom_killed == true }
  local how, what = (status or ""):match("^(%a+) (.+)$")
  if how == "exited" and what:match("^%d+$") then
    r.exit_code, r.exit_signal = tonumber(what), nil
  elseif how == "signaled" and what:match("^%d+$") then
    r.exit_code, r.exit_signal = nil, tonumber(what)
  elseif how == "error" then
    r.exit_code, r.exit_signal, r.error = nil, nil, what
  elseif code and code > 128 and code <= 128 + 64 then
    r.exit_code, r.exit_signal = nil, code - 128
  elseif code == 1 and setup_error then
    r.exit_code, r.error = nil, setup_error
  end
  return r
end

-- hersh-init beside the hersh executable of the runtime, if it is there.
local function init_path(runtime)
  local dir = runtime and runtime.bin and runtime.bin:match("^(.*)/[^/]*$")
  local path = dir and dir .. "/hersh-init"
  return path and sys.fs.stat(path) and path or nil
end

-- Runs spec in the sandbox: sys.spawn(opts) with the driver's command, environment,
-- working directory and descriptors (opts.fds are handed on to the program).
-- opts.on_exit gets bwrap.exit_report's table. -> process, or nil, err, code.
function bwrap.spawn(spec, opts)
  local with_init = {}
  for k, v in pairs(spec) do with_init[k] = v end
  with_init.init = init_path(spec.runtime)
  local argv, env_args = bwrap.command(with_init)
  if not argv then return nil, env_args, "EINVAL" end
  local filter, filter_err, code = sys.sandbox.seccomp_fd()
  if not filter then return nil, filter_err, code end
  local args, args_err, args_code = sys.sandbox.args_fd(env_args)
  local status, status_err, status_code
  if args and with_init.init then status, status_err, status_code = sys.sandbox.status_fd() end
  if not args or (with_init.init and not status) then
    sys.close_fd(filter)
    if args then sys.close_fd(args) end
    return nil, args_err or status_err, args_code or status_code
  end
  local o, fds = {}, { [SECCOMP_FD] = filter, [ARGS_FD] = args, [STATUS_FD] = status }
  for k, v in pairs(opts) do o[k] = v end
  for child, parent in pairs(opts.fds or {}) do fds[child] = parent end
  o.argv, o.env, o.cwd, o.fds = argv, {}, "/", fds
  local proc
  -- bwrap's own complaint, before any program ran: then it is the only line (a
  -- program's later output clears it), cut to a line's worth.
  local setup_error, lines = nil, 0
  o.on_line = function(stream, line)
    lines = lines + 1
    setup_error = lines == 1 and stream == "stderr" and line:match("^bwrap: (.+)$") or nil
    if setup_error then setup_error = setup_error:sub(1, 300) end
    if opts.on_line then return opts.on_line(stream, line) end
  end
  o.on_exit = function(code, signal, oom_killed)
    local timer = stopping[proc]
    if timer then
      timer:stop()
      stopping[proc] = nil
    end
    local said
    if status then
      said = sys.sandbox.read_status(status)
      sys.close_fd(status)
    end
    if opts.on_exit then return opts.on_exit(bwrap.exit_report(code, signal, oom_killed, setup_error, said)) end
  end
  local spawn_err, spawn_code
  proc, spawn_err, spawn_code = sys.spawn(o)
  sys.close_fd(filter) -- the child has its copies
  sys.close_fd(args)
  if not proc and status then sys.close_fd(status) end
  return proc, spawn_err, spawn_code
end

-- Stops a process of bwrap.spawn: SIGTERM to every process in the sandbox but bwrap
-- itself, which leaves once the program has (a signal would end bwrap, and with it at
-- once the programs mid-cleanup); after `grace` seconds, whatever is left is killed.
-- With a cgroup, cgroup.procs lists them (a daemon cannot leave it) and cgroup.kill
-- ends them; without one, /proc finds them: bwrap's process group and the PID
-- namespace it made, which a daemon cannot leave either, and which dies with bwrap.
function bwrap.stop(proc, grace)
  if not proc:running() or stopping[proc] then return end
  if not proc:signal_cgroup("TERM", proc:pid()) then proc:scan_signal("TERM") end
  stopping[proc] = core.timer(grace, function()
    stopping[proc] = nil
    if proc:running() and not proc:kill_cgroup() then proc:kill("KILL") end
  end)
end

return bwrap
