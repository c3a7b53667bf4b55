-- hersh.httpd.serve: Lua handlers on the loop answering requests that libmicrohttpd
-- serves on the same loop, with no thread of its own. Requests come from the project's client (hersh.http.request,
-- on this same loop) and from the curl command line (hersh.os.spawn) for streams. Every
-- wait is bounded.
local core = require "hersh.core"
local sys = require "hersh.os"
local httpd = require "hersh.httpd"
local http = require "hersh.http"
local cjson = require "cjson"
local h = require "helpers"

local CURL = "/usr/bin/curl"

local serve, url = h.serve, h.url

-- Makes a request, waits (bounded) for its answer and returns it.
local function fetch(opts)
  local res, err, code = h.fetch(opts)
  assert.is_table(res, tostring(err) .. " " .. tostring(code))
  return res
end

-- curl in the background; its stdout lines are collected as they come.
local function curl(args)
  local run = { lines = {} }
  local argv = { CURL, "-sN", "--max-time", "20" }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  run.proc = assert(sys.spawn {
    argv = argv,
    on_line = function(stream, line)
      if stream == "stdout" then run.lines[#run.lines + 1] = line end
    end,
    on_exit = function(code) run.code = code or -1 end,
  })
  return run
end

describe("httpd.serve", function()
  after_each(h.close_servers)

  it("answers from the handler at once, with the request as a table", function()
    local seen
    local srv = serve(function(req, res)
      seen = req
      res:send(200, cjson.encode({ path = req.path }), { ["X-Served-By"] = "lua" })
    end)
    assert.is_true(srv:port() > 0)
    local res = fetch({
      method = "POST",
      url = url(srv, "/things/1?a=1&b=two&flag"),
      headers = { ["X-Test"] = "yes", ["Content-Type"] = "text/plain" },
      body = "hello body",
    })
    assert.equal(200, res.status)
    assert.equal("application/json", res.headers["content-type"])
    assert.equal("lua", res.headers["x-served-by"])
    assert.same({ path = "/things/1" }, cjson.decode(res.body))
    assert.equal("POST", seen.method)
    assert.equal("/things/1", seen.path)
    assert.same({ a = "1", b = "two", flag = "" }, seen.query)
    assert.equal("yes", seen.headers["x-test"])
    assert.equal("text/plain", seen.headers["content-type"])
    assert.equal("hello body", seen.body)
    local plain = fetch({ url = url(srv, "/") })
    assert.equal("", seen.body)
    assert.same({}, seen.query)
    assert.equal(200, plain.status)
  end)

  -- The threads of this process (the kernel's count: what any thread can observe).
  local function threads()
    local f = assert(io.open("/proc/self/status"))
    local n = tonumber(f:read("a"):match("\nThreads:%s*(%d+)"))
    f:close()
    return n
  end

  it("serves on the loop thread: no thread starts for it, none runs while it answers", function()
    local before = threads()
    local during
    local srv = serve(function(_, res)
      during = threads()
      res:send(200, "{}")
    end)
    assert.equal(before, threads())
    for _ = 1, 3 do assert.equal(200, fetch({ url = url(srv, "/") }).status) end
    assert.equal(before, during)
    srv:close()
    assert.equal(before, threads())
  end)

  it("a handler may close its own server: its answer still goes out", function()
    local srv
    srv = serve(function(_, res)
      res:send(200, "bye")
      srv:close()
    end)
    local res = fetch({ url = url(srv, "/") })
    assert.equal(200, res.status)
    assert.equal("bye", res.body)
    local port, again = srv:port(), nil
    assert(http.request({ url = "http://127.0.0.1:" .. port .. "/", timeout = 5 },
      function(...) again = table.pack(...) end))
    assert.is_true(h.wait(function() return again ~= nil end))
    assert.is_nil(again[1])
  end)

  it("on_headers sees a request before its body: it answers it, or leaves it to the handler", function()
    local early, handled = {}, {}
    local srv = serve(function(req, res)
      handled[#handled + 1] = req.path
      res:send(200, "handler:" .. req.body)
    end, {
      on_headers = function(req, res)
        early[#early + 1] = req.path .. ":" .. req.body
        if req.path == "/early" then res:send(201, "early") end
        if req.path == "/later" then
          core.timer(0.05, function() res:send(202, "later") end)
          return true
        end
        if req.path == "/broken" then error("on_headers broke") end
      end,
    })
    local function post(path)
      return fetch({ method = "POST", url = url(srv, path), body = "the body" })
    end
    local res = post("/early")
    assert.equal(201, res.status)
    assert.equal("early", res.body)
    res = post("/later")
    assert.equal(202, res.status)
    assert.equal("later", res.body)
    res = post("/usual")
    assert.equal(200, res.status)
    assert.equal("handler:the body", res.body)
    res = post("/broken")
    assert.equal(500, res.status)
    assert.is_truthy(cjson.decode(res.body).error:find("on_headers broke", 1, true))
    assert.same({ "/early:", "/later:", "/usual:", "/broken:" }, early)
    assert.same({ "/usual" }, handled)
    assert.has_error(function() httpd.serve({ handler = function() end, on_headers = 1 }) end)
  end)

  it("answers later, from a timer", function()
    local srv = serve(function(req, res)
      core.timer(0.05, function()
        res:send(202, "later " .. req.path, { ["Content-Type"] = "text/plain" })
      end)
    end)
    local res = fetch({ url = url(srv, "/slow") })
    assert.equal(202, res.status)
    assert.equal("text/plain", res.headers["content-type"])
    assert.equal("later /slow", res.body)
  end)

  it("answers 500 with a JSON error when the handler raises", function()
    local srv = serve(function() error("the handler broke") end)
    local res = fetch({ url = url(srv, "/boom") })
    assert.equal(500, res.status)
    assert.equal("application/json", res.headers["content-type"])
    local doc = cjson.decode(res.body)
    assert.is_truthy(doc.error:find("the handler broke", 1, true))
    assert.is_nil(doc.error:find("traceback", 1, true))
  end)

  it("answers 500 when res is collected unanswered", function()
    local srv = serve(function() end)
    local got
    assert(http.request({ url = url(srv, "/forgotten") }, function(res) got = res end))
    local t = core.timer(0.02, function() collectgarbage() end, 0.02)
    assert.is_true(h.wait(function() return got ~= nil end))
    t:stop()
    assert.equal(500, got.status)
    assert.is_truthy(cjson.decode(got.body).error:find("never answered", 1, true))
  end)

  it("streams chunks to curl as they are written", function()
    local stream
    local srv = serve(function(_, res)
      stream = res:stream(200, { ["Content-Type"] = "text/plain" })
      assert(stream:write("one\n"))
    end)
    local run = curl({ url(srv, "/follow") })
    -- each chunk reaches curl before the next one is written
    assert.is_true(h.wait(function() return #run.lines >= 1 end))
    assert(stream:write("two\n"))
    assert.is_true(h.wait(function() return #run.lines >= 2 end))
    assert(stream:write("three\n"))
    assert.is_true(h.wait(function() return #run.lines >= 3 end))
    stream:finish()
    assert.is_true(h.wait(function() return run.code ~= nil end))
    assert.equal(0, run.code)
    assert.same({ "one", "two", "three" }, run.lines)
    assert.has_error(function() stream:write("four\n") end)
  end)

  it("tells a stream that its client left: closed() and on_close", function()
    local stream, closes = nil, 0
    local srv = serve(function(_, res)
      stream = res:stream(200)
      stream:on_close(function() closes = closes + 1 end)
      stream:write("first\n")
    end)
    local run = curl({ url(srv, "/quiet") })
    assert.is_true(h.wait(function() return #run.lines >= 1 end))
    assert.is_false(stream:closed())
    run.proc:kill("KILL")
    assert.is_true(h.wait(function() return closes == 1 end))
    assert.is_true(stream:closed())
    local ok, err, code = stream:write("anyone?\n")
    assert.is_nil(ok)
    assert.is_string(err)
    assert.equal("ESTATE", code)
    stream:finish()
    local late = 0
    stream:on_close(function() late = late + 1 end) -- finished: nothing left to tell
    assert.equal(0, late)
    assert.equal(1, closes)
  end)

  it("answers many requests in parallel", function()
    local srv = serve(function(req, res)
      core.timer(math.random() * 0.05, function()
        res:send(200, cjson.encode({ n = tonumber(req.query.n) }))
      end)
    end)
    local N, got, bad = 100, 0, {}
    for i = 1, N do
      assert(http.request({ url = url(srv, "/n?n=" .. i), timeout = 20 }, function(res, err)
        if res and res.status == 200 and cjson.decode(res.body).n == i then got = got + 1
        else bad[#bad + 1] = tostring(err or res.status) end
      end))
    end
    assert.is_true(h.wait(function() return got + #bad == N end, 30))
    assert.same({}, bad)
    assert.equal(N, got)
  end)

  it("close() answers what still waits with 503 and stops accepting", function()
    local kept
    local srv = serve(function(_, res) kept = res end)
    local got
    assert(http.request({ url = url(srv, "/wait") }, function(...) got = table.pack(...) end))
    assert.is_true(h.wait(function() return kept ~= nil end))
    local port = srv:port()
    srv:close()
    assert.is_true(h.wait(function() return got ~= nil end))
    assert.is_table(got[1], tostring(got[2]))
    assert.equal(503, got[1].status)
    assert.is_truthy(cjson.decode(got[1].body).error:find("stopping", 1, true))
    local ok, _, code = kept:send(200, "{}")
    assert.is_nil(ok)
    assert.equal("ESTATE", code)
    local again
    assert(http.request({ url = "http://127.0.0.1:" .. port .. "/", timeout = 5 },
      function(...) again = table.pack(...) end))
    assert.is_true(h.wait(function() return again ~= nil end))
    assert.is_nil(again[1])
    srv:close() -- twice is fine
  end)

  it("returns nil, err, code when it cannot listen", function()
    local srv = serve(function(_, res) res:send(200, "{}") end)
    local other, err, code = httpd.serve({ port = srv:port(), handler = function() end })
    assert.is_nil(other)
    assert.is_string(err)
    assert.equal("ESYS", code)
  end)

  it("raises on a caller's bug", function()
    assert.has_error(function() httpd.serve() end)
    assert.has_error(function() httpd.serve({}) end)
    assert.has_error(function() httpd.serve({ handler = 42 }) end)
    assert.has_error(function() httpd.serve({ handler = function() end, port = "x" }) end)
    assert.has_error(function() httpd.serve({ handler = function() end, port = 70000 }) end)
    local errors = {}
    local srv = serve(function(_, res)
      for _, bad in ipairs {
        function() res:send("ok") end,
        function() res:send(42) end,
        function() res:send(200, "{}", { ["Bad Name"] = "x" }) end,
        function() res:send(200, "{}", { ["X-Split"] = "a\r\nb" }) end,
      } do
        errors[#errors + 1] = pcall(bad)
      end
      res:send(200, "{}")
      errors[#errors + 1] = pcall(res.send, res, 200, "{}")
      errors[#errors + 1] = pcall(res.stream, res, 200)
    end)
    assert.equal(200, fetch({ url = url(srv, "/") }).status)
    assert.same({ false, false, false, false, false, false }, errors)
  end)

  -- The functions the registry holds (each callback a pending request keeps).
  local function registry_functions()
    local n = 0
    for _, v in pairs(debug.getregistry()) do
      if type(v) == "function" then n = n + 1 end
    end
    return n
  end

  it("http.proxy raises a caller's bug with hersh.http's prefix and keeps no callback of it", function()
    local seen = {}
    local srv = serve(function(_, res)
      local _, bad_method = pcall(http.proxy, { method = "NO GOOD", url = "http://127.0.0.1:1/" }, res, function() end)
      local _, no_url = pcall(http.proxy, {}, res, function() end)
      seen.bad_method, seen.no_url = bad_method, no_url
      res:send(200, "{}")
      local before = registry_functions()
      for _ = 1, 100 do
        local ok, err = pcall(http.proxy, { url = "http://127.0.0.1:1/" }, res, function() end)
        seen.answered_ok, seen.answered = ok, err
      end
      seen.kept = registry_functions() - before
    end)
    assert.equal(200, fetch({ url = url(srv, "/") }).status)
    assert.truthy(tostring(seen.bad_method):find("hersh.http: bad method 'NO GOOD'", 1, true), seen.bad_method)
    assert.truthy(tostring(seen.no_url):find("hersh.http: opts.url is required", 1, true), seen.no_url)
    assert.is_false(seen.answered_ok)
    assert.truthy(tostring(seen.answered):find("already sent", 1, true), seen.answered)
    assert.equal(0, seen.kept)
  end)
end)
