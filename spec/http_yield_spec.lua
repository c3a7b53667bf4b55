-- hersh.http: the HTTP client a task waits on (polls, flow producers, reducers,
-- cleanups), against a real loopback server in its own process
-- (spec/scripts/http_fixture.py). The loop never blocks: while one task waits, the
-- others, the timers and the WatcherAPI go on. Every wait is bounded.
local hersh = require "hersh"
local h = require "helpers"
local P = require "scripts.process"

-- The fixture server for this test (stopped when it ends): its port, and a function
-- giving how many requests to /slow it holds ("waiting") or saw closed ("closed").
local function start_server()
  local proc = P.start({ "env", "-u", "LD_PRELOAD", "python3", "spec/scripts/http_fixture.py" })
  P.defer(function() P.stop(proc) end)
  local port = P.wait_for(function() return tonumber(P.stdout(proc):match("^(%d+)\n")) end, 15)
  assert(port, "the fixture server did not start: " .. P.stderr(proc))
  return port, function(what)
    local n = 0
    for _ in P.stdout(proc):gmatch((what or "closed") .. " /slow\n") do n = n + 1 end
    return n
  end
end

-- Runs the loop until pred() holds, or `timeout` seconds pass (false).
local function spin_until(pred, timeout)
  return P.wait_for(function()
    hersh.run_for(0.02)
    return pred()
  end, timeout or 15) ~= nil
end

local function url(port, path)
  return string.format("http://127.0.0.1:%d%s", port, path)
end

local function last_run_result(w)
  local results = h.filter(h.logs(w, "result"), function(e) return e.effect == "run" end)
  return results[#results]
end

-- A watcher whose poll "probe" calls fn once (its first poll comes after 10 ms);
-- returns the watcher and a table that gets the poll's answers, {res, err, code}.
local function probe(id, fn)
  local w = h.watcher({ id = id })
  local got = {}
  w:manage(function(_, ctx)
    ctx:watch_call("probe", 0.01, function()
      if got.started then return hersh.SKIP end
      got.started = true
      local res, err, code = fn()
      got.res, got.err, got.code, got.done = res, err, code, true
      return hersh.SKIP
    end)
  end)
  assert.is_true(w:start())
  assert.is_true(h.wait(function() return got.done end), "the probe never answered")
  return w, got
end

describe("hersh.http", function()
  after_each(h.reap)

  it("a poll fetches a value; res has status, headers and json()", function()
    local port = start_server()
    local w = h.watcher({ id = "http-poll" })
    local seen = {}
    w:manage(function(_, ctx)
      local v = ctx:watch_call("price", 0.05, function()
        local res, err, code = hersh.http.get(url(port, "/price?n=5"))
        if not res then error(tostring(err) .. " " .. tostring(code)) end
        local doc = assert(res:json())
        return { status = res.status, price = doc.price, ctype = res.headers["content-type"] }
      end)
      if v.value then seen[#seen + 1] = v.value end
    end)
    assert.is_true(w:start())
    assert.is_true(h.wait(function() return #seen >= 2 end))
    assert.same({ status = 200, price = 105, ctype = "application/json" }, seen[1])
  end)

  it("100 polls wait on 100 requests at the same time on one loop", function()
    local port = start_server()
    local w = h.watcher({ id = "http-hundred" })
    local answers = {}
    w:manage(function(_, ctx)
      for i = 1, 100 do
        ctx:watch_call("p" .. i, 0.01, function()
          if answers[i] ~= nil then return hersh.SKIP end
          answers[i] = false
          -- The server answers none of them before all 100 wait there together.
          local res, err = hersh.http.get(url(port, "/barrier?n=100"), { timeout = 90 })
          answers[i] = res and res.status or err
          return hersh.SKIP
        end)
      end
    end)
    assert.is_true(w:start())
    assert.is_true(h.wait(function()
      local n = 0
      for _, a in pairs(answers) do n = n + (a and 1 or 0) end
      return n == 100
    end, 90), "not every poll got its answer")
    for i = 1, 100 do assert.equal(200, answers[i], "poll " .. i) end
    assert.equal("Ready", w:state())
  end)

  it("post sends a string as is and a table as JSON", function()
    local port = start_server()
    local _, got = probe("http-post", function()
      local a, err = hersh.http.post(url(port, "/echo"), "plain", { headers = { ["Content-Type"] = "text/plain" } })
      if not a then return nil, err end
      local b = hersh.http.post(url(port, "/echo"), { x = 1 })
      return { a = a:json(), b = b:json() }
    end)
    assert.same({ method = "POST", body = "plain", content_type = "text/plain" }, got.res.a)
    assert.same({ method = "POST", body = '{"x":1}', content_type = "application/json" }, got.res.b)
  end)

  it("a response over the size limit is an error, not a cut body", function()
    local port = start_server()
    local _, got = probe("http-limit", function()
      local small = hersh.http.get(url(port, "/big?bytes=1000"), { max_response = 1000 })
      local res, err, code = hersh.http.get(url(port, "/big?bytes=1001"), { max_response = 1000 })
      -- The default limit is 16 MiB.
      local dres, derr, dcode = hersh.http.get(url(port, "/big?bytes=" .. (16 * 1024 * 1024 + 1)))
      return { small = #small.body, res = res, err = err, code = code, dres = dres, derr = derr, dcode = dcode }
    end)
    assert.equal(1000, got.res.small)
    assert.is_nil(got.res.res)
    assert.equal("response too large", got.res.err)
    assert.equal("ETOOLARGE", got.res.code)
    assert.is_nil(got.res.dres)
    assert.equal("ETOOLARGE", got.res.dcode)
  end)

  it("does not follow a redirect unless asked, and then a bounded number", function()
    local port = start_server()
    local _, got = probe("http-redirect", function()
      local plain = hersh.http.get(url(port, "/redirect"))
      local followed = hersh.http.get(url(port, "/redirect"), { redirects = 2 })
      local ok, too_many = pcall(hersh.http.get, url(port, "/redirect"), { redirects = 21 })
      return { status = plain.status, location = plain.headers.location, followed = followed:json(),
        raised = not ok and tostring(too_many) }
    end)
    assert.equal(302, got.res.status)
    assert.equal("/price?n=7", got.res.location)
    assert.equal(107, got.res.followed.price)
    assert.matches("opts.redirects must be at most 20", got.res.raised, 1, true)
  end)

  it("a bad URL and a refused connection give nil, err, code", function()
    local _, got = probe("http-bad", function()
      local out = {}
      for _, u in ipairs { "ftp://127.0.0.1/x", "not a url", "http://127.0.0.1:1/" } do
        local res, err, code = hersh.http.get(u)
        out[#out + 1] = { res = res, err = err, code = code }
      end
      return out
    end)
    local scheme, garbage, refused = got.res[1], got.res[2], got.res[3]
    assert.is_nil(scheme.res)
    assert.matches("only http and https", scheme.err, 1, true)
    assert.equal("EINVAL", scheme.code)
    assert.is_nil(garbage.res)
    assert.matches("bad URL", garbage.err, 1, true)
    assert.equal("EINVAL", garbage.code)
    assert.is_nil(refused.res)
    assert.equal("connection refused", refused.err)
    assert.equal("ECONNREFUSED", refused.code)
  end)

  it("raises a clear error outside a task, where it would block the loop", function()
    local ok, err = pcall(hersh.http.get, "http://127.0.0.1:1/")
    assert.is_false(ok)
    assert.matches("hersh.http works only in a watch poll, a flow producer, a reducer or a cleanup", err, 1, true)
    local in_timer
    local t = hersh.timer(0, function()
      local tok, terr = pcall(hersh.http.get, "http://127.0.0.1:1/")
      in_timer = tok and "returned" or terr
    end)
    assert.is_true(h.wait(function() return in_timer ~= nil end))
    t:stop()
    assert.matches("works only in a watch poll", in_timer, 1, true)
    assert.has_error(function() hersh.http.request("http://x") end, "hersh.http.request: opts must be a table, not string")
  end)

  it("a request's own timeout ends the wait; the server sees the connection close", function()
    local port, closed = start_server()
    local _, got = probe("http-timeout", function()
      return hersh.http.get(url(port, "/slow"), { timeout = 0.3 })
    end)
    assert.is_nil(got.res)
    assert.equal("timeout", got.err)
    assert.equal("ETIMEOUT", got.code)
    assert.is_truthy(P.wait_for(function() return closed() == 1 end, 15), "the server saw no close")
  end)

  it("kill during the waits: Killed at once, and every request is abandoned", function()
    local port, closed = start_server()
    local w = h.watcher({ id = "http-kill" })
    local cleanups = h.count_cleanup(w)
    local started, returned = 0, 0
    w:manage(function(_, ctx)
      for i = 1, 10 do
        ctx:watch_call("slow" .. i, 0.01, function()
          started = started + 1
          hersh.http.get(url(port, "/slow"))
          returned = returned + 1
        end)
      end
    end)
    assert.is_true(w:start())
    -- All ten wait on the server, which answers none.
    assert.is_true(spin_until(function() return closed("waiting") == 10 end), "the requests never came")
    assert.equal(10, started)
    assert.is_true(w:kill("enough"))
    assert.equal("Killed", w:state())
    assert.is_true(spin_until(function() return closed() == 10 end, 30),
      "the server saw " .. closed() .. " of 10 connections close")
    hersh.run_for(0.05)
    assert.equal(0, returned)
    assert.equal(0, cleanups.count)
  end)

  it("the client's bookkeeping finalizer, called early by the program, breaks no wait", function()
    -- An attacker's move: find the per-state list of pending requests in the registry and
    -- run its __gc while a poll waits. The poll still gets its answer, and a later kill
    -- while another waits frees each request once (ASan would see a use after free).
    local port, closed = start_server()
    local phase, answers = "first", {}
    local w = h.watcher({ id = "http-gc" })
    w:manage(function(_, ctx)
      ctx:watch_call("p", 0.01, function()
        if answers[phase] ~= nil then return hersh.SKIP end
        answers[phase] = false
        local res, err = hersh.http.get(url(port, phase == "first" and "/barrier?n=1" or "/slow"))
        answers[phase] = res and res.status or err
        return hersh.SKIP
      end)
    end)
    local function finalize_bookkeeping()
      local mt = debug.getregistry()["hersh.HttpState"]
      assert.is_table(mt)
      for _, v in pairs(debug.getregistry()) do
        if type(v) == "userdata" and getmetatable(v) == mt then mt.__gc(v) end
      end
    end
    assert.is_true(w:start())
    assert.is_true(h.wait(function() return answers.first ~= nil end))
    finalize_bookkeeping()
    assert.is_true(h.wait(function() return answers.first ~= false end))
    assert.equal(200, answers.first)
    phase = "second"
    assert.is_true(spin_until(function() return closed("waiting") == 1 end), "the second request never came")
    finalize_bookkeeping()
    assert.is_true(w:kill("enough"))
    assert.is_true(spin_until(function() return closed() == 1 end), "the server saw no close")
    assert.is_false(answers.second)
  end)

  it("a reducer waits on HTTP; its deadline during the wait fails the run with timeout", function()
    local port, closed = start_server()
    local w = h.watcher({ id = "http-deadline", timeout = 0.5 })
    local runs = h.record(w, function(msg)
      if msg and msg.content == "slow" then hersh.http.get(url(port, "/slow")) end
      if msg and msg.content == "price" then
        local res = assert(hersh.http.get(url(port, "/price?n=1")))
        return nil, res:json().price
      end
    end)
    assert.is_true(w:start())
    assert.is_true(h.wait_state(w, "Ready"))
    assert.is_true(w:send("slow"))
    assert.is_true(spin_until(function() return closed("waiting") == 1 end), "the request never came")
    assert.is_true(h.wait(function() return w:failures() == 1 end, 10))
    local res = last_run_result(w)
    assert.is_false(res.ok)
    assert.equal("timeout", res.error)
    assert.is_true(spin_until(function() return closed() == 1 end), "the server saw no close")
    -- The watcher recovers (the default policy) and the next run waits and succeeds.
    assert.is_true(h.wait_state(w, "Ready", 10))
    assert.is_true(w:send("price"))
    assert.is_true(h.wait(function() return #runs >= 3 and w:failures() == 0 end, 10))
    assert.is_true(last_run_result(w).ok)
  end)
end)
