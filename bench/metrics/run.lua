-- bench/metrics/run.lua -- the time per GET /metrics scrape of a real `hersh host` with
-- REGISTERED (1,000) programs registered and RUNNING (50) of them started and Ready,
-- each with memory and pids limits so that it has a cgroup the scrape reads. Beside it
-- GET /health (the cheapest route: same server, same dispatch), in alternating blocks
-- of BLOCK sequential requests on one kept-alive connection (one curl invocation
-- printing %{time_total} per request), ROUNDS blocks each; median, p90, p99 and the
-- difference of the medians (what building the text costs), against the goal of a
-- scrape under 20 ms.
--
-- Run through bench/metrics/run.sh (it passes the build directory and a temporary
-- directory, and removes that directory afterwards):
--   lua5.4 bench/metrics/run.lua BUILD_DIR TMP_DIR
local cjson = require "cjson"

local build_dir, tmp = arg[1] or "build-bench", arg[2]
assert(tmp, "usage: run.lua BUILD_DIR TMP_DIR")

local REGISTERED = tonumber(os.getenv("BENCH_METRICS_REGISTERED")) or 1000
local RUNNING = tonumber(os.getenv("BENCH_METRICS_RUNNING")) or 50
local ROUNDS = tonumber(os.getenv("BENCH_METRICS_ROUNDS")) or 10
local BLOCK = 50
local GOAL_MS = 20

local B = require "lib"
local sh_quote, sh, write, read, sleep, quantile = B.quote, B.sh, B.write, B.read, B.sleep, B.quantile

-- ---- the Host --------------------------------------------------------------------------

local bin = (build_dir:sub(1, 1) == "/" and "" or (os.getenv("PWD") .. "/")) .. build_dir .. "/hersh"
local the_host = B.host(bin, tmp .. "/storage", tmp, "bench/metrics")
local host_pid, base

local function start_host()
  the_host:start()
  host_pid, base = the_host.pid, the_host.base
end

local function stop_host() the_host:stop() end

local function curl_many(urls, opts, format, discard)
  local lines = {}
  for i, url in ipairs(urls) do
    lines[i] = string.format('url = "%s"', url) .. (discard and '\noutput = "/dev/null"' or "")
  end
  write(tmp .. "/many.curl", table.concat(lines, "\n") .. "\n")
  return sh(string.format("curl -s -f %s -w %s -K %s", opts or "", sh_quote(format), sh_quote(tmp .. "/many.curl")))
end

local COUNTER, DOCKERFILE = B.COUNTER, B.DOCKERFILE

-- Times (ms) of n sequential requests to url on one connection.
local function block(url, n)
  local urls = {}
  for i = 1, n do urls[i] = url end
  local times = {}
  for v in curl_many(urls, nil, "%{time_total}\n", true):gmatch("[^\n]+") do times[#times + 1] = tonumber(v) * 1000 end
  assert(#times == n, "curl timed " .. #times .. " of " .. n .. " requests to " .. url)
  return times
end

local r = {}
local ok, err = pcall(function()
  start_host()
  local body = tmp .. "/create.json"
  write(body, cjson.encode{ user_id = "bench", dockerfile = DOCKERFILE, src_files = { ["main.lua"] = COUNTER },
    limits = { memory = 64 * 1024 * 1024, pids = 64 } })
  local urls = {}
  for i = 1, REGISTERED do urls[i] = base .. "/programs" end
  local out = curl_many(urls, "-X POST -H 'Content-Type: application/json' -d @" .. sh_quote(body), "\n")
  local ids = {}
  for line in out:gmatch("[^\n]+") do ids[#ids + 1] = assert(cjson.decode(line).program_id, line) end
  assert(#ids == REGISTERED, "created " .. #ids .. " programs, not " .. REGISTERED)
  local starts = {}
  for i = 1, RUNNING do starts[i] = base .. "/programs/" .. ids[i] .. "/start" end
  if RUNNING > 0 then curl_many(starts, "-X POST", "\n", true) end
  local ready
  for _ = 1, 1200 do
    ready = cjson.decode(sh("curl -s " .. sh_quote(base .. "/programs?state=Ready"))).count
    if ready >= RUNNING then break end
    sleep(0.1)
  end
  assert(ready >= RUNNING, ready .. " programs Ready, not " .. RUNNING .. ", after 120 s")
  local text = sh("curl -s -f " .. sh_quote(base .. "/metrics"))
  r.bytes, r.lines = #text, select(2, text:gsub("\n[^#]", ""))
  r.cgroups = select(2, text:gsub("\nhersh_program_pids{", ""))
  block(base .. "/metrics", 20) -- warm-up
  block(base .. "/health", 20)
  r.metrics, r.health = {}, {}
  for _ = 1, ROUNDS do
    for _, v in ipairs(block(base .. "/health", BLOCK)) do r.health[#r.health + 1] = v end
    for _, v in ipairs(block(base .. "/metrics", BLOCK)) do r.metrics[#r.metrics + 1] = v end
  end
end)

stop_host()
if not ok then
  io.stderr:write("bench/metrics: ", tostring(err), "\n")
  local log = read(the_host.err)
  if log and log ~= "" then io.stderr:write("bench/metrics: the Host's stderr:\n", log) end
  os.exit(1)
end

print(string.format("bench/metrics: GET /metrics with %d programs registered, %d running (%d with cgroup series);"
  .. " %d bytes, %d samples", REGISTERED, RUNNING, r.cgroups, r.bytes, r.lines))
print(string.format("  %d sequential requests each, blocks of %d alternating, one connection per block (ms)",
  ROUNDS * BLOCK, BLOCK))
print(string.format("  %-14s %8s %8s %8s", "", "median", "p90", "p99"))
for _, row in ipairs { { "GET /health", r.health }, { "GET /metrics", r.metrics } } do
  print(string.format("  %-14s %8.2f %8.2f %8.2f", row[1], quantile(row[2], 0.5), quantile(row[2], 0.9),
    quantile(row[2], 0.99)))
end
local p50 = quantile(r.metrics, 0.5)
print(string.format("  scrape minus /health (median): %.2f ms; goal: a scrape under %d ms: %s", p50
  - quantile(r.health, 0.5), GOAL_MS, p50 < GOAL_MS and "met" or "NOT met"))
