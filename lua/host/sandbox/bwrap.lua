-- The bubblewrap sandbox driver: the command line that runs a program (or a build
-- step) with a read-only root made of the image's files (plus the host's /usr and
-- /etc for FROM hersh), /state read-write, a private size-limited /tmp, its own PID,
-- mount, IPC, UTS and network namespaces (only loopback), no capabilities,
-- no_new_privs, and it dies with its parent.
--
-- bwrap runs as an unprivileged host user (the spawn drops to it before exec), in a
-- user namespace of its own: the program may be uid 0 inside, but it can read and
-- write on the host only what that user may.
-- spare_leader: a stop's SIGTERM goes to the programs in the sandbox, not to bwrap,
-- which leaves by itself once they have (a signal would end it, and them, at once).
local bwrap = { name = "bwrap", path = "/usr/bin/bwrap", spare_leader = true }

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
-- tmp_size, uid, gid (inside), workdir, argv, runtime = {bin, lua} (FROM hersh).
function bwrap.command(spec)
  local argv = { bwrap.path }
  push(argv, spec.writable_root and "--bind" or "--ro-bind", spec.rootfs, "/")
  if spec.base == "hersh" then
    push(argv, "--ro-bind", "/usr", "/usr", "--ro-bind", "/etc", "/etc")
    if spec.runtime then -- the hersh runtime: the executable, its Lua modules, and for C
      push(argv, "--ro-bind", spec.runtime.bin, "/opt/hersh/bin/hersh") -- programs hersh.h and libhersh
      push(argv, "--ro-bind", spec.runtime.lua, "/opt/hersh/lua")
      if spec.runtime.include then push(argv, "--ro-bind", spec.runtime.include, "/opt/hersh/include") end
      if spec.runtime.lib then push(argv, "--ro-bind", spec.runtime.lib, "/opt/hersh/lib") end
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
  return argv
end

return bwrap
