-- bench/cluster/run.lua -- the swarm driver beside the bwrap driver, in one run: two
-- real Hosts (scripts.host_harness), one with --driver swarm on a private dockerd with a
-- one-node Swarm (scripts.dockerd), each running the same counter
-- (spec/programs/host_counter). For each driver:
--   create -> Ready   POST /programs and /start until the record is Ready; the first
--                     swarm one includes loading the image into the engine (cold), the
--                     others find it loaded (warm)
--   crash -> Ready    SIGKILL of the program (its container's main process under swarm)
--                     until the record is Ready again with one restart more (the Host's
--                     policy, first backoff 0.1 s)
--   memory            per running program: the resident memory of its processes (the
--                     program, bwrap and hersh-init; or the container's processes and
--                     its containerd-shim), from /proc, and of the engine (dockerd and
--                     containerd) for all of them
--
-- and the same on a worker node (scripts.dockerd's D.cluster: a second dockerd in a
-- network namespace joined to the Swarm; the Host with --registry and --publish node):
-- create -> Ready there includes the push to the registry and the worker's pull (the
-- first) and the forwarder's start; its RSS leaves out the Host's forwarder.
--
--   bench/cluster/run.sh [BUILD_DIR]     (BENCH_CLUSTER_N: programs per driver, default 5)
local cjson = require "cjson"
local H = require "scripts.host_harness"
local D = require "scripts.dockerd"
local core = require "hersh.core"
local P = H.P

local N = tonumber(os.getenv("BENCH_CLUSTER_N")) or 5

local function median(xs)
  local s = {}
  for i, x in ipairs(xs) do s[i] = x end
  table.sort(s)
  if #s == 0 then return 0 end
  return #s % 2 == 1 and s[(#s + 1) // 2] or (s[#s // 2] + s[#s // 2 + 1]) / 2
end

local function record(h, id)
  return H.call(h, "GET", "/programs/" .. id).json
end

local function wait_for_record(h, id, pred)
  return P.wait_for(function()
    local r = record(h, id)
    return r and pred(r) and r
  end, 120, 0.01)
end

-- The resident kB of pid and its descendants.
local function rss_tree(pid)
  local children = {}
  local p = io.popen("env -u LD_PRELOAD ps -eo pid=,ppid=,rss=")
  local rss = {}
  for line in p:lines() do
    local a, b, r = line:match("(%d+)%s+(%d+)%s+(%d+)")
    if a then
      children[b] = children[b] or {}
      table.insert(children[b], a)
      rss[a] = tonumber(r)
    end
  end
  p:close()
  local total, stack = 0, { tostring(pid) }
  while #stack > 0 do
    local q = table.remove(stack)
    total = total + (rss[q] or 0)
    for _, c in ipairs(children[q] or {}) do stack[#stack + 1] = c end
  end
  return total
end

local function ppid_of(pid)
  local stat = P.read("/proc/" .. pid .. "/stat") or ""
  return tonumber(stat:match("^%d+ %b() %S+ (%d+)"))
end

-- The processes of a program under bwrap: bwrap (the program's pid's ancestor that is
-- a child of the Host) and all under it.
local function bwrap_root(h, pid)
  local at = pid
  while at and ppid_of(at) and ppid_of(at) ~= h.proc.pid do at = ppid_of(at) end
  return at
end

local function containers(d, id)
  local _, list = D.api(d, "GET", "/containers/json?filters="
    .. cjson.encode{ label = { "dev.hersh.program=" .. id } }:gsub("[^%w]", function(c)
      return string.format("%%%02X", c:byte())
    end))
  return type(list) == "table" and list or {}
end

local function container_pid(d, id)
  local list = containers(d, id)
  if #list == 0 then return nil end
  local _, c = D.api(d, "GET", "/containers/" .. list[1].Id .. "/json")
  return c and c.State and math.tointeger(c.State.Pid)
end

local function run_driver(h, name, d)
  local rows = { ready = {}, crash = {}, rss = {} }
  local ids = {}
  for i = 1, N do
    local t0 = core.now()
    local doc = H.create(h, H.counter_body("bench", { name = name .. i }))
    H.ok_json(H.call(h, "POST", "/programs/" .. doc.program_id .. "/start"), 202, "start")
    assert(wait_for_record(h, doc.program_id, function(r) return r.state == "Ready" end), name .. ": not Ready")
    rows.ready[#rows.ready + 1] = core.now() - t0
    ids[#ids + 1] = doc.program_id
  end
  for _, id in ipairs(ids) do
    local pid = d and container_pid(d, id) or record(h, id).pid
    local root = d and ppid_of(pid) or bwrap_root(h, pid) -- the shim, or bwrap
    rows.rss[#rows.rss + 1] = rss_tree(root)
  end
  for _, id in ipairs(ids) do
    local before = record(h, id).restarts
    local pid = d and container_pid(d, id) or nil
    local t0 = core.now()
    if d then
      os.execute("env -u LD_PRELOAD kill -KILL " .. pid)
    else
      -- the program itself (hersh run), not bwrap: a crash of the program
      local p = io.popen("env -u LD_PRELOAD pgrep -f 'hersh run /app/main.lua' -P " .. record(h, id).pid)
      local child = p:read("l")
      p:close()
      os.execute("env -u LD_PRELOAD kill -KILL " .. (child or record(h, id).pid))
    end
    assert(wait_for_record(h, id, function(r) return r.state == "Ready" and r.restarts == before + 1 end),
      name .. ": not Ready after the crash")
    rows.crash[#rows.crash + 1] = core.now() - t0
  end
  for _, id in ipairs(ids) do H.call(h, "DELETE", "/programs/" .. id) end
  return rows
end

local d, why = D.start()
if not d then
  io.stderr:write("bench/cluster: skipped: ", why, "\n")
  os.exit(0)
end
local ok, err = pcall(function()
  local hb = H.start_host{}
  local hs = H.start_host{ args = { "--driver", "swarm", "--docker-socket", d.socket } }
  local ok_run, run_err = pcall(function()
    local b = run_driver(hb, "bw", nil)
    local s = run_driver(hs, "sw", d)
    local engine_rss = rss_tree(d.proc.pid)
    print(string.format("%d programs per driver; times in seconds (median; first, max)", N))
    print(string.format("%-8s %-26s %-26s %s", "driver", "create -> Ready", "crash -> Ready", "RSS per program (MiB)"))
    for _, row in ipairs { { "bwrap", b }, { "swarm", s } } do
      local r = row[2]
      local warm = { table.unpack(r.ready, 2) }
      print(string.format("%-8s %.3f (first %.3f, max %.3f)  %.3f (max %.3f)          %.1f",
        row[1], median(#warm > 0 and warm or r.ready), r.ready[1], math.max(table.unpack(r.ready)),
        median(r.crash), math.max(table.unpack(r.crash)), median(r.rss) / 1024))
    end
    print(string.format("the engine (dockerd + containerd) while idle again: %.1f MiB", engine_rss / 1024))
  end)
  H.stop_host(hb)
  H.stop_host(hs)
  if not ok_run then error(run_err, 0) end
end)
D.stop(d)
if ok then
  local c, cwhy = D.cluster()
  if not c then
    io.stderr:write("bench/cluster: the worker node skipped: ", cwhy, "\n")
  else
    ok, err = pcall(function()
      local hw = H.start_host{ args = { "--driver", "swarm", "--docker-socket", c.manager.socket,
        "--registry", c.registry.addr, "--publish", "node" } }
      local ok_run, run_err = pcall(function()
        local r = run_driver(hw, "wk", c.worker)
        local warm = { table.unpack(r.ready, 2) }
        print(string.format("%-8s %.3f (first %.3f, max %.3f)  %.3f (max %.3f)          %.1f",
          "worker", median(#warm > 0 and warm or r.ready), r.ready[1], math.max(table.unpack(r.ready)),
          median(r.crash), math.max(table.unpack(r.crash)), median(r.rss) / 1024))
      end)
      H.stop_host(hw)
      if not ok_run then error(run_err, 0) end
    end)
    D.stop_cluster(c)
  end
end
if not ok then
  io.stderr:write("bench/cluster: ", tostring(err), "\n")
  os.exit(1)
end
