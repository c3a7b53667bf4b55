-- States, start, stop, kill and the loop drivers.
local hersh = require "hersh"
local h = require "helpers"

describe("module", function()
  it("has a version string and a clock", function()
    assert.is_string(hersh.VERSION)
    assert.is_number(hersh.now())
    assert.is_true(math.abs(hersh.now() - os.time()) < 60)
  end)

  it("wait returns true when the predicate holds and false at its timeout", function()
    assert.is_true(hersh.wait(function() return true end, 1))
    assert.is_false(hersh.wait(function() return false end, 0.05))
  end)

  it("wait keeps its whole bound after the caller spent a while outside the loop", function()
    -- The loop's clock is cached from its last turn: a bound counted from it would end
    -- early. Two seconds outside the loop, then a child that exits after one second,
    -- waited for with a bound of 2.5 s: a stale clock would give up after 0.5 s.
    local sys = require "hersh.os"
    hersh.wait(function() return false end, 0.01)
    os.execute("sleep 2")
    local exited = false
    assert(sys.spawn{ argv = { "/bin/sleep", "1" }, env = {}, on_exit = function() exited = true end })
    assert.is_true(hersh.wait(function() return exited end, 2.5))
  end)

  it("run_for returns", function()
    hersh.run_for(0.01)
  end)
end)

describe("lifecycle", function()
  after_each(h.reap)

  it("a new watcher is NotRun and keeps its id", function()
    local w = h.watcher{ id = "life-id" }
    assert.equal("NotRun", w:state())
    assert.equal("life-id", w:id())
    local g = h.watcher()
    assert.is_truthy(g:id():match("^w%-%x+$"))
    assert.not_equal(g:id(), h.watcher():id())
  end)

  it("start returns at once; the first run is the init run, in InitRun, with msg nil", function()
    local w = h.watcher()
    local seen = {}
    local runs = h.record(w, function(msg, ctx, rec)
      seen.msg_is_nil = msg == nil
      seen.ctx_msg_is_nil = ctx:message() == nil
      seen.vars = #(ctx:trigger().vars or {})
    end)
    assert.is_true(w:start())
    assert.equal(0, #runs)
    assert.is_true(h.wait_state(w, "Ready"))
    assert.equal(1, #runs)
    assert.equal("init", runs[1].reason)
    assert.is_true(runs[1].watcher)
    assert.is_falsy(runs[1].user)
    assert.equal(0, seen.vars)
    assert.is_true(seen.msg_is_nil)
    assert.is_true(seen.ctx_msg_is_nil)
    assert.equal("InitRun", runs[1].state)
  end)

  it("goes Ready -> Running -> Ready for a message", function()
    local w = h.watcher()
    local runs = h.record(w)
    assert.is_true(w:start())
    assert.is_true(h.wait_state(w, "Ready"))
    assert.is_true(w:send("hello"))
    assert.is_true(h.wait(function() return #runs == 2 end))
    assert.equal("Running", runs[2].state)
    assert.equal("message", runs[2].reason)
    assert.is_true(runs[2].user)
    assert.is_falsy(runs[2].watcher)
    assert.equal("hello", runs[2].content)
    assert.is_number(runs[2].msg.received_at)
    assert.is_true(h.wait_state(w, "Ready"))
  end)

  it("counts queued signals before the loop takes them", function()
    local w = h.watcher()
    h.record(w)
    assert.is_true(w:start())
    assert.is_true(w:send("a"))
    assert.is_true(w:send("b"))
    assert.is_true(w:send("c"))
    local p = w:pending()
    assert.equal(1, p.watcher)
    assert.equal(3, p.user)
    assert.equal(0, p.var)
  end)

  it("a second start is refused and leaves the state unchanged", function()
    local w = h.watcher()
    h.record(w)
    assert.is_true(w:start())
    assert.is_true(h.wait_state(w, "Ready"))
    local ok, err, code = w:start()
    assert.is_nil(ok)
    assert.is_string(err)
    assert.equal("ESTATE", code)
    assert.equal("Ready", w:state())
  end)

  it("manage called again before start replaces the reducer", function()
    local w = h.watcher()
    local got = {}
    w:manage(function() got.first = true end)
    assert.equal(w, w:manage(function() got.second = true end))
    assert.is_true(w:start())
    assert.is_true(h.wait_state(w, "Ready"))
    assert.is_nil(got.first)
    assert.is_true(got.second)
  end)

  it("manage raises once started", function()
    local w = h.watcher()
    h.record(w)
    assert.is_true(w:start())
    assert.has_error(function() w:manage(function() end) end)
  end)

  describe("stop", function()
    it("from NotRun ends Stopped with cleanup run once", function()
      local w = h.watcher()
      local runs = h.record(w)
      local c = h.count_cleanup(w)
      assert.is_true(w:stop())
      assert.equal("Stopped", w:state())
      assert.equal(1, c.count)
      assert.equal(0, #runs)
    end)

    it("from Ready ends Stopped with cleanup run once", function()
      local w = h.watcher()
      h.record(w)
      local c = h.count_cleanup(w)
      assert.is_true(w:start())
      assert.is_true(h.wait_state(w, "Ready"))
      assert.is_true(w:stop())
      assert.equal("Stopped", w:state())
      assert.equal(1, c.count)
    end)

    it("from Running (mid-run) is handled when the run returns", function()
      local w = h.watcher()
      local inside = {}
      h.record(w, function(msg)
        if msg and msg.content == "stop-now" then
          inside.stop_result = w:stop()
          inside.state_after_stop = w:state()
          inside.cleanups_after_stop = inside.counter.count
          inside.finished = true
        end
      end)
      local c = h.count_cleanup(w)
      inside.counter = c
      assert.is_true(w:start())
      assert.is_true(h.wait_state(w, "Ready"))
      assert.is_true(w:send("stop-now"))
      assert.is_true(h.wait_terminal(w))
      assert.equal("Stopped", w:state())
      assert.is_true(inside.stop_result)
      assert.equal("Running", inside.state_after_stop)
      assert.equal(0, inside.cleanups_after_stop)
      assert.is_true(inside.finished)
      assert.equal(1, c.count)
    end)

    it("from WaitRecover cancels the recovery and ends Stopped with cleanup once", function()
      local w = h.watcher{ recovery = h.hold_policy(30) }
      local runs = h.record(w, function() error("always") end)
      local c = h.count_cleanup(w)
      assert.is_true(w:start())
      assert.is_true(h.wait_state(w, "WaitRecover"))
      assert.is_number(w:next_retry())
      assert.is_true(w:stop())
      assert.equal("Stopped", w:state())
      assert.equal(1, c.count)
      assert.is_nil(w:next_retry())
      hersh.run_for(0.1)
      assert.equal(1, #runs)
    end)

    -- w:stop() said true: whatever the run then does, the watcher ends Stopped.
    for _, case in ipairs {
      { "returns hersh.kill", function() return hersh.kill("changed my mind") end },
      { "raises under a policy that crashes at once", function() error("broke") end },
      { "returns hersh.crash", function() return hersh.crash("boom") end },
    } do
      it("inside a run wins over how the run ends: it " .. case[1], function()
        local w = h.watcher{ recovery = { min_failures = 1, max_failures = 1 } }
        local got = {}
        h.record(w, function(msg)
          if msg then
            got.result = w:stop()
            return case[2]()
          end
        end)
        local c = h.count_cleanup(w)
        assert.is_true(w:start())
        assert.is_true(h.wait_state(w, "Ready"))
        assert.is_true(w:send("go"))
        assert.is_true(h.wait_terminal(w))
        assert.is_true(got.result)
        assert.equal("Stopped", w:state())
        assert.equal(1, c.count)
      end)
    end

    it("inside a run, then w:kill(), ends Killed: the later kill overrides", function()
      local w = h.watcher()
      h.record(w, function(msg)
        if msg then
          w:stop()
          w:kill("enough")
        end
      end)
      local c = h.count_cleanup(w)
      assert.is_true(w:start())
      assert.is_true(h.wait_state(w, "Ready"))
      assert.is_true(w:send("go"))
      assert.is_true(h.wait_terminal(w))
      assert.equal("Killed", w:state())
      assert.equal(0, c.count)
    end)

    it("called from a poll queues the stop and returns true", function()
      local w = h.watcher()
      local got = {}
      h.record(w, function(msg, ctx)
        ctx:watch_call("stopper", 0.01, function()
          if got.result == nil then
            got.result = w:stop()
            got.state = w:state()
          end
          return hersh.SKIP
        end)
      end)
      local c = h.count_cleanup(w)
      assert.is_true(w:start())
      assert.is_true(h.wait_terminal(w))
      assert.equal("Stopped", w:state())
      assert.is_true(got.result)
      assert.is_false(h.terminal(got.state))
      assert.equal(1, c.count)
    end)

    it("twice returns an error the second time and runs cleanup once", function()
      local w = h.watcher()
      h.record(w)
      local c = h.count_cleanup(w)
      assert.is_true(w:start())
      assert.is_true(h.wait_state(w, "Ready"))
      assert.is_true(w:stop())
      local ok, err, code = w:stop()
      assert.is_nil(ok)
      assert.equal("already stopped", err)
      assert.equal("ESTOPPED", code)
      assert.equal("Stopped", w:state())
      assert.equal(1, c.count)
    end)

    it("queued from inside a run is taken before waiting messages", function()
      local w = h.watcher()
      local runs = h.record(w, function(msg, ctx, rec)
        if rec.reason == "init" then
          w:send("late-1")
          w:send("late-2")
          w:stop()
        end
      end)
      local c = h.count_cleanup(w)
      assert.is_true(w:start())
      assert.is_true(h.wait_terminal(w))
      assert.equal("Stopped", w:state())
      assert.equal(1, #runs)
      assert.equal(1, c.count)
    end)

    it("gives the cleanup a ctx that still holds the context", function()
      local w = h.watcher()
      local got = {}
      h.record(w, function(msg, ctx) ctx:set("k", "v") end)
      w:cleanup(function(ctx) got.k = ctx:get("k"); got.id = ctx:id() end)
      assert.is_true(w:start())
      assert.is_true(h.wait_state(w, "Ready"))
      assert.is_true(w:stop())
      assert.equal("v", got.k)
      assert.equal(w:id(), got.id)
    end)
  end)

  describe("kill", function()
    it("from Ready ends Killed without cleanup", function()
      local w = h.watcher()
      h.record(w)
      local c = h.count_cleanup(w)
      assert.is_true(w:start())
      assert.is_true(h.wait_state(w, "Ready"))
      assert.is_true(w:kill("enough"))
      assert.equal("Killed", w:state())
      assert.equal(0, c.count)
    end)

    it("from NotRun ends Killed without cleanup", function()
      local w = h.watcher()
      h.record(w)
      local c = h.count_cleanup(w)
      assert.is_true(w:kill())
      assert.equal("Killed", w:state())
      assert.equal(0, c.count)
    end)

    it("from WaitRecover ends Killed without cleanup", function()
      local w = h.watcher{ recovery = h.hold_policy(30) }
      local runs = h.record(w, function() error("always") end)
      local c = h.count_cleanup(w)
      assert.is_true(w:start())
      assert.is_true(h.wait_state(w, "WaitRecover"))
      assert.is_true(w:kill())
      assert.equal("Killed", w:state())
      assert.equal(0, c.count)
      hersh.run_for(0.1)
      assert.equal(1, #runs)
    end)

    it("from inside a run ends Killed without cleanup", function()
      local w = h.watcher()
      h.record(w, function(msg) if msg then w:kill("from inside") end end)
      local c = h.count_cleanup(w)
      assert.is_true(w:start())
      assert.is_true(h.wait_state(w, "Ready"))
      assert.is_true(w:send("x"))
      assert.is_true(h.wait_terminal(w))
      assert.equal("Killed", w:state())
      assert.equal(0, c.count)
    end)

    it("after a stop is refused and the state stays Stopped", function()
      local w = h.watcher()
      h.record(w)
      local c = h.count_cleanup(w)
      assert.is_true(w:start())
      assert.is_true(w:stop())
      local ok, _, code = w:kill()
      assert.is_nil(ok)
      assert.equal("ESTOPPED", code)
      assert.equal("Stopped", w:state())
      assert.equal(1, c.count)
    end)

    it("then stop is refused and cleanup never runs", function()
      local w = h.watcher()
      h.record(w)
      local c = h.count_cleanup(w)
      assert.is_true(w:start())
      assert.is_true(w:kill())
      local ok, _, code = w:stop()
      assert.is_nil(ok)
      assert.equal("ESTOPPED", code)
      assert.equal("Killed", w:state())
      hersh.run_for(0.05)
      assert.equal(0, c.count)
    end)
  end)

  describe("terminal states", function()
    -- Each way to a terminal state, with a watcher that polls, flows and ticks.
    local ends = {
      { "Stopped", function(w) assert.is_true(w:stop()) end },
      { "Killed", function(w) assert.is_true(w:kill()) end },
      { "Crashed", function(w)
        assert.is_true(w:send("break-limit"))
        assert.is_true(h.wait_terminal(w))
      end },
    }
    for _, e in ipairs(ends) do
      local final, finish = e[1], e[2]

      it(final .. " refuses messages and leaves nothing polling", function()
        local w = h.watcher()
        local n = { polls = 0, flow = 0 }
        local runs = h.record(w, function(msg, ctx)
          ctx:watch_call("poller", 0.01, function()
            n.polls = n.polls + 1
            return n.polls
          end, 0)
          ctx:watch_flow("flower", function(emit)
            while true do
              n.flow = n.flow + 1
              emit(n.flow)
              hersh.sleep(0.01)
            end
          end)
          ctx:watch_tick("ticker", 0.01)
          if msg and msg.content == "break-limit" then
            ctx:watch_call("bad-interval", 0, function() return 1 end)
          end
        end)
        assert.is_true(w:start())
        assert.is_true(h.wait(function() return n.polls >= 3 and n.flow >= 3 end))
        finish(w)
        assert.equal(final, w:state())
        local ok, err, code = w:send("after")
        assert.is_nil(ok)
        assert.equal("watcher stopped", err)
        assert.equal("ESTOPPED", code)
        local polls, flow, count = n.polls, n.flow, #runs
        hersh.run_for(0.2)
        assert.equal(polls, n.polls)
        assert.equal(flow, n.flow)
        assert.equal(count, #runs)
        assert.equal(final, w:state())
      end)
    end
  end)

  it("hersh.run drives the loop until every watcher is terminal", function()
    local r = h.isolated([[
      local w = hersh.watcher{ id = "counter", timeout = 5 }
      w:manage(function(msg, ctx)
        if ctx:trigger().reason == "init" then ctx:set("n", 0) return end
        if msg and msg.content == "quit" then return hersh.stop("asked to quit") end
        ctx:update("n", function(n) return n + 1 end)
      end)
      local out = {}
      w:cleanup(function(ctx) out.at_cleanup = ctx:get("n") end)
      assert(w:start())
      w:send("tick"); w:send("tick"); w:send("quit")
      out.ran = hersh.run()
      out.state = w:state()
      return out
    ]], 20)
    assert.same({ ran = true, state = "Stopped", at_cleanup = 2 }, r)
  end)
end)
