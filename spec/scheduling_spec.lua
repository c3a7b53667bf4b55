-- The reducer loop: priorities, FIFO messages, batching, bounded queues, determinism.
local hersh = require "hersh"
local h = require "helpers"

describe("scheduling", function()
  after_each(h.reap)

  it("handles 1,000 messages sent in a burst during a run: one run each, in order", function()
    local w = h.watcher()
    local seen = { reentered = false, depth = 0 }
    local runs = h.record(w, function(msg, ctx, rec)
      if seen.depth > 0 then seen.reentered = true end
      seen.depth = seen.depth + 1
      if rec.reason == "init" then
        for i = 1, 1000 do
          local ok = w:send("m" .. i)
          if not ok then seen.send_failed = i end
        end
        seen.pending_in_run = w:pending().user
      end
      seen.depth = seen.depth - 1
    end)
    assert.is_true(w:start())
    assert.is_true(h.wait(function() return #runs >= 1001 end, 20))
    hersh.run_for(0.05)
    assert.is_nil(seen.send_failed)
    assert.equal(1000, seen.pending_in_run)
    assert.is_false(seen.reentered)
    assert.equal(1001, #runs)
    for i = 1, 1000 do
      local r = runs[i + 1]
      assert.equal("message", r.reason)
      assert.is_true(r.user)
      assert.equal("m" .. i, r.content)
    end
    assert.equal(0, w:pending().user)
  end)

  it("applies 500+ dependent updates in one batched run, none lost, in arrival order", function()
    local w = h.watcher{ recovery = h.hold_policy(0.2) }
    local n = { polls = 0, applied = 0 }
    local runs = h.record(w, function(msg, ctx, rec)
      local v = ctx:watch_call("n", 0.001, function()
        n.polls = n.polls + 1
        local i = n.polls
        return function(prev)
          n.applied = n.applied + 1
          local next = h.copy(prev)
          next[#next + 1] = i
          return next
        end
      end, {})
      rec.value = v.value
      rec.polls = n.polls
      rec.applied = n.applied
      rec.pending = w:pending().var
      -- Keep the watcher out of Ready (so var signals pile up) until 600 are queued.
      if rec.reason ~= "vars" and n.polls < 600 then error("hold") end
    end)
    assert.is_true(w:start())
    assert.is_true(h.wait(function()
      return h.find(runs, function(r) return r.reason == "vars" end) ~= nil
    end, 20))
    local batch = h.find(runs, function(r) return r.reason == "vars" end)
    assert.same({ "n" }, batch.vars)
    assert.is_true(#batch.value >= 600)
    -- Every poll that came before the run was applied, once, in order.
    assert.equal(batch.polls, #batch.value)
    assert.equal(batch.polls, batch.applied)
    for i = 1, #batch.value do assert.equal(i, batch.value[i]) end
    -- Nothing was applied before that run: the earlier runs saw the initial value.
    for _, r in ipairs(runs) do
      if r == batch then break end
      assert.equal(0, #r.value)
    end
  end)

  it("keeps only the newest of several independent updates", function()
    local w = h.watcher()
    local runs = h.record(w, function(msg, ctx, rec)
      local v = ctx:watch_flow("f", function(emit)
        for i = 1, 100 do emit(i) end
        hersh.sleep(60)
      end, 0)
      rec.value = v.value
    end)
    assert.is_true(w:start())
    assert.is_true(h.wait(function() return #runs >= 2 end))
    hersh.run_for(0.1)
    local var_runs = h.filter(runs, function(r) return r.reason == "vars" end)
    assert.equal(1, #var_runs)
    assert.same({ "f" }, var_runs[1].vars)
    assert.equal(100, var_runs[1].value)
  end)

  it("takes watcher, then user, then var signals when all three kinds wait", function()
    local w = h.watcher{ recovery = h.hold_policy(1) }
    local n = { polls = 0 }
    local runs = h.record(w, function(msg, ctx, rec)
      local v = ctx:watch_call("v", 0.01, function()
        n.polls = n.polls + 1
        return function(prev) return prev + 1 end
      end, 0)
      rec.value = v.value
      if rec.reason == "init" then error("hold") end
    end)
    assert.is_true(w:start())
    assert.is_true(h.wait_state(w, "WaitRecover"))
    -- Var signals queue first, then two messages; the recover timer fires last.
    assert.is_true(h.wait(function() return w:pending().var >= 2 end))
    assert.is_true(w:send("m1"))
    assert.is_true(w:send("m2"))
    assert.equal("WaitRecover", w:state())
    assert.is_true(h.wait(function() return #runs >= 5 end))
    assert.same({ "init", "recover", "message", "message", "vars" },
      { runs[1].reason, runs[2].reason, runs[3].reason, runs[4].reason, runs[5].reason })
    assert.equal("m1", runs[3].content)
    assert.equal("m2", runs[4].content)
    assert.same({ "v" }, runs[5].vars)
    assert.equal(0, runs[4].value)
    assert.is_true(runs[5].value >= 2)
  end)

  it("lists each variable of a batch once", function()
    local w = h.watcher{ recovery = h.hold_policy(0.3) }
    local runs = h.record(w, function(msg, ctx, rec)
      local a = ctx:watch_tick("a", 30)
      local b = ctx:watch_tick("b", 30)
      local c = ctx:watch_flow("c", function(emit)
        emit(1)
        emit(2)
        hersh.sleep(60)
      end)
      local d = ctx:watch_call("d", 0.01, function() return "same" end)
      rec.a, rec.b, rec.c, rec.d = a.value, b.value, c.value, d.value
      rec.triggered = { a = a:triggered(), b = b:triggered(), c = c:triggered(),
        d = d:triggered() }
      rec.pending = w:pending().var
      if rec.reason == "init" then error("hold") end
      if rec.reason == "recover" and rec.pending < 5 then error("hold") end
    end)
    assert.is_true(w:start())
    assert.is_true(h.wait(function()
      return h.find(runs, function(r) return r.reason == "vars" end) ~= nil
    end))
    local batch = h.find(runs, function(r) return r.reason == "vars" end)
    assert.same({ "a", "b", "c", "d" }, batch.vars)
    assert.same({ a = true, b = true, c = true, d = true }, batch.triggered)
    assert.equal(1, batch.a.count)
    assert.equal(1, batch.b.count)
    assert.equal(2, batch.c)
    assert.equal("same", batch.d)
  end)

  it("triggers on every update, even one that yields an equal value", function()
    local w = h.watcher()
    local runs = h.record(w, function(msg, ctx, rec)
      rec.value = ctx:watch_call("same", 0.02, function() return 7 end).value
    end)
    assert.is_true(w:start())
    assert.is_true(h.wait(function()
      return #h.filter(runs, function(r) return r.reason == "vars" end) >= 3
    end))
    for _, r in ipairs(h.filter(runs, function(r) return r.reason == "vars" end)) do
      assert.is_falsy(r.watcher)
      assert.is_falsy(r.user)
      assert.same({ "same" }, r.vars)
      assert.equal(7, r.value)
    end
  end)

  it("refuses a send to a full queue at once, without dropping what it holds", function()
    local w = h.watcher{ signal_capacity = 5 }
    local got = {}
    local runs = h.record(w, function(msg, ctx, rec)
      if rec.reason == "init" then
        for i = 1, 5 do got[i] = w:send("q" .. i) end
        got.ok, got.err, got.code = w:send("q6")
      end
    end)
    assert.is_true(w:start())
    assert.is_true(h.wait(function() return #runs >= 6 end))
    hersh.run_for(0.05)
    for i = 1, 5 do assert.is_true(got[i]) end
    assert.is_nil(got.ok)
    assert.equal("queue full", got.err)
    assert.equal("EQUEUEFULL", got.code)
    assert.equal(6, #runs)
    for i = 1, 5 do assert.equal("q" .. i, runs[i + 1].content) end
    -- Once drained, the queue takes messages again.
    assert.is_true(w:send("q7"))
    assert.is_true(h.wait(function() return #runs == 7 end))
  end)

  it("is deterministic: the same signals give the same runs and triggers", function()
    local function scenario()
      local w = h.watcher()
      local runs = h.record(w, function(msg, ctx, rec)
        local f = ctx:watch_flow("f", function(emit)
          emit("x"); emit("y"); emit("z")
          hersh.sleep(60)
        end)
        rec.value = f.value
        if rec.reason == "init" then
          for i = 1, 3 do w:send("m" .. i) end
        end
      end)
      assert.is_true(w:start())
      assert.is_true(h.wait(function() return #runs >= 5 end))
      hersh.run_for(0.1)
      assert.is_true(w:stop())
      local trace = {}
      for i, r in ipairs(runs) do
        trace[i] = { r.reason, r.content or "", table.concat(r.vars, ","), tostring(r.value) }
      end
      return trace
    end
    local first = scenario()
    local second = scenario()
    assert.same({
      { "init", "", "", "nil" },
      { "message", "m1", "", "nil" },
      { "message", "m2", "", "nil" },
      { "message", "m3", "", "nil" },
      { "vars", "", "f", "z" },
    }, first)
    assert.same(first, second)
  end)
end)
