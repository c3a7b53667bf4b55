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
-- the seccomp filter, the --setenv options and those the program is handed. The
-- --setenv options come through a descriptor (--args), not the command line: every
-- local user can read /proc/<pid>/cmdline, and the variables may hold secrets.
-- spare_leader: a stop's SIGTERM goes to the programs in the sandbox, not to bwrap,
-- which leaves by itself once they have (a signal would end it, and them, at once).
local core = require "hersh.core"

local bwrap = { name = "bwrap", path = "/usr/bin/bwrap", spare_leader = true }

-- Where bwrap finds the seccomp filter (core.sandbox.seccomp_fd); it closes it before
-- the program runs.
local SECCOMP_FD = 9
-- Where bwrap finds the --setenv options (core.sandbox.args_fd).
local ARGS_FD = 10

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
-- runtime = {bin, lua, include, lib} (FROM hersh; lib lists files).
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
  if spec.state_dir then push(argv, "--bind", spec.state_dir, "/state") end
  push(argv, "--size", tostring(spec.tmp_size or DEFAULT_TMP_SIZE), "--tmpfs", "/tmp")
  push(argv, "--unshare-all")
  if spec.network == "host" then push(argv, "--share-net") end
  push(argv, "--unshare-user", "--uid", tostring(spec.uid or 0), "--gid", tostring(spec.gid or 0))
  push(argv, "--die-with-parent", "--cap-drop", "ALL", "--hostname", "hersh")
  push(argv, "--chdir", spec.workdir or "/", "--")
  for _, a in ipairs(spec.argv) do argv[#argv + 1] = a end
  return argv, env_args
end

-- Runs spec in the sandbox: core.spawn(opts) with the driver's command, environment,
-- working directory and descriptors (opts.fds are handed on to the program).
-- -> process, or nil, err, code.
function bwrap.spawn(spec, opts)
  local argv, env_args = bwrap.command(spec)
  if not argv then return nil, env_args, "EINVAL" end
  local filter, filter_err, code = core.sandbox.seccomp_fd()
  if not filter then return nil, filter_err, code end
  local args, args_err, args_code = core.sandbox.args_fd(env_args)
  if not args then
    core.close_fd(filter)
    return nil, args_err, args_code
  end
  local o, fds = {}, { [SECCOMP_FD] = filter, [ARGS_FD] = args }
  for k, v in pairs(opts) do o[k] = v end
  for child, parent in pairs(opts.fds or {}) do fds[child] = parent end
  o.argv, o.env, o.cwd, o.fds, o.spare_leader = argv, {}, "/", fds, bwrap.spare_leader
  local proc, spawn_err, spawn_code = core.spawn(o)
  core.close_fd(filter) -- the child has its copies
  core.close_fd(args)
  return proc, spawn_err, spawn_code
end

return bwrap
