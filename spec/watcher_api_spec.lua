-- The WatcherAPI end to end: `hersh run spec/scripts/api_main.lua` in a real process,
-- real HTTP on loopback through curl. Every test starts its own process and stops it
-- (finally, through defer), and every wait is bounded (spec/scripts/process.lua).
local P = require "scripts.process"

local defer = P.defer -- runs fn when the test ends, passed or failed

local SCRIPT = "spec/scripts/api_main.lua"
local RFC3339 = "^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%d%d%d%d%d%d%dZ$"
local GET_ROUTES = {
  "/watcher/status", "/watcher/state", "/watcher/config", "/watcher/watching", "/watcher/memoCache",
  "/watcher/varState", "/watcher/context", "/watcher/vars", "/watcher/signals", "/watcher/logs",
}

-- Starts api_main (opts.capacity: its queue capacity), waits for its announcement and
-- calls body(port, proc, dir). The process and the directory go away in any case.
local function with_api(opts, body)
  local proc, dir = P.run_with_dir(SCRIPT, { args = { opts.capacity and tostring(opts.capacity) } })
  local port, id = P.announced(proc)
  assert.equal("api-main", id)
  body(port, proc, dir)
  -- and it ends cleanly: SIGTERM gives exit 0, with no sanitizer report (build-san)
  if P.alive(proc) then
    assert.is_true(P.signal(proc, "TERM"))
    assert.equal(0, P.wait_exit(proc), P.stderr(proc))
  end
  assert.is_nil(P.sanitizer_report(proc))
end

local function ok_json(res, what)
  assert.equal(200, res.status, (what or "") .. ": " .. res.body)
  assert.equal("application/json", res.headers["content-type"])
  assert.is_table(res.json, (what or "") .. ": not JSON: " .. res.body)
  return res.json
end

-- An error answer: the status, a JSON body {"error": "<non-empty text>"}.
local function assert_error(res, status, part, what)
  what = what or ""
  assert.equal(status, res.status, what .. ": " .. res.body)
  assert.equal("application/json", res.headers["content-type"], what)
  assert.is_table(res.json, what .. ": not JSON: " .. res.body)
  assert.is_string(res.json.error, what)
  assert.is_true(#res.json.error > 0, what)
  if part then
    assert.is_truthy(res.json.error:find(part, 1, true), what .. ": " .. res.json.error)
  end
end

local function sorted_words(text)
  local out = {}
  for word in (text or ""):gmatch("[^,%s]+") do out[#out + 1] = word end
  table.sort(out)
  return out
end

local function contents(list)
  local out = {}
  for i, e in ipairs(list) do out[i] = e.content end
  return out
end

-- The context's "received" list (the messages the reducer got, in order), once it
-- has `n` entries; nil if that never happens.
local function received(port, n)
  local doc = P.poll_json(port, "/watcher/context", function(d)
    return type(d.context.received) == "table" and #d.context.received >= n
  end)
  return doc and doc.context.received
end

local function increasing_ids(list)
  for i = 2, #list do
    if not (list[i].LogID > list[i - 1].LogID) then return false end
  end
  return true
end

describe("WatcherAPI routes", function()
  it("GET /watcher/status: watcherID, state, isRunning, uptime, lastUpdate", function()
    with_api({}, function(port)
      local s = ok_json(P.get(port, "/watcher/status"))
      assert.equal("api-main", s.watcherID)
      assert.equal("Ready", s.state)
      assert.is_true(s.isRunning)
      assert.is_string(s.uptime)
      assert.is_truthy(s.uptime:match("^[%dhm]*%d+%.%d+s$"), s.uptime)
      assert.is_truthy(s.lastUpdate:match(RFC3339), s.lastUpdate)
    end)
  end)

  it("GET /watcher/state: failures, nextRetryAt and lastTrigger, before and after a failed run", function()
    with_api({}, function(port)
      local s = ok_json(P.get(port, "/watcher/state"))
      assert.equal("api-main", s.watcherID)
      assert.equal("Ready", s.state)
      assert.equal(0, s.failures)
      assert.equal(P.null, s.nextRetryAt)
      assert.same({ watcher = true, user = false, vars = {}, reason = "init" }, s.lastTrigger)
      assert.is_truthy(s.lastUpdate:match(RFC3339), s.lastUpdate)
      assert.is_truthy(s.timestamp:match(RFC3339), s.timestamp)

      assert.equal(200, P.send(port, "fail").status)
      local f = P.poll_json(port, "/watcher/state", function(d) return d.failures == 1 end)
      assert.is_table(f, "failures never became 1")
      assert.equal("Ready", f.state) -- a light retry (light_delays = {30}) is pending
      assert.is_string(f.nextRetryAt)
      assert.is_truthy(f.nextRetryAt:match(RFC3339), f.nextRetryAt)
      assert.is_true(f.nextRetryAt > f.timestamp, "the retry is in the future")
      assert.same({ watcher = false, user = true, vars = {}, reason = "message" }, f.lastTrigger)
    end)
  end)

  it("GET /watcher/config: the watcher's configuration and the real port", function()
    with_api({}, function(port)
      local c = ok_json(P.get(port, "/watcher/config"))
      assert.same({
        serverPort = port, signalChanCapacity = 1000, maxLogEntries = 5000, maxMemoEntries = 20,
        maxWatches = 30, timeout = 120, cleanupTimeout = 30,
        recovery = { minFailures = 4, maxFailures = 8, baseDelay = 2, maxDelay = 60 },
      }, c.config)
      assert.is_truthy(c.timestamp:match(RFC3339))
    end)
  end)

  it("GET /watcher/context and /watcher/memoCache: values, with type tags for what JSON cannot hold", function()
    with_api({}, function(port)
      local c = ok_json(P.get(port, "/watcher/context"))
      assert.equal(7, c.count)
      assert.equal("init", c.context.phase)
      assert.same({}, c.context.received)
      assert.equal("<function>", c.context.fn)
      assert.equal("<thread>", c.context.co)
      assert.equal("<userdata>", c.context.ud)
      assert.same({ name = "loop", self = "<cycle>" }, c.context.cyc)
      assert.same({ list = { 1, 2, 3 }, flag = true, text = "x<y>&z" }, c.context.nested)
      assert.is_truthy(c.timestamp:match(RFC3339))

      local m = ok_json(P.get(port, "/watcher/memoCache"))
      assert.equal(2, m.count)
      assert.same({ answer = 42, fnmemo = "<function>" }, m.entries)
    end)
  end)

  it("GET /watcher/watching and /watcher/varState: watch names, values, and a variable holding an error", function()
    with_api({}, function(port)
      local w0 = ok_json(P.get(port, "/watcher/watching"))
      assert.same({}, w0.watchedVars)
      assert.equal(0, w0.count)
      local v0 = ok_json(P.get(port, "/watcher/varState"))
      assert.same({}, v0.variables)
      assert.equal(0, v0.count)

      assert.equal(200, P.send(port, "watch").status)
      -- The poll error is logged at once; it reaches varState with the next reduce.
      assert.is_table(P.poll_json(port, "/watcher/logs?type=watch_error",
        function(d) return d.watchErrorLogs ~= nil end), "no watch error logged")
      local e = P.get(port, "/watcher/logs?type=watch_error").json.watchErrorLogs[1]
      assert.equal("broken_var", e.VarName)
      assert.equal("poll", e.ErrorPhase)
      assert.is_string(e.Error)
      assert.is_truthy(e.Error:find("poll broke on purpose", 1, true))
      assert.equal(200, P.send(port, "nudge").status)
      assert.is_table(received(port, 2))

      local v = P.poll_json(port, "/watcher/varState", function(d) return d.variables.answer_var == 42 end)
      assert.is_table(v, "answer_var never reached 42")
      assert.equal(2, v.count)
      assert.equal(P.null, v.variables.broken_var.value)
      assert.is_string(v.variables.broken_var.error)
      assert.is_truthy(v.variables.broken_var.error:find("poll broke on purpose", 1, true))

      local w = ok_json(P.get(port, "/watcher/watching"))
      table.sort(w.watchedVars)
      assert.same({ "answer_var", "broken_var" }, w.watchedVars)
      assert.equal(2, w.count)
    end)
  end)

  it("GET /watcher/vars: the environment, with names containing KEY, SECRET, TOKEN or PASS masked", function()
    with_api({}, function(port)
      local v = ok_json(P.get(port, "/watcher/vars"))
      assert.equal(8, v.count)
      for _, name in ipairs { "API_KEY", "DB_PASSWORD", "GITHUB_TOKEN", "CLIENT_SECRET", "PASSPHRASE", "MONKEY" } do
        assert.is_string(v.vars[name], name)
        assert.is_falsy(v.vars[name]:find("%w"), name .. " is not masked: " .. v.vars[name])
      end
      assert.equal("eu-west", v.vars.REGION)
      assert.equal("/srv/home", v.vars.HOME_DIR)
      for _, secret in ipairs { "k-123", "hunter2", "t-456", "s-789", "open sesame", "banana" } do
        assert.is_falsy(P.get(port, "/watcher/vars").body:find(secret, 1, true), secret .. " leaked")
      end
      assert.is_truthy(v.timestamp:match(RFC3339))
    end)
  end)

  it("GET /watcher/signals with nothing pending", function()
    with_api({}, function(port)
      local s = ok_json(P.get(port, "/watcher/signals"))
      assert.equal(0, s.varSigCount)
      assert.equal(0, s.userSigCount)
      assert.equal(0, s.managerSigCount)
      assert.equal(0, s.totalPending)
      assert.same({}, s.recentSignals)
      assert.is_truthy(s.timestamp:match(RFC3339))
    end)
  end)

  it("GET /watcher/logs: every non-empty log with its fields, errors as text", function()
    with_api({}, function(port)
      assert.equal(200, P.send(port, "fail").status)
      assert.is_table(P.poll_json(port, "/watcher/state", function(d) return d.failures == 1 end))
      local all = ok_json(P.get(port, "/watcher/logs?limit=1000"))
      assert.is_nil(all.watchErrorLogs) -- empty lists are left out
      assert.is_nil(all.stateFaultLogs)

      local red = all.reduceLogs
      assert.equal(2, #red)
      assert.same({ "watcher", "init", P.null, "NotRun", "Ready" },
        { red[1].Signal, red[1].Reason, red[1].Detail, red[1].PrevState, red[1].NextState })
      assert.same({ "user", "message", "fail", "Ready", "Ready" },
        { red[2].Signal, red[2].Reason, red[2].Detail, red[2].PrevState, red[2].NextState })

      local res = all.effectResults
      assert.equal(2, #res)
      assert.same({ "run", true, P.null }, { res[1].Effect, res[1].Success, res[1].Error })
      assert.same({ "run", false }, { res[2].Effect, res[2].Success })
      assert.is_string(res[2].Error)
      assert.is_truthy(res[2].Error:find("boom on purpose", 1, true), res[2].Error)

      local by_key = {}
      for _, e in ipairs(all.contextLogs) do by_key[e.Key] = by_key[e.Key] or e end
      assert.same({ "initialized", P.null, "<function>" },
        { by_key.fn.Operation, by_key.fn.OldValue, by_key.fn.NewValue })
      assert.same({ name = "loop", self = "<cycle>" }, by_key.cyc.NewValue)
      local upd = all.contextLogs[#all.contextLogs]
      assert.same({ "received", "updated", {}, { "fail" } }, { upd.Key, upd.Operation, upd.OldValue, upd.NewValue })

      local eff = all.effectLogs
      assert.equal("got fail", eff[#eff].Message)
      for _, list in pairs(all) do
        assert.is_true(increasing_ids(list))
        for _, e in ipairs(list) do
          assert.is_number(e.LogID)
          assert.is_truthy(e.Timestamp:match(RFC3339), e.Timestamp)
        end
      end
    end)
  end)

  it("GET /watcher/logs: type picks one log, an empty log gives {}", function()
    with_api({}, function(port)
      local keys = {
        reduce = "reduceLogs", effect = "effectLogs", effect_result = "effectResults", context = "contextLogs",
        result = "effectResults", -- the older Lua name, an alias
      }
      for t, key in pairs(keys) do
        local doc = ok_json(P.get(port, "/watcher/logs?type=" .. t), t)
        local names = {}
        for k in pairs(doc) do names[#names + 1] = k end
        assert.same({ key }, names)
      end
      for _, t in ipairs { "state_fault", "fault", "watch_error" } do
        local r = P.get(port, "/watcher/logs?type=" .. t)
        assert.equal(200, r.status)
        assert.is_truthy(r.body:match("^{}%s*$"), t .. ": " .. r.body)
      end
      local all = ok_json(P.get(port, "/watcher/logs?type=all"))
      assert.is_table(all.reduceLogs)
      assert.is_table(all.effectLogs)
    end)
  end)

  it("GET /watcher/logs: limit gives the newest N, oldest first; the default is 100", function()
    with_api({}, function(port)
      local full = ok_json(P.get(port, "/watcher/logs?type=effect&limit=100000")).effectLogs
      assert.is_true(#full >= 120)
      local lines = {}
      for _, e in ipairs(full) do
        if e.Message:match("^line %d+$") then lines[#lines + 1] = e.Message end
      end
      assert.equal(120, #lines)
      assert.equal("line 1", lines[1])
      assert.equal("line 120", lines[120])

      local three = ok_json(P.get(port, "/watcher/logs?type=effect&limit=3")).effectLogs
      assert.same({ "line 118", "line 119", "line 120" }, { three[1].Message, three[2].Message, three[3].Message })
      assert.same({ full[#full - 2], full[#full - 1], full[#full] }, three)

      local default = ok_json(P.get(port, "/watcher/logs?type=effect")).effectLogs
      assert.equal(100, #default)
      assert.same(full[#full - 99], default[1])
      assert.same(full[#full], default[100])

      local ones = ok_json(P.get(port, "/watcher/logs?limit=1"))
      local every = ok_json(P.get(port, "/watcher/logs?limit=100000"))
      for key, list in pairs(every) do
        assert.equal(1, #ones[key], key)
        assert.same(list[#list], ones[key][1], key)
      end
    end)
  end)

  it("POST /watcher/message: messages reach the reducer in the order sent", function()
    with_api({}, function(port)
      local sent = {}
      for i = 1, 30 do
        sent[i] = string.format("m%02d", i)
        local r = P.send(port, sent[i])
        assert.equal(200, r.status, r.body)
        assert.same({ status = "message sent" }, r.json)
      end
      assert.same(sent, received(port, 30))
      local details = {}
      for _, e in ipairs(P.get(port, "/watcher/logs?type=reduce&limit=1000").json.reduceLogs) do
        if e.Signal == "user" then details[#details + 1] = e.Detail end
      end
      assert.same(sent, details)
      -- unknown fields are ignored
      assert.equal(200, P.post_json(port, "/watcher/message", { content = "extra", other = 1 }).status)
      assert.equal("extra", received(port, 31)[31])
    end)
  end)

  it("HEAD answers on every GET route, without a body", function()
    with_api({}, function(port)
      for _, path in ipairs(GET_ROUTES) do
        local r = P.http(port, "HEAD", path)
        assert.equal(200, r.status, path)
        assert.equal("application/json", r.headers["content-type"], path)
      end
    end)
  end)

  it("a wrong method gets 405 with an Allow header and a JSON error", function()
    with_api({}, function(port)
      for _, path in ipairs(GET_ROUTES) do
        for _, method in ipairs { "POST", "PUT", "DELETE" } do
          local r = P.http(port, method, path)
          assert_error(r, 405, nil, method .. " " .. path)
          assert.same({ "GET", "HEAD" }, sorted_words(r.headers["allow"]), method .. " " .. path)
        end
      end
      for _, method in ipairs { "GET", "PUT", "DELETE", "HEAD" } do
        local r = P.http(port, method, "/watcher/message")
        assert.equal(405, r.status, method)
        assert.same({ "POST" }, sorted_words(r.headers["allow"]), method)
        if method ~= "HEAD" then assert_error(r, 405, nil, method .. " /watcher/message") end
      end
    end)
  end)

  it("an unknown path gets 404 with a JSON error", function()
    with_api({}, function(port)
      for _, req in ipairs {
        { "GET", "/" }, { "GET", "/watcher" }, { "GET", "/watcher/" }, { "GET", "/watcher/nope" },
        { "GET", "/watcher/status/extra" }, { "GET", "/Watcher/status" }, { "POST", "/watcher/messages" },
        { "DELETE", "/nope" },
      } do
        assert_error(P.http(port, req[1], req[2]), 404, nil, req[1] .. " " .. req[2])
      end
    end)
  end)

  it("bad input gets the right 4xx and {\"error\": ...}; nothing crashes, nothing reaches the reducer", function()
    with_api({}, function(port, proc)
      local cases = {
        -- { body, status, part of the error text }
        { "{bad", 400, "invalid request body" },
        { "not json", 400, "invalid request body" },
        { '{"content": "abc"', 400, "invalid request body" },
        { '{"content": "abc"} trailing', 400, "invalid request body" },
        { "", 400, nil },
        { "[]", 400, nil },
        { "null", 400, nil },
        { '"content"', 400, nil },
        { "{}", 400, "message content cannot be empty" },
        { '{"content": ""}', 400, "message content cannot be empty" },
        { '{"content": null}', 400, "message content cannot be empty" },
        { '{"other": "x"}', 400, "message content cannot be empty" },
        { '{"content": 5}', 400, nil },
        { '{"content": {"a": 1}}', 400, nil },
        { '{"content": ["a"]}', 400, nil },
        { '{"content": "' .. string.rep("z", 64 * 1024) .. '"}', 413, nil },
        { string.rep("x", 64 * 1024 + 1), 413, nil },
        { string.rep("x", 1024 * 1024), 413, nil },
      }
      for i, c in ipairs(cases) do
        local what = string.format("case %d (%s)", i, c[1]:sub(1, 30))
        assert_error(P.http(port, "POST", "/watcher/message", { body = c[1] }), c[2], c[3], what)
      end
      assert_error(P.http(port, "POST", "/watcher/message"), 400, nil, "no body at all")

      assert_error(P.get(port, "/watcher/logs?type=bogus"), 400, "invalid log type", "type=bogus")
      assert_error(P.get(port, "/watcher/logs?type=reduce,effect"), 400, "invalid log type", "two types")
      for _, limit in ipairs { "abc", "-1", "-100", "0", "", "1.5", "10abc", "%20" } do
        assert_error(P.get(port, "/watcher/logs?limit=" .. limit), 400, "limit", "limit=" .. limit)
        assert_error(P.get(port, "/watcher/logs?type=effect&limit=" .. limit), 400, "limit", "limit=" .. limit)
      end

      assert.is_true(P.alive(proc), P.stderr(proc))
      local s = ok_json(P.get(port, "/watcher/status"))
      assert.equal("Ready", s.state)
      assert.equal(200, P.send(port, "still here").status)
      assert.same({ "still here" }, received(port, 1))
      local sig = ok_json(P.get(port, "/watcher/signals"))
      assert.equal(0, sig.totalPending)
    end)
  end)

  it("a body of exactly 64 KiB is taken and delivered whole", function()
    with_api({}, function(port)
      local prefix, suffix = '{"content":"', '"}'
      local content = string.rep("y", 64 * 1024 - #prefix - #suffix)
      local r = P.http(port, "POST", "/watcher/message", { body = prefix .. content .. suffix })
      assert.equal(200, r.status, r.body)
      local got = received(port, 1)
      assert.equal(#content, #got[1])
      assert.equal(content, got[1])
    end)
  end)
end)

describe("WatcherAPI under load and during runs", function()
  it("a full message queue gets 503; what was taken is delivered in order", function()
    with_api({ capacity = 3 }, function(port, proc, dir)
      assert.equal(200, P.send(port, "hold:q").status)
      assert.is_true(P.wait_stderr(proc, "HOLD-START q"))
      for _, m in ipairs { "a", "b", "c" } do assert.equal(200, P.send(port, m).status, m) end
      assert_error(P.send(port, "d"), 503, "queue full", "fourth message")
      assert_error(P.send(port, "e"), 503, "queue full", "fifth message")
      local s = ok_json(P.get(port, "/watcher/signals"))
      assert.equal(3, s.userSigCount)
      assert.same({ "a", "b", "c" }, contents(s.recentSignals))
      P.write(dir .. "/q", "")
      assert.same({ "hold:q", "a", "b", "c" }, received(port, 4))
      assert.equal(200, P.send(port, "f").status) -- room again
      assert.same({ "hold:q", "a", "b", "c", "f" }, received(port, 5))
      assert.is_true(P.alive(proc))
    end)
  end)

  it("/watcher/signals shows pending messages in order, and reading it does not reorder them", function()
    with_api({}, function(port, proc, dir)
      assert.equal(200, P.send(port, "hold:s").status)
      assert.is_true(P.wait_stderr(proc, "HOLD-START s"))
      local sent = {}
      for i = 1, 12 do
        sent[i] = string.format("s%02d", i)
        assert.equal(200, P.send(port, sent[i]).status)
      end
      local first = ok_json(P.get(port, "/watcher/signals"))
      local second = ok_json(P.get(port, "/watcher/signals"))
      for _, s in ipairs { first, second } do
        assert.equal(12, s.userSigCount)
        assert.equal(0, s.varSigCount)
        assert.equal(0, s.managerSigCount)
        assert.equal(12, s.totalPending)
        assert.equal(10, #s.recentSignals) -- at most 10 per kind, from the front
        assert.same({ table.unpack(sent, 1, 10) }, contents(s.recentSignals))
        for i, e in ipairs(s.recentSignals) do
          assert.equal("user", e.type)
          assert.is_truthy(e.createdAt:match(RFC3339))
          if i > 1 then assert.is_true(e.createdAt >= s.recentSignals[i - 1].createdAt) end
        end
      end
      assert.same(first.recentSignals, second.recentSignals)
      P.write(dir .. "/s", "")
      local expected = { "hold:s" }
      for i, m in ipairs(sent) do expected[i + 1] = m end
      assert.same(expected, received(port, 13))
      assert.equal(0, ok_json(P.get(port, "/watcher/signals")).totalPending)
    end)
  end)

  it("/watcher/status answers during a busy run, before it ends, and says Running", function()
    with_api({}, function(port, proc, dir)
      assert.equal(200, P.send(port, "before").status)
      assert.same({ "before" }, received(port, 1))
      -- the run spins until the spec releases it: the answers below come during it
      assert.equal(200, P.send(port, "hold:long").status)
      assert.is_true(P.wait_stderr(proc, "HOLD-START long"))

      local s = ok_json(P.get(port, "/watcher/status"))
      assert.equal("Running", s.state)
      assert.is_true(s.isRunning)
      assert.equal("api-main", s.watcherID)
      -- the other monitoring routes show the values of the last completed reduce
      local c = ok_json(P.get(port, "/watcher/context"))
      assert.same({ "before" }, c.context.received)
      assert.equal("after before", c.context.phase)
      local st = ok_json(P.get(port, "/watcher/state"))
      assert.equal("Running", st.state)
      assert.same({ watcher = false, user = true, vars = {}, reason = "message" }, st.lastTrigger)
      -- the logs are read live, under their own lock: they answer too
      assert.is_table(ok_json(P.get(port, "/watcher/logs?type=reduce&limit=1")).reduceLogs)
      assert.equal(200, P.send(port, "during").status)
      local sig = ok_json(P.get(port, "/watcher/signals"))
      assert.same({ "during" }, contents(sig.recentSignals))
      -- all of that was answered while the run was still in progress
      assert.is_falsy(P.stderr(proc):find("HOLD-END long", 1, true), "the answers came only after the run ended")

      P.write(dir .. "/long", "")
      assert.is_true(P.wait_stderr(proc, "HOLD-END long"))
      assert.same({ "before", "hold:long", "during" }, received(port, 3))
      assert.equal("Ready", ok_json(P.get(port, "/watcher/status")).state)
    end)
  end)

  it("answers during the cleanup: the state fault of a refused stop, 409 for a message", function()
    with_api({}, function(port, proc, dir)
      P.write(dir .. "/hold-cleanup", "")
      assert.equal(200, P.send(port, "double-stop").status)
      assert.is_true(P.wait_stderr(proc, "CLEANUP-START"))
      assert.is_truthy(P.stderr(proc):find("DOUBLE-STOP true nil already stopped", 1, true), P.stderr(proc))

      local f = ok_json(P.get(port, "/watcher/logs?type=state_fault")).stateFaultLogs
      assert.equal(1, #f)
      assert.same({ "Running", "Stopped", "already stopped" }, { f[1].FromState, f[1].ToState, f[1].Reason })
      assert.is_number(f[1].LogID)
      assert.is_truthy(f[1].Timestamp:match(RFC3339))
      assert_error(P.send(port, "late"), 409, "stopped", "a message during the cleanup")
      assert.equal(200, P.get(port, "/watcher/status").status)

      P.write(dir .. "/release-cleanup", "")
      assert.equal(0, P.wait_exit(proc))
      assert.is_truthy(P.stderr(proc):find("CLEANUP-END", 1, true))
    end)
  end)
end)
