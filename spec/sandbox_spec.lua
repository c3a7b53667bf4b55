-- Programs in the bubblewrap sandbox, attacked from inside. Real builds, real bwrap,
-- real processes: each test builds (or reuses) an image from spec/programs/<name>/,
-- runs it under host.supervisor and checks from the host what the program could and
-- could not do. The attacker is spec/programs/probe/main.lua: it tries, writes what it
-- saw to /state/probe.json, and serves its WatcherAPI; the tests judge.
--
-- Every wait is bounded; every test stops its programs and closes its sockets in its
-- `finally`, and checks that no process of it is left (spec/scripts/sandbox_harness.lua).
-- Images are shared by build id in one images directory for the whole file.
local hersh = require "hersh"
local sys = require "hersh.os"
local http = require "hersh.http"
local cjson = require "cjson"
local build = require "host.build"
local supervisor = require "host.supervisor"
local S = require "scripts.sandbox_harness"

local fs = sys.fs

local MiB = 1024 * 1024
local WAIT = S.WAIT    -- bound of a wait for a state change
local TMP_SIZE = 8 * MiB

-- ---- host-side helpers ------------------------------------------------------------

local read, shell, has, exists, poll, pause = S.read, S.shell, S.has, S.exists, S.poll, S.pause
local count_program_procs, host_run = S.count_program_procs, S.host_run
local REPO, FIXTURES, MY_PID = S.REPO, S.FIXTURES, S.MY_PID
local MY_CMDLINE = (read("/proc/self/cmdline") or ""):gsub("%z", " ")
local HOST_INIT_CMDLINE = (read("/proc/1/cmdline") or ""):gsub("%z", " ")

local function pids()
  local list = {}
  for _, name in ipairs(fs.list("/proc") or {}) do
    if name:match("^%d+$") then list[#list + 1] = tonumber(name) end
  end
  return list
end

-- A process's parent and start time (from /proc/<pid>/stat), or nil when it is gone.
local function stat_of(pid)
  local s = read("/proc/" .. pid .. "/stat")
  if not s then return nil end
  local fields = {}
  for f in s:match(".*%) (.*)$"):gmatch("%S+") do fields[#fields + 1] = f end
  return { ppid = tonumber(fields[2]), start = fields[20] }
end

local function cmdline_of(pid)
  local c = read("/proc/" .. pid .. "/cmdline")
  return c and (c:gsub("%z", " "))
end

-- The processes whose command line contains `marker`, and all their descendants, as
-- {pid, start, cmdline} (the start time tells a reused pid from the process).
local function tree_of(marker)
  local all, parent_of, found = pids(), {}, {}
  for _, pid in ipairs(all) do
    local st = stat_of(pid)
    if st then parent_of[pid] = st.ppid end
  end
  local function inside(pid)
    local seen = 0
    while pid and pid > 1 and seen < 64 do
      if found[pid] then return true end
      pid, seen = parent_of[pid], seen + 1
    end
    return false
  end
  for _, pid in ipairs(all) do
    if pid ~= MY_PID and has(cmdline_of(pid), marker) then found[pid] = true end
  end
  local list = {}
  for _, pid in ipairs(all) do
    if inside(pid) then
      local st = stat_of(pid)
      if st then list[#list + 1] = { pid = pid, start = st.start, cmdline = cmdline_of(pid) or "" } end
    end
  end
  return list
end

-- How many of those processes still exist.
local function still_alive(list)
  local n = 0
  for _, p in ipairs(list) do
    local st = stat_of(p.pid)
    if st and st.start == p.start then n = n + 1 end
  end
  return n
end

-- Is anything of this network namespace listening on TCP `port` (any address)?
local function listening_on(port)
  local hex = string.format(":%04X", port)
  for _, file in ipairs{ "/proc/net/tcp", "/proc/net/tcp6" } do
    for line in (read(file) or ""):gmatch("[^\n]+") do
      local localaddr, state = line:match("^%s*%d+:%s+(%S+)%s+%S+%s+(%x%x)")
      if localaddr and state == "0A" and localaddr:sub(-5) == hex then return true end
    end
  end
  return false
end

local function http_get(port, path)
  local got
  local ok, err = http.request({ url = string.format("http://127.0.0.1:%d%s", port, path), timeout = 5 },
    function(res, rerr) got = { res = res, err = rerr } end)
  assert.is_true(ok, tostring(err))
  assert.is_true(poll(function() return got ~= nil end, 10), "no answer from port " .. port)
  return got.res, got.err
end

-- The cgroup (v1) directory of a child named `name`, for the controller, if any.
local function cgroup_dir(controller, name)
  for line in (read("/proc/self/cgroup") or ""):gmatch("[^\n]+") do
    local ctrls, path = line:match("^%d+:([^:]*):(.*)$")
    for c in (ctrls or ""):gmatch("[^,]+") do
      if c == controller then
        local dir = "/sys/fs/cgroup/" .. controller .. (path == "/" and "" or path) .. "/hersh/" .. name
        if exists(dir) then return dir end
      end
    end
  end
  return nil
end

-- ---- programs -------------------------------------------------------------------

local ROOT, IMAGES, LIMITS, SAVED_TMP_SIZE
local defer, program, story, runtime_log = S.defer, S.program, S.story, S.runtime_log
local wait_state, start_ready, running_procs, cleanup = S.wait_state, S.start_ready, S.running_procs, S.cleanup

-- What the probe wrote at its boot number `boot`.
local function probe_result(p, boot)
  local doc
  local ok = poll(function()
    local text = read(p.dirs.state .. "/probe.json")
    doc = text and cjson.decode(text)
    return doc ~= nil and doc.boot == boot
  end, WAIT)
  assert.is_true(ok, "no probe result of boot " .. boot .. "\n" .. story(p))
  return doc
end

-- ---- the specs ------------------------------------------------------------------

describe("a program in the bubblewrap sandbox", function()
  setup(function()
    S.setup()
    ROOT, IMAGES = S.ROOT, S.IMAGES
    SAVED_TMP_SIZE = supervisor.TMP_SIZE
    supervisor.TMP_SIZE = TMP_SIZE
    -- Which limits this machine enforces, asked of a probe spawn.
    local done
    local proc = assert(sys.spawn{ argv = { "/bin/true" }, limits = { memory = 64 * MiB, pids = 64, cpus = 0.5 },
      cgroup = "spec" .. MY_PID .. "-limits", on_exit = function() done = true end })
    LIMITS = proc:limits()
    poll(function() return done end, 10)
  end)

  teardown(function()
    supervisor.TMP_SIZE = SAVED_TMP_SIZE
    S.teardown()
  end)

  it("cannot write to /, /etc, /usr, the runtime or its image /app, nor remount them; /state works", function()
    finally(cleanup)
    local evil_host = { "/etc/hersh-spec-evil", "/usr/hersh-spec-evil", "/usr/bin/hersh-spec-evil",
      REPO .. "/lua/hersh-spec-evil", "/hersh-spec-evil", "/hersh-spec-remount" }
    for _, path in ipairs(evil_host) do assert.is_false(exists(path), path .. " exists before the test") end
    defer(function() for _, path in ipairs(evil_host) do os.remove(path) end end)
    local secret = ROOT .. "/host-secret"
    assert(fs.write_file(secret, "host secret\n"))
    local p = program("probe", { env = { PROBE_SECRET = secret } })
    start_ready(p)
    local r = probe_result(p, 1)
    local tried = 0
    for path, w in pairs(r.writes) do
      tried = tried + 1
      assert.is_false(w.ok, "the program could write " .. path)
    end
    assert.equal(12, tried)
    assert.is_true(r.state_write.ok, tostring(r.state_write.err))
    assert.equal("hersh-spec-evil\n", read(p.dirs.state .. "/hersh-spec-written"))
    assert.not_equal(0, r.remount[1], "mount -o remount,rw / worked: " .. tostring(r.remount[2]))
    assert.not_equal(0, r.nested[1], "a nested user namespace remounted /app rw: " .. tostring(r.nested[2]))
    assert.not_equal(0, r.sys_cgroup[1], "/sys/fs/cgroup is visible: the program could raise its own limits")
    assert.is_false(r.secret.visible, "a host file outside the image is visible")
    -- From the host: nothing landed in the image or on the host.
    local rootfs = build.image_dir(IMAGES, p.build_id) .. "/rootfs"
    for _, path in ipairs{ "/hersh-spec-evil", "/hersh-spec-remount", "/app/hersh-spec-evil", "/app/hersh-spec-nested" } do
      assert.is_false(exists(rootfs .. path), "the image got " .. path)
    end
    assert.equal(read(FIXTURES .. "/probe/main.lua"), read(rootfs .. "/app/main.lua"))
    for _, path in ipairs(evil_host) do assert.is_false(exists(path), "the host got " .. path) end
  end)

  it("keeps /state across a restart and a stop + start, each time in a new process", function()
    finally(cleanup)
    local p = program("probe")
    start_ready(p)
    local first = probe_result(p, 1)
    local pid1, attempt1 = p.sup.record.pid, p.sup.record.attempt
    assert.is_true(p.sup:restart())
    assert.is_true(poll(function()
      return p.sup.record.state == "Ready" and p.sup.record.attempt > attempt1
    end, WAIT), story(p))
    local second = probe_result(p, 2)
    local pid2 = p.sup.record.pid
    assert.not_equal(pid1, pid2)
    assert.is_false(p.procs[attempt1]:running())
    assert.equal(first.marker, second.marker)
    assert.is_true(has(second.marker, "made at boot 1"))
    assert.is_true(p.sup:stop())
    assert.is_true(wait_state(p, "Stopped"), story(p))
    assert.equal(0, running_procs(p))
    start_ready(p)
    local third = probe_result(p, 3)
    assert.not_equal(pid2, p.sup.record.pid)
    assert.not_equal(pid1, p.sup.record.pid)
    assert.equal(first.marker, third.marker)
    assert.equal("3", read(p.dirs.state .. "/boots"))
  end)

  it("has a private /tmp that is writable and no larger than its size", function()
    finally(cleanup)
    assert.is_false(exists("/tmp/hersh-spec-small"))
    local p = program("probe", { env = { PROBE_TMP_TRY = tostring(3 * TMP_SIZE) }, limits = { memory = 256 * MiB } })
    start_ready(p)
    local r = probe_result(p, 1)
    assert.is_true(r.tmp.small.ok, tostring(r.tmp.small.err))
    assert.is_true(r.tmp.written > 0)
    assert.is_true(r.tmp.written <= TMP_SIZE, "wrote " .. r.tmp.written .. " bytes into a " .. TMP_SIZE .. " byte /tmp")
    assert.is_true(has(r.tmp.err, "No space left"), tostring(r.tmp.err))
    assert.is_false(exists("/tmp/hersh-spec-small"), "the program's /tmp is the host's")
  end)

  it("cannot connect to TCP ports of the host, on loopback or its other addresses", function()
    finally(cleanup)
    local lfd, lport = assert(sys.listen("127.0.0.1", 0))
    defer(function() sys.close_fd(lfd) end)
    local afd, aport = assert(sys.listen("0.0.0.0", 0))
    defer(function() sys.close_fd(afd) end)
    local targets = { "127.0.0.1:" .. lport, "127.0.0.1:" .. aport }
    for addr in shell("hostname -I 2>/dev/null"):gmatch("%S+") do
      if addr:match("^%d+%.%d+%.%d+%.%d+$") then targets[#targets + 1] = addr .. ":" .. aport end
    end
    -- The control: unsandboxed, each of them connects.
    for _, t in ipairs(targets) do
      local addr, port = t:match("^(.+):(%d+)$")
      assert.equal(0, host_run{ "bash", "-c", string.format("exec 3<>/dev/tcp/%s/%s", addr, port) }, t)
    end
    local p = program("probe", { env = { PROBE_CONNECT = table.concat(targets, " ") } })
    start_ready(p)
    local r = probe_result(p, 1)
    assert.equal(#targets, #r.connects)
    for _, c in ipairs(r.connects) do
      assert.not_equal(0, c.bash_rc, "bash reached " .. c.target)
      assert.not_equal(0, c.curl_rc, "curl reached " .. c.target)
    end
    assert.same({ "lo" }, r.interfaces)
  end)

  it("cannot reach another program's published port", function()
    finally(cleanup)
    local a = program("probe", { env = { PROBE_WATCHER_ID = "program-a" } })
    start_ready(a)
    local res = http_get(a.port, "/watcher/status") -- the host reaches it
    assert.equal(200, res and res.status)
    local b = program("probe", { env = { PROBE_CONNECT = "127.0.0.1:" .. a.port, PROBE_WATCHER_ID = "program-b" } })
    start_ready(b)
    local r = probe_result(b, 1)
    assert.equal(1, #r.connects)
    assert.not_equal(0, r.connects[1].bash_rc, "program b reached program a")
    assert.not_equal(0, r.connects[1].curl_rc, "program b reached program a's WatcherAPI")
    assert.equal("program-a", cjson.decode(http_get(a.port, "/watcher/status").body).watcherID)
    assert.equal("program-b", cjson.decode(http_get(b.port, "/watcher/status").body).watcherID)
  end)

  it("does not see the host's processes", function()
    finally(cleanup)
    local p = program("probe", { env = { PROBE_HOST_PID = tostring(MY_PID) } })
    start_ready(p)
    local r = probe_result(p, 1)
    local sees_itself, pid1
    for _, proc in ipairs(r.procs) do
      assert.not_equal(MY_CMDLINE, proc.cmdline, "the program sees the test process")
      if HOST_INIT_CMDLINE ~= "" and not has(HOST_INIT_CMDLINE, "bwrap") then
        assert.not_equal(HOST_INIT_CMDLINE, proc.cmdline, "the program sees the host's pid 1")
      end
      if has(proc.cmdline, "hersh run /app/main.lua") then sees_itself = true end
      if proc.pid == 1 then pid1 = proc.cmdline end
    end
    assert.is_true(sees_itself, "the listing is empty or broken: " .. cjson.encode(r.procs))
    assert.is_true(has(pid1, "bwrap"), "pid 1 inside is " .. tostring(pid1))
    assert.is_true(#r.procs <= 8, #r.procs .. " processes visible: " .. cjson.encode(r.procs))
    assert.is_true(r.host_pid_cmdline == cjson.null or r.host_pid_cmdline ~= MY_CMDLINE)
  end)

  it("has no capabilities, no_new_privs, cannot read /etc/shadow, is nobody on the host, gets no host env", function()
    finally(cleanup)
    assert.is_true(exists("/etc/shadow"), "the host has no /etc/shadow to protect")
    local p = program("probe", { env = { USER_VAR = "from the spec" } })
    start_ready(p)
    local r = probe_result(p, 1)
    -- The environment: what the supervisor gives, the user's env, and what bash adds.
    assert.equal(p.sup.id, r.env.HERSH_PROGRAM_ID)
    assert.equal("/state", r.env.HERSH_STATE_DIR)
    assert.equal("1", r.env.LISTEN_FDS)
    assert.equal("from the spec", r.env.USER_VAR)
    local allowed = { PATH = true, HOME = true, HERSH_LUA_DIR = true, HERSH_PROGRAM_ID = true,
      HERSH_STATE_DIR = true, LISTEN_FDS = true, USER_VAR = true, PWD = true, SHLVL = true, _ = true }
    for k in pairs(r.env) do assert.is_true(allowed[k], "the program got " .. k .. " from the host") end
    for _, status in ipairs{ r.status, r.child_status } do
      for _, cap in ipairs{ "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb" } do
        assert.equal("0000000000000000", status[cap], cap)
      end
      assert.equal("1", status.NoNewPrivs)
    end
    assert.is_false(r.shadow.ok, "/etc/shadow is readable")
    -- uid 0 inside, but what it writes on the host belongs to the unprivileged user.
    assert.equal("0", (r.status.Uid or ""):match("^(%d+)"))
    assert.equal("65534", shell("stat -c %u '" .. p.dirs.state .. "/hersh-spec-written'"))
  end)

  it("serves the handed-over socket across restarts, with only stdio and that socket, and nothing on 8080", function()
    finally(cleanup)
    local p = program("probe", { env = { PROBE_WATCHER_ID = "served-probe" } })
    start_ready(p)
    local function status_ok()
      local res, err = http_get(p.port, "/watcher/status")
      assert.is_truthy(res, tostring(err))
      assert.equal(200, res.status)
      assert.equal("served-probe", cjson.decode(res.body).watcherID)
    end
    status_ok()
    assert.is_true(listening_on(p.port))
    assert.is_false(listening_on(8080), "something listens on 8080 of the host")
    local r = probe_result(p, 1)
    local fds = {}
    for fd in (r.fds or ""):gmatch("%s(%d+) %-> ") do fds[#fds + 1] = tonumber(fd) end
    table.sort(fds)
    assert.same({ 0, 1, 2, 3 }, fds, "descriptors at start:\n" .. tostring(r.fds))
    assert.is_true(has(r.fds, "3 -> socket:"), tostring(r.fds))
    local attempt = p.sup.record.attempt
    assert.is_true(p.sup:restart())
    assert.is_true(poll(function()
      return p.sup.record.state == "Ready" and p.sup.record.attempt > attempt
    end, WAIT), story(p))
    status_ok()
    assert.is_true(p.sup:stop())
    assert.is_true(wait_state(p, "Stopped"), story(p))
    start_ready(p)
    status_ok()
    assert.is_false(listening_on(8080), "something listens on 8080 of the host")
  end)

  it("logs the program's stdout and stderr lines with time and stream in logs/runtime.log", function()
    finally(cleanup)
    local p = program("probe")
    start_ready(p)
    probe_result(p, 1)
    local TIME = "%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ"
    local out, err
    assert.is_true(poll(function()
      local log = runtime_log(p)
      out = log:match("\n?(" .. TIME .. ") stdout probe%-done boot=1\n")
      err = log:match("\n?(" .. TIME .. ") stderr probe%-stderr boot=1\n")
      return out ~= nil and err ~= nil
    end, WAIT), runtime_log(p))
    assert.is_true(out:sub(1, 10) == os.date("!%Y-%m-%d") or out:sub(1, 4) == os.date("!%Y"))
    local tail = p.sup:tail(50)
    local function find(stream, text)
      for _, l in ipairs(tail) do
        if l.stream == stream and l.text == text and type(l.time) == "number" then return true end
      end
      return false
    end
    assert.is_true(find("stdout", "probe-done boot=1"))
    assert.is_true(find("stderr", "probe-stderr boot=1"))
  end)

  it("holds a fork bomb at the pids limit and leaves nothing behind", function()
    finally(cleanup)
    if not LIMITS.pids then pending("the pids limit is not enforced here: " .. tostring(LIMITS.why)) end
    local LIMIT = 40
    local p = program("forkbomb", { limits = { pids = LIMIT, memory = 256 * MiB }, policy = "no" })
    assert.is_true(p.sup:start())
    assert.is_true(poll(function() return p.sup.record.pid ~= nil end, WAIT), story(p))
    local proc = p.procs[p.sup.record.attempt]
    assert.is_true(proc:limits().pids, "the spawn says pids is not enforced")
    assert.is_true(poll(function() return has(runtime_log(p), "Resource temporarily unavailable") end, WAIT),
      "the bomb never hit the limit\n" .. story(p))
    -- Counted from the host for a second: many, never more than the limit.
    local most = 0
    for _ = 1, 10 do
      most = math.max(most, count_program_procs(p.sup.id))
      pause(0.1)
    end
    assert.is_true(most > 4, "the bomb did not multiply (" .. most .. " processes)")
    assert.is_true(most <= LIMIT, most .. " processes under a limit of " .. LIMIT)
    local dir = cgroup_dir("pids", p.sup.id)
    if dir then
      assert.is_true(tonumber(read(dir .. "/pids.current")) <= LIMIT)
      assert.is_true(tonumber((read(dir .. "/pids.events") or ""):match("max (%d+)") or 0) > 0)
    end
    assert.equal(0, host_run{ "/bin/true" }, "the host cannot fork any more")
    assert.is_true(p.sup:stop())
    assert.is_true(wait_state(p, "Stopped", 15), story(p))
    assert.is_true(poll(function() return count_program_procs(p.sup.id) == 0 end, 10),
      count_program_procs(p.sup.id) .. " bomb processes outlived the stop")
  end)

  it("kills a memory hog at the memory limit", function()
    finally(cleanup)
    if not LIMITS.memory then pending("the memory limit is not enforced here: " .. tostring(LIMITS.why)) end
    local p = program("memhog", { limits = { memory = 96 * MiB, pids = 64 }, policy = "no", env = { HOG_MB = "1024" } })
    assert.is_true(p.sup:start())
    assert.is_true(poll(function() return p.sup.record.pid ~= nil or p.sup.record.state == "Error" end, WAIT))
    local _, proc = next(p.procs)
    assert.is_truthy(proc, story(p))
    assert.is_true(proc:limits().memory, "the spawn says memory is not enforced")
    assert.is_true(wait_state(p, "Error", 30), story(p))
    local r = p.sup.record
    assert.is_true(r.exit_signal == 9 or r.exit_code == 137, story(p))
    local log = runtime_log(p)
    assert.is_true(has(log, "hog-start 1024"), log)
    assert.is_true(has(log, "hog-at 16\n"), "killed before it held 16 MiB:\n" .. log)
    assert.is_false(has(log, "hog-survived"), "the hog got its 1 GiB")
    local dir = cgroup_dir("memory", p.sup.id)
    if dir and read(dir .. "/memory.oom_control") then
      assert.is_true(tonumber(read(dir .. "/memory.oom_control"):match("oom_kill (%d+)") or 1) > 0)
    end
  end)

  it("restarts a crashing program with doubling delays, then gives up with Error", function()
    finally(cleanup)
    local policy = { mode = "on-failure", base_delay = 0.1, max_delay = 10, max_restarts = 4, reset_after = 60 }
    local p = program("crash", { policy = policy })
    assert.is_true(p.sup:start())
    assert.is_true(wait_state(p, "Error", 30), story(p))
    local r = p.sup.record
    assert.equal(4, r.restarts)
    assert.is_true(has(r.error_msg, "gave up after 4 restarts"), tostring(r.error_msg))
    assert.equal(1, r.exit_code)
    -- Each failure scheduled the next restart: restarts 1..4, delays 0.1 doubling.
    local scheduled = {}
    for _, h in ipairs(p.history) do
      if h.state == "Restarting" then
        scheduled[#scheduled + 1] = { restarts = h.restarts, delay = h.next_restart_at - h.updated_at }
      end
    end
    assert.equal(4, #scheduled)
    for i, s in ipairs(scheduled) do
      assert.equal(i, s.restarts)
      assert.near(0.1 * 2 ^ (i - 1), s.delay, 1e-5)
    end
    -- Five processes, each new, spawned with restarts 0..4, further and further apart.
    assert.equal(5, #p.spawns, story(p))
    local pids = {}
    for i, s in ipairs(p.spawns) do
      assert.equal(i - 1, s.restarts)
      assert.is_nil(pids[s.pid])
      pids[s.pid] = true
      if i > 1 then assert.is_true(s.attempt > p.spawns[i - 1].attempt) end
    end
    for i = 3, #p.spawns do
      local gap, before = p.spawns[i].t - p.spawns[i - 1].t, p.spawns[i - 1].t - p.spawns[i - 2].t
      assert.is_true(gap > before, string.format("gap %d (%.3f s) is not longer than gap %d (%.3f s)", i - 1, gap, i - 2, before))
    end
    local crashes = select(2, runtime_log(p):gsub("stderr hersh%-spec%-crash\n", ""))
    assert.equal(5, crashes)
  end)

  it("cancels a build when stopped: Stopped at once, its RUN process gone, no image stored", function()
    finally(cleanup)
    local p = program("slowbuild")
    assert.is_true(p.sup:start())
    assert.equal("Building", p.sup.record.state)
    -- The build sandbox (its bwrap names the image being made) and all below it.
    local tree
    assert.is_true(poll(function()
      tree = tree_of(IMAGES .. "/" .. p.build_id .. ".tmp-")
      for _, proc in ipairs(tree) do
        if proc.cmdline:match("^sleep 29%.517") then return true end
      end
      return false
    end, WAIT), "the RUN step never ran\n" .. story(p))
    local run = p.sup.build_job and p.sup.build_job.proc
    assert.is_true(p.sup:stop())
    assert.equal("Stopped", p.sup.record.state)
    assert.is_true(poll(function() return still_alive(tree) == 0 end, 10),
      still_alive(tree) .. " processes of the build outlived the cancel")
    if run then assert.is_true(poll(function() return not run:running() end, 5)) end
    pause(0.2) -- the cancelled build's late answer must not move the program
    assert.equal("Stopped", p.sup.record.state)
    assert.is_nil(build.load_image(IMAGES, p.build_id))
    for _, name in ipairs(fs.list(IMAGES)) do
      assert.is_nil(name:find(p.build_id, 1, true), "left in the images: " .. name)
    end
    assert.is_true(has(read(p.dirs.logs .. "/build.log"), "cancelled"))
  end)

  it("a RUN step's symbolic link does not let COPY write outside the image", function()
    finally(cleanup)
    local victim = ROOT .. "/victim"
    assert(fs.mkdir_p(victim))
    assert(fs.write_file(victim .. "/file.txt", "original\n"))
    local text = table.concat({
      "FROM hersh",
      string.format("RUN ln -s %s/file.txt /x && ln -s %s /d", victim, victim),
      "COPY payload.txt /x",
      "COPY payload.txt /d/planted.txt",
      'CMD ["true"]', "" }, "\n")
    local p = program("symlink", { dockerfile = text, files = { ["payload.txt"] = "PAYLOAD\n" }, policy = "no" })
    assert.is_true(p.sup:start())
    assert.is_true(poll(function() return p.sup.record.state ~= "Building" end, WAIT), story(p))
    assert.equal("original\n", read(victim .. "/file.txt"), "COPY overwrote a host file through a link")
    assert.is_false(exists(victim .. "/planted.txt"), "COPY planted a file in a host directory through a link")
  end)
end)
