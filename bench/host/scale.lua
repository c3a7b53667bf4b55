-- bench/host/scale.lua -- the Host with many registered programs: for each of 10, 1,000
-- and 10,000, a fresh storage whose registry is written directly (host.registry, the
-- Host's own module: creating 10,000 programs over the API would take many minutes;
-- the records are those of stopped counter programs, none running), then:
--   start    seconds from spawning `hersh host` to its "serving" line (its start-up:
--            every record read, every port held, every supervisor made)
--   RSS      the Host's VmRSS after start, and after the listings below
--   page     GET /programs?limit=100: wrk -t2 -c16 req/s, and the median latency of
--            PAGE_N sequential requests on one connection (curl %{time_total})
--   soak     LISTINGS (100,000) requests of GET /programs?limit=100 (wrk), then the
--            Host's VmRSS again: the growth across them
--   all      GET /programs (every record, one answer) req/s, for the old cost
-- Memory per registered program: (RSS with 10,000 - RSS with 10) / 9,990.
-- (e) RUNNING (200) counter programs created over the API and started, the Host stopped
-- (they are meant to run), 10,000 - 200 stopped records added to its registry, and the
-- Host started again: seconds to its "serving" line, and until the 200 are Ready again;
-- a page then, and the Host's RSS.
--
-- Run through bench/host/run.sh:  lua5.4 bench/host/scale.lua BUILD_DIR TMP_DIR
local cjson = require "cjson"
local sys = require "hersh.os"
local registry = require "host.registry"
local B = require "lib"

local build_dir, tmp = arg[1] or "build-bench", arg[2]
assert(tmp, "usage: scale.lua BUILD_DIR TMP_DIR")

local COUNTS = { 10, 1000, 10000 }
local LISTINGS = tonumber(os.getenv("BENCH_HOST_LISTINGS")) or 100000
local PAGE_N = 200
local DURATION = os.getenv("BENCH_HOST_DURATION") or "5s"
local WRK = "wrk -t2 -c16 -d" .. DURATION
local DOCKERFILE = B.DOCKERFILE

local function rss(pid)
  local text = B.read("/proc/" .. pid .. "/status") or ""
  return (tonumber(text:match("VmRSS:%s*(%d+)")) or 0) / 1024 -- MiB
end

-- `n` ports nobody holds now, from 30000 up (the Host's own range stays free).
local function free_ports(n)
  local out = {}
  for port = 30000, 60999 do
    local fd = sys.listen("127.0.0.1", port)
    if fd then
      sys.close_fd(fd)
      out[#out + 1] = port
      if #out == n then return out end
    end
  end
  error("no " .. n .. " free ports in 30000-60999")
end

local RUNNING = tonumber(os.getenv("BENCH_HOST_SCALE_RUNNING")) or 200
local COUNTER = B.COUNTER

-- n stopped records added to the registry of `storage` (made if need be).
local function seed(storage, n)
  B.sh("mkdir -p " .. B.quote(storage) .. " && chmod 711 " .. B.quote(storage))
  local reg = assert(registry.open(storage .. "/host.db"))
  local ports = free_ports(n)
  local spec = cjson.encode{ dockerfile = DOCKERFILE }
  assert(reg.db:transaction(function()
    for i = 1, n do
      local at = os.date("!%Y-%m-%dT%H:%M:%S", 1700000000 + i) .. ".000Z"
      assert(reg.db:run([[INSERT INTO programs (program_id, user_id, build_id, publish_port, spec, desired, state,
        created_at, updated_at) VALUES (?, ?, 'seed', ?, ?, 'stopped', 'Stopped', ?, ?)]],
        string.format("bench%d-seed-%05d", i % 10, i), "bench" .. (i % 10), ports[i], spec, at, at))
    end
    return true
  end))
  reg:close()
end

local function wrk(url)
  local out = B.sh(WRK .. " " .. B.quote(url))
  if out:find("Non%-2xx") or out:find("Socket errors") then error("wrk reported errors for " .. url .. ":\n" .. out) end
  return tonumber(out:match("Requests/sec:%s*([%d.]+)")), tonumber(out:match("(%d+) requests in"))
end

-- The median time (ms) of n sequential requests to url on one connection.
local function sequential(url, n)
  local lines = {}
  for i = 1, n do lines[i] = string.format('url = "%s"\noutput = "/dev/null"', url) end
  B.write(tmp .. "/seq.curl", table.concat(lines, "\n") .. "\n")
  local times = {}
  for v in B.sh("curl -s -f -w '%{time_total}\\n' -K " .. B.quote(tmp .. "/seq.curl")):gmatch("[^\n]+") do
    times[#times + 1] = tonumber(v) * 1000
  end
  assert(#times == n, "curl timed " .. #times .. " of " .. n)
  return B.median(times)
end

local rows, running = {}, nil
local the_host
local ok, err = pcall(function()
  for _, n in ipairs(COUNTS) do
    local storage = tmp .. "/scale-" .. n
    seed(storage, n)
    the_host = B.host(B.abs_path(build_dir .. "/hersh"), storage, tmp, "bench/host/scale")
    local t0 = B.now()
    the_host:start("--ports 29900-29909")
    local r = { n = n, start = B.now() - t0 }
    local page = the_host.base .. "/programs?limit=100"
    local first = cjson.decode(B.sh("curl -s " .. B.quote(page)))
    assert(first.count == math.min(n, 100), "a page of " .. tostring(first.count))
    r.rss_start = rss(the_host.pid)
    r.page_ms = sequential(page, PAGE_N)
    r.page_rate = wrk(page)
    r.rss_page = rss(the_host.pid)
    local done = 0
    while done < LISTINGS do
      local _, count = wrk(page)
      done = done + count
    end
    r.listings, r.rss_soak = done, rss(the_host.pid)
    if n <= 1000 then r.all_rate = wrk(the_host.base .. "/programs") end
    r.rss_end = rss(the_host.pid)
    the_host:stop()
    rows[#rows + 1] = r
  end

  -- (e) 200 running among 10,000
  local storage = tmp .. "/scale-running"
  B.sh("mkdir -p " .. B.quote(storage) .. " && chmod 711 " .. B.quote(storage))
  local ports = "--ports 29000-29399"
  the_host = B.host(B.abs_path(build_dir .. "/hersh"), storage, tmp, "bench/host/scale")
  the_host:start(ports)
  B.write(tmp .. "/create.json", cjson.encode{ user_id = "run", dockerfile = DOCKERFILE,
    src_files = { ["main.lua"] = COUNTER } })
  local urls = {}
  for i = 1, RUNNING do urls[i] = string.format('url = "%s/programs"', the_host.base) end
  B.write(tmp .. "/create.curl", table.concat(urls, "\n") .. "\n")
  local ids = {}
  for line in B.sh(string.format("curl -s -X POST -H 'Content-Type: application/json' -d @%s -K %s",
    B.quote(tmp .. "/create.json"), B.quote(tmp .. "/create.curl"))):gmatch("[^\n]+") do
    ids[#ids + 1] = assert(cjson.decode(line).program_id, line)
  end
  assert(#ids == RUNNING, "created " .. #ids)
  local starts = {}
  for i, id in ipairs(ids) do starts[i] = string.format('url = "%s/programs/%s/start"', the_host.base, id) end
  B.write(tmp .. "/start.curl", table.concat(starts, "\n") .. "\n")
  local function all_ready(timeout)
    local t0 = B.now()
    while B.now() - t0 < timeout do
      local doc = cjson.decode(B.sh("curl -s " .. B.quote(the_host.base .. "/programs?state=Ready&limit=1000")))
      if doc.count == RUNNING then return B.now() - t0 end
      B.sleep(0.2)
    end
    error(RUNNING .. " programs not Ready in " .. timeout .. " s")
  end
  B.sh("curl -s -X POST -o /dev/null -K " .. B.quote(tmp .. "/start.curl"))
  all_ready(300)
  the_host:stop()
  seed(storage, 10000 - RUNNING)
  local t0 = B.now()
  the_host:start(ports)
  running = { start = B.now() - t0 }
  running.ready = all_ready(300) + running.start
  running.page_ms = sequential(the_host.base .. "/programs?limit=100", PAGE_N)
  running.rss = rss(the_host.pid)
  the_host:stop()
end)
if the_host then the_host:stop() end
if not ok then
  io.stderr:write("bench/host/scale: ", tostring(err), "\n")
  os.exit(1)
end

print(string.format("(d) the Host with many registered programs (written to its registry; none running);"
  .. " pages: GET /programs?limit=100, %s", WRK))
print(string.format("  %8s %8s %10s %10s %10s %12s %10s %12s %10s", "programs", "start s", "RSS MiB",
  "page req/s", "page ms", "RSS after", "listings", "RSS after", "all req/s"))
for _, r in ipairs(rows) do
  print(string.format("  %8d %8.2f %10.2f %10.0f %10.3f %12.2f %10d %12.2f %10s", r.n, r.start, r.rss_start,
    r.page_rate, r.page_ms, r.rss_page, r.listings, r.rss_soak, r.all_rate and string.format("%.0f", r.all_rate) or "-"))
end
local small, big = rows[1], rows[#rows]
print(string.format("  memory per registered program: %.1f KiB ((RSS at %d - RSS at %d) / %d, after start)",
  (big.rss_start - small.rss_start) * 1024 / (big.n - small.n), big.n, small.n, big.n - small.n))
print(string.format("(e) 10,000 registered, %d of them running (meant to run when the Host stopped): the Host"
  .. " serving %.2f s after it was spawned, the %d Ready again after %.2f s; a page: %.3f ms (median of %d);"
  .. " Host VmRSS %.2f MiB", RUNNING, running.start, RUNNING, running.ready, running.page_ms, PAGE_N, running.rss))
