-- hersh.http.request: the loop's HTTP client, against the WatcherAPI of a watcher in
-- this same process (its server thread answers while this loop makes the requests).
local hersh = require "hersh"
local http = require "hersh.http"
local cjson = require "cjson"
local h = require "helpers"

-- A started watcher recording its runs, serving its WatcherAPI on a free port.
local function served(id)
  local w = h.watcher({ id = id })
  local runs = h.record(w)
  assert.is_true(w:start())
  assert.is_true(h.wait_state(w, "Ready"))
  local port = assert(w:serve({ port = 0 }))
  assert.equal(port, w:api_port())
  return w, port, runs
end

local function url(port, path)
  return string.format("http://127.0.0.1:%d%s", port, path)
end

describe("hersh.http.request", function()
  after_each(h.reap)

  it("GET /watcher/status answers 200 with JSON and lowercased headers", function()
    local _, port = served("http-status")
    local res, err = h.fetch({ url = url(port, "/watcher/status") })
    assert.is_nil(err)
    assert.equal(200, res.status)
    assert.equal("application/json", res.headers["content-type"])
    assert.equal(tostring(#res.body), res.headers["content-length"])
    local doc = cjson.decode(res.body)
    assert.equal("http-status", doc.watcherID)
    assert.equal("Ready", doc.state)
    assert.is_true(doc.isRunning)
  end)

  it("POST /watcher/message reaches the reducer", function()
    local _, port, runs = served("http-message")
    local res = h.fetch({
      method = "POST",
      url = url(port, "/watcher/message"),
      headers = { ["Content-Type"] = "application/json", "X-Trace: spec" },
      body = cjson.encode({ content = "hello over http" }),
      timeout = 5,
    })
    assert.equal(200, res.status, res.body)
    assert.is_true(h.wait(function()
      return h.find(runs, function(r) return r.content == "hello over http" end) ~= nil
    end))
  end)

  it("passes HTTP error statuses through as answers", function()
    local _, port = served("http-errors")
    local res, err = h.fetch({ method = "POST", url = url(port, "/watcher/message"), body = "not json" })
    assert.is_nil(err)
    assert.equal(400, res.status)
    assert.is_string(cjson.decode(res.body).error)
    res = h.fetch({ method = "DELETE", url = url(port, "/watcher/status") })
    assert.equal(405, res.status)
  end)

  it("calls back nil, err, ECONNREFUSED when nothing listens", function()
    local res, err, code = h.fetch({ url = "http://127.0.0.1:1/", timeout = 5 })
    assert.is_nil(res)
    assert.equal("connection refused", err)
    assert.equal("ECONNREFUSED", code)
  end)

  it("answers many requests made at once", function()
    local _, port = served("http-many")
    local statuses, n = {}, 20
    for i = 1, n do
      assert.is_true(http.request({ url = url(port, "/watcher/state") }, function(res)
        statuses[i] = res and res.status
      end))
    end
    assert.is_true(h.wait(function()
      for i = 1, n do if statuses[i] == nil then return false end end
      return true
    end))
    for i = 1, n do assert.equal(200, statuses[i]) end
  end)

  -- Each URL is refused at once with nil, err, EINVAL, and the callback never runs.
  local function assert_refused(urls)
    local called = false
    local cb = function() called = true end
    for _, url in ipairs(urls) do
      local ok, err, code = http.request({ url = url }, cb)
      assert.is_nil(ok, url)
      assert.is_string(err)
      assert.equal("EINVAL", code)
    end
    hersh.run_for(0.05)
    assert.is_false(called)
  end

  it("returns nil, err, EINVAL for a URL it cannot use", function()
    assert_refused({ "not a url", "ftp://127.0.0.1/x", "" })
  end)

  it("returns nil, err, EINVAL at once for a path libcurl refuses, and never calls back", function()
    assert_refused({ "http://127.0.0.1:1/a b", "http://127.0.0.1:1/a\tb", "http://127.0.0.1:1/a\r\nX-Injected: 1" })
  end)

  it("calls back nil, \"timeout\", ETIMEOUT when the server accepts and never answers", function()
    local sys = require "hersh.os"
    local fd, port = assert(sys.listen("127.0.0.1", 0)) -- the kernel accepts; nobody answers
    finally(function() sys.close_fd(fd) end)
    local res, err, code = h.fetch({ url = url(port, "/"), timeout = 0.2, connect_timeout = 5 })
    assert.is_nil(res)
    assert.equal("timeout", err)
    assert.equal("ETIMEOUT", code)
  end)

  it("calls back nil, \"connect timeout\", ETIMEOUT when the connection is never accepted", function()
    local sys = require "hersh.os"
    local fd, port = assert(sys.listen("127.0.0.1", 0))
    local waiting, n = 0, 0
    finally(function() sys.close_fd(fd) end)
    -- Fill the listener's accept queue (backlog 128): later connections hang in SYN.
    for _ = 1, 140 do
      n = n + 1
      assert.is_true(http.request({ url = url(port, "/"), timeout = 3 }, function() waiting = waiting + 1 end))
    end
    local res, err, code = h.fetch({ url = url(port, "/"), timeout = 3, connect_timeout = 0.2 })
    assert.is_nil(res)
    assert.equal("connect timeout", err)
    assert.equal("ETIMEOUT", code)
    assert.is_true(h.wait(function() return waiting == n end, 10))
  end)

  it("raises for a caller's bug", function()
    local cb = function() end
    local good = "http://127.0.0.1:1/"
    assert.has_error(function() http.request("http://x", cb) end)
    assert.has_error(function() http.request({ url = good }) end)
    assert.has_error(function() http.request({ url = good }, "not a function") end)
    assert.has_error(function() http.request({}, cb) end)
    assert.has_error(function() http.request({ url = 42 }, cb) end)
    assert.has_error(function() http.request({ url = good, method = "GE T" }, cb) end)
    assert.has_error(function() http.request({ url = good, method = 1 }, cb) end)
    assert.has_error(function() http.request({ url = good, body = {} }, cb) end)
    assert.has_error(function() http.request({ url = good, timeout = -1 }, cb) end)
    assert.has_error(function() http.request({ url = good, timeout = "5" }, cb) end)
    assert.has_error(function() http.request({ url = good, connect_timeout = -1 }, cb) end)
    assert.has_error(function() http.request({ url = good, connect_timeout = "5" }, cb) end)
    assert.has_error(function() http.request({ url = good, headers = "X-A: b" }, cb) end)
    assert.has_error(function() http.request({ url = good, headers = { "no colon" } }, cb) end)
    assert.has_error(function() http.request({ url = good, headers = { ["X-A"] = "b\r\nX-B: c" } }, cb) end)
    assert.has_error(function() http.request({ url = good, headers = { ["bad name"] = "v" } }, cb) end)
  end)

  it("keeps running after a callback raises (the error goes to stderr)", function()
    -- In a child process: the error message it prints stays out of this run's output.
    local r = h.isolated([[
      local http = require "hersh.http"
      local w = h.watcher({ id = "http-raise" })
      h.record(w)
      assert(w:start())
      assert(h.wait_state(w, "Ready"))
      local port = assert(w:serve({ port = 0 }))
      local url = "http://127.0.0.1:" .. port .. "/watcher/status"
      local after
      assert(http.request({ url = url }, function() error("boom in the callback") end))
      assert(http.request({ url = url }, function(res) after = res.status end))
      h.wait(function() return after ~= nil end)
      return { after = after }
    ]])
    assert.equal(200, r.after)
  end)
end)
