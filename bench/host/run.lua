-- bench/host/run.lua -- the Host benchmark: a real `hersh host` (bwrap driver) on a
-- temporary storage, driven over its REST API with curl and wrk.
--
--   (a) GET /programs/{id} requests per second (wrk -t2 -c16 -d5s, keep-alive) with
--       PROGRAMS (100) registered programs, none started; a wrk script walks the ids
--       round robin. Beside it GET /health, the cheapest route (same server, same
--       dispatch, no record), alternately, ROUNDS rounds each; and one round of
--       GET /programs (the list of 100 records) for scale.
--   (b) latency of GET /programs/{id}/proxy/watcher/status beside the same request sent
--       straight to the program's proxy_url, one program started and Ready: LATENCY_N
--       sequential requests each, in blocks of LATENCY_BLOCK (100) alternating between
--       the two, each block one curl invocation (one kept-alive connection) printing
--       %{time_total} per request; medians and p99, and the ratio proxy / direct against
--       the target "proxy at most 2x the direct latency". For where the time goes, in the
--       same blocks: GET /health of the Host (its MHD thread -> loop -> MHD thread
--       hand-offs, no proxy), the context switches of the Host's and the program's
--       threads per request, and hersh.http.request (libcurl) from this script's own hersh
--       loop to proxy_url (the hop the proxy made with libcurl before src/http/upstream.c).
--       Then wrk --latency (-t2 -c16 -d5s)
--       through both, for the rate and the latency under load.
--       nginx (Debian's nginx-light, `scripts/setup --bench`) proxies the same program in
--       the same run (one worker, keep-alive upstream, its own prefix and conf in the tmp
--       dir, on loopback, stopped by its pid): its sequential blocks alternate with the
--       two others, and its wrk run follows theirs; all three are printed side by side.
--       So does the byte relay (bench/host/relay.c: one thread, epoll, each client
--       connection paired with one to the program, bytes copied as read, no HTTP): what a
--       proxy that does nothing but the second loopback exchange costs, the floor.
--       (a) runs the minimal libmicrohttpd server (bench/api/minimal_server.c) beside
--       GET /health and GET /programs/{id}.
--   (c) resident memory with RUNNING (50) programs started and Ready and idle: the Host's
--       own VmRSS (also with 0 programs and with the 100 registered), and the VmRSS and
--       Pss of every program's processes, found as the Host's descendants (the Host ->
--       bwrap -> bwrap -> `hersh run`) through the PPid of /proc/*/status.
--
-- Run through bench/host/run.sh (it passes the build directory and a temporary
-- directory, and removes that directory afterwards):
--   lua5.4 bench/host/run.lua BUILD_DIR TMP_DIR
local cjson = require "cjson"

local build_dir, tmp = arg[1] or "build-bench", arg[2]
assert(tmp, "usage: run.lua BUILD_DIR TMP_DIR")

local PROGRAMS = tonumber(os.getenv("BENCH_HOST_PROGRAMS")) or 100
local RUNNING = tonumber(os.getenv("BENCH_HOST_RUNNING")) or 50
local ROUNDS = tonumber(os.getenv("BENCH_HOST_ROUNDS")) or 3
local DURATION = os.getenv("BENCH_HOST_DURATION") or "5s"
local LATENCY_N = tonumber(os.getenv("BENCH_HOST_LATENCY_N")) or 2000
local LATENCY_BLOCK = 100 -- short blocks, alternating, so both kinds meet the same conditions
local IDLE = 2 -- seconds the programs idle before their memory is read
local TARGET_RATIO = 2
local WRK = "wrk -t2 -c16 -d" .. DURATION

-- ---- helpers -------------------------------------------------------------------------

local B = require "lib"
local sh_quote, run, sh, write, read, sleep, now = B.quote, B.run, B.sh, B.write, B.read, B.sleep, B.now
local quantile, median, abs_path, alive = B.quantile, B.median, B.abs_path, B.alive

-- ---- the Host --------------------------------------------------------------------------

local bin = abs_path(build_dir .. "/hersh")
local storage = tmp .. "/storage"
local the_host = B.host(bin, storage, tmp, "bench/host")
local host_pid, base

local function start_host()
  the_host:start()
  host_pid, base = the_host.pid, the_host.base
end

local function stop_host() the_host:stop() end

-- method, path[, body file] -> status, decoded body (or the raw text)
local function api(method, path, body_file)
  local out = sh(string.format("curl -s -w '\\n%%{http_code}' -X %s %s%s", method,
    body_file and ("-H 'Content-Type: application/json' -d @" .. sh_quote(body_file) .. " ") or "",
    sh_quote(base .. path)))
  local body, status = out:match("^(.*)\n(%d+)$")
  local ok, value = pcall(cjson.decode, body)
  return tonumber(status), ok and value or body
end

-- ---- /proc ---------------------------------------------------------------------------

local function proc_status(pid)
  local text = read("/proc/" .. pid .. "/status")
  if not text then return nil end
  return { pid = pid, name = text:match("Name:%s*(%S+)"), ppid = tonumber(text:match("PPid:%s*(%d+)")),
    rss = tonumber(text:match("VmRSS:%s*(%d+)")) or 0 }
end

local function pss(pid) -- KiB, from smaps_rollup (shared pages divided among their users)
  local text = read("/proc/" .. pid .. "/smaps_rollup")
  return text and tonumber(text:match("\nPss:%s*(%d+)")) or 0
end

-- Context switches (voluntary and not) of all the threads of a process so far.
local function ctx_switches(pid)
  local n = 0
  for tid in run("ls /proc/" .. pid .. "/task"):gmatch("(%d+)\n") do
    local text = read("/proc/" .. pid .. "/task/" .. tid .. "/status") or ""
    for v in text:gmatch("ctxt_switches:%s*(%d+)") do n = n + tonumber(v) end
  end
  return n
end

-- Every descendant of `root`, from the PPid of each process.
local function descendants(root)
  local all, children = {}, {}
  for pid in run("ls /proc"):gmatch("(%d+)\n") do
    local st = proc_status(tonumber(pid))
    if st then
      all[st.pid] = st
      children[st.ppid] = children[st.ppid] or {}
      table.insert(children[st.ppid], st.pid)
    end
  end
  local out, stack = {}, { root }
  while #stack > 0 do
    local pid = table.remove(stack)
    for _, child in ipairs(children[pid] or {}) do
      out[#out + 1] = all[child]
      stack[#stack + 1] = child
    end
  end
  return out
end

-- ---- the servers beside the Host: minimal libmicrohttpd, nginx ---------------------------

local sys = require "hersh.os"
local extra = {} -- pids of the servers started here, stopped at the end (run.sh too, from extra.pids)

local function background(cmd, out)
  local pid = assert(tonumber(sh(string.format("%s </dev/null >%s 2>&1 & echo $!", cmd, sh_quote(out))):match("%d+")))
  extra[#extra + 1] = pid
  write(tmp .. "/extra.pids", table.concat(extra, "\n") .. "\n")
  return pid
end

local function stop_extra()
  for _, pid in ipairs(extra) do
    if alive(pid) then os.execute("kill -TERM " .. pid) end
  end
  for _, pid in ipairs(extra) do
    for _ = 1, 100 do
      if not alive(pid) then break end
      sleep(0.05)
    end
    if alive(pid) then os.execute("kill -KILL " .. pid) end
  end
end

local function free_port()
  for port = 29800, 29899 do
    local fd = sys.listen("127.0.0.1", port)
    if fd then
      sys.close_fd(fd)
      return port
    end
  end
  error("no free port in 29800-29899")
end

-- until `find` (reading `file`) answers, 5 s at most
local function wait_file(file, find)
  for _ = 1, 100 do
    local v = find(read(file) or "")
    if v then return v end
    sleep(0.05)
  end
  error("timed out waiting for " .. file .. ":\n" .. (read(file) or ""))
end

-- A server of the build that prints its port on its first line; its base URL.
local function start_printing_port(name, arg)
  local out = tmp .. "/" .. name .. ".out"
  background(sh_quote(abs_path(build_dir .. "/" .. name)) .. " " .. arg, out)
  return "http://127.0.0.1:" .. wait_file(out, function(text) return text:match("^(%d+)\n") end)
end

local function start_minimal() return start_printing_port("bench_minimal_server", "0") end

-- The byte relay (bench/host/relay.c) to 127.0.0.1:upstream: the floor under any proxy.
local function start_relay(upstream) return start_printing_port("bench_relay", tostring(upstream)) end

-- nginx proxying everything to 127.0.0.1:upstream; its base URL.
local function start_nginx(upstream)
  local prefix = tmp .. "/nginx"
  sh("mkdir -p " .. sh_quote(prefix .. "/logs"))
  local port = free_port()
  write(prefix .. "/nginx.conf", string.format([[
daemon off;
master_process off;
worker_processes 1;
pid %s/nginx.pid;
error_log %s/logs/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path %s/body; proxy_temp_path %s/proxy; fastcgi_temp_path %s/fastcgi;
  uwsgi_temp_path %s/uwsgi; scgi_temp_path %s/scgi;
  upstream program { server 127.0.0.1:%d; keepalive 32; }
  server {
    listen 127.0.0.1:%d;
    location / { proxy_pass http://program; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
]], prefix, prefix, prefix, prefix, prefix, prefix, prefix, upstream, port))
  local nginx = (run("command -v nginx || echo /usr/sbin/nginx")):gsub("%s+$", "")
  assert(sh("test -x " .. sh_quote(nginx) .. " && echo yes"):match("yes"),
    "no nginx: install it with scripts/setup --bench (nginx-light)")
  background(string.format("%s -p %s -e %s -c %s", sh_quote(nginx), sh_quote(prefix), sh_quote(prefix .. "/logs/error.log"),
    sh_quote(prefix .. "/nginx.conf")), prefix .. "/out")
  local url = "http://127.0.0.1:" .. port
  wait_file(prefix .. "/out", function()
    return run("curl -s -o /dev/null -w '%{http_code}' " .. sh_quote(url .. "/watcher/status")) == "200"
  end)
  return url
end

-- ---- wrk -------------------------------------------------------------------------------

local function wrk(url, script, latency)
  local out = sh(string.format("%s %s%s%s", WRK, latency and "--latency " or "",
    script and ("-s " .. sh_quote(script) .. " ") or "", sh_quote(url)))
  if out:find("Non%-2xx") or out:find("Socket errors") then
    error("wrk reported errors for " .. url .. ":\n" .. out)
  end
  local result = { rate = tonumber(out:match("Requests/sec:%s*([%d.]+)")) }
  local factor = { us = 1e-3, ms = 1, s = 1e3 }
  for pct, value, unit in out:gmatch("\n%s*(%d+)%%%s+([%d.]+)(%a+)") do
    result["p" .. pct] = tonumber(value) * factor[unit] -- ms
  end
  return result
end

-- ---- the runs --------------------------------------------------------------------------

local COUNTER, DOCKERFILE = B.COUNTER, B.DOCKERFILE

local r = {}
local ok, err = pcall(function()
  start_host()
  sleep(0.5)
  r.host_empty = proc_status(host_pid).rss

  -- Register the programs: one curl, one POST per URL.
  local body = tmp .. "/create.json"
  write(body, cjson.encode{ user_id = "bench", dockerfile = DOCKERFILE,
    src_files = { ["main.lua"] = COUNTER } })
  local urls = {}
  for i = 1, PROGRAMS do urls[i] = string.format('url = "%s/programs"', base) end
  write(tmp .. "/create.curl", table.concat(urls, "\n") .. "\n")
  local t0 = now()
  local out = sh(string.format("curl -s -X POST -H 'Content-Type: application/json' -d @%s -K %s",
    sh_quote(body), sh_quote(tmp .. "/create.curl")))
  r.create_time = now() - t0
  local ids = {}
  for line in out:gmatch("[^\n]+") do
    local created = cjson.decode(line)
    if not created.program_id then error("create failed: " .. line) end
    ids[#ids + 1] = created.program_id
  end
  assert(#ids == PROGRAMS, "created " .. #ids .. " programs, not " .. PROGRAMS)

  -- (a) GET /programs/{id}, walking the ids; /health beside it.
  local script = tmp .. "/ids.lua"
  local quoted = {}
  for i, id in ipairs(ids) do quoted[i] = string.format("%q", "/programs/" .. id) end
  write(script, "local paths = {" .. table.concat(quoted, ",") .. "}\nlocal i = 0\n"
    .. "request = function() i = i % #paths + 1 return wrk.format('GET', paths[i]) end\n")
  wrk(base .. "/health", nil) -- warm-up
  local minimal = start_minimal()
  r.get, r.health, r.minimal = {}, {}, {}
  for _ = 1, ROUNDS do
    table.insert(r.minimal, wrk(minimal .. "/").rate)
    table.insert(r.health, wrk(base .. "/health").rate)
    table.insert(r.get, wrk(base .. "/", script).rate)
  end
  r.list = wrk(base .. "/programs").rate
  r.host_registered = proc_status(host_pid).rss

  -- (b) one program Ready: through the proxy, and straight to its port.
  local function wait_ready(count, timeout)
    local deadline = now() + timeout
    while true do
      local status, list = api("GET", "/programs?state=Ready")
      if status == 200 and list.count >= count then return end
      if now() > deadline then
        local _, all = api("GET", "/programs")
        local states = {}
        for _, p in ipairs(all.programs or {}) do
          states[p.state] = (states[p.state] or 0) + 1
          if p.error_msg ~= cjson.null then states.last_error = p.error_msg end
        end
        error(string.format("%d programs Ready, not %d, after %d s: %s", list.count or -1, count, timeout,
          cjson.encode(states)))
      end
      sleep(0.1)
    end
  end
  local status, started = api("POST", "/programs/" .. ids[1] .. "/start")
  assert(status == 202, "start answered " .. tostring(status) .. ": " .. cjson.encode(started))
  wait_ready(1, 30)
  r.host_one = proc_status(host_pid).rss
  local _, first = api("GET", "/programs/" .. ids[1])
  local proxied = base .. "/programs/" .. ids[1] .. "/proxy/watcher/status"
  local direct = first.proxy_url .. "/watcher/status"
  local via_nginx = start_nginx(first.publish_port) .. "/watcher/status"
  local via_relay = start_relay(first.publish_port) .. "/watcher/status"
  -- The program's `hersh run`, for its context switches.
  local prog_pid
  for _, p in ipairs(descendants(host_pid)) do
    if p.name == "hersh" then prog_pid = p.pid end
  end
  assert(prog_pid, "no `hersh run` under the Host")
  -- n sequential requests on one connection: their times (ms), and the context switches
  -- of the Host's and the program's threads meanwhile.
  local switches = {}
  for _, kind in ipairs{ "direct", "proxy", "nginx", "relay", "health" } do switches[kind] = { host = 0, prog = 0 } end
  local function block(url, n, kind)
    local lines = {}
    for i = 1, n do lines[i] = string.format('url = "%s"\noutput = "/dev/null"', url) end
    write(tmp .. "/block.curl", table.concat(lines, "\n") .. "\n")
    local h0, p0 = ctx_switches(host_pid), ctx_switches(prog_pid)
    local out = sh("curl -s -f -w '%{time_total}\\n' -K " .. sh_quote(tmp .. "/block.curl"))
    if kind then
      switches[kind].host = switches[kind].host + ctx_switches(host_pid) - h0
      switches[kind].prog = switches[kind].prog + ctx_switches(prog_pid) - p0
    end
    local times = {}
    for v in out:gmatch("[^\n]+") do
      times[#times + 1] = tonumber(v) * 1000 -- ms
    end
    assert(#times == n, "curl timed " .. #times .. " of " .. n .. " requests to " .. url)
    return times
  end
  block(proxied, 100) -- warm-up
  block(direct, 100)
  block(via_nginx, 100)
  block(via_relay, 100)
  r.lat_proxy, r.lat_direct, r.lat_health, r.lat_nginx, r.lat_relay = {}, {}, {}, {}, {}
  local blocks = math.max(1, LATENCY_N // LATENCY_BLOCK)
  for _ = 1, blocks do
    for _, v in ipairs(block(direct, LATENCY_BLOCK, "direct")) do table.insert(r.lat_direct, v) end
    for _, v in ipairs(block(proxied, LATENCY_BLOCK, "proxy")) do table.insert(r.lat_proxy, v) end
    for _, v in ipairs(block(via_nginx, LATENCY_BLOCK, "nginx")) do table.insert(r.lat_nginx, v) end
    for _, v in ipairs(block(via_relay, LATENCY_BLOCK, "relay")) do table.insert(r.lat_relay, v) end
    for _, v in ipairs(block(base .. "/health", LATENCY_BLOCK, "health")) do table.insert(r.lat_health, v) end
  end
  for _, sw in pairs(switches) do
    sw.host, sw.prog = sw.host / (blocks * LATENCY_BLOCK), sw.prog / (blocks * LATENCY_BLOCK)
  end
  r.switches = switches
  -- Where the time goes: a libcurl transfer per request, i.e. hersh.http.request on a
  -- hersh loop (libcurl multi on libuv) to the program, sequentially: the hop the proxy
  -- made before it had its own client (src/http/upstream.c).
  local hersh, core, http = require "hersh", require "hersh.core", require "hersh.http"
  r.lat_client = {}
  local pending = false
  for i = 1, LATENCY_N + 100 do
    local t = core.now()
    pending = true
    http.request({ method = "GET", url = direct, timeout = 5 }, function(res, req_err)
      assert(res and res.status == 200, "http.request: " .. tostring(req_err))
      if i > 100 then table.insert(r.lat_client, (core.now() - t) * 1000) end -- after a warm-up
      pending = false
    end)
    assert(hersh.wait(function() return not pending end, 5), "http.request did not answer")
  end
  r.wrk_direct = wrk(direct, nil, true)
  r.wrk_proxy = wrk(proxied, nil, true)
  r.wrk_nginx = wrk(via_nginx, nil, true)
  r.wrk_relay = wrk(via_relay, nil, true)
  -- BENCH_HOST_PROFILE: a shell command run here with HOST_PID, PROXIED and DIRECT set,
  -- e.g. strace or perf attached to the Host while wrk goes through its proxy.
  local profile = os.getenv("BENCH_HOST_PROFILE")
  if profile and profile ~= "" then
    io.stderr:write((run(string.format("HOST_PID=%d PROXIED=%s DIRECT=%s sh -c %s 2>&1", host_pid, sh_quote(proxied),
      sh_quote(direct), sh_quote(profile)))))
  end

  -- (c) RUNNING programs Ready and idle.
  t0 = now()
  for i = 2, RUNNING do
    status, started = api("POST", "/programs/" .. ids[i] .. "/start")
    assert(status == 202, "start answered " .. tostring(status) .. ": " .. cjson.encode(started))
  end
  wait_ready(RUNNING, 120)
  r.start_all = now() - t0
  sleep(IDLE)
  local procs = descendants(host_pid)
  local runs, sandboxes = {}, {}
  for _, p in ipairs(procs) do
    p.pss = pss(p.pid)
    if p.name == "hersh" then
      runs[#runs + 1] = p
    elseif p.name == "bwrap" then
      sandboxes[#sandboxes + 1] = p
    end
  end
  if #runs ~= RUNNING then
    error(string.format("found %d `hersh run` processes under the Host, not %d", #runs, RUNNING))
  end
  r.hersh, r.bwrap = runs, sandboxes
  r.host_running = proc_status(host_pid).rss
  r.host_running_pss = pss(host_pid)

  t0 = now()
  stop_host()
  r.shutdown = now() - t0
  local left = 0
  for _, p in ipairs(procs) do
    local st = proc_status(p.pid)
    if st and st.name == p.name and alive(p.pid) then left = left + 1 end
  end
  r.left = left
end)

-- Clean-up: whatever happened, the Host (and with it every sandbox) is gone, and the
-- servers started beside it.
stop_host()
stop_extra()
if not ok then
  io.stderr:write("bench/host: ", tostring(err), "\n")
  local log = read(the_host.err)
  if log and log ~= "" then io.stderr:write("bench/host: the Host's stderr:\n", log) end
  os.exit(1)
end

-- ---- the table -------------------------------------------------------------------------

local function mib(kib) return kib / 1024 end

local function sum(list, field)
  local s = 0
  for _, p in ipairs(list) do s = s + p[field] end
  return s
end

local function field_list(list, field)
  local out = {}
  for i, p in ipairs(list) do out[i] = p[field] end
  return out
end

print(string.format("bench/host: %d programs registered in %.2f s (one curl, %d POST /programs)",
  PROGRAMS, r.create_time, PROGRAMS))
print(string.format("(a) %s, keep-alive; median of %d rounds (req/s)", WRK, ROUNDS))
print(string.format("  %-36s %8.0f   rounds: %s", "GET /health", median(r.health),
  table.concat(r.health, " ")))
print(string.format("  %-36s %8.0f   rounds: %s", "GET /programs/{id} (" .. PROGRAMS .. " ids)",
  median(r.get), table.concat(r.get, " ")))
print(string.format("  %-36s %8.0f", "GET /programs (" .. PROGRAMS .. " records, 1 round)", r.list))
print(string.format("  %-36s %8.0f   rounds: %s", "minimal libmicrohttpd server", median(r.minimal),
  table.concat(r.minimal, " ")))
print(string.format("  ratio to the minimal server: GET /health %.2f, GET /programs/{id} %.2f   (goal >= 0.8)",
  median(r.health) / median(r.minimal), median(r.get) / median(r.minimal)))

print(string.format("(b) GET /watcher/status of one Ready program: %d sequential requests each, in blocks"
  .. " of %d", #r.lat_proxy, LATENCY_BLOCK))
print("    on one connection (curl %{time_total}, ms); context switches per request of the Host, the program")
print(string.format("  %-42s %7s %7s %7s %7s   %s", "", "median", "p90", "p99", "max", "switches"))
local function lat_row(name, list, sw)
  print(string.format("  %-42s %7.3f %7.3f %7.3f %7.3f%s", name, median(list), quantile(list, 0.9),
    quantile(list, 0.99), math.max(table.unpack(list)),
    sw and string.format("   %.1f, %.1f", sw.host, sw.prog) or ""))
end
lat_row("direct: proxy_url/watcher/status", r.lat_direct, r.switches.direct)
lat_row("Host: /programs/{id}/proxy/watcher/status", r.lat_proxy, r.switches.proxy)
lat_row("nginx (1 worker, keep-alive upstream)", r.lat_nginx, r.switches.nginx)
lat_row("byte relay (no HTTP: the floor)", r.lat_relay, r.switches.relay)
print("  where the time goes:")
lat_row("  Host: GET /health (no proxy)", r.lat_health, r.switches.health)
lat_row("  http.request (libcurl) -> proxy_url", r.lat_client)
local pm, dm = median(r.lat_proxy), median(r.lat_direct)
local ratio = pm / dm
print(string.format("  ratio proxy / direct: median %.2f, p99 %.2f   target <= %d: %s", ratio,
  quantile(r.lat_proxy, 0.99) / quantile(r.lat_direct, 0.99), TARGET_RATIO,
  ratio <= TARGET_RATIO and "met" or "MISSED"))
print(string.format("  side by side, %s --latency, and the sequential median above:", WRK))
print(string.format("    %-20s %8s %8s %8s %8s   %s", "", "req/s", "p50 ms", "p99 ms", "seq ms", "x direct: req/s, p50, seq"))
local d = r.wrk_direct
for _, row in ipairs{ { "direct", r.wrk_direct, r.lat_direct }, { "the Host's proxy", r.wrk_proxy, r.lat_proxy },
  { "nginx", r.wrk_nginx, r.lat_nginx }, { "byte relay", r.wrk_relay, r.lat_relay } } do
  local w, seq = row[2], median(row[3])
  print(string.format("    %-20s %8.0f %8.3f %8.3f %8.3f   %.2f, %.2f, %.2f", row[1], w.rate, w.p50, w.p99, seq,
    w.rate / d.rate, w.p50 / d.p50, seq / median(r.lat_direct)))
end

local runs, sandboxes = r.hersh, r.bwrap
local n = #runs
print(string.format("(c) resident memory (MiB), %d programs Ready and idle %d s (all started and Ready"
  .. " in %.2f s)", RUNNING, IDLE, r.start_all))
print(string.format("  %-50s %6.2f", "Host VmRSS, 0 programs", mib(r.host_empty)))
print(string.format("  %-50s %6.2f", "Host VmRSS, " .. PROGRAMS .. " registered, 0 running",
  mib(r.host_registered)))
print(string.format("  %-50s %6.2f", "Host VmRSS, " .. PROGRAMS .. " registered, 1 running",
  mib(r.host_one)))
print(string.format("  %-50s %6.2f   (Pss %.2f)", "Host VmRSS, " .. PROGRAMS .. " registered, " .. RUNNING
  .. " running", mib(r.host_running), mib(r.host_running_pss)))
local rss = field_list(runs, "rss")
print(string.format("  %-50s %6.2f   (min %.2f, max %.2f; Pss %.2f)", "`hersh run` VmRSS, average of " .. n,
  mib(sum(runs, "rss") / n), mib(math.min(table.unpack(rss))), mib(math.max(table.unpack(rss))),
  mib(sum(runs, "pss") / n)))
print(string.format("  %-50s %6.1f   (Pss sum %.1f)", "`hersh run` VmRSS, sum of " .. n,
  mib(sum(runs, "rss")), mib(sum(runs, "pss"))))
print(string.format("  %-50s %6.2f   (%.1f per program; VmRSS sum %.1f, Pss sum %.1f)",
  "bwrap VmRSS, average of " .. #sandboxes, mib(sum(sandboxes, "rss") / math.max(1, #sandboxes)),
  #sandboxes / n, mib(sum(sandboxes, "rss")), mib(sum(sandboxes, "pss"))))
print(string.format("  %-50s %6.2f", "per program, `hersh run` + bwrap, Pss",
  mib((sum(runs, "pss") + sum(sandboxes, "pss")) / n)))
print(string.format("  Host shutdown (SIGTERM, %d programs stopped): %.2f s; processes left: %d", RUNNING,
  r.shutdown, r.left))
