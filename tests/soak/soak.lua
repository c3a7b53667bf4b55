-- The soak: a real Host and SOAK_PROGRAMS programs (tests/soak/program) that
-- crash-loop, are updated (deleted and created again with new sources), stopped,
-- started and deleted for SOAK_SECONDS, while the same client hammers the API (list,
-- get, logs, proxy). It samples the Host's descriptors, RSS, threads and the processes
-- under it, prints them as a table every SOAK_SAMPLE seconds and as a summary, then
-- checks that nothing was lost or left behind and that nothing grew beyond its
-- tolerance. Prints "N passed, N failed"; exits non-zero on a failure.
--
-- Growth is measured between two quiet points, every program stopped: after a
-- warm-up (every program started once) and at the end. The curves while the
-- programs run only show the churn.
--
-- Run from the checkout: tests/soak/run.sh BUILD_DIR (make soak); SOAK_SEED repeats a
-- run's random choices.
local H = require "scripts.host_harness"
local P = H.P
local sys = require "hersh.os"
local cjson = require "cjson"

local fs = sys.fs

local SECONDS = tonumber(os.getenv("SOAK_SECONDS")) or 1200
local PROGRAMS = tonumber(os.getenv("SOAK_PROGRAMS")) or 50
local SAMPLE = tonumber(os.getenv("SOAK_SAMPLE")) or math.max(10, SECONDS // 20)
local WARM = 10 -- seconds every program runs before the first quiet point

-- Tolerances, quiet end against quiet start.
local FD_TOLERANCE = 8 -- descriptors, not counting the proxy's idle connections:
local PROXY_CACHE = 64 -- the most the proxy keeps (MAX_CONNECTS in src/http/client.c)
local THREAD_TOLERANCE = 2
local RSS_TOLERANCE_KB = 32 * 1024 -- plus RSS_TOLERANCE_RATIO of the start
local RSS_TOLERANCE_RATIO = 0.5

local DOCKERFILE = assert(P.read("tests/soak/program/Dockerfile"))
local POLICY = { mode = "always", base_delay = 0.5, max_delay = 2, max_restarts = 1000000 }

local passed, failed = 0, 0

local function check(name, ok, detail)
  if ok then
    passed = passed + 1
    print("ok   " .. name)
  else
    failed = failed + 1
    print("FAIL " .. name .. (detail and ("\n  " .. detail) or ""))
  end
end

local SEED = tonumber(os.getenv("SOAK_SEED")) or os.time()
math.randomseed(SEED)

-- ---- what is measured -----------------------------------------------------------------

local function count_dir(path)
  return #(fs.list(path) or {})
end

local function status_kb(pid, field)
  return tonumber(((P.read("/proc/" .. pid .. "/status") or ""):match(field .. ":%s*(%d+)")))
end

-- The processes whose ancestor is pid (its whole tree below it).
local function descendants(pid)
  local parent = {}
  for _, name in ipairs(fs.list("/proc") or {}) do
    if name:match("^%d+$") then
      local stat = P.read("/proc/" .. name .. "/stat")
      local ppid = stat and stat:match("^%d+ %(.*%) %a (%d+)")
      if ppid then parent[tonumber(name)] = tonumber(ppid) end
    end
  end
  local n = 0
  for p in pairs(parent) do
    local q, hops = parent[p], 0
    while q and q ~= pid and hops < 64 do q, hops = parent[q], hops + 1 end
    if q == pid then n = n + 1 end
  end
  return n
end

-- What the process's descriptors point to, by kind ("socket", "pipe", a file path
-- without its program id...), most first: says what a growth is made of.
local function fd_kinds(pid)
  local kinds, dir = {}, "/proc/" .. pid .. "/fd"
  for _, fd in ipairs(fs.list(dir) or {}) do
    local p = io.popen("readlink " .. P.quote(dir .. "/" .. fd))
    local target = p:read("l") or "?"
    p:close()
    local kind = target:match("^(%a+):") or target:gsub("/programs/[^/]+/", "/programs/*/")
    kinds[kind] = (kinds[kind] or 0) + 1
  end
  local list = {}
  for k, n in pairs(kinds) do list[#list + 1] = { k, n } end
  table.sort(list, function(a, b) return a[2] > b[2] end)
  local out = {}
  for i = 1, math.min(#list, 8) do out[i] = list[i][2] .. " " .. list[i][1] end
  return table.concat(out, ", ")
end

-- The Host's TCP connections to the publish ports: its proxy's (kept alive, cached).
local function proxy_connections(h)
  local mine = {}
  local p = assert(io.popen("ls -l /proc/" .. h.proc.pid .. "/fd 2>/dev/null"))
  for inode in p:read("a"):gmatch("socket:%[(%d+)%]") do mine[inode] = true end
  p:close()
  local n = 0
  for line in (P.read("/proc/" .. h.proc.pid .. "/net/tcp") or ""):gmatch("[^\n]+") do
    local remote, inode = line:match("^%s*%d+: %x+:%x+ %x+:(%x+) %x+ %S+ %S+ %S+ +%d+ +%d+ (%d+)")
    local port = remote and tonumber(remote, 16)
    if port and mine[inode] and port >= h.first and port <= h.last then n = n + 1 end
  end
  return n
end

local function sample(h)
  local pid = h.proc.pid
  return { t = os.time(), fds = count_dir("/proc/" .. pid .. "/fd"), rss = status_kb(pid, "VmRSS"),
    threads = status_kb(pid, "Threads"), procs = descendants(pid), proxy = proxy_connections(h) }
end

-- ---- the client and what it believes --------------------------------------------------

local stats = { requests = 0, bad = 0, ops = {} }
local bad_examples = {}

-- A call whose status must be one of `ok` (a set); anything else is a bad answer.
local function expect(h, ok, method, path, body)
  local res = H.call(h, method, path, body)
  stats.requests = stats.requests + 1
  if not ok[res.status] then
    stats.bad = stats.bad + 1
    if #bad_examples < 10 then
      bad_examples[#bad_examples + 1] = string.format("%s %s -> %d %s", method, path, res.status, res.body:sub(1, 200))
    end
  end
  return res
end

local OK = { [200] = true }
local CREATED = { [201] = true }
local ACCEPTED = { [202] = true, [409] = true } -- 409: not in a state for it (e.g. start while running)
local PROXIED = { [200] = true, [502] = true, [503] = true, [504] = true } -- a crash-looping program

local programs, order, gone = {}, {}, {}
local serial = 0

local function main_lua(version)
  return "-- soak: version " .. version .. "\n" .. H.MAIN_LUA
end

local function create(h)
  serial = serial + 1
  local src = main_lua(serial)
  local res = expect(h, CREATED, "POST", "/programs", { user_id = "soak", dockerfile = DOCKERFILE,
    src_files = { ["main.lua"] = src }, restart_policy = POLICY })
  if res.status ~= 201 or not res.json then return nil end
  local id = res.json.program_id
  programs[id] = { id = id, src = src }
  order[#order + 1] = id
  h.ids[#h.ids + 1] = id
  return id
end

local function forget(id)
  programs[id] = nil
  for i, x in ipairs(order) do
    if x == id then table.remove(order, i) break end
  end
  gone[#gone + 1] = id
end

local function delete(h, id)
  local res = expect(h, OK, "DELETE", "/programs/" .. id)
  if res.status == 200 then forget(id) end
end

local function any()
  return order[math.random(#order)]
end

local function start(h, id) expect(h, ACCEPTED, "POST", "/programs/" .. id .. "/start") end

-- One step of the churn, chosen at random; and every step some reading.
local STEPS = {
  { 10, "update", function(h)
    delete(h, any())
    local id = create(h)
    if id then start(h, id) end
  end },
  { 4, "replace", function(h) -- deleted, and a new program in its place
    delete(h, any())
    local id = create(h)
    if id then start(h, id) end
  end },
  { 10, "stop", function(h) expect(h, ACCEPTED, "POST", "/programs/" .. any() .. "/stop") end },
  { 12, "start", function(h) start(h, any()) end },
  { 4, "restart", function(h) expect(h, ACCEPTED, "POST", "/programs/" .. any() .. "/restart") end },
}
local WEIGHT = 0
for _, s in ipairs(STEPS) do WEIGHT = WEIGHT + s[1] end

local function churn(h)
  local r = math.random(WEIGHT)
  for _, s in ipairs(STEPS) do
    r = r - s[1]
    if r <= 0 then
      stats.ops[s[2]] = (stats.ops[s[2]] or 0) + 1
      return s[3](h)
    end
  end
end

local function hammer(h)
  expect(h, OK, "GET", "/programs")
  expect(h, OK, "GET", "/programs/" .. any())
  expect(h, OK, "GET", "/programs/" .. any() .. "/logs?tail=20")
  expect(h, PROXIED, "GET", "/programs/" .. any() .. "/proxy/watcher/status")
end

-- ---- quiet points ----------------------------------------------------------------------

local RUNNING = { Building = true, Starting = true, Ready = true, Stopping = true, Restarting = true }

-- Stops every program and waits until none runs; whether that happened in time.
local function quiesce(h)
  for _, id in ipairs(order) do expect(h, ACCEPTED, "POST", "/programs/" .. id .. "/stop") end
  return P.wait_for(function()
    local res = H.call(h, "GET", "/programs")
    if res.status ~= 200 or not res.json then return false end
    for _, v in ipairs(res.json.programs) do
      if RUNNING[v.state] then return false end
    end
    return descendants(h.proc.pid) == 0
  end, 120, 0.5) == true
end

-- ---- what must hold at the end ---------------------------------------------------------

local function cgroup_parents()
  local p = assert(io.popen("find /sys/fs/cgroup -maxdepth 6 -type d -name hersh 2>/dev/null"))
  local dirs = {}
  for line in p:lines() do dirs[#dirs + 1] = line end
  p:close()
  return dirs
end

-- What is left of a deleted program: a list of descriptions (empty: nothing).
local function leftovers(h, id, cgroups)
  local left = {}
  if H.call(h, "GET", "/programs/" .. id).status ~= 404 then left[#left + 1] = "GET is not 404" end
  if #H.program_pids(id) > 0 then left[#left + 1] = "a process" end
  if fs.stat(H.program_dir(h, id)) then left[#left + 1] = "its directory" end
  for _, dir in ipairs(cgroups) do
    if P.exists(dir .. "/" .. id .. "/cgroup.procs") then left[#left + 1] = "cgroup " .. dir .. "/" .. id end
  end
  return left
end

local function check_nothing_lost(h)
  local res = H.call(h, "GET", "/programs")
  local listed = {}
  for _, v in ipairs(res.json and res.json.programs or {}) do listed[v.program_id] = true end
  local lost, wrong = {}, {}
  for _, id in ipairs(order) do
    if not listed[id] then lost[#lost + 1] = id end
    local src = H.call(h, "GET", "/programs/" .. id .. "/source")
    if src.status ~= 200 or not src.json or src.json.files["main.lua"] ~= programs[id].src then
      wrong[#wrong + 1] = id .. " (" .. src.status .. ")"
    end
  end
  check(string.format("the %d programs the client created are listed", #order), #lost == 0,
    "not listed: " .. table.concat(lost, ", "))
  check("each with the sources it was last created with", #wrong == 0, "wrong: " .. table.concat(wrong, ", "))
  local stray = {}
  for id in pairs(listed) do
    if not programs[id] then stray[#stray + 1] = id end
  end
  check("no program the client deleted is listed", #stray == 0, "listed: " .. table.concat(stray, ", "))
end

local function check_gone(h, ids, what)
  local cgroups = cgroup_parents()
  local bad = {}
  for _, id in ipairs(ids) do
    local left = leftovers(h, id, cgroups)
    if #left > 0 then bad[#bad + 1] = id .. ": " .. table.concat(left, ", ") end
  end
  check(string.format("%d %s programs: no record, process, directory or cgroup left", #ids, what), #bad == 0,
    table.concat(bad, "\n  "))
end

-- ---- the run -----------------------------------------------------------------------------

local function row(s, t0)
  return string.format("%6d %8d %6d %6d %9.1f %7d %6d %9d %5d", s.t - t0, #order, s.fds, s.proxy, s.rss / 1024,
    s.threads, s.procs, stats.requests, stats.bad)
end
local HEADER = string.format("%6s %8s %6s %6s %9s %7s %6s %9s %5s", "t(s)", "programs", "fds", "proxy", "rss(MB)",
  "threads", "procs", "requests", "bad")

local function run()
  local first, last = H.free_range(PROGRAMS + 16)
  local h = H.start_host{ ports = { first, last } }
  print(string.format("soak: Host pid %d on port %d, %d programs, %d s, a sample every %d s, SOAK_SEED=%d",
    h.proc.pid, h.port, PROGRAMS, SECONDS, SAMPLE, SEED))
  local ok, err = pcall(function()
    for _ = 1, PROGRAMS do
      local id = create(h)
      if id then start(h, id) end
    end
    P.sleep(WARM)
    check("warm-up: every program stops", quiesce(h))
    local q0 = sample(h)
    q0.kinds = fd_kinds(h.proc.pid)
    local t0 = os.time()
    for _, id in ipairs(order) do start(h, id) end

    print(HEADER)
    local curve = { q0 }
    print(row(q0, t0) .. "  (quiet)")
    local next_sample = t0 + SAMPLE
    while os.time() < t0 + SECONDS do
      churn(h)
      hammer(h)
      if os.time() >= next_sample then
        if not P.alive(h.proc) then error("the Host died:\n" .. P.stderr(h.proc)) end
        local s = sample(h)
        curve[#curve + 1] = s
        print(row(s, t0))
        io.stdout:flush()
        next_sample = next_sample + SAMPLE
      end
    end

    check("every program stops at the end", quiesce(h))
    local q1 = sample(h)
    q1.kinds = fd_kinds(h.proc.pid)
    curve[#curve + 1] = q1
    print(row(q1, t0) .. "  (quiet)")

    local mid = curve[(#curve + 1) // 2]
    print(string.format("\nsummary over %d s, %d requests, steps: %s", q1.t - t0, stats.requests, cjson.encode(stats.ops)))
    print(string.format("%-8s %10s %10s %10s %10s", "", "start", "middle", "end", "growth"))
    for _, k in ipairs{ "fds", "proxy", "rss", "threads", "procs" } do
      print(string.format("%-8s %10d %10d %10d %+10d", k .. (k == "rss" and "(kB)" or ""), q0[k], mid[k], q1[k], q1[k] - q0[k]))
    end
    local max = {}
    for _, s in ipairs(curve) do
      for _, k in ipairs{ "fds", "proxy", "rss", "threads", "procs" } do max[k] = math.max(max[k] or 0, s[k]) end
    end
    print(string.format("peak     fds %d, proxy %d, rss %d kB, threads %d, procs %d", max.fds, max.proxy, max.rss,
      max.threads, max.procs))
    print("descriptors, quiet start: " .. q0.kinds .. "\n             quiet end:   " .. q1.kinds)

    check(string.format("no bad answer in %d requests", stats.requests), stats.bad == 0,
      stats.bad .. " bad, e.g.:\n  " .. table.concat(bad_examples, "\n  "))
    check(string.format("descriptors but the proxy's connections: %d -> %d (tolerance +%d)", q0.fds - q0.proxy,
      q1.fds - q1.proxy, FD_TOLERANCE), q1.fds - q1.proxy <= q0.fds - q0.proxy + FD_TOLERANCE)
    check(string.format("the proxy's idle connections: at most %d, %d at the end", PROXY_CACHE, q1.proxy),
      max.proxy <= PROXY_CACHE)
    check(string.format("threads: %d -> %d (tolerance +%d)", q0.threads, q1.threads, THREAD_TOLERANCE),
      q1.threads <= q0.threads + THREAD_TOLERANCE)
    local rss_max = q0.rss * (1 + RSS_TOLERANCE_RATIO) + RSS_TOLERANCE_KB
    check(string.format("RSS: %d kB -> %d kB (at most %d kB)", q0.rss, q1.rss, rss_max), q1.rss <= rss_max)
    check(string.format("processes under the Host when quiet: %d -> %d", q0.procs, q1.procs), q1.procs == 0)

    check_nothing_lost(h)
    check_gone(h, gone, "deleted")
    local rest = {}
    for _, id in ipairs(order) do rest[#rest + 1] = id end
    for _, id in ipairs(rest) do delete(h, id) end
    check_gone(h, rest, "remaining, deleted at the end")
  end)
  if not ok then check("the soak ran to its end", false, tostring(err)) end
  local ended = P.alive(h.proc) and P.signal(h.proc, "TERM") and P.wait_exit(h.proc, 60)
  check("the Host ends on SIGTERM with exit 0", ended == 0,
    "exit " .. tostring(ended) .. "; stderr tail: " .. P.stderr(h.proc):sub(-2000))
  H.stop_host(h)
end

run()
print(string.format("%d passed, %d failed", passed, failed))
os.exit(failed == 0 and 0 or 1)
