-- The six ring logs: shapes, limits, eviction and ids.
local hersh = require "hersh"
local h = require "helpers"

local STATES = {
  NotRun = true, InitRun = true, Ready = true, Running = true, WaitRecover = true,
  Stopped = true, Killed = true, Crashed = true,
}

local function increasing(entries)
  for i = 2, #entries do
    if not (entries[i].id > entries[i - 1].id) then return false end
  end
  return true
end

describe("logs", function()
  after_each(h.reap)

  it("record every signal handled in the reduce log", function()
    local w = h.watcher()
    local runs = h.record(w, function(msg, ctx)
      ctx:watch_tick("tk", 30)
    end)
    assert.is_true(w:start())
    assert.is_true(h.wait(function() return #runs >= 2 end))
    assert.is_true(w:send("first"))
    assert.is_true(w:send("second"))
    assert.is_true(h.wait(function() return #runs >= 4 end))
    assert.is_true(w:stop())
    local log = h.logs(w, "reduce")
    assert.is_true(increasing(log))
    for _, e in ipairs(log) do
      assert.is_number(e.id)
      assert.is_number(e.time)
      assert.is_true(STATES[e.prev] == true, tostring(e.prev))
      assert.is_true(STATES[e.next] == true, tostring(e.next))
    end
    local init = h.find(log, function(e) return e.reason == "init" end)
    assert.equal("watcher", init.signal)
    assert.equal("NotRun", init.prev)
    local var = h.find(log, function(e) return e.reason == "vars" end)
    assert.equal("var", var.signal)
    local msgs = h.filter(log, function(e) return e.reason == "message" end)
    assert.equal(2, #msgs)
    assert.equal("user", msgs[1].signal)
    assert.equal("first", msgs[1].detail)
    assert.equal("second", msgs[2].detail)
    local stop = h.find(log, function(e) return e.reason == "stop" end)
    assert.equal("watcher", stop.signal)
    assert.equal("Stopped", log[#log].next)
  end)

  it("record each run and cleanup in the result log, errors as text", function()
    local w = h.watcher()
    h.record(w, function(msg)
      if msg and msg.content == "fail" then error("a failure") end
    end)
    w:cleanup(function() end) -- a watcher without one logs no cleanup
    assert.is_true(w:start())
    assert.is_true(h.wait_state(w, "Ready"))
    assert.is_true(w:send("fail"))
    assert.is_true(h.wait(function() return w:failures() == 1 end))
    assert.is_true(w:stop())
    local log = h.logs(w, "result")
    assert.is_true(increasing(log))
    local runs = h.filter(log, function(e) return e.effect == "run" end)
    assert.equal(2, #runs)
    assert.is_true(runs[1].ok)
    assert.is_nil(runs[1].error)
    assert.is_false(runs[2].ok)
    assert.is_string(runs[2].error)
    assert.is_true(h.has(runs[2].error, "a failure"))
    local cleanups = h.filter(log, function(e) return e.effect == "cleanup" end)
    assert.equal(1, #cleanups)
  end)

  it("return the newest `limit` entries, oldest first", function()
    local w = h.watcher()
    h.record(w, function(msg, ctx)
      if msg == nil then
        for i = 1, 6 do ctx:log("line " .. i) end
      end
    end)
    assert.is_true(w:start())
    assert.is_true(h.wait_state(w, "Ready"))
    local all = h.logs(w, "effect")
    assert.equal(6, #all)
    local two = h.logs(w, "effect", 2)
    assert.equal(2, #two)
    assert.equal("line 5", two[1].text)
    assert.equal("line 6", two[2].text)
    assert.equal(all[5].id, two[1].id)
  end)

  it("evict the oldest entries from a full ring, with increasing ids never reused", function()
    local w = h.watcher{ max_log_entries = 5 }
    local runs = h.record(w, function(msg, ctx)
      if msg then
        for i = 1, tonumber(msg.content) do ctx:log(msg.content .. "." .. i) end
      end
    end)
    assert.is_true(w:start())
    assert.is_true(h.wait_state(w, "Ready"))
    local seen = {}
    local function check(entries)
      assert.is_true(increasing(entries))
      for _, e in ipairs(entries) do
        if seen[e.id] ~= nil then assert.equal(seen[e.id], e.text) end
        seen[e.id] = e.text
      end
    end
    assert.is_true(w:send("3"))
    assert.is_true(h.wait(function() return #runs >= 2 end))
    local first = h.logs(w, "effect")
    assert.equal(3, #first)
    check(first)
    assert.is_true(w:send("9"))
    assert.is_true(h.wait(function() return #runs >= 3 end))
    local second = h.logs(w, "effect")
    check(second)
    assert.equal(5, #second)
    local texts = {}
    for i, e in ipairs(second) do texts[i] = e.text end
    assert.same({ "9.5", "9.6", "9.7", "9.8", "9.9" }, texts)
    assert.is_true(second[1].id > first[#first].id)
    -- The reduce log is a ring of the same size.
    for i = 1, 8 do assert.is_true(w:send("1")) end
    assert.is_true(h.wait(function() return #runs >= 11 end))
    local reduce = h.logs(w, "reduce")
    assert.equal(5, #reduce)
    assert.is_true(increasing(reduce))
    check(h.logs(w, "effect"))
    assert.equal(5, #h.logs(w, "effect"))
  end)

  it("keep ids increasing in the context log across eviction", function()
    local w = h.watcher{ max_log_entries = 3 }
    local runs = h.record(w, function(msg, ctx)
      for i = 1, 4 do ctx:set("k", i) end
    end)
    assert.is_true(w:start())
    assert.is_true(h.wait_state(w, "Ready"))
    local a = h.logs(w, "context")
    assert.equal(3, #a)
    assert.same({ 2, 3, 4 }, { a[1].new, a[2].new, a[3].new })
    assert.is_true(increasing(a))
    assert.is_true(w:send("again"))
    assert.is_true(h.wait(function() return #runs >= 2 end))
    local b = h.logs(w, "context")
    assert.equal(3, #b)
    assert.is_true(increasing(b))
    assert.is_true(b[1].id > a[3].id)
  end)

  it("write no state-fault entry in a normal life", function()
    local w = h.watcher()
    local runs = h.record(w)
    assert.is_true(w:start())
    assert.is_true(w:send("a"))
    assert.is_true(h.wait(function() return #runs >= 2 end))
    assert.is_true(w:stop())
    assert.same({}, h.logs(w, "fault"))
  end)

  it("use the WatcherAPI's names, effect_result and state_fault; result and fault are aliases", function()
    local w = h.watcher()
    h.record(w)
    assert.is_true(w:start())
    assert.is_true(h.wait_state(w, "Ready"))
    assert.is_true(w:stop())
    assert.is_nil(w:stop()) -- refused: one state-fault entry
    local results = w:logs("effect_result")
    assert.is_true(#results >= 1)
    assert.equal("run", results[1].effect)
    assert.same(results, w:logs("result"))
    local faults = w:logs("state_fault")
    assert.equal(1, #faults)
    assert.equal("already stopped", faults[1].reason)
    assert.same(faults, w:logs("fault"))
    local ok, err = pcall(w.logs, w, "no-such-log")
    assert.is_false(ok)
    assert.is_true(h.has(err, "effect_result"), err)
  end)

  it("refuse an unknown log kind", function()
    local w = h.watcher()
    local ok, res, _, code = pcall(w.logs, w, "no-such-log")
    assert.is_true(ok == false or (res == nil and code == "EINVAL"))
  end)
end)
