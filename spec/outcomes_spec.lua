-- What each way a run ends does to the watcher: the outcomes table.
local hersh = require "hersh"
local h = require "helpers"

-- A started watcher in Ready whose reducer does `body` on every message.
local function ready(config, body)
  local w = h.watcher(config)
  local runs = h.record(w, function(msg, ctx, rec)
    if msg then return body(msg, ctx, rec) end
  end)
  local c = h.count_cleanup(w)
  assert.is_true(w:start())
  assert.is_true(h.wait_state(w, "Ready"))
  return w, runs, c
end

-- A watcher whose reducer does `body` on every run, started: it must end Crashed with
-- its cleanup run once. The watcher.
local function crashes(config, body)
  local w = h.watcher(config)
  h.record(w, body)
  local c = h.count_cleanup(w)
  assert.is_true(w:start())
  assert.is_true(h.wait_terminal(w))
  assert.equal("Crashed", w:state())
  assert.equal(1, c.count)
  return w
end

local function last_run_result(w)
  local results = h.filter(h.logs(w, "result"), function(e) return e.effect == "run" end)
  return results[#results]
end

describe("outcomes", function()
  after_each(h.reap)

  it("a normal return is a success: Ready, count 0, result ok", function()
    local w, runs, c = ready(nil, function() return "anything" end)
    assert.is_true(w:send("go"))
    assert.is_true(h.wait(function() return #runs == 2 end))
    assert.is_true(h.wait_state(w, "Ready"))
    assert.equal(0, w:failures())
    assert.is_nil(w:next_retry())
    assert.equal(0, c.count)
    local r = last_run_result(w)
    assert.is_true(r.ok)
    assert.is_nil(r.error)
  end)

  it("hersh.stop ends Stopped with cleanup once", function()
    local w, runs, c = ready(nil, function() return hersh.stop("done") end)
    assert.is_true(w:send("go"))
    assert.is_true(h.wait_terminal(w))
    assert.equal("Stopped", w:state())
    assert.equal(1, c.count)
    local ok, err, code = w:stop()
    assert.is_nil(ok)
    assert.equal("already stopped", err)
    assert.equal("ESTOPPED", code)
    assert.equal(1, c.count)
    local cleanup = h.find(h.logs(w, "result"), function(e) return e.effect == "cleanup" end)
    assert.is_not_nil(cleanup)
    assert.is_true(cleanup.ok)
  end)

  it("a stop with no cleanup set writes no cleanup result", function()
    local w = h.watcher()
    h.record(w)
    assert.is_true(w:start())
    assert.is_true(h.wait_state(w, "Ready"))
    assert.is_true(w:stop())
    assert.equal("Stopped", w:state())
    assert.is_nil(h.find(h.logs(w, "effect_result"), function(e) return e.effect == "cleanup" end))
  end)

  it("hersh.kill ends Killed without cleanup", function()
    local w, runs, c = ready(nil, function() return hersh.kill("now") end)
    assert.is_true(w:send("go"))
    assert.is_true(h.wait_terminal(w))
    assert.equal("Killed", w:state())
    hersh.run_for(0.05)
    assert.equal(0, c.count)
    assert.is_nil(h.find(h.logs(w, "result"), function(e) return e.effect == "cleanup" end))
  end)

  it("hersh.crash is a failure handed to the recovery policy", function()
    local w, runs, c = ready(nil, function() return hersh.crash("boom", "the cause") end)
    assert.is_true(w:send("go"))
    assert.is_true(h.wait(function() return w:failures() == 1 end))
    assert.equal("Ready", w:state())
    assert.is_number(w:next_retry())
    assert.equal(0, c.count)
    local r = last_run_result(w)
    assert.is_false(r.ok)
    assert.is_true(h.has(r.error, "boom"))
  end)

  it("a raised error is a failure with its text logged", function()
    local w, runs, c = ready(nil, function() error("oops in reducer") end)
    assert.is_true(w:send("go"))
    assert.is_true(h.wait(function() return w:failures() == 1 end))
    assert.equal("Ready", w:state())
    local r = last_run_result(w)
    assert.is_false(r.ok)
    assert.is_true(h.has(r.error, "oops in reducer"))
  end)

  it("a raised non-string error is logged as text", function()
    local w = ready(nil, function() error({ code = 42 }) end)
    assert.is_true(w:send("go"))
    assert.is_true(h.wait(function() return w:failures() == 1 end))
    local r = last_run_result(w)
    assert.is_false(r.ok)
    assert.is_string(r.error)
    assert.is_true(#r.error > 0)
  end)

  describe("engine limits crash the watcher, with cleanup", function()
    it("one watch more than max_watches, with an error naming the watch", function()
      local w = crashes({ max_watches = 3 }, function(msg, ctx)
        for i = 1, 3 do ctx:watch_tick("tick-" .. i, 30) end
        ctx:watch_tick("the-fourth-watch", 30)
      end)
      local named = false
      for _, kind in ipairs{ "result", "fault", "watch_error", "effect" } do
        for _, e in ipairs(h.logs(w, kind)) do
          for _, field in pairs(e) do
            if h.has(field, "the-fourth-watch") then named = true end
          end
        end
      end
      assert.is_true(named)
    end)

    it("even when the reducer catches the limit error", function()
      crashes({ max_watches = 1 }, function(msg, ctx)
        ctx:watch_tick("one", 30)
        pcall(ctx.watch_tick, ctx, "two", 30)
      end)
    end)

    it("a name reused by another watch kind", function()
      crashes(nil, function(msg, ctx)
        ctx:watch_tick("shared-name", 30)
        ctx:watch_flow("shared-name", function() hersh.sleep(60) end)
      end)
    end)

    it("a non-positive interval", function()
      for _, register in ipairs{
        function(ctx) ctx:watch_call("zero", 0, function() return 1 end) end,
        function(ctx) ctx:watch_tick("negative", -1) end,
      } do
        crashes(nil, function(msg, ctx) register(ctx) end)
      end
    end)

    it("a watch API used outside a run raises and crashes the watcher", function()
      local w = h.watcher()
      local saved
      h.record(w, function(msg, ctx) saved = ctx end)
      local c = h.count_cleanup(w)
      assert.is_true(w:start())
      assert.is_true(h.wait_state(w, "Ready"))
      assert.is_not_nil(saved)
      local ok = pcall(saved.watch_call, saved, "late", 1, function() return 1 end)
      assert.is_false(ok)
      assert.is_true(h.wait_terminal(w))
      assert.equal("Crashed", w:state())
      assert.equal(1, c.count)
    end)
  end)

  describe("cleanup", function()
    it("errors are logged, not fatal", function()
      local w = h.watcher()
      h.record(w)
      w:cleanup(function() error("cleanup broke") end)
      assert.is_true(w:start())
      assert.is_true(h.wait_state(w, "Ready"))
      assert.is_true(w:stop())
      assert.equal("Stopped", w:state())
      local e = h.find(h.logs(w, "result"), function(x) return x.effect == "cleanup" end)
      assert.is_not_nil(e)
      assert.is_false(e.ok)
      assert.is_true(h.has(e.error, "cleanup broke"))
    end)

    it("runs once when a stop follows a stop result", function()
      local w, runs, c = ready(nil, function() return hersh.stop("bye") end)
      assert.is_true(w:send("a"))
      assert.is_true(w:send("b"))
      assert.is_true(h.wait_terminal(w))
      local ok = w:stop()
      assert.is_nil(ok)
      hersh.run_for(0.05)
      assert.equal(1, c.count)
      assert.equal(2, #runs)
      local cleanups = h.filter(h.logs(w, "result"), function(e) return e.effect == "cleanup" end)
      assert.equal(1, #cleanups)
    end)
  end)
end)
