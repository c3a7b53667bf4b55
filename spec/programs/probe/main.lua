-- The attacker program of spec/sandbox_spec.lua. At every start it tries what a
-- hostile program would try, writes what it saw to /state/probe.json (the spec reads
-- it from the host), prints one line to each stream, then serves its WatcherAPI on
-- the socket the Host handed over. Nothing here decides pass or fail: it reports.
--
-- Environment (all optional):
--   PROBE_WATCHER_ID  the id of its watcher
--   PROBE_HOST_PID    a pid of the host (the spec's own process)
--   PROBE_CONNECT     "addr:port addr:port ..." TCP endpoints to try to reach
--   PROBE_SECRET      a host path that must not be visible
--   PROBE_TMP_TRY     how many bytes to try to write into /tmp
local hersh = require "hersh"
local json = require "hersh.json"

local R = {}

local function read(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, err end
  local text = f:read("a")
  f:close()
  return text
end

-- A shell command: its exit status and what it printed (both streams).
local function sh(cmd)
  local p = io.popen("( " .. cmd .. " ) 2>&1; echo \"rc=$?\"")
  local out = p:read("a") or ""
  p:close()
  local rc = tonumber(out:match("rc=(%d+)%s*$"))
  return rc, (out:gsub("rc=%d+%s*$", ""))
end

-- Opens `path` for writing ("w" creates it, "r+" only asks for write access to an
-- existing file and writes nothing) and reports whether that worked.
local function try_write(path, mode)
  local f, err = io.open(path, mode or "w")
  if not f then return { ok = false, err = err } end
  local ok, werr = true, nil
  if (mode or "w") == "w" then ok, werr = f:write("hersh-spec-evil\n") end
  local closed, cerr = f:close()
  return { ok = (ok ~= nil and closed ~= nil), err = werr or cerr }
end

-- /state: a boot counter and a marker made at the first boot.
local boots = tonumber(read("/state/boots") or "0") + 1
local f = assert(io.open("/state/boots", "w"))
f:write(tostring(boots))
f:close()
if not read("/state/marker") then
  f = assert(io.open("/state/marker", "w"))
  f:write("made at boot " .. boots .. " by " .. tostring(os.getenv("HERSH_PROGRAM_ID")))
  f:close()
end
R.boot, R.marker = boots, read("/state/marker")
R.state_write = try_write("/state/hersh-spec-written")

-- The read-only root: the image, the base, the runtime, and the kernel's knobs.
R.writes = {}
for _, t in ipairs{
  { "/hersh-spec-evil" }, { "/etc/hersh-spec-evil" }, { "/usr/hersh-spec-evil" },
  { "/usr/bin/hersh-spec-evil" }, { "/bin/hersh-spec-evil" }, { "/app/hersh-spec-evil" },
  { "/opt/hersh/lua/hersh-spec-evil" }, { "/app/main.lua", "r+" }, { "/etc/passwd", "r+" },
  { "/opt/hersh/bin/hersh", "r+" }, { "/proc/sys/kernel/core_pattern", "r+" },
  { "/proc/sysrq-trigger", "r+" },
} do
  R.writes[t[1]] = try_write(t[1], t[2])
end
R.remount = { sh("mount -o remount,rw / && touch /hersh-spec-remount") }
R.nested = { sh("unshare -Urm sh -c 'mount -o remount,rw,bind /app && touch /app/hersh-spec-nested'") }
R.sys_cgroup = { sh("test -e /sys/fs/cgroup") }

-- Secrets and host files.
R.shadow = try_write("/etc/shadow", "r")
R.shadow.ok = R.shadow.ok and read("/etc/shadow") ~= nil
R.secret = { visible = os.getenv("PROBE_SECRET") ~= nil and read(os.getenv("PROBE_SECRET")) ~= nil }

-- /tmp: writable, and no larger than its size.
R.tmp = { small = try_write("/tmp/hersh-spec-small") }
do
  local want = tonumber(os.getenv("PROBE_TMP_TRY") or "0")
  local chunk = string.rep("t", 1024 * 1024)
  local out, err = io.open("/tmp/hersh-spec-fill", "wb")
  local written = 0
  while out and written < want do
    local ok, werr = out:write(chunk)
    if ok then ok, werr = out:flush() end
    if not ok then err = werr break end
    written = written + #chunk
  end
  if out then
    local closed, cerr = out:close()
    if not closed and not err then err = cerr end
  end
  os.remove("/tmp/hersh-spec-fill")
  R.tmp.written, R.tmp.err = written, err
end

-- Privileges: this process and a child of it.
local function caps(text)
  local t = {}
  for k, v in (text or ""):gmatch("\n(%w+):%s*([^\n]*)") do t[k] = v end
  return t
end
R.status = caps("\n" .. (read("/proc/self/status") or ""))
R.child_status = caps("\n" .. select(2, sh("cat /proc/self/status")))

-- Processes: what /proc shows.
R.procs = {}
for pid in select(2, sh("ls /proc")):gmatch("%d+") do
  local cmd = read("/proc/" .. pid .. "/cmdline")
  if cmd then R.procs[#R.procs + 1] = { pid = tonumber(pid), cmdline = (cmd:gsub("%z", " ")) } end
end
local host_pid = os.getenv("PROBE_HOST_PID")
if host_pid then
  local cmd = read("/proc/" .. host_pid .. "/cmdline")
  R.host_pid_cmdline = cmd and (cmd:gsub("%z", " ")) or json.null
end

-- The network: interfaces, and every endpoint asked for, by bash and by curl.
R.interfaces = {}
for name in (read("/proc/net/dev") or ""):gmatch("\n%s*([%w%-%.]+):") do R.interfaces[#R.interfaces + 1] = name end
R.connects = {}
for target in (os.getenv("PROBE_CONNECT") or ""):gmatch("%S+") do
  local addr, port = target:match("^(.+):(%d+)$")
  local c = { target = target }
  c.bash_rc, c.bash_out = sh(string.format("timeout 5 bash -c 'exec 3<>/dev/tcp/%s/%s'", addr, port))
  c.curl_rc, c.curl_out = sh(string.format("timeout 5 curl -sS -m 3 -o /dev/null http://%s:%s/watcher/status", addr, port))
  R.connects[#R.connects + 1] = c
end

-- The environment it was started with.
R.env = {}
for kv in (read("/proc/self/environ") or ""):gmatch("([^%z]+)") do
  local k, v = kv:match("^([^=]*)=(.*)$")
  if k then R.env[k] = v end
end

-- The descriptors the program started with (listed by the shell of its CMD).
R.fds = read("/tmp/fds.txt")

local tmp = "/state/probe.json.tmp"
f = assert(io.open(tmp, "w"))
f:write(json.encode(R))
f:close()
assert(os.rename(tmp, "/state/probe.json"))

io.stdout:write("probe-done boot=", boots, "\n")
io.stdout:flush()
io.stderr:write("probe-stderr boot=", boots, "\n")
io.stderr:flush()

local w = hersh.watcher { id = os.getenv("PROBE_WATCHER_ID") or "probe" }
w:manage(function() end)
w:start()
