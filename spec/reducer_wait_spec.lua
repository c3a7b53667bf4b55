-- Reducers and cleanups that wait (issue 16): a Lua reducer is a coroutine the loop
-- resumes. While it waits (hersh.sleep here; hersh.http follows the same protocol), the
-- loop keeps polling and timing, signals queue with their priorities and are handled
-- after the run, and the run's deadline, kill and stop all reach a waiting run.
local hersh = require "hersh"
local core = require "hersh.core"
local h = require "helpers"

local function results(w)
  return h.filter(h.logs(w, "result"), function(e) return e.effect == "run" end)
end

-- Starts w and waits until it is Running its "wait" message (the reducer waits then).
local function start_waiting(w)
  assert.is_true(w:start())
  assert.is_true(h.wait_state(w, "Ready"))
  assert.is_true(w:send("wait"))
  assert.is_true(h.wait_state(w, "Running"))
end

describe("a reducer that waits", function()
  after_each(h.reap)

  it("lets polls run meanwhile; their updates come as one batch in the next run, none lost", function()
    local w = h.watcher()
    local n = { polls = 0 }
    local runs = h.record(w, function(msg, ctx, rec)
      local v = ctx:watch_call("n", 0.01, function()
        n.polls = n.polls + 1
        return function(prev) return prev + 1 end
      end, 0)
      rec.value = v.value
      rec.polls = n.polls
      if msg and msg.content == "wait" then
        rec.polls_before = n.polls
        hersh.sleep(0.2)
        -- however loaded the machine, wait for two polls (bounded by the run's deadline)
        while n.polls < rec.polls_before + 2 do hersh.sleep(0.01) end
        rec.polls_after = n.polls
        rec.pending_var = w:pending().var
      end
    end)
    start_waiting(w)
    assert.is_true(h.wait(function()
      local i = h.find(runs, function(r) return r.content == "wait" end)
      return i and i.polls_after ~= nil and #runs > 0 and runs[#runs].reason == "vars" and runs[#runs] ~= i
    end))
    local at
    for i, r in ipairs(runs) do if r.content == "wait" then at = i end end
    local waited, next_run = runs[at], runs[at + 1]
    -- The poll went on during the wait, and its updates waited in the queue.
    assert.is_true(waited.polls_after >= waited.polls_before + 2)
    assert.is_true(waited.pending_var >= 2)
    -- The next run is one batch: every poll so far is applied, in order.
    assert.equal("vars", next_run.reason)
    assert.same({ "n" }, next_run.vars)
    assert.equal(next_run.polls, next_run.value)
    assert.is_true(next_run.value >= waited.value + 2)
  end)

  it("is still one run at a time: messages sent meanwhile run after it, in order, before vars", function()
    local w = h.watcher()
    local got = {}
    local runs = h.record(w, function(msg, ctx, rec)
      ctx:watch_call("v", 0.01, function() return function(p) return p + 1 end end, 0)
      if msg and msg.content == "wait" then
        core.timer(0.01, function()
          got.state_at_send = w:state()
          assert(w:send("m1"))
          assert(w:send("m2"))
        end)
        hersh.sleep(0.2)
        rec.done = true
      end
    end)
    start_waiting(w)
    assert.is_true(h.wait(function()
      return h.find(runs, function(r) return r.content == "m2" end) ~= nil
    end))
    assert.equal("Running", got.state_at_send)
    local order = {}
    for _, r in ipairs(runs) do
      if r.content == "wait" or r.content == "m1" or r.content == "m2" then order[#order + 1] = r.content end
    end
    assert.same({ "wait", "m1", "m2" }, order)
    local at
    for i, r in ipairs(runs) do if r.content == "wait" then at = i end end
    assert.is_true(runs[at].done)
    -- The messages came first (user before var signals), then the batch of updates.
    assert.equal("m1", runs[at + 1].content)
    assert.equal("m2", runs[at + 2].content)
  end)

  it("fails with timeout when its deadline passes during the wait, and recovers", function()
    local w = h.watcher{ timeout = 0.2 }
    local got = { after = 0 }
    h.record(w, function(msg)
      if msg and msg.content == "wait" then
        hersh.sleep(0.6)
        got.after = got.after + 1 -- never: the wait was cancelled with the run
      end
    end)
    start_waiting(w)
    assert.is_true(h.wait(function() return w:failures() == 1 end))
    local res = results(w)
    assert.is_false(res[#res].ok)
    assert.equal("timeout", res[#res].error)
    assert.equal("Ready", w:state()) -- the default policy: a light retry
    hersh.run_for(0.8)                -- past the end of the cancelled sleep
    assert.equal(0, got.after)
    assert.is_true(w:send("ok"))
    assert.is_true(h.wait(function() return w:failures() == 0 end))
    res = results(w)
    assert.is_true(res[#res].ok)
  end)

  it("is Killed at once by a kill during the wait, with no cleanup", function()
    local w = h.watcher()
    local cleanups = h.count_cleanup(w)
    local got = { after = 0 }
    h.record(w, function(msg)
      if msg and msg.content == "wait" then
        hersh.sleep(5)
        got.after = got.after + 1
      end
    end)
    start_waiting(w)
    assert.is_true(w:kill("now"))
    assert.equal("Killed", w:state())
    hersh.run_for(0.1)
    assert.equal(0, cleanups.count)
    assert.equal(0, got.after)
  end)

  it("handles a stop during the wait when the run returns: cleanup once, and it may wait too", function()
    local w = h.watcher()
    local got = { after = 0, cleanups = 0, cleanup_done = 0 }
    w:cleanup(function()
      got.cleanups = got.cleanups + 1
      hersh.sleep(0.05)
      got.cleanup_done = got.cleanup_done + 1
    end)
    h.record(w, function(msg)
      if msg and msg.content == "wait" then
        hersh.sleep(0.2)
        got.after = got.after + 1
      end
    end)
    start_waiting(w)
    assert.is_true(w:stop())
    assert.is_true(h.wait_terminal(w))
    assert.equal("Stopped", w:state())
    assert.equal(1, got.after)
    assert.equal(1, got.cleanups)
    assert.equal(1, got.cleanup_done)
    local cleanup = h.filter(h.logs(w, "result"), function(e) return e.effect == "cleanup" end)
    assert.equal(1, #cleanup)
    assert.is_true(cleanup[1].ok)
  end)

  it("ends a cleanup that waits past its own deadline with timeout", function()
    local w = h.watcher{ cleanup_timeout = 0.1 }
    local got = { after = 0 }
    w:cleanup(function()
      hersh.sleep(0.5)
      got.after = got.after + 1
    end)
    h.record(w)
    assert.is_true(w:start())
    assert.is_true(h.wait_state(w, "Ready"))
    assert.is_true(w:stop())
    assert.is_true(h.wait_terminal(w))
    assert.equal("Stopped", w:state())
    local cleanup = h.filter(h.logs(w, "result"), function(e) return e.effect == "cleanup" end)
    assert.equal(1, #cleanup)
    assert.equal("timeout", cleanup[1].error)
    hersh.run_for(0.6)
    assert.equal(0, got.after)
  end)

  it("is cut short by a kill while its cleanup waits: Killed, the cleanup's wait cancelled", function()
    local w = h.watcher()
    local got = { started = 0, after = 0 }
    w:cleanup(function()
      got.started = got.started + 1
      hersh.sleep(3)
      got.after = got.after + 1
    end)
    h.record(w)
    assert.is_true(w:start())
    assert.is_true(h.wait_state(w, "Ready"))
    core.timer(0.05, function() got.killed = w:kill("during the cleanup") end)
    assert.is_true(w:stop()) -- returns once the watcher is terminal
    assert.equal("Killed", w:state())
    assert.is_true(got.killed)
    local cleanup = h.filter(h.logs(w, "result"), function(e) return e.effect == "cleanup" end)
    assert.equal(1, #cleanup)
    assert.equal("killed", cleanup[1].error)
    hersh.run_for(0.2)
    assert.equal(1, got.started)
    assert.equal(0, got.after)
  end)

  it("shows in the WatcherAPI, which answers meanwhile; a message sent then runs after it", function()
    local P = require "scripts.process"
    local proc, dir = P.run_with_dir("spec/scripts/api_main.lua")
    local port = P.announced(proc)
    assert.equal(200, P.send(port, "wait:go").status)
    assert.is_true(P.wait_stderr(proc, "WAIT-START go"))
    local s = P.poll_json(port, "/watcher/state", function(d) return d.waiting == true end)
    assert.is_table(s, "the run never showed as waiting")
    assert.equal("Running", s.state)
    assert.equal(200, P.send(port, "after").status) -- queued behind the waiting run
    local q = P.poll_json(port, "/watcher/state", function(d) return d.waiting == true end)
    assert.is_table(q)
    P.write(dir .. "/go", "")
    local done = P.poll_json(port, "/watcher/context", function(d)
      local r = d.context and d.context.received
      return type(r) == "table" and r[#r] == "after"
    end)
    assert.is_table(done, "the message sent during the wait never ran")
    local after = P.poll_json(port, "/watcher/state", function(d) return d.waiting == false end)
    assert.equal("Ready", after.state)
    local stderr = P.stderr(proc)
    assert.is_truthy(stderr:find("WAIT-END go", 1, true))
    assert.is_true(P.signal(proc, "TERM"))
    assert.equal(0, P.wait_exit(proc), P.stderr(proc))
    assert.is_nil(P.sanitizer_report(proc))
  end)

  it("leaves no coroutine behind once the watcher ends", function()
    local seen = setmetatable({}, { __mode = "k" })
    local w = h.watcher()
    h.record(w, function(msg)
      local co, main = coroutine.running()
      assert(not main, "the reducer runs on the main thread")
      seen[co] = true
      if msg and msg.content == "wait" then hersh.sleep(5) end
    end)
    start_waiting(w)
    assert.is_true(w:kill())
    w = nil
    h.reap()
    for _ = 1, 3 do collectgarbage() end
    assert.is_nil(next(seen))
  end)
end)
