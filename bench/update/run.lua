-- bench/update/run.lua -- update in place under load, beside a plain restart, in the
-- same run: a real `hersh host` (bwrap driver, scripts.host_harness) with one counter
-- program (spec/programs/host_counter, its loop driven by `hersh run` so that SIGTERM
-- drains), Ready; wrk loads its port (GET /watcher/status) while N operations run one
-- after the other:
--   update   PUT /programs/bench with a changed main.lua (a new image each time);
--            time from the PUT to the `updated` event (the new revision serving)
--   restart  POST /programs/bench/restart; time from the POST to the `ready` event
-- each with wrk on fresh connections (Connection: close) and on kept-alive ones. The
-- failed requests are wrk's socket errors (connect, read, write, timeout) plus its
-- non-2xx answers (the Host's own 503 while no process serves the port). Goal for
-- update: 0.
--
--   bench/update/run.sh [BUILD_DIR]     (BENCH_UPDATE_N: operations per row, default 20)
local H = require "scripts.host_harness"
local P = H.P
local core = require "hersh.core"

local N = tonumber(os.getenv("BENCH_UPDATE_N")) or 20
local WRK_ARGS = { "-t2", "-c8", "-d600s", "--timeout", "5s" }

local MAIN = (H.MAIN_LUA:gsub("\nhersh%.run%(%)\n?$", "\n"))

local function body(v)
  return { dockerfile = H.DOCKERFILE, src_files = { ["main.lua"] = MAIN .. "-- version " .. v .. "\n" } }
end

-- The first event of `kind` after id `after` (bounded wait); the event.
local function next_event(h, after, kind)
  local found
  assert(P.wait_for(function()
    local doc = H.call(h, "GET", "/programs/bench/events?follow=false&kind=" .. kind .. "&since=" .. after).json
    found = doc and doc.events[1]
    return found ~= nil
  end, 120, 0.02), "no " .. kind .. " event")
  return found
end

local function last_id(h)
  return H.call(h, "GET", "/programs/bench/events?follow=false&kind=created").json.last_id
end

local function wrk_start(port, keep_alive)
  local argv = { "wrk" }
  for _, a in ipairs(WRK_ARGS) do argv[#argv + 1] = a end
  if not keep_alive then
    argv[#argv + 1] = "-H"
    argv[#argv + 1] = "Connection: close"
  end
  argv[#argv + 1] = "http://127.0.0.1:" .. port .. "/watcher/status"
  return P.start(argv)
end

-- Stops wrk (SIGINT: it prints its summary); {requests, failed, detail}.
local function wrk_stop(proc)
  P.signal(proc, "INT")
  assert(P.wait_exit(proc, 30), "wrk did not stop")
  local out = P.stdout(proc)
  local requests = tonumber(out:match("(%d+) requests in")) or 0
  local c, r, w, t = out:match("Socket errors: connect (%d+), read (%d+), write (%d+), timeout (%d+)")
  local non2xx = tonumber(out:match("Non%-2xx or 3xx responses: (%d+)")) or 0
  local failed = (tonumber(c) or 0) + (tonumber(r) or 0) + (tonumber(w) or 0) + (tonumber(t) or 0) + non2xx
  local detail = string.format("connect %s read %s write %s timeout %s non-2xx %d", c or 0, r or 0, w or 0, t or 0,
    non2xx)
  P.stop(proc)
  return { requests = requests, failed = failed, detail = detail }
end

local function percentile(list, q)
  table.sort(list)
  return list[math.max(1, math.ceil(#list * q))]
end

local function row(h, port, kind, keep_alive, next_version)
  local wrk = wrk_start(port, keep_alive)
  P.sleep(1) -- wrk's connections are up
  local times = {}
  for i = 1, N do
    local after = last_id(h)
    local t0 = core.now()
    local res
    if kind == "update" then
      res = H.call(h, "PUT", "/programs/bench", body(next_version()))
    else
      res = H.call(h, "POST", "/programs/bench/restart")
    end
    assert(res.status == 202, kind .. " " .. i .. ": " .. res.body)
    local e = next_event(h, after, kind == "update" and "updated" or "ready")
    times[#times + 1] = e.at - t0
    H.wait_state(h, "bench", "Ready")
  end
  P.sleep(1)
  local w = wrk_stop(wrk)
  local sum = 0
  for _, t in ipairs(times) do sum = sum + t end
  return { kind = kind, conn = keep_alive and "keep-alive" or "close", n = N, mean = sum / N,
    median = percentile(times, 0.5), max = percentile(times, 1), requests = w.requests, failed = w.failed,
    detail = w.detail }
end

local h = H.start_host()
local ok, err = pcall(function()
  local created = H.create(h, H.counter_body("bench", { name = "bench", src_files = { ["main.lua"] = MAIN } }))
  local rec = H.start_ready(h, created.program_id)
  local version = 1
  local function next_version()
    version = version + 1
    return version
  end
  local rows = {}
  for _, keep_alive in ipairs{ false, true } do
    rows[#rows + 1] = row(h, rec.publish_port, "update", keep_alive, next_version)
    rows[#rows + 1] = row(h, rec.publish_port, "restart", keep_alive, next_version)
  end
  print(string.format("update in place vs restart under wrk %s (GET /watcher/status), %d operations each",
    table.concat(WRK_ARGS, " "), N))
  print(string.format("%-8s %-11s %9s %9s %9s %10s %7s  %s", "op", "connection", "mean s", "median s", "max s",
    "requests", "failed", "wrk errors"))
  for _, r in ipairs(rows) do
    print(string.format("%-8s %-11s %9.3f %9.3f %9.3f %10d %7d  %s", r.kind, r.conn, r.mean, r.median, r.max,
      r.requests, r.failed, r.detail))
  end
end)
H.stop_host(h)
if not ok then error(err) end
