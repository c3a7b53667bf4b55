-- hersh.flow(): a flow fed from Lua. f:push(value [, err]) from any Lua code on the loop
-- (a timer, a Host-style HTTP handler, another watcher's reducer); ctx:watch_flow(name, f)
-- watches it with the batching of producer flows (ENGINE.md): in a batch only the
-- newest item counts, and the watcher's bounded queue refuses what does not fit.
local hersh = require "hersh"
local h = require "helpers"

-- A watcher watching f as "feed": returns it and the list of what its runs saw
-- ({value, err, triggered}), one entry per run the flow triggered.
local function watching(f, config)
  local w = h.watcher(config or { id = "flow" })
  local seen = {}
  w:manage(function(_, ctx)
    local v = ctx:watch_flow("feed", f)
    if v:triggered() then seen[#seen + 1] = { value = v.value, err = v.err } end
  end)
  assert.is_true(w:start())
  assert.is_true(h.wait_state(w, "Ready"))
  return w, seen
end

describe("hersh.flow", function()
  after_each(h.reap)

  it("takes pushes from a timer, values and errors", function()
    local f = hersh.flow()
    local w, seen = watching(f)
    local n = 0
    local t
    t = hersh.timer(0.01, function()
      n = n + 1
      if n <= 3 then assert(f:push(n)) else assert(f:push(nil, "feed broke")); t:stop() end
    end, 0.01)
    assert.is_true(h.wait(function() return #seen > 0 and seen[#seen].err ~= nil end))
    assert.equal("feed broke", seen[#seen].err)
    local values = {}
    for _, s in ipairs(seen) do if s.value then values[#values + 1] = s.value end end
    assert.same({ 1, 2, 3 }, values) -- one push per loop turn: each its own batch
    assert.equal("Ready", w:state())
  end)

  it("takes pushes from a Host-style HTTP handler", function()
    local httpd, http = require "hersh.httpd", require "hersh.http"
    local f = hersh.flow()
    local _, seen = watching(f)
    local srv = assert(httpd.serve({ port = 0, handler = function(req, res)
      local ok, err = f:push({ path = req.path, body = req.body })
      res:send(ok and 202 or 500, ok and "queued" or err)
    end }))
    local answer
    assert(http.request({ method = "POST", url = string.format("http://127.0.0.1:%d/orders", srv:port()), body = "buy 1" },
      function(res, err) answer = res or err end))
    assert.is_true(h.wait(function() return answer ~= nil and #seen > 0 end))
    srv:close()
    assert.equal(202, answer.status)
    assert.same({ path = "/orders", body = "buy 1" }, seen[1].value)
  end)

  it("takes pushes from another watcher's reducer, and keeps one pushed before the watch", function()
    local f = hersh.flow()
    assert.is_true(f:push("early"))
    local _, seen = watching(f, { id = "flow-consumer" })
    assert.is_true(h.wait(function() return #seen == 1 end))
    assert.equal("early", seen[1].value)
    local producer = h.watcher({ id = "flow-producer" })
    producer:manage(function(msg)
      if msg then assert(f:push("from " .. msg.content)) end
    end)
    assert.is_true(producer:start())
    assert.is_true(producer:send("producer"))
    assert.is_true(h.wait(function() return #seen == 2 end))
    assert.equal("from producer", seen[2].value)
  end)

  it("100,000 pushes before the next batch make one run with the newest", function()
    local f = hersh.flow()
    local w, seen = watching(f, { id = "flow-burst", signal_capacity = 200000 })
    assert(f:push(0))
    assert.is_true(h.wait(function() return #seen == 1 end))
    local refused
    local t = hersh.timer(0, function() -- all in one callback: the watcher cannot run between
      for i = 1, 100000 do
        local ok, err = f:push(i)
        if not ok then refused = refused or err end
      end
    end)
    assert.is_true(h.wait(function() return #seen >= 2 end))
    hersh.run_for(0.1)
    t:stop()
    assert.is_nil(refused)
    assert.equal(2, #seen)
    assert.equal(100000, seen[2].value)
    local runs = h.filter(h.logs(w, "result"), function(e) return e.effect == "run" end)
    assert.equal(3, #runs) -- init, the first push, then the one batch of 100,000
  end)

  it("a full queue refuses the push with an error, never drops it silently", function()
    local f = hersh.flow()
    local _, seen = watching(f, { id = "flow-full", signal_capacity = 10 })
    assert(f:push(0))
    assert.is_true(h.wait(function() return #seen == 1 end))
    local results = {}
    local t = hersh.timer(0, function()
      for i = 1, 11 do results[i] = table.pack(f:push(i)) end
    end)
    assert.is_true(h.wait(function() return #results == 11 end))
    t:stop()
    for i = 1, 10 do assert.is_true(results[i][1]) end
    assert.same({ n = 3, nil, "queue full", results[11][3] }, results[11])
    assert.is_true(h.wait(function() return #seen == 2 end))
    assert.equal(10, seen[2].value)
  end)

  it("after its watcher ended a push says so; a flow has one watch", function()
    local f = hersh.flow()
    local w, seen = watching(f, { id = "flow-end" })
    assert(f:push("one"))
    assert.is_true(h.wait(function() return #seen == 1 end))
    local again = h.watcher({ id = "flow-again" })
    again:manage(function(_, ctx) ctx:watch_flow("feed", f) end)
    assert.is_true(again:start())
    assert.is_true(h.wait(function() return again:failures() >= 1 end))
    local res = h.filter(h.logs(again, "result"), function(e) return e.effect == "run" end)
    assert.matches("already watched", res[#res].error, 1, true)
    assert.is_true(w:stop("done"))
    assert.is_true(h.wait_terminal(w))
    local ok, err, code = f:push("two")
    assert.is_nil(ok)
    assert.equal("watcher stopped", err)
    assert.equal("ESTOPPED", code)
    assert.equal("hersh.Flow (stopped)", tostring(f))
  end)

  it("ctx:watch_flow refuses what is neither a producer nor a flow", function()
    local w = h.watcher({ id = "flow-bad" })
    w:manage(function(_, ctx) ctx:watch_flow("feed", 42) end)
    assert.is_true(w:start())
    assert.is_true(h.wait(function() return w:failures() >= 1 end))
    local res = h.filter(h.logs(w, "result"), function(e) return e.effect == "run" end)
    assert.matches("function or hersh.Flow expected, got number", res[#res].error, 1, true)
  end)
end)
