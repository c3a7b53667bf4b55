-- Run and cleanup deadlines: a runaway Lua loop is aborted and counted as a failure.
-- Each case runs in a child process (h.isolated): if a deadline were not enforced,
-- the loop would never come back, and the case must fail rather than hang the suite.
local h = require "helpers"

-- Source shared by the children: a watcher in Ready whose "spin" runs do SPIN.
local SPINNER = [[
  local function last_run_result(w)
    local results = h.filter(w:logs("result"), function(e) return e.effect == "run" end)
    return results[#results]
  end
  local w = h.watcher(CONFIG)
  local runs = h.record(w, function(msg, ctx, rec)
    if msg and msg.content == "spin" then
      rec.started = true
      SPIN()
      rec.returned = true
    end
  end)
  assert(w:start())
  assert(h.wait_state(w, "Ready"))
]]

local function spinner(config, spin, rest)
  return SPINNER:gsub("CONFIG", config):gsub("SPIN%(%)", "(" .. spin .. ")()") .. rest
end

describe("deadlines", function()
  local loops = {
    { "an empty infinite loop", "function() while true do end end" },
    { "an infinite loop that calls functions", [[function()
      local s = 0
      while true do s = s + #string.rep("x", 8) end
    end]] },
    { "an infinite loop that catches errors", [[function()
      while true do pcall(function() while true do end end) end
    end]] },
  }

  for _, case in ipairs(loops) do
    local name, spin = case[1], case[2]
    it("abort " .. name .. " and count it as a failure", function()
      local r = h.isolated(spinner("{ timeout = 0.2 }", spin, [[
        local out = {}
        w:send("spin")
        out.waited = h.wait(function() return w:failures() == 1 end, 10)
        out.state = w:state()
        out.started = runs[2] and runs[2].started
        out.returned = runs[2] and runs[2].returned
        local res = last_run_result(w)
        out.ok, out.error = res.ok, res.error
        -- The Lua state is still usable: the next run succeeds and resets the count.
        w:send("ok")
        out.next = h.wait(function() return #runs >= 3 and w:failures() == 0 end, 10)
        out.next_ok = last_run_result(w).ok
        return out
      ]]))
      assert.is_true(r.waited)
      assert.equal("Ready", r.state)
      assert.is_true(r.started)
      assert.is_nil(r.returned)
      assert.is_false(r.ok)
      assert.is_true(h.has(r.error, "timeout"))
      assert.is_true(r.next)
      assert.is_true(r.next_ok)
    end)
  end

  it("abort the init run and hand it to the recovery policy", function()
    local r = h.isolated([[
      local w = h.watcher{ timeout = 0.2, recovery = { light_delays = { 0.05 } } }
      local runs = h.record(w, function(msg, ctx, rec)
        if rec.reason == "init" then while true do end end
      end)
      assert(w:start())
      local out = {}
      out.waited = h.wait(function() return #runs >= 2 and w:failures() == 0 end, 10)
      out.reason2 = runs[2] and runs[2].reason
      local results = h.filter(w:logs("result"), function(e) return e.effect == "run" end)
      out.results = results
      return out
    ]])
    assert.is_true(r.waited)
    assert.equal("retry", r.reason2)
    assert.is_false(r.results[1].ok)
    assert.is_true(h.has(r.results[1].error, "timeout"))
    assert.is_true(r.results[2].ok)
  end)

  it("count consecutive timeouts with the other failures", function()
    local r = h.isolated(spinner("{ timeout = 0.1, recovery = { light_delays = { 30 } } }",
      "function() while true do end end", [[
        w:send("spin"); w:send("spin"); w:send("spin")
        local out = {}
        out.waited = h.wait(function() return w:failures() == 3 end, 10)
        out.state = w:state()
        return out
      ]]))
    assert.is_true(r.waited)
    assert.equal("WaitRecover", r.state)
  end)

  it("abort a runaway cleanup at cleanup_timeout, log it, and still stop", function()
    local r = h.isolated([[
      local w = h.watcher{ cleanup_timeout = 0.2 }
      h.record(w)
      local out = { cleanups = 0 }
      w:cleanup(function()
        out.cleanups = out.cleanups + 1
        while true do end
      end)
      assert(w:start())
      assert(h.wait_state(w, "Ready"))
      out.stopped = w:stop()
      out.state = w:state()
      out.cleanup = h.find(w:logs("result"), function(x) return x.effect == "cleanup" end)
      return out
    ]])
    assert.is_true(r.stopped)
    assert.equal("Stopped", r.state)
    assert.equal(1, r.cleanups)
    assert.is_not_nil(r.cleanup)
    assert.is_false(r.cleanup.ok)
    assert.is_true(h.has(r.cleanup.error, "timeout"))
  end)

  it("handle a stop queued in a run that is then aborted: Stopped, cleanup once", function()
    local r = h.isolated([[
      local w = h.watcher{ timeout = 0.2 }
      local out = { cleanups = 0 }
      h.record(w, function(msg)
        if msg and msg.content == "spin" then
          out.stop_result = w:stop()
          while true do end
        end
      end)
      w:cleanup(function() out.cleanups = out.cleanups + 1 end)
      assert(w:start())
      assert(h.wait_state(w, "Ready"))
      w:send("spin")
      out.waited = h.wait_terminal(w, 10)
      out.state = w:state()
      return out
    ]])
    assert.is_true(r.waited)
    assert.equal("Stopped", r.state)
    assert.is_true(r.stop_result)
    assert.equal(1, r.cleanups)
  end)

  -- The deadline is delivered by a signal to the loop thread; each one must reach its
  -- own run only. Runs end around their deadline, each followed by a run with an hour
  -- to go (tests/c/test_deadline_stress.c does 10,000 of these, C reducers too).
  it("keep each deadline to its run: 400 runs at the edge, each followed by one far from it", function()
    local r = h.isolated([[
      local keep = { min_failures = 1e9, max_failures = 1e9, light_delays = { 3600 } }
      -- The recovery policy runs under the same timeout: 5 ms leaves it room, times the
      -- build's pace (under the sanitizers on a loaded machine the policy took longer,
      -- and the watcher Crashed: "recovery policy failed (crashing): timeout").
      local edge = h.watcher{ timeout = 0.005 * h.PACE, recovery = keep }
      local far = h.watcher{ timeout = 3600, recovery = keep }
      local done = {}
      local function busy(msg)
        if not msg then return end
        local us, id = msg.content:match("^(%d+) (.+)$")
        local stop = os.clock() + tonumber(us) / 1e6
        local n = 0
        while os.clock() < stop do n = n + 1 end
        done[id] = true
      end
      edge:manage(busy)
      far:manage(busy)
      assert(edge:start() and far:start())
      assert(h.wait_state(edge, "Ready") and h.wait_state(far, "Ready"))
      local function run(w, content)
        local before = #w:logs("result")
        w:send(content)
        -- a watcher that ended takes no more: no use waiting for each of the runs left
        if not h.wait(function() return #w:logs("result") > before or h.terminal(w:state()) end, 10)
          or #w:logs("result") == before then
          return nil
        end
        local logs = w:logs("result")
        return logs[#logs]
      end
      local out = { ok = 0, cut = 0, bad = {}, far_bad = {} }
      for i = 1, 400 do
        if h.terminal(edge:state()) or h.terminal(far:state()) then
          out.ended = { edge = edge:state(), far = far:state(), at = i, last = edge:logs("effect")[#edge:logs("effect")] }
          break
        end
        local id = "e" .. i
        local res = run(edge, math.floor(i * 37 % 12000 * h.PACE) .. " " .. id)
        if res and res.ok and done[id] then
          out.ok = out.ok + 1
        elseif res and not res.ok and res.error == "timeout" then
          if not done[id] then out.cut = out.cut + 1 end
        else
          out.bad[#out.bad + 1] = { i = i, ok = res and res.ok, error = res and res.error, done = done[id] }
        end
        res = run(far, "10 f" .. i)
        if not (res and res.ok and done["f" .. i]) then
          out.far_bad[#out.far_bad + 1] = { i = i, ok = res and res.ok, error = res and res.error }
        end
      end
      return out
    ]], 300) -- a bound against a hang, not a timing: on a loaded machine it takes minutes
    assert.is_nil(r.ended, "a watcher ended")
    assert.same({}, r.bad)
    assert.same({}, r.far_bad)
    assert.is_true(r.ok > 0 and r.cut > 0) -- both sides of the edge were reached
  end)
end)
