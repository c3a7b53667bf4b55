-- The recovery policy: the module on its own, then as the engine applies it.
local hersh = require "hersh"
local h = require "helpers"

local recovery = hersh.recovery

-- The default policy's data with some fields replaced.
local function policy(over)
  local p = {}
  for k, v in pairs(recovery) do
    if type(v) ~= "function" then p[k] = v end
  end
  p.light_delays = h.copy(recovery.light_delays)
  for k, v in pairs(over or {}) do p[k] = v end
  return p
end

describe("recovery module", function()
  it("has the documented defaults", function()
    assert.equal(3, recovery.min_failures)
    assert.equal(6, recovery.max_failures)
    assert.equal(5, recovery.base_delay)
    assert.equal(300, recovery.max_delay)
    assert.same({ 15, 30, 60 }, recovery.light_delays)
    assert.is_function(recovery.decide)
  end)

  it("gives the default sequence: 15, 30, then 5, 10, 20, then crash", function()
    local p = policy()
    local got = {}
    for n = 1, 6 do
      local d = recovery.decide(n, "err", p)
      got[n] = { d.action, d.action ~= "crash" and d.delay or nil }
    end
    assert.same({
      { "retry", 15 }, { "retry", 30 },
      { "recover", 5 }, { "recover", 10 }, { "recover", 20 },
      { "crash" },
    }, got)
  end)

  it("repeats the last light delay and caps the backoff at max_delay", function()
    local p = policy{ min_failures = 10, max_failures = 30, light_delays = { 1, 2 } }
    assert.same({ action = "retry", delay = 1 }, recovery.decide(1, "e", p))
    assert.same({ action = "retry", delay = 2 }, recovery.decide(2, "e", p))
    assert.same({ action = "retry", delay = 2 }, recovery.decide(9, "e", p))
    assert.equal("recover", recovery.decide(10, "e", p).action)
    assert.equal(5, recovery.decide(10, "e", p).delay)
    assert.equal(300, recovery.decide(25, "e", p).delay)
    assert.equal("crash", recovery.decide(30, "e", p).action)
  end)
end)

describe("recovery in the engine", function()
  after_each(h.reap)

  it("walks the full default sequence, scaled down, to Crashed", function()
    local w = h.watcher{ recovery = { base_delay = 0.2, max_delay = 10,
      light_delays = { 0.2, 0.3 } } }
    local runs = h.record(w, function() error("always fails") end)
    local c = h.count_cleanup(w)
    assert.is_true(w:start())
    local expect = {
      { "Ready", "init" }, { "Ready", "retry" }, { "WaitRecover", "retry" },
      { "WaitRecover", "recover" }, { "WaitRecover", "recover" },
    }
    for n, step in ipairs(expect) do
      assert.is_true(h.wait(function() return w:failures() >= n end), "failure " .. n)
      assert.equal(n, w:failures())
      assert.equal(step[1], w:state(), "state after failure " .. n)
      assert.equal(step[2], runs[n].reason, "reason of run " .. n)
      assert.is_number(w:next_retry())
      assert.equal(0, c.count)
    end
    assert.is_true(h.wait_terminal(w))
    assert.equal("Crashed", w:state())
    assert.equal(6, #runs)
    assert.equal("recover", runs[6].reason)
    for _, r in ipairs(runs) do assert.is_true(r.watcher) end
    assert.equal(1, c.count)
    assert.is_nil(w:next_retry())
    local failed = h.filter(h.logs(w, "result"), function(e) return e.effect == "run" end)
    assert.equal(6, #failed)
    for _, e in ipairs(failed) do
      assert.is_false(e.ok)
      assert.is_true(h.has(e.error, "always fails"))
    end
    local _, _, code = w:send("x")
    assert.equal("ESTOPPED", code)
  end)

  it("hands decide the merged policy and follows its decisions", function()
    local decisions = {}
    local w = h.watcher{ recovery = {
      base_delay = 0.05, light_delays = { 0.05, 0.1 },
      decide = function(n, err, p)
        local d = recovery.decide(n, err, p)
        decisions[#decisions + 1] = { n = n, err = err, action = d.action, delay = d.delay,
          min = p.min_failures, max = p.max_failures, base = p.base_delay }
        return d
      end,
    } }
    h.record(w, function() error("count me") end)
    assert.is_true(w:start())
    assert.is_true(h.wait_terminal(w))
    assert.equal("Crashed", w:state())
    assert.equal(6, #decisions)
    local actions = {}
    for i, d in ipairs(decisions) do
      assert.equal(i, d.n)
      assert.is_true(h.has(d.err, "count me"))
      assert.equal(3, d.min)
      assert.equal(6, d.max)
      assert.equal(0.05, d.base)
      actions[i] = d.action
    end
    assert.same({ "retry", "retry", "recover", "recover", "recover", "crash" }, actions)
    assert.equal(0.1, decisions[2].delay)
    assert.equal(0.2, decisions[5].delay)
  end)

  it("resets the count on a success", function()
    -- The reducer fails on its first two runs, then succeeds.
    local w = h.watcher{ recovery = { light_delays = { 0.05 } } }
    local fail_left = 2
    local runs = h.record(w, function(msg)
      if msg and msg.content == "fail" then error("asked to fail") end
      if fail_left > 0 then
        fail_left = fail_left - 1
        error("early failure")
      end
    end)
    assert.is_true(w:start())
    assert.is_true(h.wait(function() return #runs >= 3 end))
    assert.is_true(h.wait_state(w, "Ready"))
    assert.equal(0, w:failures())
    assert.is_nil(w:next_retry())
    assert.same({ "init", "retry", "retry" }, h.reasons(runs))
    -- The next failure counts from 1 again: Ready, not WaitRecover.
    assert.is_true(w:send("fail"))
    assert.is_true(h.wait(function() return w:failures() == 1 end))
    assert.equal("Ready", w:state())
  end)

  it("lets another signal run first and counts that run; a success cancels the retry", function()
    local w = h.watcher{ recovery = { light_delays = { 0.4 } } }
    local runs = h.record(w, function(msg)
      if msg == nil or msg.content == "fail" then error("fails") end
    end)
    assert.is_true(w:start())
    assert.is_true(h.wait(function() return w:failures() == 1 end))
    assert.equal("Ready", w:state())
    assert.is_number(w:next_retry())
    -- A failing message run counts.
    assert.is_true(w:send("fail"))
    assert.is_true(h.wait(function() return w:failures() == 2 end))
    assert.equal("message", runs[2].reason)
    -- A succeeding message run resets the count and cancels the pending retry.
    assert.is_true(w:send("ok"))
    assert.is_true(h.wait(function() return #runs == 3 end))
    assert.equal(0, w:failures())
    assert.is_nil(w:next_retry())
    hersh.run_for(0.8)
    assert.equal(3, #runs)
    assert.equal("Ready", w:state())
  end)

  it("takes var signals in Ready while a retry is pending", function()
    local w = h.watcher{ recovery = { light_delays = { 30 } } }
    local runs = h.record(w, function(msg, ctx, rec)
      rec.count = (ctx:watch_tick("t", 0.01).value or {}).count
      if rec.reason == "init" then error("first fails") end
    end)
    assert.is_true(w:start())
    assert.is_true(h.wait(function() return #runs >= 3 end))
    assert.same({ "init", "vars", "vars" }, { runs[1].reason, runs[2].reason, runs[3].reason })
    assert.equal(0, w:failures())
    assert.is_nil(w:next_retry())
  end)

  it("keeps messages waiting during WaitRecover and takes them after the re-run", function()
    local w = h.watcher{ recovery = h.hold_policy(0.3) }
    local runs = h.record(w, function(msg, ctx, rec)
      if rec.reason == "init" then error("hold") end
    end)
    assert.is_true(w:start())
    assert.is_true(h.wait_state(w, "WaitRecover"))
    assert.is_true(w:send("waiting"))
    assert.is_true(h.wait(function() return #runs >= 3 end))
    assert.same({ "init", "recover", "message" }, h.reasons(runs))
    assert.equal("waiting", runs[3].content)
    assert.equal(0, w:failures())
  end)

  it("stop cancels a pending retry", function()
    local w = h.watcher{ recovery = { light_delays = { 0.2 } } }
    local runs = h.record(w, function() error("fails") end)
    local c = h.count_cleanup(w)
    assert.is_true(w:start())
    assert.is_true(h.wait(function() return w:failures() == 1 end))
    assert.is_number(w:next_retry())
    assert.is_true(w:stop())
    assert.is_nil(w:next_retry())
    hersh.run_for(0.5)
    assert.equal(1, #runs)
    assert.equal("Stopped", w:state())
    assert.equal(1, c.count)
  end)

  it("can be replaced per watcher by a table", function()
    local w = h.watcher{ recovery = { min_failures = 1, max_failures = 2, base_delay = 0.05 } }
    local runs = h.record(w, function() error("fails") end)
    local c = h.count_cleanup(w)
    assert.is_true(w:start())
    assert.is_true(h.wait(function() return w:failures() >= 1 end))
    assert.equal("WaitRecover", w:state())
    assert.is_true(h.wait_terminal(w))
    assert.equal("Crashed", w:state())
    assert.same({ "init", "recover" }, h.reasons(runs))
    assert.equal(1, c.count)
  end)

  it("can be replaced per watcher by a function", function()
    local calls = {}
    local w = h.watcher{ recovery = function(n, err, p)
      calls[#calls + 1] = { n = n, err = err }
      if n >= 3 then return { action = "crash" } end
      return { action = "retry", delay = 0.05 }
    end }
    local runs = h.record(w, function() error("function policy") end)
    local c = h.count_cleanup(w)
    assert.is_true(w:start())
    assert.is_true(h.wait_terminal(w))
    assert.equal("Crashed", w:state())
    assert.same({ "init", "retry", "retry" }, h.reasons(runs))
    assert.equal(3, #calls)
    for i, call in ipairs(calls) do
      assert.equal(i, call.n)
      assert.is_true(h.has(call.err, "function policy"))
    end
    assert.equal(1, c.count)
  end)

  it("shows the failure count and the next retry time", function()
    local w = h.watcher{ recovery = { light_delays = { 30 } } }
    h.record(w, function(msg) if msg == nil then error("first fails") end end)
    assert.equal(0, w:failures())
    assert.is_nil(w:next_retry())
    local before = hersh.now()
    assert.is_true(w:start())
    assert.is_true(h.wait(function() return w:failures() == 1 end))
    local at = w:next_retry()
    assert.is_number(at)
    assert.is_true(at > before)
    assert.is_true(at >= hersh.now())
  end)
end)
