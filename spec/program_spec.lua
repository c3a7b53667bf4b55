-- The program lifecycle reducer: every (state, event) pair, the attempt rule, the
-- restart policy as the reducer applies it, and whole scenarios. Pure: no processes.
local program = require "host.program"
local restart_policy = require "host.restart_policy"

local A, T, P = 5, 1000, 4242  -- the fixtures' attempt, clock and pid
local NIL = {}                 -- in expected field changes: "this field becomes nil"

local function deep_copy(t)
  if type(t) ~= "table" then return t end
  local c = {}
  for k, v in pairs(t) do c[k] = deep_copy(v) end
  return c
end

-- One record per situation; Starting and Stopping have phases that react differently.
local SITUATIONS = {
  { "Created", {} },
  { "Building", {} },
  { "Starting:spawning", {} },
  { "Starting:probing", { pid = P } },
  { "Ready", { pid = P, ready_since = T - 5 } },
  { "Stopping", { pid = P } },
  { "Stopping:spawning", {} },
  { "Stopping:restart", { pid = P, restart_intent = true } },
  { "Stopped", { exit_code = 0 } },
  { "Restarting", { next_restart_at = T + 1, error_msg = "exited with code 1" } },
  { "Error", { error_msg = "build failed: x", exit_code = 1 } },
  { "Deleted", {} },
}

local function situation(name)
  for _, s in ipairs(SITUATIONS) do
    if s[1] == name then
      local r = assert(program.new{ program_id = "p1" })
      r.state = name:match("^%a+")
      r.attempt = A
      r.restarts = 2
      for k, v in pairs(s[2]) do r[k] = v end
      return r
    end
  end
  error("no situation " .. name)
end

local PAYLOAD = {
  build_failed = { error = "unknown instruction FOO" },
  spawned = { pid = 777 },
  spawn_failed = { error = "ENOENT" },
  exited = { code = 1 },
  unhealthy = { failures = 3, error = "HTTP 500" },
  swapped = { pid = 888 },
}

local function event(kind, fields)
  local e = { type = kind, now = T }
  for k, v in pairs(PAYLOAD[kind] or {}) do e[k] = v end
  for k, v in pairs(fields or {}) do
    if v == NIL then e[k] = nil else e[k] = v end
  end
  return e
end

local function result(kind, attempt, fields)
  local e = event(kind, fields)
  e.attempt = attempt or A
  return e
end

local ALL_EVENTS = {}
for _, k in ipairs(program.USER_EVENTS) do ALL_EVENTS[#ALL_EVENTS + 1] = k end
for _, k in ipairs(program.RESULT_EVENTS) do ALL_EVENTS[#ALL_EVENTS + 1] = k end

-- Effects of the default situations, written out.
local function fx(kind, fields)
  local e = { type = kind, attempt = A }
  for k, v in pairs(fields or {}) do e[k] = v end
  return e
end
local STOP = function(pid) return fx("stop_process", { pid = pid, grace = 10 }) end
local RELEASE = fx("release", { keep_state = false })
local SCHEDULE = fx("schedule_restart", { delay = 0.4, at = T + 0.4 })  -- restarts = 2
local START = { state = "Building", fields = { attempt = A + 1, restarts = 0, error_msg = NIL,
  exit_code = NIL }, effects = { fx("build", { attempt = A + 1 }) } }
local RESPAWN = { state = "Starting", fields = { attempt = A + 1, pid = NIL, restart_intent = NIL,
  next_restart_at = NIL }, effects = { fx("spawn", { attempt = A + 1 }) } }
local function deleted(effects, fields)
  local f = { pid = NIL, ready_since = NIL, next_restart_at = NIL, restart_intent = NIL }
  for k, v in pairs(fields or {}) do f[k] = v end
  effects[#effects + 1] = RELEASE
  return { state = "Deleted", fields = f, effects = effects }
end

-- The table under test. Unlisted user events are refused, unlisted results ignored.
local EXPECT = {
  Created = { start = START, delete = deleted({}) },
  Building = {
    stop = { state = "Stopped", effects = { fx("cancel_build") } },
    delete = deleted({ fx("cancel_build") }),
    built = { state = "Starting", effects = { fx("spawn") } },
    build_failed = { state = "Error", fields = {
      error_msg = "build failed: unknown instruction FOO" }, effects = {} },
  },
  ["Starting:spawning"] = {
    stop = { state = "Stopping", effects = { STOP(nil) } },
    delete = deleted({ STOP(nil) }),
    spawned = { state = "Starting", fields = { pid = 777 },
      effects = { fx("probe", { pid = 777, timeout = 30, deadline = T + 30 }) } },
    spawn_failed = { state = "Restarting", fields = { restarts = 3, next_restart_at = T + 0.4,
      error_msg = "spawn failed: ENOENT" }, effects = { SCHEDULE } },
    exited = { state = "Restarting", fields = { restarts = 3, next_restart_at = T + 0.4,
      error_msg = "exited with code 1", exit_code = 1, oom_killed = false, last_exit_at = T }, effects = { SCHEDULE } },
  },
  ["Starting:probing"] = {
    stop = { state = "Stopping", effects = { fx("cancel_probe"), STOP(P) } },
    delete = deleted({ fx("cancel_probe"), STOP(P) }),
    ready = { state = "Ready", fields = { ready_since = T, ready_at = T }, effects = {} },
    not_ready = { state = "Restarting", fields = { pid = NIL, restarts = 3,
      next_restart_at = T + 0.4, error_msg = "not ready within 30 s" },
      effects = { fx("kill_process", { pid = P }), SCHEDULE } },
    exited = { state = "Restarting", fields = { pid = NIL, restarts = 3,
      next_restart_at = T + 0.4, error_msg = "exited with code 1", exit_code = 1, oom_killed = false,
      last_exit_at = T },
      effects = { fx("cancel_probe"), SCHEDULE } },
  },
  Ready = {
    stop = { state = "Stopping", fields = { ready_since = NIL }, effects = { STOP(P) } },
    restart = { state = "Stopping", fields = { ready_since = NIL, restart_intent = true },
      effects = { STOP(P) } },
    delete = deleted({ STOP(P) }),
    exited = { state = "Restarting", fields = { pid = NIL, ready_since = NIL, restarts = 3,
      next_restart_at = T + 0.4, error_msg = "exited with code 1", exit_code = 1, oom_killed = false,
      last_exit_at = T },
      effects = { SCHEDULE } },
    unhealthy = { state = "Restarting", fields = { pid = NIL, ready_since = NIL, restarts = 3,
      next_restart_at = T + 0.4, error_msg = "unhealthy: 3 failed health checks in a row (last: HTTP 500)" },
      effects = { fx("kill_process", { pid = P }), SCHEDULE } },
    -- an update's new process answered: it is the next attempt, the old one is stopped
    swapped = { state = "Ready", fields = { attempt = A + 1, pid = 888, ready_since = T, ready_at = T, restarts = 0 },
      effects = { STOP(P) } },
  },
  Stopping = {
    delete = deleted({}),
    exited = { state = "Stopped", fields = { pid = NIL, exit_code = 1, oom_killed = false, last_exit_at = T }, effects = {} },
  },
  ["Stopping:spawning"] = {
    delete = deleted({}),
    spawned = { state = "Stopping", fields = { pid = 777 }, effects = {} },
    spawn_failed = { state = "Stopped", effects = {} },
    exited = { state = "Stopped", fields = { exit_code = 1, oom_killed = false, last_exit_at = T }, effects = {} },
  },
  ["Stopping:restart"] = {
    stop = { state = "Stopping", fields = { restart_intent = NIL }, effects = {} },
    delete = deleted({}),
    exited = { state = RESPAWN.state, fields = { attempt = A + 1, pid = NIL,
      restart_intent = NIL, exit_code = 1, oom_killed = false, last_exit_at = T }, effects = RESPAWN.effects },
  },
  Stopped = { start = START, delete = deleted({}) },
  Restarting = {
    stop = { state = "Stopped", fields = { next_restart_at = NIL }, effects = { fx("cancel_timer") } },
    delete = deleted({ fx("cancel_timer") }),
    backoff_elapsed = RESPAWN,
  },
  Error = { start = START, delete = deleted({}) },
  Deleted = {},
}

local is_user = {}
for _, k in ipairs(program.USER_EVENTS) do is_user[k] = true end

local function expected_record(before, want)
  local r = deep_copy(before)
  r.state = want.state
  for k, v in pairs(want.fields or {}) do
    if v == NIL then r[k] = nil else r[k] = v end
  end
  r.updated_at = T
  return r
end

describe("program.reduce, every (state, event) pair", function()
  local pairs_seen = 0

  for _, s in ipairs(SITUATIONS) do
    local name = s[1]
    for _, kind in ipairs(ALL_EVENTS) do
      local want = EXPECT[name][kind]
      pairs_seen = pairs_seen + 1

      if is_user[kind] then
        if want then
          it(name .. " + " .. kind .. " -> " .. want.state, function()
            local before = situation(name)
            local snapshot = deep_copy(before)
            local after, effects = program.reduce(before, event(kind))
            assert.same(expected_record(before, want), after)
            assert.same(want.effects, effects)
            assert.same(snapshot, before)  -- the input record is never modified
          end)
        else
          it(name .. " + " .. kind .. " is refused", function()
            local before = situation(name)
            local snapshot = deep_copy(before)
            local after, err, code = program.reduce(before, event(kind))
            assert.is_nil(after)
            assert.equal("cannot " .. kind .. " a program in state " .. before.state, err)
            assert.equal("ESTATE", code)
            assert.same(snapshot, before)
          end)
        end
      else
        if want then
          it(name .. " + " .. kind .. " of the current attempt -> " .. want.state, function()
            local before = situation(name)
            local snapshot = deep_copy(before)
            local after, effects = program.reduce(before, result(kind))
            assert.same(expected_record(before, want), after)
            assert.same(want.effects, effects)
            assert.same(snapshot, before)
          end)
        else
          it(name .. " + " .. kind .. " of the current attempt is ignored", function()
            local before = situation(name)
            local snapshot = deep_copy(before)
            local after, effects = program.reduce(before, result(kind))
            assert.equal(before, after)  -- the very same table
            assert.same({}, effects)
            assert.same(snapshot, before)
          end)
        end

        it(name .. " + " .. kind .. " of an older attempt is ignored", function()
          local before = situation(name)
          local snapshot = deep_copy(before)
          local after, effects = program.reduce(before, result(kind, A - 1))
          assert.equal(before, after)
          assert.same({}, effects)
          assert.same(snapshot, before)
        end)

        it(name .. " + " .. kind .. " of a newer attempt raises (a caller bug)", function()
          assert.has_error(function() program.reduce(situation(name), result(kind, A + 1)) end)
        end)
      end
    end
  end

  it("covers all " .. #SITUATIONS .. " x " .. #ALL_EVENTS .. " pairs", function()
    assert.equal(12 * 14, pairs_seen)
    for name in pairs(EXPECT) do
      local found = false
      for _, s in ipairs(SITUATIONS) do found = found or s[1] == name end
      assert.is_true(found, name)
      for kind in pairs(EXPECT[name]) do
        local known = false
        for _, k in ipairs(ALL_EVENTS) do known = known or k == kind end
        assert.is_true(known, kind)
      end
    end
  end)
end)

-- The reducer's result events are facts the supervisor reports: a handler for an event
-- nothing posts is dead code that specs keep alive (as `stopped` was: a stop ends with
-- the exit of its process: Stopping lasts "until it exits", docs/host-api.md).
describe("result events", function()
  it("are each posted by the supervisor, the one caller of reduce", function()
    local seen = {}
    for _, dir in ipairs{ "lua/host", "lua/host/sandbox" } do
      local p = assert(io.popen("ls " .. dir .. "/*.lua"))
      for path in p:lines() do
        local text = assert(io.open(path)):read("a")
        if path ~= "lua/host/program.lua" and text:find("program.reduce(", 1, true) then
          seen[#seen + 1] = path
        end
      end
      p:close()
    end
    assert.same({ "lua/host/supervisor.lua" }, seen)
    local text = assert(io.open("lua/host/supervisor.lua")):read("a")
    for _, kind in ipairs(program.RESULT_EVENTS) do
      assert.truthy(text:find('type = "' .. kind .. '"', 1, true),
        "the reducer handles " .. kind .. " but the supervisor never posts it")
    end
  end)

  it("do not include stopped: a stop ends with the process's exited, its code recorded", function()
    assert.has_error(function() program.reduce(situation("Stopping"), result("stopped")) end,
      "program.reduce: unknown event type stopped")
    local r = program.reduce(situation("Stopping"), result("exited", A, { code = NIL, signal = 15 }))
    assert.equal("Stopped", r.state)
    assert.equal(15, r.exit_signal)
    assert.is_nil(r.exit_code)
  end)
end)

describe("program.new", function()
  it("makes a Created record with the default restart policy", function()
    local r = assert(program.new{ program_id = "p1", user_id = "u" })
    assert.equal("Created", r.state)
    assert.equal(0, r.attempt)
    assert.equal(0, r.restarts)
    assert.equal("p1", r.program_id)
    assert.equal("u", r.user_id)
    assert.is_nil(r.ready_since)
    assert.is_nil(r.next_restart_at)
    assert.is_nil(r.error_msg)
    assert.is_nil(r.exit_code)
    assert.is_nil(r.pid)
    assert.same({ mode = "on-failure", base_delay = 0.1, max_delay = 60, reset_after = 10,
      max_restarts = 10 }, r.policy)
  end)

  it("works without fields", function()
    assert.equal("Created", assert(program.new()).state)
  end)

  it("takes a policy as overrides or a mode string", function()
    assert.equal("always", program.new{ policy = "always" }.policy.mode)
    local r = program.new{ policy = { mode = "no", max_restarts = 3 } }
    assert.equal("no", r.policy.mode)
    assert.equal(3, r.policy.max_restarts)
    assert.equal(0.1, r.policy.base_delay)
  end)

  it("answers nil, err, EPOLICY for an invalid policy", function()
    local r, err, code = program.new{ policy = { mode = "sometimes" } }
    assert.is_nil(r)
    assert.matches("sometimes", err)
    assert.equal("EPOLICY", code)
  end)

  it("keeps the lifecycle fields of a reloaded record", function()
    local r = program.new{ state = "Stopped", attempt = 7, restarts = 1 }
    assert.equal("Stopped", r.state)
    assert.equal(7, r.attempt)
    assert.has_error(function() program.new{ state = "Running" } end)
    assert.has_error(function() program.new{ attempt = "1" } end)
  end)

  it("does not share the caller's table", function()
    local fields = { program_id = "p1" }
    local r = program.new(fields)
    r.state = "Building"
    assert.is_nil(fields.state)
  end)
end)

describe("program.reduce, caller bugs raise", function()
  local r = situation("Building")

  it("an unknown event type", function()
    assert.has_error(function() program.reduce(r, { type = "launch", now = T }) end)
  end)

  it("an event without now", function()
    assert.has_error(function() program.reduce(r, { type = "start" }) end)
    assert.has_error(function() program.reduce(r, { type = "built", attempt = A }) end)
  end)

  it("a result without an integer attempt", function()
    assert.has_error(function() program.reduce(r, { type = "built", now = T }) end)
    assert.has_error(function() program.reduce(r, { type = "built", now = T, attempt = 5.5 }) end)
  end)

  it("a record or event that is not one", function()
    assert.has_error(function() program.reduce(nil, event("start")) end)
    assert.has_error(function() program.reduce({ state = "Running" }, event("start")) end)
    assert.has_error(function() program.reduce(r, "start") end)
  end)
end)

-- Feeds events in order; each result event gets the record's current attempt unless
-- it names one. Returns the final record and every effect, in order.
local function run(r, steps)
  local all = {}
  for _, step in ipairs(steps) do
    local e = deep_copy(step)
    e.now = e.now or T
    if not is_user[e.type] and e.attempt == nil then e.attempt = r.attempt end
    local effects
    r, effects = program.reduce(r, e)
    assert(r, effects)
    for _, f in ipairs(effects) do all[#all + 1] = f end
  end
  return r, all
end

local function types(effects)
  local t = {}
  for i, e in ipairs(effects) do t[i] = e.type end
  return t
end

describe("the attempt number", function()
  it("starts at 0 and each start, respawn and restart begins a new one", function()
    local r = program.new()
    r = run(r, { { type = "start" } })
    assert.equal(1, r.attempt)
    r = run(r, { { type = "built" }, { type = "spawned", pid = 1 }, { type = "exited", code = 1 } })
    assert.equal("Restarting", r.state)
    assert.equal(1, r.attempt)
    r = run(r, { { type = "backoff_elapsed" } })
    assert.equal(2, r.attempt)
    r = run(r, { { type = "spawned", pid = 2 }, { type = "ready" }, { type = "restart" },
      { type = "exited", code = 0 } })
    assert.equal(3, r.attempt)
    r = run(r, { { type = "spawned", pid = 3 }, { type = "ready" }, { type = "stop" },
      { type = "exited", code = 0 }, { type = "start" } })
    assert.equal(4, r.attempt)
  end)

  it("every effect carries the attempt it belongs to", function()
    local r, effects = run(program.new(), { { type = "start" }, { type = "built" },
      { type = "spawned", pid = 9 }, { type = "not_ready" }, { type = "backoff_elapsed" } })
    assert.equal("Starting", r.state)
    assert.same({ "build", "spawn", "probe", "kill_process", "schedule_restart", "spawn" },
      types(effects))
    assert.same({ 1, 1, 1, 1, 1, 2 }, { effects[1].attempt, effects[2].attempt,
      effects[3].attempt, effects[4].attempt, effects[5].attempt, effects[6].attempt })
  end)

  it("a late build result after stop and a new start drives nothing", function()
    local r = run(program.new(), { { type = "start" }, { type = "stop" } })
    assert.equal("Stopped", r.state)
    r = run(r, { { type = "built", attempt = 1 } })  -- same attempt, Stopped: ignored
    assert.equal("Stopped", r.state)
    r = run(r, { { type = "start" } })
    local same = r
    local after, effects = program.reduce(r, result("built", 1))
    assert.equal(same, after)
    assert.same({}, effects)
    assert.equal("Building", r.state)
    r, effects = run(r, { { type = "built", attempt = 2 } })
    assert.equal("Starting", r.state)
    assert.same({ "spawn" }, types(effects))
  end)

  it("the exit of a process killed for not being ready is ignored, before and after the respawn", function()
    local r = run(program.new(), { { type = "start" }, { type = "built" },
      { type = "spawned", pid = 9 }, { type = "not_ready" } })
    assert.equal("Restarting", r.state)
    local before = r
    local after = program.reduce(r, result("exited", 1, { code = NIL, signal = 9 }))
    assert.equal(before, after)
    r = run(r, { { type = "backoff_elapsed" } })
    after = program.reduce(r, result("exited", 1, { signal = 9 }))
    assert.equal(r, after)
    assert.equal("Starting", r.state)
  end)

  it("the exit of a process killed for being unhealthy is ignored, before and after the respawn", function()
    local r = run(program.new(), { { type = "start" }, { type = "built" },
      { type = "spawned", pid = 9 }, { type = "ready" }, { type = "unhealthy", failures = 2, error = "timeout" } })
    assert.equal("Restarting", r.state)
    assert.equal(1, r.restarts)
    local before = r
    assert.equal(before, (program.reduce(r, result("exited", 1, { code = NIL, signal = 9 }))))
    r = run(r, { { type = "backoff_elapsed" } })
    assert.equal(r, (program.reduce(r, result("exited", 1, { signal = 9 }))))
    assert.equal("Starting", r.state)
  end)

  it("a late unhealthy of an older attempt does not restart the new process", function()
    local r = run(program.new(), { { type = "start" }, { type = "built" },
      { type = "spawned", pid = 9 }, { type = "ready" }, { type = "restart" },
      { type = "exited", code = 0 }, { type = "spawned", pid = 10 }, { type = "ready" } })
    assert.equal(2, r.attempt)
    assert.equal(r, (program.reduce(r, result("unhealthy", 1, { failures = 3, error = "HTTP 500" }))))
    assert.equal("Ready", r.state)
  end)

  it("a late ready of an old probe does not make the new process Ready", function()
    local r = run(program.new(), { { type = "start" }, { type = "built" },
      { type = "spawned", pid = 9 }, { type = "exited", code = 1 }, { type = "backoff_elapsed" },
      { type = "spawned", pid = 10 } })
    local after = program.reduce(r, result("ready", 1))
    assert.equal(r, after)
    assert.equal("Starting", r.state)
  end)

  it("a late timer after stop in Restarting is ignored", function()
    local r = run(program.new(), { { type = "start" }, { type = "built" },
      { type = "spawn_failed", error = "x" }, { type = "stop" } })
    assert.equal("Stopped", r.state)
    assert.equal(r, (program.reduce(r, result("backoff_elapsed", r.attempt))))
  end)
end)

describe("updated_at", function()
  it("is event.now of the last accepted event, untouched by an ignored one", function()
    local r = run(program.new(), { { type = "start", now = 50 } })
    assert.equal(50, r.updated_at)
    local same = program.reduce(r, result("ready", r.attempt, { now = 60 }))
    assert.equal(50, same.updated_at)
  end)
end)

describe("scenarios", function()
  it("create, start, build, spawn, probe: Ready", function()
    local r, effects = run(program.new(), { { type = "start" }, { type = "built" },
      { type = "spawned", pid = 7, now = 1001 }, { type = "ready", now = 1002 } })
    assert.equal("Ready", r.state)
    assert.equal(7, r.pid)
    assert.equal(1002, r.ready_since)
    assert.same({ "build", "spawn", "probe" }, types(effects))
    assert.equal(1031, effects[3].deadline)
  end)

  it("a build failure is an Error, and Error is no dead end", function()
    local r = run(program.new(), { { type = "start" }, { type = "build_failed", error = "RUN: exit 2" } })
    assert.equal("Error", r.state)
    assert.equal("build failed: RUN: exit 2", r.error_msg)
    local effects
    r, effects = run(r, { { type = "start" } })
    assert.equal("Building", r.state)
    assert.is_nil(r.error_msg)
    assert.same({ "build" }, types(effects))
    r = run(r, { { type = "delete" } })
    assert.equal("Deleted", r.state)
  end)

  it("restart keeps the build and goes Stopping -> Starting -> Ready", function()
    local r = run(program.new(), { { type = "start" }, { type = "built" },
      { type = "spawned", pid = 7 }, { type = "ready" } })
    local attempt = r.attempt
    local seen = {}
    local effects
    local all = {}
    for _, step in ipairs{ { type = "restart" }, { type = "exited", code = 143 },
      { type = "spawned", pid = 8 }, { type = "ready" } } do
      r, effects = run(r, { step })
      seen[#seen + 1] = r.state
      for _, e in ipairs(effects) do all[#all + 1] = e end
    end
    assert.same({ "Stopping", "Starting", "Starting", "Ready" }, seen)
    assert.same({ "stop_process", "spawn", "probe" }, types(all))
    assert.equal(attempt + 1, r.attempt)
    assert.equal(0, r.restarts)  -- a user restart is not an automatic one
    assert.equal(8, r.pid)
    assert.is_nil(r.restart_intent)
  end)

  it("a stop during a restart cancels the respawn", function()
    local r = run(program.new(), { { type = "start" }, { type = "built" },
      { type = "spawned", pid = 7 }, { type = "ready" }, { type = "restart" }, { type = "stop" } })
    assert.equal("Stopping", r.state)
    assert.is_nil(program.reduce(r, event("stop")))  -- and a second stop is refused
    local effects
    r, effects = run(r, { { type = "exited", code = 0 } })
    assert.equal("Stopped", r.state)
    assert.same({}, effects)
  end)

  it("a stop while the spawn is in flight leaks no process", function()
    local r, effects = run(program.new(), { { type = "start" }, { type = "built" }, { type = "stop" } })
    assert.equal("Stopping", r.state)
    local stop = effects[#effects]
    assert.equal("stop_process", stop.type)
    assert.is_nil(stop.pid)         -- the Host stops the attempt's process once it exists
    assert.equal(r.attempt, stop.attempt)
    r, effects = run(r, { { type = "spawned", pid = 12 } })
    assert.equal("Stopping", r.state)
    assert.equal(12, r.pid)
    assert.same({}, effects)        -- no probe for a process being stopped
    r = run(r, { { type = "exited", code = 0 } })
    assert.equal("Stopped", r.state)
    assert.is_nil(r.pid)
  end)

  it("a stop in Building cancels the build", function()
    local r, effects = run(program.new(), { { type = "start" }, { type = "stop" } })
    assert.equal("Stopped", r.state)
    assert.same({ "build", "cancel_build" }, types(effects))
  end)

  it("a stop in Ready sends SIGTERM with a 10 s grace", function()
    local _, effects = run(program.new(), { { type = "start" }, { type = "built" },
      { type = "spawned", pid = 7 }, { type = "ready" }, { type = "stop" } })
    assert.same({ type = "stop_process", attempt = 1, pid = 7, grace = 10 }, effects[#effects])
  end)

  it("delete with keep_state passes it to release", function()
    local _, effects = program.reduce(situation("Stopped"), event("delete", { keep_state = true }))
    assert.same({ fx("release", { keep_state = true }) }, effects)
  end)

  it("refusals name the current state", function()
    local _, err = program.reduce(program.new(), event("stop"))
    assert.equal("cannot stop a program in state Created", err)
    _, err = program.reduce(situation("Building"), event("restart"))
    assert.equal("cannot restart a program in state Building", err)
    _, err = program.reduce(situation("Ready"), event("start"))
    assert.equal("cannot start a program in state Ready", err)
  end)
end)

-- Crash loop from Ready: every run lasts `up` seconds. Returns the delays scheduled and
-- the final record.
local function crash_loop(policy, n, up, code)
  local r = assert(program.new{ policy = policy })
  local now = 0
  r = run(r, { { type = "start", now = now }, { type = "built", now = now } })
  local delays = {}
  for _ = 1, n do
    local effects
    r, effects = run(r, { { type = "spawned", pid = 1, now = now }, { type = "ready", now = now },
      { type = "exited", code = code or 1, now = now + up } })
    now = now + up
    if r.state ~= "Restarting" then break end
    delays[#delays + 1] = effects[#effects].delay
    assert.equal(now + effects[#effects].delay, r.next_restart_at)
    now = r.next_restart_at
    r = run(r, { { type = "backoff_elapsed", now = now } })
  end
  return delays, r
end

describe("the restart policy, through the reducer", function()
  it("delays double from 0.1 s to the 60 s cap", function()
    local delays = crash_loop({ max_restarts = 13 }, 13, 1)
    assert.same({ 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 51.2, 60, 60, 60 }, delays)
  end)

  it("10 restarts without a reset, then Error", function()
    local delays, r = crash_loop(nil, 20, 1)
    assert.equal(10, #delays)
    assert.equal("Error", r.state)
    assert.equal(10, r.restarts)
    assert.equal("exited with code 1; gave up after 10 restarts", r.error_msg)
    assert.is_nil(r.pid)
    assert.is_nil(r.next_restart_at)
  end)

  -- The exact 10 s boundary is tested with whole numbers below; here the clock sums
  -- fractional delays, so keep clear of it.
  it("10 s in Ready resets the count: it never gives up", function()
    local delays, r = crash_loop(nil, 30, 10.5)
    assert.equal(30, #delays)
    for _, d in ipairs(delays) do assert.equal(0.1, d) end
    assert.equal("Starting", r.state)  -- the loop ends on a backoff_elapsed
    assert.equal(1, r.restarts)
  end)

  it("9.5 s in Ready does not reset it", function()
    local delays, r = crash_loop(nil, 30, 9.5)
    assert.equal(10, #delays)
    assert.equal("Error", r.state)
  end)

  it("a reset after a crash loop starts again at 0.1 s", function()
    local r = situation("Ready")
    r.restarts = 7
    r.ready_since = T - 10
    local after, effects = program.reduce(r, result("exited"))
    assert.equal(1, after.restarts)
    assert.equal(0.1, effects[1].delay)
  end)

  it("a user stop after 10 s Ready resets the count too", function()
    local r = situation("Ready")
    r.ready_since = T - 10
    assert.equal(0, program.reduce(r, event("stop")).restarts)
    r.ready_since = T - 9
    assert.equal(2, program.reduce(r, event("stop")).restarts)
  end)

  it("a failure to start counts as a restart", function()
    local r = run(program.new(), { { type = "start" }, { type = "built" } })
    for i = 1, 10 do
      r = run(r, { { type = "spawn_failed", error = "EACCES" } })
      assert.equal("Restarting", r.state)
      assert.equal(i, r.restarts)
      r = run(r, { { type = "backoff_elapsed" } })
    end
    r = run(r, { { type = "spawn_failed", error = "EACCES" } })
    assert.equal("Error", r.state)
    assert.equal("spawn failed: EACCES; gave up after 10 restarts", r.error_msg)
  end)

  it("a user start after Error starts the count again", function()
    local _, r = crash_loop(nil, 20, 1)
    r = run(r, { { type = "start" } })
    assert.equal(0, r.restarts)
  end)

  describe("mode no", function()
    it("any exit from Ready is an Error at once, even code 0", function()
      for _, exit in ipairs{ { code = 1 }, { code = 0 }, { signal = 9 } } do
        local r = situation("Ready")
        r.policy = restart_policy.normalize("no")
        local after, effects = program.reduce(r, result("exited", A, exit))
        assert.equal("Error", after.state)
        assert.same({}, effects)
        assert.matches('restart policy "no"', after.error_msg)
      end
    end)

    it("an unhealthy program is an Error, and the process is killed", function()
      local r = situation("Ready")
      r.policy = restart_policy.normalize("no")
      local after, effects = program.reduce(r, result("unhealthy", A, { failures = 1, error = "timeout" }))
      assert.equal("Error", after.state)
      assert.equal("unhealthy: 1 failed health checks in a row (last: timeout) (restart policy \"no\")",
        after.error_msg)
      assert.same({ fx("kill_process", { pid = P }) }, effects)
    end)

    it("a not ready in Starting is an Error, and the process is killed", function()
      local r = situation("Starting:probing")
      r.policy = restart_policy.normalize("no")
      local after, effects = program.reduce(r, result("not_ready"))
      assert.equal("Error", after.state)
      assert.equal("not ready within 30 s (restart policy \"no\")", after.error_msg)
      assert.same({ fx("kill_process", { pid = P }) }, effects)
    end)
  end)

  describe("mode on-failure", function()
    it("a clean exit from Ready is Stopped, not restarted", function()
      local after, effects = program.reduce(situation("Ready"), result("exited", A, { code = 0 }))
      assert.equal("Stopped", after.state)
      assert.equal(0, after.exit_code)
      assert.is_nil(after.pid)
      assert.is_nil(after.error_msg)
      assert.same({}, effects)
    end)

    it("a clean exit while probing is Stopped, and the probe cancelled", function()
      local after, effects = program.reduce(situation("Starting:probing"),
        result("exited", A, { code = 0 }))
      assert.equal("Stopped", after.state)
      assert.same({ fx("cancel_probe") }, effects)
    end)

    it("a signal restarts, and is recorded", function()
      local after = program.reduce(situation("Ready"), result("exited", A, { code = NIL, signal = "SIGSEGV" }))
      assert.equal("Restarting", after.state)
      assert.equal("SIGSEGV", after.exit_signal)
      assert.is_nil(after.exit_code)
      assert.equal("killed by signal SIGSEGV", after.error_msg)
    end)
  end)

  describe("mode always", function()
    it("restarts even after code 0", function()
      local r = situation("Ready")
      r.policy = restart_policy.normalize("always")
      local after, effects = program.reduce(r, result("exited", A, { code = 0 }))
      assert.equal("Restarting", after.state)
      assert.same({ SCHEDULE }, effects)
    end)

    it("an unhealthy program counts as a failure toward max_restarts", function()
      local r = situation("Ready")
      r.policy = restart_policy.normalize{ mode = "always", max_restarts = 2 }
      local after, effects = program.reduce(r, result("unhealthy"))
      assert.equal("Error", after.state)
      assert.equal("unhealthy: 3 failed health checks in a row (last: HTTP 500); gave up after 2 restarts",
        after.error_msg)
      assert.same({ fx("kill_process", { pid = P }) }, effects)
    end)

    it("an unhealthy program's failing checks are no good run: no reset without a passed check", function()
      local r = situation("Ready")
      r.ready_since = T - 60 -- Ready for a minute, but never passed a check
      local after = program.reduce(r, result("unhealthy"))
      assert.equal(3, after.restarts)
      after = program.reduce(r, result("unhealthy", A, { healthy_until = T - 55 })) -- 5 s of good run
      assert.equal(3, after.restarts)
      local effects
      after, effects = program.reduce(r, result("unhealthy", A, { healthy_until = T - 50 })) -- 10 s: forgiven
      assert.equal(1, after.restarts)
      assert.equal(0.1, effects[2].delay)
    end)

    it("still gives up after max_restarts", function()
      local _, r = crash_loop("always", 20, 1, 0)
      assert.equal("Error", r.state)
      assert.equal("exited with code 0; gave up after 10 restarts", r.error_msg)
    end)
  end)

  describe("program.policy_module", function()
    local saved = program.policy_module
    after_each(function() program.policy_module = saved end)

    it("can be replaced; decide sees the policy, the record and the exit", function()
      local calls = {}
      program.policy_module = {
        decide = function(policy, record, exit)
          calls[#calls + 1] = { policy = policy, restarts = record.restarts, exit = exit }
          return { action = "restart", delay = 7 }
        end,
      }
      local r = assert(program.new{ policy = { anything = true } })
      assert.same({ anything = true }, r.policy)  -- no normalize: taken as is
      r = run(r, { { type = "start" }, { type = "built" }, { type = "spawned", pid = 3 } })
      local after, effects = program.reduce(r, result("exited", r.attempt, { code = 4 }))
      assert.equal("Restarting", after.state)
      assert.equal(7, effects[#effects].delay)
      assert.equal(1, #calls)
      assert.same({ anything = true }, calls[1].policy)
      assert.equal(0, calls[1].restarts)
      assert.same({ kind = "exited", code = 4, message = "exited with code 4" }, calls[1].exit)
    end)

    it("an unknown action raises", function()
      program.policy_module = { decide = function() return { action = "pause" } end }
      assert.has_error(function() program.reduce(situation("Ready"), result("exited")) end)
    end)
  end)
end)
