-- The Host's proxy (/programs/{id}/proxy/...) under attack, end to end: a real
-- `hersh host`, real programs in the sandbox, and raw requests written byte for byte
-- to a TCP socket (scripts.raw_http), since curl would clean up what an attacker
-- sends. Whatever arrives, the client gets an answer at once: a 400 naming what is
-- wrong for what cannot be forwarded, never a request left waiting, never a 500
-- with a Lua stack location. A program that never answers gets a 504 after its own
-- proxy timeout (create field proxy = {connect_timeout, timeout}).
local H = require "scripts.host_harness"
local sandbox = require "host.sandbox"
local raw = require "scripts.raw_http"
local P = H.P

local SILENT = "spec/programs/silent"

-- The answer shows nothing of the Host's insides.
local function no_lua_location(res)
  assert.is_nil(res.raw:find("%.lua:%d+"), "a Lua location leaked: " .. res.raw)
  assert.is_nil(res.raw:find("traceback", 1, true), res.raw)
end

-- A 400 in the Host's error shape, at once (the raw client waits at most its timeout).
local function assert_400(res, what)
  assert.equal(400, res.status, what .. ": " .. res.raw)
  assert.equal("application/json", res.headers["content-type"], what)
  assert.is_table(res.json, what)
  assert.equal(400, res.json.code, what)
  assert.is_string(res.json.message, what)
  no_lua_location(res)
end

-- Once per sandbox driver a Host runs by itself (swarm's: spec/swarm_spec.lua): under
-- gvisor the proxy reaches the program through the port's relay to its unix socket
-- (docs/gvisor.md).
for _, driver in ipairs(require("scripts.sandbox_harness").DRIVERS) do
  local usable, why = sandbox.get(driver)
  local function need_driver()
    if not usable then pending("this driver cannot run here: " .. why) end
    return usable ~= nil
  end
  describe("hersh host: the proxy refuses what it cannot forward (" .. driver .. ")", function()
    local h, id, prefix

    lazy_setup(function()
      if not usable then return end
      h = H.start_host()
      id = H.create(h, H.counter_body("attacker", { isolation = driver })).program_id
      H.start_ready(h, id)
      prefix = "/programs/" .. id .. "/proxy"
    end)

    lazy_teardown(function() if h then H.stop_host(h) end end)

    local function send(method, target, lines)
      return raw.request(h.port, raw.build(method, target, h.port, lines))
    end

    it("forwards a plain request (the raw client works)", function()
      if not need_driver() then return end
      local res = send("GET", prefix .. "/watcher/status")
      assert.equal(200, res.status, res.raw)
      assert.is_table(res.json, res.raw)
    end)

    it("answers a CR LF smuggled into the path (%0d%0a) with 400", function()
      if not need_driver() then return end
      local res = send("GET", prefix .. "/watcher/status%0d%0aX-Injected:%20yes")
      assert_400(res, "%0d%0a")
      assert.truthy(res.json.message:find("control character", 1, true), res.raw)
    end)

    it("answers an encoded tab (%09) or DEL (%7f) in the path with 400", function()
      if not need_driver() then return end
      assert_400(send("GET", prefix .. "/watcher%09status"), "%09")
      assert_400(send("GET", prefix .. "/watcher%7fstatus"), "%7f")
    end)

    it("answers a raw tab in the request line at once, never leaving it waiting", function()
      if not need_driver() then return end
      local res = send("GET", prefix .. "/watcher\tstatus")
      assert_400(res, "a raw tab")
      assert.truthy(res.json.message:find("control character", 1, true), res.raw)
    end)

    it("forwards an encoded space (%20) encoded again, so the program answers it", function()
      if not need_driver() then return end
      local res = send("GET", prefix .. "/watcher%20status")
      assert.equal(404, res.status, res.raw) -- the program's WatcherAPI: no such route
      assert.truthy(res.body:find("/watcher status", 1, true), res.raw) -- it got %20, decoded it
      no_lua_location(res)
      -- and a path that holds a # or a ? once decoded reaches the program as a path
      assert.equal(404, send("GET", prefix .. "/watcher%3Fstatus").status)
      assert.equal(404, send("GET", prefix .. "/watcher%23status").status)
    end)

    it("answers a method that is not an HTTP token with 400, not a 500 with a Lua location", function()
      if not need_driver() then return end
      for _, method in ipairs{ "G(T", "GE\"T", "G{T}", "GET:" } do
        local res = send(method, prefix .. "/watcher/status")
        assert_400(res, method)
        assert.truthy(res.json.message:find("not an HTTP token", 1, true), res.raw)
      end
    end)

    it("answers a header value with a bare CR with 400, not a 500 with a Lua location", function()
      if not need_driver() then return end
      local res = send("GET", prefix .. "/watcher/status", { "X-Evil: a\rInjected: yes" })
      assert_400(res, "a bare CR")
      assert.truthy(res.json.message:find("x-evil", 1, true), res.raw)
    end)

    it("still serves the program after all that", function()
      if not need_driver() then return end
      assert.equal(200, send("GET", prefix .. "/watcher/status").status)
      assert.equal(200, H.call(h, "GET", "/programs/" .. id).status)
    end)

    it("stops cleanly on SIGTERM", function()
      if not need_driver() then return end
      H.assert_clean_exit(h)
    end)
  end)
end

describe("hersh host: proxy timeouts per program", function()
  local h

  lazy_setup(function() h = H.start_host() end)
  lazy_teardown(function() H.stop_host(h) end)

  local function silent_body(user_id, proxy)
    return { user_id = user_id, dockerfile = assert(P.read(SILENT .. "/Dockerfile")),
      src_files = { ["silent.py"] = assert(P.read(SILENT .. "/silent.py")) }, proxy = proxy }
  end

  it("shows the defaults in GET /programs/{id}: 30 s to answer, 10 s to connect", function()
    local doc = H.create(h, H.counter_body("defaults"))
    assert.same({ connect_timeout = 10, timeout = 30 }, H.view(h, doc.program_id).proxy)
  end)

  it("takes proxy = {connect_timeout, timeout} at create and shows it", function()
    local doc = H.create(h, H.counter_body("tuned", { proxy = { connect_timeout = 2, timeout = 120.5 } }))
    assert.same({ connect_timeout = 2, timeout = 120.5 }, H.view(h, doc.program_id).proxy)
    doc = H.create(h, H.counter_body("half", { proxy = { timeout = 5 } }))
    assert.same({ connect_timeout = 10, timeout = 5 }, H.view(h, doc.program_id).proxy)
  end)

  it("refuses bad proxy settings with 400 naming them, and creates nothing", function()
    local before = H.call(h, "GET", "/programs").json.count
    for _, bad in ipairs{
      { proxy = "fast" }, { proxy = { 5 } }, { proxy = { timeout = 0 } }, { proxy = { timeout = -1 } },
      { proxy = { timeout = 3601 } }, { proxy = { connect_timeout = "5" } }, { proxy = { retries = 3 } },
    } do
      local res = H.call(h, "POST", "/programs", H.counter_body("bad", bad))
      H.assert_error(res, 400, require("cjson").encode(bad))
      assert.truthy(res.json.message:find("proxy", 1, true), res.body)
    end
    local huge = require("cjson").encode(H.counter_body("bad", { proxy = { timeout = 12345 } })):gsub("12345", "1e999")
    H.assert_error(H.call(h, "POST", "/programs", huge), 400, "an infinite timeout")
    local res = H.call(h, "POST", "/programs", H.counter_body("bad", { proxy = { retries = 3 } }))
    assert.truthy(res.json.message:find("retries", 1, true), res.body)
    assert.equal(before, H.call(h, "GET", "/programs").json.count)
  end)

  it("answers 504 after the program's own timeout when its backend accepts and never answers", function()
    local doc = H.create(h, silent_body("silent", { timeout = 1 }))
    H.start_ready(h, doc.program_id)
    local res = H.call(h, "GET", "/programs/" .. doc.program_id .. "/proxy/anything")
    H.assert_error(res, 504, "a backend that never answers")
    assert.truthy(res.json.message:find("did not answer within 1 s", 1, true), res.body)
    -- the Host itself goes on answering
    assert.equal(200, H.call(h, "GET", "/health").status)
  end)

  it("stops cleanly on SIGTERM", function()
    H.assert_clean_exit(h)
  end)
end)
