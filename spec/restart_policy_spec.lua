-- The default restart policy alone: its data, normalize and decide.
local restart_policy = require "host.restart_policy"

local function policy(overrides)
  return assert(restart_policy.normalize(overrides))
end

local function exited(code, signal)
  local what = signal and ("killed by signal " .. signal) or ("exited with code " .. code)
  return { kind = "exited", code = code, signal = signal, message = what }
end

local SPAWN_FAILED = { kind = "spawn_failed", error = "ENOENT", message = "spawn failed: ENOENT" }
local NOT_READY = { kind = "not_ready", message = "not ready within 30 s" }

describe("restart_policy data", function()
  it("has the documented defaults", function()
    assert.equal("on-failure", restart_policy.mode)
    assert.equal(0.1, restart_policy.base_delay)
    assert.equal(60, restart_policy.max_delay)
    assert.equal(10, restart_policy.reset_after)
    assert.equal(10, restart_policy.max_restarts)
    assert.same({ ["on-failure"] = true, always = true, no = true }, restart_policy.MODES)
  end)
end)

describe("restart_policy.normalize", function()
  local DEFAULTS = { mode = "on-failure", base_delay = 0.1, max_delay = 60, reset_after = 10,
    max_restarts = 10 }

  it("fills in the defaults", function()
    assert.same(DEFAULTS, policy(nil))
    assert.same(DEFAULTS, policy({}))
  end)

  it("takes a mode string", function()
    for mode in pairs(restart_policy.MODES) do
      assert.equal(mode, policy(mode).mode)
    end
  end)

  it("takes the API's name restart for mode", function()
    assert.equal("always", policy({ restart = "always" }).mode)
    assert.equal("no", policy({ restart = "no", mode = "no" }).mode)
    assert.is_nil(policy({ restart = "no" }).restart)
  end)

  it("keeps overrides and returns a copy", function()
    local given = { base_delay = 1, max_delay = 5, reset_after = 0, max_restarts = 0 }
    local p = policy(given)
    assert.same({ mode = "on-failure", base_delay = 1, max_delay = 5, reset_after = 0,
      max_restarts = 0 }, p)
    given.base_delay = 2
    assert.equal(1, p.base_delay)
  end)

  local BAD = {
    { "a number", 3 },
    { "an unknown mode", { mode = "sometimes" } },
    { "an unknown mode string", "never" },
    { "an unknown field", { retries = 3 } },
    { "mode and restart disagreeing", { mode = "no", restart = "always" } },
    { "a negative number", { reset_after = -1 } },
    { "a string number", { max_delay = "60" } },
    { "NaN", { max_delay = 0 / 0 } },
    { "infinity", { max_delay = math.huge } },
    { "a zero base_delay", { base_delay = 0 } },
    { "max_delay below base_delay", { base_delay = 2, max_delay = 1 } },
    { "a fractional max_restarts", { max_restarts = 2.5 } },
  }
  for _, case in ipairs(BAD) do
    it("refuses " .. case[1], function()
      local p, err = restart_policy.normalize(case[2])
      assert.is_nil(p)
      assert.is_string(err)
    end)
  end

  it("accepts a whole float for max_restarts (as a JSON decoder may give)", function()
    assert.equal(3, policy({ max_restarts = 3.0 }).max_restarts)
  end)
end)

describe("restart_policy.decide", function()
  local function decide(p, restarts, exit)
    return restart_policy.decide(p, { restarts = restarts }, exit)
  end

  it("doubles the delay from 0.1 s and caps it at 60 s", function()
    local p = policy({ max_restarts = 1000 })
    local want = { 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 51.2, 60, 60 }
    for n = 0, #want - 1 do
      assert.same({ action = "restart", delay = want[n + 1] }, decide(p, n, exited(1)))
    end
    assert.same({ action = "restart", delay = 60 }, decide(p, 999, exited(1)))
  end)

  it("gives up once max_restarts restarts were made", function()
    local p = policy()
    assert.equal("restart", decide(p, 9, exited(1)).action)
    assert.same({ action = "error", reason = "exited with code 1; gave up after 10 restarts" },
      decide(p, 10, exited(1)))
    assert.equal("error", decide(p, 11, exited(1)).action)
  end)

  it("with max_restarts 0 never restarts", function()
    assert.equal("error", decide(policy({ max_restarts = 0 }), 0, exited(1)).action)
  end)

  it("takes restarts 0 when the record has none", function()
    assert.same({ action = "restart", delay = 0.1 }, restart_policy.decide(policy(), {}, exited(1)))
  end)

  it("uses the policy's own delays", function()
    local p = policy({ base_delay = 2, max_delay = 5 })
    assert.equal(2, decide(p, 0, exited(1)).delay)
    assert.equal(4, decide(p, 1, exited(1)).delay)
    assert.equal(5, decide(p, 2, exited(1)).delay)
  end)

  -- Every mode against every kind of failure: r = restart, s = stop, e = error.
  local FAILURES = {
    { "code 0", exited(0) },
    { "code 1", exited(1) },
    { "code 255", exited(255) },
    { "a signal", exited(nil, "SIGKILL") },
    { "a signal with code 0", { kind = "exited", code = 0, signal = 15, message = "killed" } },
    { "a spawn failure", SPAWN_FAILED },
    { "not ready", NOT_READY },
  }
  local MODES = {
    ["on-failure"] = { "s", "r", "r", "r", "r", "r", "r" },
    always = { "r", "r", "r", "r", "r", "r", "r" },
    no = { "e", "e", "e", "e", "e", "e", "e" },
  }
  local ACTION = { r = "restart", s = "stop", e = "error" }
  for mode, row in pairs(MODES) do
    for i, failure in ipairs(FAILURES) do
      it(mode .. ": " .. failure[1] .. " -> " .. ACTION[row[i]], function()
        local d = decide(policy(mode), 3, failure[2])
        assert.equal(ACTION[row[i]], d.action)
        if d.action == "restart" then assert.equal(0.8, d.delay) end
        if d.action == "error" then
          assert.equal(failure[2].message .. ' (restart policy "no")', d.reason)
        end
      end)
    end
  end

  it("on-failure: a clean exit stops even past max_restarts", function()
    assert.same({ action = "stop" }, decide(policy(), 50, exited(0)))
  end)

  it("always: gives up after max_restarts too", function()
    assert.equal("error", decide(policy("always"), 10, exited(0)).action)
  end)

  it("no: an error even on the first failure", function()
    assert.same({ action = "error", reason = 'exited with code 0 (restart policy "no")' },
      decide(policy("no"), 0, exited(0)))
  end)

  it("modifies none of its arguments", function()
    local p, record, exit = policy(), { restarts = 4 }, exited(1)
    restart_policy.decide(p, record, exit)
    assert.same(policy(), p)
    assert.same({ restarts = 4 }, record)
    assert.same(exited(1), exit)
  end)
end)
