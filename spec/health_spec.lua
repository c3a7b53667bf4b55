-- Health checks after Ready (create field `health`), end to end: a real `hersh host`,
-- real bwrap sandboxes and real HTTP over loopback. The program of
-- spec/programs/health answers its health path with 200, 500 or never, and prints
-- every request it gets, so the runtime log shows what the Host asked and when.
local H = require "scripts.host_harness"
local P = H.P

local FIXTURE = "spec/programs/health"
local DOCKERFILE = assert(P.read(FIXTURE .. "/Dockerfile"))
local SERVER = assert(P.read(FIXTURE .. "/health.py"))

local function health_body(user_id, mode, health, extra)
  local body = { user_id = user_id, dockerfile = DOCKERFILE, src_files = { ["health.py"] = SERVER },
    env = { HEALTH = mode, NOT_READY = "0" }, health = health }
  for k, v in pairs(extra or {}) do body[k] = v end
  return body
end

local function count(text, part)
  local n, at = 0, 1
  while true do
    local i = text:find(part, at, true)
    if not i then return n end
    n, at = n + 1, i + #part
  end
end

-- The program's runtime log, once it holds at least n lines with `part`.
local function wait_lines(h, id, part, n)
  local log
  local ok = P.wait_for(function()
    log = H.logs(h, id, "?tail=5000")
    return count(log, part) >= n
  end, H.WAIT, 0.05)
  assert(ok, "never " .. n .. " lines with '" .. part .. "' in the log of " .. id .. ":\n" .. tostring(log))
  return log
end

-- No health check reached a process before the Host found it Ready: in the log of
-- every run (from its "health: serving"), no /health request comes before the first
-- /watcher/status that answered 200.
local function assert_no_check_before_ready(log)
  local runs = 0
  for run in (log .. "health: serving"):gmatch("health: serving(.-)%f[h]health: serving") do
    runs = runs + 1
    local ready = run:find("request /watcher/status 200", 1, true)
    local first_check = run:find("request /health ", 1, true)
    if first_check then
      assert.is_truthy(ready, "a health check before any readiness answer:\n" .. run)
      assert.is_true(first_check > ready, "a health check before Ready:\n" .. run)
    end
  end
  assert.is_true(runs > 0, "no run in the log:\n" .. log)
end

local function events_of(h, id, kind)
  local doc = H.ok_json(H.call(h, "GET", "/programs/" .. id .. "/events?follow=false&kind=" .. kind), 200,
    "events")
  return doc.events
end

local function unhealthy_events(h, id)
  return events_of(h, id, "unhealthy")
end

-- Starts the program and waits for it to end in Error: its Ready spell may be too short
-- to catch by polling, so the ready event shows it was Ready first.
local function start_until_error(h, id, readies)
  H.ok_json(H.act(h, id, "start"), 202, "start")
  local err = H.wait_state(h, id, "Error")
  assert.equal(readies or 1, #events_of(h, id, "ready"))
  assert.is_true(H.no_process_of{ id }, "the unhealthy process was not ended")
  return err
end

describe("health checks", function()
  local h

  lazy_setup(function()
    local first, last = H.free_range(16)
    h = H.start_host{ ports = { first, last } }
  end)

  lazy_teardown(function()
    H.stop_host(h)
  end)

  describe("the create field", function()
    it("is refused with a 400 naming the field at fault", function()
      local cases = {
        { "yes", "health must be an object" },
        { { 1, 2 }, "health must be an object" },
        { { retries = 3 }, 'health: unknown field "retries"' },
        { { path = "health" }, "health.path" },
        { { path = 5 }, "health.path" },
        { { path = "/a b" }, "health.path" },
        { { path = "/a\r\nX-Evil: 1" }, "health.path" },
        { { path = "/a#b" }, "health.path" },
        { { path = "/" .. ("a"):rep(1100) }, "health.path" },
        { { interval = 0 }, "health.interval" },
        { { interval = 0.01 }, "health.interval" },
        { { interval = "10" }, "health.interval" },
        { { interval = 1e9 }, "health.interval" },
        { { timeout = 0 }, "health.timeout" },
        { { timeout = -1 }, "health.timeout" },
        { { timeout = 7200 }, "health.timeout" },
        { { failures = 0 }, "health.failures" },
        { { failures = 2.5 }, "health.failures" },
        { { failures = 1001 }, "health.failures" },
        { { failures = true }, "health.failures" },
      }
      for _, c in ipairs(cases) do
        local what = "health " .. require("cjson").encode(c[1])
        local res = H.call(h, "POST", "/programs", H.counter_body("badhealth", { health = c[1] }))
        H.assert_error(res, 400, what)
        assert.is_truthy(res.json.message:find(c[2], 1, true), what .. ": " .. res.json.message)
      end
      local list = H.ok_json(H.call(h, "GET", "/programs?user_id=badhealth"), 200, "list")
      assert.equal(0, #(list.programs or list))
    end)

    it("fills the defaults, is shown on the record and kept by the registry over a Host restart", function()
      local with = H.create(h, H.counter_body("defaults", { health = { path = "/watcher/state", failures = 5 } }))
      local without = H.create(h, H.counter_body("defaults"))
      local want = { path = "/watcher/state", interval = 10, timeout = 2, failures = 5 }
      assert.same(want, H.view(h, with.program_id).health)
      assert.equal(P.null, H.view(h, without.program_id).health)
      local all = H.create(h, H.counter_body("defaults", { health = {} }))
      assert.same({ path = "/watcher/status", interval = 10, timeout = 2, failures = 3 },
        H.view(h, all.program_id).health)

      H.assert_clean_exit(h)
      P.stop(h.proc) -- its files: the Host that follows takes its place in h
      local again = H.start_host{ storage = h.storage, ports = { h.first, h.last } }
      again.root, again.ids = h.root, h.ids
      h = again
      assert.same(want, H.view(h, with.program_id).health)
      assert.equal(P.null, H.view(h, without.program_id).health)
    end)
  end)

  it("a program whose health path answers 200 stays Ready, checked again and again", function()
    local doc = H.create(h, health_body("healthy", "ok", { path = "/health", interval = 0.1, timeout = 1,
      failures = 2 }))
    local id = doc.program_id
    local ready = H.start_ready(h, id)
    local log = wait_lines(h, id, "request /health 200", 8)
    local now = H.view(h, id)
    assert.equal("Ready", now.state)
    assert.equal(0, now.restarts)
    assert.equal(ready.pid, now.pid)
    assert.same({}, unhealthy_events(h, id))
    assert_no_check_before_ready(log)
  end)

  it("a program whose health path answers 500 is restarted after N failures in a row", function()
    local doc = H.create(h, health_body("failing", "fail", { path = "/health", interval = 0.3, timeout = 1,
      failures = 3 }))
    local id = doc.program_id
    local first = H.start_ready(h, id)
    H.wait_record(h, id, function(r) return r.restarts >= 1 end, "restarted")
    assert.is_true(H.gone(first.pid), "the unhealthy process was not ended")

    local events = unhealthy_events(h, id)
    assert.is_true(#events >= 1)
    local e = events[1]
    assert.equal("unhealthy", e.kind)
    assert.equal(id, e.program_id)
    assert.same({ failures = 3, last_error = "HTTP 500" }, e.details)
    assert.equal("unhealthy: 3 failed health checks in a row (last: HTTP 500)", e.message)

    -- The policy brings it back: a new process, Ready again, and checked again.
    local log = wait_lines(h, id, "health: serving", 2)
    assert.is_true(count(log, "request /health 500") >= 3)
    assert.is_truthy(log:find("hersh: unhealthy: 3 failed health checks in a row (last: HTTP 500)", 1, true),
      log)
    assert_no_check_before_ready(log)
  end)

  it("under restart policy \"no\" an unhealthy program is an Error that says why", function()
    local doc = H.create(h, health_body("failno", "fail", { path = "/health", interval = 0.1, timeout = 1,
      failures = 2 }, { restart_policy = "no" }))
    local id = doc.program_id
    local err = start_until_error(h, id)
    assert.equal('unhealthy: 2 failed health checks in a row (last: HTTP 500) (restart policy "no")',
      err.error_msg)
    assert.equal(0, err.restarts)
    assert.equal(1, #unhealthy_events(h, id))
  end)

  -- Time in Ready spent failing checks is no good run: without the rule, reset_after
  -- would forgive every restart of a program that is never healthy, for ever.
  it("a program that is never healthy uses up max_restarts, however long each Ready lasts", function()
    local doc = H.create(h, health_body("neverok", "fail", { path = "/health", interval = 0.3, timeout = 1,
      failures = 2 }, { restart_policy = { reset_after = 0.1, max_restarts = 1 } }))
    local id = doc.program_id
    local err = start_until_error(h, id, 2)
    assert.equal("unhealthy: 2 failed health checks in a row (last: HTTP 500); gave up after 1 restarts", err.error_msg)
    assert.equal(2, #unhealthy_events(h, id))
  end)

  it("a health path that never answers fails on the timeout", function()
    local doc = H.create(h, health_body("hanging", "hang", { path = "/health", interval = 0.2, timeout = 0.3,
      failures = 2 }, { restart_policy = "no" }))
    local id = doc.program_id
    local err = start_until_error(h, id)
    assert.equal('unhealthy: 2 failed health checks in a row (last: timeout) (restart policy "no")', err.error_msg)
    local events = unhealthy_events(h, id)
    assert.equal(1, #events)
    assert.same({ failures = 2, last_error = "timeout" }, events[1].details)
  end)

  it("does not check a program before it is Ready, at its first start nor after a stop", function()
    local body = health_body("slowready", "ok", { path = "/health", interval = 0.1, timeout = 1, failures = 2 })
    body.env.NOT_READY = "20" -- about a second in Starting, answering 503
    local doc = H.create(h, body)
    local id = doc.program_id
    H.start_ready(h, id)
    local log = wait_lines(h, id, "request /health 200", 3)
    assert.equal(20, count(log, "request /watcher/status 503"))
    assert_no_check_before_ready(log)

    -- Stopped: the Host answers the port itself, and no check may count against it.
    H.ok_json(H.act(h, id, "stop"), 202, "stop")
    H.wait_state(h, id, "Stopped")
    H.ok_json(H.act(h, id, "start"), 202, "start")
    local back = H.wait_state(h, id, "Ready")
    assert.equal(0, back.restarts)
    assert.same({}, unhealthy_events(h, id))
    log = wait_lines(h, id, "health: serving", 2)
    assert_no_check_before_ready(log)
  end)

  it("leaves nothing running when the Host stops", function()
    local doc = H.create(h, health_body("shutdown", "ok", { path = "/health", interval = 0.1, timeout = 1,
      failures = 2 }))
    H.start_ready(h, doc.program_id)
    wait_lines(h, doc.program_id, "request /health 200", 2)
    H.assert_clean_exit(h)
  end)
end)
