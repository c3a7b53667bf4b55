-- What the Host's GET /metrics tells: programs by state, exits by reason, restarts,
-- build and time-to-Ready histograms (fed by host.events), each running program's
-- CPU, memory and pids (read from its cgroup at scrape time), HTTP requests by route
-- and status, and the proxy's latency.
local metrics = require "host.metrics"
local program = require "host.program"

local host_metrics = {}

-- Seconds: from a cached build (milliseconds) to a long one (the build timeout).
host_metrics.BUILD_BUCKETS = { 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600 }
host_metrics.READY_BUCKETS = { 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60 }
host_metrics.PROXY_BUCKETS = { 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30 }

local ACTIONS = { start = true, stop = true, restart = true, logs = true, source = true, events = true,
  revisions = true, rollback = true, trace = true }
local TOP = { ["/health"] = true, ["/metrics"] = true, ["/programs"] = true, ["/events"] = true }

-- The route pattern of a path: a label with a bounded set of values, whatever the path.
function host_metrics.route(path)
  if TOP[path] then return path end
  local id, rest = path:match("^/programs/([^/]+)(.*)$")
  if not id then return "other" end
  if rest == "" then return "/programs/{id}" end
  if rest == "/proxy" or rest:match("^/proxy/") then return "/programs/{id}/proxy" end
  local action = rest:match("^/(%a+)$")
  return ACTIONS[action] and "/programs/{id}/" .. action or "other"
end

local function read(path)
  local f = io.open(path, "r")
  if not f then return nil end
  local text = f:read("a")
  f:close()
  return text
end

local function scaled(factor)
  return function(text)
    local n = tonumber(text:match("^%s*(%d+)") or "")
    return n and n * factor
  end
end

-- Where each count of a cgroup is: the first of its files found in one of the cgroup's
-- dirs (v2 names first, then v1). A v2 cpu.stat has usage_usec in every unified
-- cgroup, with or without the cpu controller.
local SOURCES = {
  { field = "cpu", files = {
    { "cpu.stat", function(text) local us = text:match("usage_usec (%d+)") return us and tonumber(us) / 1e6 end },
    { "cpuacct.usage", scaled(1e-9) } } },
  { field = "memory", files = { { "memory.current", scaled(1) }, { "memory.usage_in_bytes", scaled(1) } } },
  { field = "peak", files = { { "memory.peak", scaled(1) }, { "memory.max_usage_in_bytes", scaled(1) } } },
  { field = "pids", files = { { "pids.current", scaled(1) } } },
}

-- The files to read for a process's cgroup, found at its first scrape: a process keeps
-- its cgroup, and trying every name in every dir at each scrape costs a dozen opens.
local plans = setmetatable({}, { __mode = "k" })

local function plan_of(proc)
  if plans[proc] then return plans[proc] end
  local dirs = proc:cgroup_dirs()
  if not dirs then return nil end
  local plan = {}
  for _, source in ipairs(SOURCES) do
    for _, file in ipairs(source.files) do
      local found
      for _, dir in ipairs(dirs) do
        local text = read(dir .. "/" .. file[1])
        if text and file[2](text) then
          found = { field = source.field, path = dir .. "/" .. file[1], parse = file[2] }
          break
        end
      end
      if found then
        plan[#plan + 1] = found
        break
      end
    end
  end
  plans[proc] = plan
  return plan
end

-- The usage of one running process's cgroup: {cpu, memory, peak, pids}, each nil where
-- no hierarchy of the machine counts it; nil without a cgroup.
local function usage(proc)
  local plan = plan_of(proc)
  if not plan then return nil end
  local u = {}
  for _, source in ipairs(plan) do
    local text = read(source.path)
    u[source.field] = text and source.parse(text)
  end
  return u
end

local function exit_reason(d)
  if d.oom_killed == true then return "oom" end
  local sig = d.exit_signal
  if (type(sig) == "number" and sig ~= 0) or (type(sig) == "string" and sig ~= "") then return "signal" end
  return "code"
end

-- host_metrics.new(h) -> collector with :request(route, status), :proxied(seconds) and
-- :render() -> text. Subscribes to h.events.
function host_metrics.new(h)
  local r = metrics.registry()
  local m = { registry = r, host = h }
  m.programs = r:gauge("hersh_programs", "Registered programs by state.", { "state" })
  m.exits = r:counter("hersh_program_exits_total",
    "Program processes that ended, by reason: code (exited), signal (killed), oom (killed for memory).", { "reason" })
  m.restarts = r:counter("hersh_program_restarts_total", "Restarts the restart policy scheduled.")
  m.events = r:counter("hersh_events_total", "Lifecycle events recorded, by kind.", { "kind" })
  m.builds = r:histogram("hersh_build_duration_seconds", "Build durations, by outcome (built, cached, failed).",
    { "outcome" }, host_metrics.BUILD_BUCKETS)
  m.ready = r:histogram("hersh_time_to_ready_seconds", "Time from start to Ready.", nil, host_metrics.READY_BUCKETS)
  m.cpu = r:counter("hersh_program_cpu_seconds_total", "CPU time of a running program's cgroup.", { "program_id" })
  m.memory = r:gauge("hersh_program_memory_bytes", "Memory a running program's cgroup uses now.", { "program_id" })
  m.peak = r:gauge("hersh_program_memory_peak_bytes", "The most memory a running program's cgroup used.",
    { "program_id" })
  m.pids = r:gauge("hersh_program_pids", "Processes in a running program's cgroup.", { "program_id" })
  m.http = r:counter("hersh_http_requests_total", "HTTP requests the API answered, by route pattern and status.",
    { "route", "status" })
  m.proxy = r:histogram("hersh_proxy_duration_seconds",
    "Time from a proxied request to the program's answer (or the proxy's 502 or 504).", nil,
    host_metrics.PROXY_BUCKETS)
  for _, state in ipairs(program.STATES) do
    if state ~= "Deleted" then m.programs:set({ state = state }, 0) end -- a deleted program is gone
  end
  for _, reason in ipairs { "code", "signal", "oom" } do m.exits:inc({ reason = reason }, 0) end

  h.events:subscribe(function(e)
    local d = e.details or {}
    m.events:inc({ kind = e.kind })
    if e.kind == "exited" then
      m.exits:inc({ reason = exit_reason(d) })
    elseif e.kind == "restarting" then
      m.restarts:inc()
    elseif e.kind == "build_finished" and tonumber(d.duration) then
      local outcome = not d.ok and "failed" or (d.cached and "cached" or "built")
      m.builds:observe({ outcome = outcome }, tonumber(d.duration))
    elseif e.kind == "ready" and tonumber(d.time_to_ready) then
      m.ready:observe(nil, tonumber(d.time_to_ready))
    end
  end)

  function m:request(route, status)
    self.http:inc({ route = route, status = tostring(status) })
  end

  function m:proxied(seconds)
    self.proxy:observe(nil, seconds)
  end

  -- Fills the gauges from the programs as they are now (the counts by state the Host
  -- keeps as states change), then writes everything.
  function m:render()
    for _, state in ipairs(program.STATES) do
      if state ~= "Deleted" then self.programs:set({ state = state }, self.host.state_counts[state] or 0) end
    end
    for _, family in ipairs { self.cpu, self.memory, self.peak, self.pids } do family:clear() end
    for _, p in ipairs(self.host.order) do
      for _, proc in pairs(p.sup.procs) do
        local u = usage(proc)
        if u then
          local l = { program_id = p.id }
          if u.cpu then self.cpu:set(l, u.cpu) end
          if u.memory then self.memory:set(l, u.memory) end
          if u.peak then self.peak:set(l, u.peak) end
          if u.pids then self.pids:set(l, u.pids) end
          break
        end
      end
    end
    return self.registry:render()
  end

  return m
end

return host_metrics
