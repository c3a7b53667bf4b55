-- Memo, the context store, env and the other ctx methods.
local hersh = require "hersh"
local h = require "helpers"

-- Starts a watcher whose reducer runs steps[i] on its i-th run (init is run 1) and
-- returns the runs once all steps ran (each further step comes from a message).
local function steps(config, list)
  local w = h.watcher(config)
  local runs = h.record(w, function(msg, ctx, rec, all)
    local step = list[#all]
    if step then return step(ctx, rec, msg) end
  end)
  assert.is_true(w:start())
  assert.is_true(h.wait(function() return #runs >= 1 end))
  for _ = 2, #list do
    local want = #runs + 1
    assert.is_true(w:send("next"))
    assert.is_true(h.wait(function() return #runs >= want end))
  end
  assert.is_true(h.wait(function() return w:state() ~= "Running" end))
  return w, runs
end

local function context_log(w, key)
  return h.filter(h.logs(w, "context"), function(e) return e.key == key end)
end

describe("memo", function()
  after_each(h.reap)

  it("computes once per watcher; clear_memo makes the next call compute again", function()
    local n = { computes = 0 }
    local function compute()
      n.computes = n.computes + 1
      return { made = n.computes }
    end
    local w, runs = steps(nil, {
      function(ctx, rec) rec.v = ctx:memo("m", compute) end,
      function(ctx, rec) rec.v = ctx:memo("m", compute) end,
      function(ctx, rec)
        ctx:clear_memo("m")
        rec.v = ctx:memo("m", compute)
      end,
      function(ctx, rec) rec.v = ctx:memo("m", compute) end,
    })
    assert.equal(2, n.computes)
    assert.equal(1, runs[1].v.made)
    assert.equal(1, runs[2].v.made)
    assert.equal(2, runs[3].v.made)
    assert.equal(2, runs[4].v.made)
    assert.equal(0, w:failures())
  end)

  it("never triggers a run", function()
    local w, runs = steps(nil, {
      function(ctx) ctx:memo("a", function() return 1 end); ctx:clear_memo("a") end,
    })
    hersh.run_for(0.1)
    assert.equal(1, #runs)
    assert.equal(0, w:pending().var)
  end)

  it("holds any Lua value", function()
    local f = function() return "inner" end
    local w, runs = steps(nil, {
      function(ctx, rec) rec.v = ctx:memo("fn", function() return f end) end,
      function(ctx, rec) rec.v = ctx:memo("fn", function() return "other" end) end,
    })
    assert.equal(f, runs[1].v)
    assert.equal(f, runs[2].v)
  end)

  it("enforces max_memo: a new entry beyond it is an error in that run", function()
    local w, runs = steps({ max_memo = 2 }, {
      function(ctx)
        ctx:memo("one", function() return 1 end)
        ctx:memo("two", function() return 2 end)
      end,
      function(ctx, rec)
        rec.before = true
        ctx:memo("three", function() return 3 end)
        rec.after = true
      end,
      function(ctx, rec) rec.v = ctx:memo("two", function() return 99 end) end,
      function(ctx, rec)
        ctx:clear_memo("one")
        rec.v = ctx:memo("three", function() return 3 end)
      end,
    })
    assert.is_true(runs[2].before)
    assert.is_nil(runs[2].after)
    local results = h.filter(h.logs(w, "result"), function(e) return e.effect == "run" end)
    assert.is_false(results[2].ok)
    assert.is_string(results[2].error)
    -- Cached entries stay readable, and a cleared slot can be used again.
    assert.equal(2, runs[3].v)
    assert.equal(3, runs[4].v)
    assert.is_true(results[3].ok)
    assert.is_true(results[4].ok)
    assert.equal(0, w:failures())
    assert.equal("Ready", w:state())
  end)
end)

describe("context", function()
  after_each(h.reap)

  it("get returns the stored value itself", function()
    local t = { a = 1 }
    local w, runs = steps(nil, {
      function(ctx, rec)
        ctx:set("t", t)
        rec.same = rawequal(ctx:get("t"), t)
        rec.absent = ctx:get("nope")
      end,
      function(ctx, rec) rec.same = rawequal(ctx:get("t"), t) end,
    })
    assert.is_true(runs[1].same)
    assert.is_nil(runs[1].absent)
    assert.is_true(runs[2].same)
  end)

  it("set writes one context entry: initialized, then updated", function()
    local w = steps(nil, {
      function(ctx) ctx:set("n", 1) end,
      function(ctx) ctx:set("n", 2) end,
      function(ctx) ctx:set("n", 2) end,
    })
    local log = context_log(w, "n")
    assert.equal(3, #log)
    assert.equal("initialized", log[1].op)
    assert.equal(1, log[1].new)
    assert.equal("updated", log[2].op)
    assert.equal(1, log[2].old)
    assert.equal(2, log[2].new)
    assert.equal("updated", log[3].op)
    assert.equal(2, log[3].old)
    assert.equal(2, log[3].new)
    assert.is_true(log[1].id < log[2].id and log[2].id < log[3].id)
    assert.is_number(log[1].time)
  end)

  it("update gives fn an isolated deep copy and stores its result", function()
    local original = { a = { b = 1 } }
    local w, runs = steps(nil, {
      function(ctx) ctx:set("t", original) end,
      function(ctx, rec)
        rec.result = ctx:update("t", function(v)
          rec.got_copy = not rawequal(v, original) and not rawequal(v.a, original.a)
          v.a.b = 2
          return v
        end)
        rec.stored = ctx:get("t")
      end,
    })
    assert.is_true(runs[2].got_copy)
    assert.equal(1, original.a.b)
    assert.equal(2, runs[2].stored.a.b)
    assert.equal(runs[2].stored, runs[2].result)
    local log = context_log(w, "t")
    assert.equal(2, #log)
    assert.equal("updated", log[2].op)
    assert.same({ a = { b = 1 } }, log[2].old)
    assert.same({ a = { b = 2 } }, log[2].new)
  end)

  it("an error in update's fn stores nothing, logs nothing, and is re-raised", function()
    local w, runs = steps(nil, {
      function(ctx) ctx:set("t", { a = { b = 1 } }) end,
      function(ctx, rec)
        rec.ok, rec.err = pcall(ctx.update, ctx, "t", function(v)
          v.a.b = 99
          error("fn broke")
        end)
        rec.stored_b = ctx:get("t").a.b
      end,
    })
    assert.is_false(runs[2].ok)
    assert.is_true(h.has(tostring(runs[2].err), "fn broke"))
    assert.equal(1, runs[2].stored_b)
    assert.equal(1, #context_log(w, "t"))
  end)

  it("update of an absent key gives fn nil and initializes it", function()
    local w, runs = steps(nil, {
      function(ctx, rec)
        ctx:update("fresh", function(v)
          rec.arg_is_nil = v == nil
          return 10
        end)
        rec.v = ctx:get("fresh")
      end,
    })
    assert.is_true(runs[1].arg_is_nil)
    assert.equal(10, runs[1].v)
    local log = context_log(w, "fresh")
    assert.equal(1, #log)
    assert.equal("initialized", log[1].op)
    assert.equal(10, log[1].new)
  end)

  it("logs a function as \"<function>\", other foreign values as a type tag", function()
    local w, runs = steps(nil, {
      function(ctx) ctx:set("f", function() end) end,
      function(ctx, rec)
        ctx:set("f", "plain")
        local cyc = {}
        cyc.self = cyc
        ctx:set("cycle", cyc)
        rec.cycle_kept = rawequal(ctx:get("cycle"), cyc)
        ctx:set("userdata", io.stdout)
        rec.userdata_kept = rawequal(ctx:get("userdata"), io.stdout)
      end,
    })
    local log = context_log(w, "f")
    assert.equal(2, #log)
    assert.equal("<function>", log[1].new)
    assert.equal("<function>", log[2].old)
    assert.equal("plain", log[2].new)
    assert.is_true(runs[2].cycle_kept)
    local cyc = context_log(w, "cycle")
    assert.equal(1, #cyc)
    assert.is_not_nil(cyc[1].new)
    assert.is_true(runs[2].userdata_kept)
    local ud = context_log(w, "userdata")
    assert.equal(1, #ud)
    assert.is_string(ud[1].new)
    assert.is_truthy(ud[1].new:match("^<.+>$"))
  end)

  it("env reads the environment fixed at creation", function()
    local env = { FOO = "bar", OTHER = "x" }
    local w = h.watcher{ env = env }
    env.FOO = "changed"
    env.ADDED = "late"
    local runs = h.record(w, function(msg, ctx, rec)
      rec.foo, rec.other, rec.added, rec.none =
        ctx:env("FOO"), ctx:env("OTHER"), ctx:env("ADDED"), ctx:env("NONE")
    end)
    assert.is_true(w:start())
    assert.is_true(h.wait(function() return #runs >= 1 end))
    assert.equal("bar", runs[1].foo)
    assert.equal("x", runs[1].other)
    assert.is_nil(runs[1].added)
    assert.is_nil(runs[1].none)
  end)

  it("trigger, message, id, log and print", function()
    local w = h.watcher{ id = "ctx-methods" }
    local runs = h.record(w, function(msg, ctx, rec)
      rec.id = ctx:id()
      rec.trigger = ctx:trigger()
      rec.message = ctx:message()
      if msg then
        ctx:log("logged " .. msg.content)
        ctx:print("printed " .. msg.content)
      end
    end)
    assert.is_true(w:start())
    assert.is_true(h.wait_state(w, "Ready"))
    assert.is_true(w:send("hi"))
    assert.is_true(h.wait(function() return #runs >= 2 end))
    local r = runs[2]
    assert.equal("ctx-methods", r.id)
    assert.is_true(r.trigger.user)
    assert.is_falsy(r.trigger.watcher)
    assert.equal("message", r.trigger.reason)
    assert.equal(0, #(r.trigger.vars or {}))
    assert.equal("hi", r.message.content)
    assert.equal(r.msg.received_at, r.message.received_at)
    local texts = {}
    for _, e in ipairs(h.logs(w, "effect")) do texts[#texts + 1] = e.text end
    assert.is_truthy(h.find(texts, function(t) return t == "logged hi" end))
    assert.is_truthy(h.find(texts, function(t) return h.has(t, "printed hi") end))
  end)
end)
