-- Watches: watch_call, watch_flow, watch_tick, watch values and hersh.sleep.
local hersh = require "hersh"
local h = require "helpers"

local function var_runs(runs, name)
  return h.filter(runs, function(r)
    if r.reason ~= "vars" then return false end
    if name == nil then return true end
    for _, v in ipairs(r.vars) do if v == name then return true end end
    return false
  end)
end

-- The fields of a watch value, read in the run.
local function snap(v)
  return { value = v.value, err = v.err, name = v.name, updated = v.updated,
    triggered = v:triggered() }
end

describe("watches", function()
  after_each(h.reap)

  it("return their initial value, not updated, before the first update", function()
    local w = h.watcher()
    local runs = h.record(w, function(msg, ctx, rec)
      rec.with_init = snap(ctx:watch_call("with-init", 30, function() return 1 end, 42))
      rec.without = snap(ctx:watch_call("without-init", 30, function() return 1 end))
      rec.flow = snap(ctx:watch_flow("flow-init", function() hersh.sleep(60) end, "start"))
    end)
    assert.is_true(w:start())
    assert.is_true(h.wait_state(w, "Ready"))
    local r = runs[1]
    assert.same({ value = 42, name = "with-init", updated = false, triggered = false },
      r.with_init)
    assert.same({ name = "without-init", updated = false, triggered = false }, r.without)
    assert.same({ value = "start", name = "flow-init", updated = false, triggered = false },
      r.flow)
  end)

  describe("watch_call", function()
    it("replaces the value with what poll returns, and names itself in the trigger", function()
      local w = h.watcher()
      local n = { polls = 0 }
      local runs = h.record(w, function(msg, ctx, rec)
        rec.v = snap(ctx:watch_call("c", 0.01, function()
          n.polls = n.polls + 1
          n.yieldable = coroutine.isyieldable()
          if n.polls <= 3 then return "poll " .. n.polls end
          return hersh.SKIP
        end))
      end)
      assert.is_true(w:start())
      assert.is_true(h.wait(function()
        return #var_runs(runs) >= 1 and runs[#runs].v.value == "poll 3"
      end))
      assert.is_true(n.yieldable)
      for _, r in ipairs(var_runs(runs)) do
        assert.same({ "c" }, r.vars)
        assert.is_true(r.v.updated)
        assert.is_true(r.v.triggered)
        assert.is_nil(r.v.err)
        assert.equal("c", r.v.name)
      end
      -- A message run reads the value, without being triggered by it.
      assert.is_true(w:send("look"))
      assert.is_true(h.wait(function() return runs[#runs].reason == "message" end))
      local look = runs[#runs]
      assert.equal("poll 3", look.v.value)
      assert.is_true(look.v.updated)
      assert.is_false(look.v.triggered)
    end)

    it("polls first one interval after registration", function()
      local w = h.watcher()
      local n = { polls = 0 }
      h.record(w, function(msg, ctx)
        ctx:watch_call("later", 30, function() n.polls = n.polls + 1 return 1 end)
      end)
      assert.is_true(w:start())
      assert.is_true(h.wait_state(w, "Ready"))
      hersh.run_for(0.2)
      assert.equal(0, n.polls)
    end)

    it("registers once: a later call with the same name only reads", function()
      local w = h.watcher()
      local polls = { first = 0, later = 0 }
      local runs = h.record(w, function(msg, ctx, rec)
        local poll = function()
          polls.first = polls.first + 1
          return polls.first
        end
        if rec.reason ~= "init" then
          poll = function()
            polls.later = polls.later + 1
            return -1
          end
        end
        rec.value = ctx:watch_call("once", 0.01, poll, 0).value
      end)
      assert.is_true(w:start())
      assert.is_true(h.wait(function() return #var_runs(runs) >= 3 end))
      assert.equal(0, polls.later)
      for _, r in ipairs(var_runs(runs)) do assert.is_true(r.value > 0) end
    end)

    it("applies each update function to the previous value, none lost", function()
      local w = h.watcher()
      local n = { polls = 0 }
      local runs = h.record(w, function(msg, ctx, rec)
        rec.value = ctx:watch_call("acc", 0.01, function()
          n.polls = n.polls + 1
          return function(prev) return prev + 1 end
        end, 0).value
        rec.polls = n.polls
      end)
      assert.is_true(w:start())
      assert.is_true(h.wait(function() return #var_runs(runs) >= 3 end))
      local last = 0
      for _, r in ipairs(var_runs(runs)) do
        assert.is_true(r.value > last)
        assert.equal(r.polls, r.value)
        last = r.value
      end
    end)

    it("sends no signal when poll returns hersh.SKIP", function()
      local w = h.watcher()
      local n = { polls = 0 }
      local runs = h.record(w, function(msg, ctx, rec)
        rec.value = ctx:watch_call("skipper", 0.01, function()
          n.polls = n.polls + 1
          if n.polls == 6 then return "done" end
          return hersh.SKIP
        end).value
        rec.polls = n.polls
      end)
      assert.is_true(w:start())
      assert.is_true(h.wait(function() return n.polls >= 12 end))
      hersh.run_for(0.05)
      local vr = var_runs(runs)
      assert.equal(1, #vr)
      assert.equal("done", vr[1].value)
      assert.is_true(vr[1].polls >= 6)
      assert.equal(2, #runs)
    end)

    it("stores and logs a poll error (phase poll)", function()
      local w = h.watcher()
      local n = { polls = 0 }
      local runs = h.record(w, function(msg, ctx, rec)
        rec.v = snap(ctx:watch_call("fragile", 0.01, function()
          n.polls = n.polls + 1
          if n.polls == 1 then error("poll broke") end
          return hersh.SKIP
        end, 5))
      end)
      assert.is_true(w:start())
      assert.is_true(h.wait(function() return #h.logs(w, "watch_error") >= 1 end))
      local e = h.logs(w, "watch_error")[1]
      assert.equal("fragile", e.name)
      assert.equal("poll", e.phase)
      assert.is_true(h.has(e.error, "poll broke"))
      assert.is_number(e.id)
      assert.is_number(e.time)
      assert.is_true(w:send("look"))
      assert.is_true(h.wait(function() return runs[#runs].reason == "message" end))
      assert.is_true(h.has(runs[#runs].v.err, "poll broke"))
      assert.equal("Ready", w:state())
      assert.equal(0, w:failures())
    end)

    it("stores and logs an update error (phase update); the run still happens", function()
      local w = h.watcher()
      local n = { polls = 0, seen_err = false, sent_7 = false }
      local runs = h.record(w, function(msg, ctx, rec)
        rec.v = snap(ctx:watch_call("bad-update", 0.01, function()
          n.polls = n.polls + 1
          if n.polls == 1 then
            return function() error("update broke") end
          elseif n.seen_err and not n.sent_7 then
            n.sent_7 = true
            return 7
          end
          return hersh.SKIP
        end, 5))
        if rec.v.err then n.seen_err = true end
      end)
      assert.is_true(w:start())
      assert.is_true(h.wait(function() return #var_runs(runs) >= 2 end))
      local first, second = var_runs(runs)[1], var_runs(runs)[2]
      assert.is_true(first.v.triggered)
      assert.is_true(h.has(first.v.err, "update broke"))
      -- A later successful update clears the error.
      assert.is_nil(second.v.err)
      assert.equal(7, second.v.value)
      local e = h.find(h.logs(w, "watch_error"), function(x) return x.name == "bad-update" end)
      assert.is_not_nil(e)
      assert.equal("update", e.phase)
      assert.is_true(h.has(e.error, "update broke"))
      assert.equal(0, w:failures())
    end)

    it("may call hersh.sleep without blocking the loop", function()
      local w = h.watcher()
      local n = { polls = 0, sleeping = false }
      local runs = h.record(w, function(msg, ctx, rec)
        rec.sleeping = n.sleeping
        rec.value = ctx:watch_call("slow", 0.01, function()
          n.polls = n.polls + 1
          if n.polls > 1 then return hersh.SKIP end
          n.sleeping = true
          hersh.sleep(1)
          n.sleeping = false
          return "woke"
        end).value
      end)
      assert.is_true(w:start())
      assert.is_true(h.wait(function() return n.sleeping end))
      assert.is_true(w:send("during sleep"))
      assert.is_true(h.wait(function() return #runs >= 2 end))
      assert.equal("message", runs[2].reason)
      assert.is_true(runs[2].sleeping)
      assert.is_true(h.wait(function() return #var_runs(runs) >= 1 end))
      assert.equal("woke", var_runs(runs)[1].value)
    end)
  end)

  describe("watch_flow", function()
    it("starts its producer once and triggers on each emit", function()
      local w = h.watcher()
      local n = { starts = 0 }
      local runs = h.record(w, function(msg, ctx, rec)
        rec.v = snap(ctx:watch_flow("feed", function(emit)
          n.starts = n.starts + 1
          for i = 1, 3 do
            hersh.sleep(0.02)
            emit(i)
          end
          hersh.sleep(60)
        end))
      end)
      assert.is_true(w:start())
      assert.is_true(h.wait(function() return #runs > 0 and runs[#runs].v.value == 3 end))
      assert.equal(1, n.starts)
      local last = 0
      for _, r in ipairs(var_runs(runs)) do
        assert.same({ "feed" }, r.vars)
        assert.is_true(r.v.triggered)
        assert.is_true(r.v.updated)
        assert.is_true(r.v.value > last)
        last = r.v.value
      end
    end)

    it("carries an emitted error in err", function()
      local w = h.watcher()
      local seen = { err = false }
      local runs = h.record(w, function(msg, ctx, rec)
        rec.v = snap(ctx:watch_flow("errs", function(emit)
          hersh.sleep(0.01)
          emit(nil, "flow broke")
          while not seen.err do hersh.sleep(0.01) end
          emit(5)
          hersh.sleep(60)
        end))
        if rec.v.err then seen.err = true end
      end)
      assert.is_true(w:start())
      assert.is_true(h.wait(function() return #var_runs(runs) >= 2 end))
      local first, second = var_runs(runs)[1], var_runs(runs)[2]
      assert.is_true(h.has(first.v.err, "flow broke"))
      assert.is_nil(second.v.err)
      assert.equal(5, second.v.value)
    end)

    it("writes its end to the effect log: returned or failed", function()
      local w = h.watcher()
      h.record(w, function(msg, ctx)
        ctx:watch_flow("short", function(emit) emit(1) end)
        ctx:watch_flow("broken", function() hersh.sleep(0.01) error("no more") end)
      end)
      assert.is_true(w:start())
      local function effect(text)
        return h.find(h.logs(w, "effect"), function(e) return e.text == text end)
      end
      assert.is_true(h.wait(function() return effect("Flow[short] ended") ~= nil end))
      assert.is_true(h.wait(function() return effect("Flow[broken] failed") ~= nil end))
      assert.equal("Ready", w:state())
    end)

    it("logs a producer error with phase flow", function()
      local w = h.watcher()
      h.record(w, function(msg, ctx)
        ctx:watch_flow("dies", function(emit)
          hersh.sleep(0.01)
          error("producer died")
        end)
      end)
      assert.is_true(w:start())
      assert.is_true(h.wait(function() return #h.logs(w, "watch_error") >= 1 end))
      local e = h.logs(w, "watch_error")[1]
      assert.equal("dies", e.name)
      assert.equal("flow", e.phase)
      assert.is_true(h.has(e.error, "producer died"))
    end)

    it("may sleep without blocking the loop", function()
      local w = h.watcher()
      local n = { sleeping = false }
      local runs = h.record(w, function(msg, ctx, rec)
        rec.sleeping = n.sleeping
        rec.value = ctx:watch_flow("sleepy", function(emit)
          n.sleeping = true
          hersh.sleep(1)
          n.sleeping = false
          emit("awake")
          hersh.sleep(60)
        end).value
      end)
      assert.is_true(w:start())
      assert.is_true(h.wait(function() return n.sleeping end))
      assert.is_true(w:send("ping"))
      assert.is_true(h.wait(function() return #runs >= 2 end))
      assert.equal("message", runs[2].reason)
      assert.is_true(runs[2].sleeping)
      assert.is_true(h.wait(function() return #var_runs(runs) >= 1 end))
      assert.equal("awake", var_runs(runs)[1].value)
    end)
  end)

  describe("watch_tick", function()
    it("ticks at once with count 1", function()
      local w = h.watcher()
      local runs = h.record(w, function(msg, ctx, rec)
        rec.v = snap(ctx:watch_tick("t", 30))
      end)
      assert.is_true(w:start())
      assert.is_true(h.wait(function() return #var_runs(runs) >= 1 end))
      assert.is_nil(runs[1].v.value)
      assert.is_false(runs[1].v.updated)
      local first = var_runs(runs)[1]
      assert.same({ "t" }, first.vars)
      assert.equal(1, first.v.value.count)
      assert.is_number(first.v.value.time)
      assert.is_true(first.v.updated)
      assert.is_true(first.v.triggered)
      hersh.run_for(0.1)
      assert.equal(1, #var_runs(runs))
    end)

    it("counts every tick applied, batched ones included", function()
      local w = h.watcher{ recovery = h.hold_policy(0.2) }
      local runs = h.record(w, function(msg, ctx, rec)
        rec.count = (ctx:watch_tick("t", 0.01).value or { count = 0 }).count
        rec.pending = w:pending().var
        if rec.reason ~= "vars" and rec.pending < 5 then error("hold") end
      end)
      assert.is_true(w:start())
      assert.is_true(h.wait(function() return #var_runs(runs) >= 5 end))
      local held = runs[#runs - #var_runs(runs)]
      local batch = var_runs(runs)[1]
      assert.is_true(held.pending >= 5)
      -- All pending ticks were applied: none coalesced away.
      assert.is_true(batch.count >= held.count + held.pending)
      local last = batch.count
      for i = 2, #var_runs(runs) do
        local c = var_runs(runs)[i].count
        assert.is_true(c > last)
        last = c
      end
    end)
  end)

  describe("hersh.sleep", function()
    -- A reducer may wait since issue 16 (spec/reducer_wait_spec.lua); code that is not
    -- a task the loop resumes (the main chunk, a timer's callback) still may not.
    it("raises outside a poll, producer, reducer or cleanup", function()
      local ok, err = pcall(hersh.sleep, 0.01)
      assert.is_false(ok)
      assert.matches("works only in a watch poll", err)
      local core = require "hersh.core"
      local got = {}
      core.timer(0, function() got.ok, got.err = pcall(hersh.sleep, 0.01) end)
      assert.is_true(h.wait(function() return got.err ~= nil end))
      assert.is_false(got.ok)
      assert.matches("works only in a watch poll", got.err)
    end)

    -- libuv 1.44 runs a 0 ms timer re-armed in its own callback again in the same pass:
    -- a sleep(0) loop would spin for ever. These run in a child, so a spin fails them.
    it("(0) in a producer's endless loop yields: messages, timers and stop get through", function()
      local r = h.isolated([[
        local core = require "hersh.core"
        local w = h.watcher()
        local got = { emits = 0, messages = 0, timer = false }
        h.record(w, function(msg, ctx)
          if msg then got.messages = got.messages + 1 end
          ctx:watch_flow("busy", function(emit)
            while true do
              got.emits = got.emits + 1
              emit(got.emits)
              hersh.sleep(0)
            end
          end)
        end)
        assert(w:start())
        local t = core.timer(0.05, function() got.timer = true end)
        got.flowing = h.wait(function() return got.emits >= 100 end)
        for i = 1, 3 do w:send("m" .. i) end
        got.answered = h.wait(function() return got.messages == 3 and got.timer end)
        t:stop()
        got.stopped = w:stop() == true and w:state() == "Stopped"
        return got
      ]], 20)
      assert.is_true(r.flowing)
      assert.is_true(r.answered)
      assert.equal(3, r.messages)
      assert.is_true(r.timer)
      assert.is_true(r.stopped)
    end)

    it("(0), a tiny delay or coroutine.yield in a poll lets a message in between", function()
      local r = h.isolated([[
        local out = {}
        for _, how in ipairs({ "sleep(0)", "sleep(0.0001)", "yield" }) do
          local pause = ({
            ["sleep(0)"] = function() hersh.sleep(0) end,
            ["sleep(0.0001)"] = function() hersh.sleep(0.0001) end,
            yield = function() coroutine.yield() end,
          })[how]
          local w = h.watcher()
          local got = { polling = false, msg = false }
          local runs = h.record(w, function(msg, ctx, rec)
            if msg then got.msg = true end
            rec.v = ctx:watch_call("loop", 0.01, function()
              if got.polling then return hersh.SKIP end
              got.polling = true
              for _ = 1, 100000 do
                if got.msg then return "saw the message" end
                pause()
              end
              return "never saw it"
            end).value
          end)
          assert(w:start())
          assert(h.wait(function() return got.polling end))
          assert(w:send("m"))
          h.wait(function() return #runs > 0 and runs[#runs].v ~= nil end)
          out[how] = runs[#runs].v
          w:kill()
        end
        return out
      ]], 20)
      assert.same({ ["sleep(0)"] = "saw the message", ["sleep(0.0001)"] = "saw the message",
        yield = "saw the message" }, r)
    end)
  end)
end)
