-- The proxy's fast path (src/http/proxy_route.c): a request for a Ready program's proxy
-- is forwarded from a route table in C, never entering Lua; the Host keeps that table
-- current at every change of a program (host.lua, Host:route). What is asserted is what
-- a client or the program sees, for each change a stale table would get wrong: a
-- program not Ready, stopped, deleted, its name given to another, its proxy timeout
-- updated; and that the checks of who may call still hold on that path (the bearer
-- token, the Host and Origin headers, a JSON body), and that it forwards what the Lua
-- route forwarded (the path and query encoded the same, repeated headers joined).
-- A real `hersh host`, real programs in the sandbox (spec/programs/upstream), raw
-- sockets as clients. Never how long anything took.
local H = require "scripts.host_harness"
local raw = require "scripts.raw_http"
local cjson = require "cjson"
local P = H.P

local UPSTREAM = "spec/programs/upstream"

local function upstream_body(user_id, extra)
  local body = { user_id = user_id, dockerfile = assert(P.read(UPSTREAM .. "/Dockerfile")),
    src_files = { ["upstream.py"] = assert(P.read(UPSTREAM .. "/upstream.py")) } }
  for k, v in pairs(extra or {}) do body[k] = v end
  return body
end

-- One request written as given: the request line, `lines` (raw header lines, the Host
-- header among them when wanted), Connection: close, and the body with its length.
local function send(port, method, target, lines, body)
  local head = { method .. " " .. target .. " HTTP/1.1" }
  for _, l in ipairs(lines or {}) do head[#head + 1] = l end
  head[#head + 1] = "Connection: close"
  if body then head[#head + 1] = "Content-Length: " .. #body end
  return raw.request(port, table.concat(head, "\r\n") .. "\r\n\r\n" .. (body or ""))
end

-- The program's /echo of a request: what it received.
local function echoed(res, what)
  assert.equal(200, res.status, (what or "") .. ": " .. tostring(res.raw or res.body))
  local doc = cjson.decode(res.body)
  assert.is_table(doc, res.body)
  return doc
end

local function has_header(doc, line)
  for _, l in ipairs(doc.headers) do
    if l == line then return true end
  end
  return false
end

-- A 503 of the Host's proxy route: the program's state named, not the port's own 503.
local function assert_not_ready(res, state)
  H.assert_error(res, 503, "proxy while " .. state)
  assert.equal(state, res.json.state, res.body)
  assert.truthy(res.json.message:find("is " .. state .. ", not Ready", 1, true), res.body)
end

describe("hersh host: the proxy's fast path follows every change of a program", function()
  local h

  lazy_setup(function() h = H.start_host() end)
  lazy_teardown(function() H.stop_host(h) end)

  it("answers 503 naming the state until Ready, forwards when Ready, and 503 again once stopped", function()
    local id = H.create(h, upstream_body("states")).program_id
    local path = "/programs/" .. id .. "/proxy/echo"
    assert_not_ready(H.call(h, "GET", path), "Created")
    H.start_ready(h, id)
    assert.equal("GET", echoed(H.call(h, "GET", path)).method)
    H.act(h, id, "stop")
    H.wait_state(h, id, "Stopped")
    assert_not_ready(H.call(h, "GET", path), "Stopped")
    assert_not_ready(H.call(h, "POST", path, "{}"), "Stopped")
    H.start_ready(h, id)
    assert.equal("GET", echoed(H.call(h, "GET", path)).method)
  end)

  it("answers 404 for a deleted program by id and by name, and gives the name to the next one", function()
    local a = H.create(h, upstream_body("names", { name = "svc" }))
    H.start_ready(h, a.program_id)
    local doc = echoed(H.call(h, "GET", "/programs/svc/proxy/echo"), "by name")
    assert.is_true(has_header(doc, "Host: 127.0.0.1:" .. a.publish_port), table.concat(doc.headers, "\n"))
    H.ok_json(H.call(h, "DELETE", "/programs/svc"), 200, "delete")
    for _, ref in ipairs { "svc", a.program_id } do
      local res = H.call(h, "GET", "/programs/" .. ref .. "/proxy/echo")
      H.assert_error(res, 404, "proxy to deleted " .. ref)
      assert.truthy(res.json.message:find("no program with the id or name " .. ref, 1, true), res.body)
    end
    local b = H.create(h, upstream_body("names", { name = "svc" }))
    assert_not_ready(H.call(h, "GET", "/programs/svc/proxy/echo"), "Created")
    H.start_ready(h, b.program_id)
    doc = echoed(H.call(h, "GET", "/programs/svc/proxy/echo"), "the name's new program")
    assert.is_true(has_header(doc, "Host: 127.0.0.1:" .. b.publish_port), table.concat(doc.headers, "\n"))
    H.assert_error(H.call(h, "GET", "/programs/" .. a.program_id .. "/proxy/echo"), 404, "the old id")
  end)

  it("uses the proxy timeout of the revision an update put in place", function()
    local id = H.create(h, upstream_body("timeouts", { proxy = { timeout = 30 } })).program_id
    H.start_ready(h, id)
    echoed(H.call(h, "GET", "/programs/" .. id .. "/proxy/echo"))
    H.act(h, id, "stop")
    H.wait_state(h, id, "Stopped")
    -- stopped: the update is in place at once, for the next start
    H.ok_json(H.call(h, "PUT", "/programs/" .. id, upstream_body("timeouts", { proxy = { timeout = 1 } })), 202, "PUT")
    assert.equal(2, H.view(h, id).revision)
    H.start_ready(h, id)
    local res = H.call(h, "GET", "/programs/" .. id .. "/proxy/hang")
    assert.equal(504, res.status, res.body)
    assert.truthy(res.json.message:find("did not answer within 1 s", 1, true), res.body)
  end)

  it("forwards the path and query encoded as before, and repeated headers joined", function()
    local id = H.create(h, upstream_body("encoding")).program_id
    H.start_ready(h, id)
    local port = h.port
    local doc = echoed(send(port, "GET", "/programs/" .. id .. "/proxy/echo?b=2&a=1&a=3&sp=x%20y&flag&%C3%A9=%2F",
      { "Host: 127.0.0.1:" .. port, "X-Dup: one", "X-Dup: two", "X-Case: kept" }))
    assert.equal("/echo?%C3%A9=%2F&a=1&b=2&flag=&sp=x%20y", doc.target) -- sorted byte by byte
    assert.is_true(has_header(doc, "x-dup: one, two"), table.concat(doc.headers, "\n"))
    assert.is_true(has_header(doc, "x-case: kept"), table.concat(doc.headers, "\n"))
    assert.is_true(has_header(doc, "X-Forwarded-For: 127.0.0.1"), table.concat(doc.headers, "\n"))
    -- a body, as the client sent it, with its JSON type
    doc = echoed(send(port, "POST", "/programs/" .. id .. "/proxy/echo",
      { "Host: 127.0.0.1:" .. port, "Content-Type: application/json; charset=utf-8" }, '{"a":1}'))
    assert.equal('{"a":1}', doc.body)
  end)

  it("counts what it forwarded in GET /metrics, as the Lua route did", function()
    local id = H.create(h, upstream_body("metrics")).program_id
    H.start_ready(h, id)
    local function count()
      local text = H.call(h, "GET", "/metrics").body
      local n = text:match('hersh_http_requests_total{route="/programs/{id}/proxy",status="200"} (%d+)')
      local observed = text:match("hersh_proxy_duration_seconds_count (%d+)")
      return tonumber(n or "0"), tonumber(observed or "0")
    end
    local before, observed_before = count()
    for _ = 1, 5 do echoed(H.call(h, "GET", "/programs/" .. id .. "/proxy/echo")) end
    local after, observed_after = count()
    assert.equal(before + 5, after)
    assert.equal(observed_before + 5, observed_after)
  end)

  it("stops cleanly on SIGTERM", function()
    H.assert_clean_exit(h)
  end)
end)

describe("hersh host: who may call, on the proxy's fast path", function()
  local h, dir, id, path
  local TOKEN = "fast-path-token-0123456789abcdef"

  lazy_setup(function()
    dir = P.tmpdir()
    P.write(dir .. "/token", TOKEN .. "\n")
    h = H.start_host{ token_file = dir .. "/token", args = { "--allow-host", "hersh.internal" } }
    h.token = TOKEN
    id = H.create(h, upstream_body("callers")).program_id
    H.start_ready(h, id)
    path = "/programs/" .. id .. "/proxy/echo"
  end)
  lazy_teardown(function()
    H.stop_host(h)
    if dir then H.sh("rm -rf " .. P.quote(dir)) end
  end)

  local function host_line() return "Host: 127.0.0.1:" .. h.port end
  local function auth() return "Authorization: Bearer " .. TOKEN end

  it("forwards with the token, and never hands the token to the program", function()
    local doc = echoed(send(h.port, "GET", path, { host_line(), auth() }))
    for _, l in ipairs(doc.headers) do
      assert.is_nil(l:find(TOKEN, 1, true), "the program got the Host's token: " .. l)
    end
  end)

  it("answers 401 without the token, with a wrong one, one a byte longer or shorter, or not Bearer", function()
    local wrong = TOKEN:sub(1, -2) .. (TOKEN:sub(-1) == "f" and "e" or "f")
    for _, given in ipairs { false, "Bearer " .. wrong, "Bearer " .. TOKEN .. "0", "Bearer " .. TOKEN:sub(1, -2),
      "bearer " .. TOKEN, "Basic " .. TOKEN, "Bearer " } do
      local lines = { host_line() }
      if given then lines[2] = "Authorization: " .. given end
      for _, method in ipairs { "GET", "POST" } do
        local res = send(h.port, method, path, lines, method == "POST" and "{}" or nil)
        H.assert_error(res, 401, method .. " with " .. tostring(given))
        assert.equal("Bearer", res.headers["www-authenticate"], res.raw)
      end
    end
  end)

  it("refuses a foreign Host header (403) and forwards an allowed one", function()
    H.assert_error(send(h.port, "GET", path, { "Host: evil.example:" .. h.port, auth() }), 403, "foreign Host")
    H.assert_error(send(h.port, "GET", path, { "Host: hersh.internal", auth() }), 403, "an allowed name, wrong port")
    echoed(send(h.port, "GET", path, { "Host: HERSH.internal:" .. h.port, auth() }), "allowed, any case")
  end)

  it("refuses a cross-origin write (403) and lets a read through", function()
    local lines = { host_line(), auth(), "Origin: http://evil.example", "Content-Type: application/json" }
    H.assert_error(send(h.port, "POST", path, lines, "{}"), 403, "cross-origin POST")
    H.assert_error(send(h.port, "DELETE", path, lines), 403, "cross-origin DELETE")
    echoed(send(h.port, "GET", path, { host_line(), auth(), "Origin: http://evil.example" }), "cross-origin GET")
    echoed(send(h.port, "POST", path, { host_line(), auth(), "Origin: http://127.0.0.1:" .. h.port,
      "Content-Type: application/json" }, "{}"), "same-origin POST")
  end)

  it("refuses a body that is not JSON (415), with or without a body", function()
    for _, ctype in ipairs { "text/plain", "application/x-www-form-urlencoded", "application/jsonx", false } do
      local lines = { host_line(), auth() }
      if ctype then lines[3] = "Content-Type: " .. ctype end
      H.assert_error(send(h.port, "POST", path, lines, "a=1"), 415, "body with " .. tostring(ctype))
    end
    H.assert_error(send(h.port, "GET", path, { host_line(), auth(), "Content-Type: text/plain" }), 415,
      "a text/plain type without a body")
  end)

  it("stops cleanly on SIGTERM", function()
    H.assert_clean_exit(h)
  end)
end)

-- GET /health and GET /programs/{id|name} are answered in C from the text the Lua route
-- gave last (src/http/fixed_route.c); every change forgets it.
describe("hersh host: GET /health and GET /programs/{id} answered from the last text", function()
  local h, dir
  local TOKEN = "fixed-route-token-0123456789abcdef"

  lazy_setup(function()
    dir = P.tmpdir()
    P.write(dir .. "/token", TOKEN .. "\n")
    h = H.start_host{ token_file = dir .. "/token" }
    h.token = TOKEN
  end)
  lazy_teardown(function()
    H.stop_host(h)
    if dir then H.sh("rm -rf " .. P.quote(dir)) end
  end)

  local function twice(path)
    local first, second = H.call(h, "GET", path), H.call(h, "GET", path)
    assert.equal(first.status, second.status, second.body)
    assert.equal(first.body, second.body)
    return second
  end

  it("shows each change of a program's record at once, by id and by name", function()
    local rec = H.create(h, upstream_body("fixed", { name = "fixed" }))
    local id = rec.program_id
    for _, ref in ipairs { id, "fixed" } do assert.equal("Created", H.ok_json(twice("/programs/" .. ref)).state) end
    H.start_ready(h, id)
    for _, ref in ipairs { id, "fixed" } do
      local doc = H.ok_json(twice("/programs/" .. ref))
      assert.equal("Ready", doc.state)
      assert.is_number(doc.pid)
    end
    H.act(h, id, "stop")
    H.wait_state(h, id, "Stopped")
    for _, ref in ipairs { id, "fixed" } do assert.equal("Stopped", H.ok_json(twice("/programs/" .. ref)).state) end
    H.ok_json(H.call(h, "DELETE", "/programs/" .. id), 200, "delete")
    for _, ref in ipairs { id, "fixed" } do H.assert_error(twice("/programs/" .. ref), 404, "deleted " .. ref) end
  end)

  it("counts the programs in /health after each create and delete", function()
    local before = H.ok_json(twice("/health")).programs
    local id = H.create(h, upstream_body("health")).program_id
    assert.equal(before + 1, H.ok_json(twice("/health")).programs)
    H.ok_json(H.call(h, "DELETE", "/programs/" .. id), 200, "delete")
    assert.equal(before, H.ok_json(twice("/health")).programs)
  end)

  it("still asks for the token, the Host's own name, and no body that is not JSON", function()
    local id = H.create(h, upstream_body("callers")).program_id
    twice("/programs/" .. id) -- its text is cached now
    local path = "/programs/" .. id
    local own = "Host: 127.0.0.1:" .. h.port
    for _, given in ipairs { false, "Bearer wrong", "Bearer " .. TOKEN .. "0" } do
      local lines = { own }
      if given then lines[2] = "Authorization: " .. given end
      H.assert_error(send(h.port, "GET", path, lines), 401, "GET with " .. tostring(given))
    end
    local auth = "Authorization: Bearer " .. TOKEN
    H.assert_error(send(h.port, "GET", path, { "Host: evil.example:" .. h.port, auth }), 403, "foreign Host")
    H.assert_error(send(h.port, "GET", path, { own, "Host: evil.example", auth }), 403, "two Host headers")
    H.assert_error(send(h.port, "GET", path, { own, auth, "Content-Type: text/plain" }, "x"), 415, "a text body")
    H.assert_error(send(h.port, "GET", "/health", { "Host: evil.example", auth }), 403, "/health, foreign Host")
    assert.equal(id, H.ok_json(send(h.port, "GET", path, { own, auth })).program_id)
    -- HEAD: the headers of the GET, no body
    local head = send(h.port, "HEAD", path, { own, auth })
    assert.equal(200, head.status, head.raw)
    assert.equal("application/json", head.headers["content-type"])
    assert.equal("", head.body)
  end)

  it("counts those answers in GET /metrics", function()
    local function count(route)
      local text = H.call(h, "GET", "/metrics").body
      return tonumber(text:match('hersh_http_requests_total{route="' .. route:gsub("%p", "%%%0")
        .. '",status="200"} (%d+)') or "0")
    end
    local id = H.create(h, upstream_body("counted")).program_id
    local health, record = count("/health"), count("/programs/{id}")
    for _ = 1, 4 do
      H.ok_json(H.call(h, "GET", "/health"))
      H.ok_json(H.call(h, "GET", "/programs/" .. id))
    end
    assert.equal(health + 4, count("/health"))
    assert.equal(record + 4, count("/programs/{id}"))
  end)

  it("stops cleanly on SIGTERM", function()
    H.assert_clean_exit(h)
  end)
end)

-- A program that drains as a program should at its SIGTERM: it stops accepting at once
-- (new connections go to the process that replaces it) and serves the connections it
-- holds two seconds more, saying so. GET /whoami: its token and whether it drains.
local DRAINER = [==[
import json, os, signal, socket, threading, time
started = time.monotonic()
token = os.urandom(8).hex()
draining = False
listener = socket.socket(fileno=3)
listener.setblocking(True)  # a blocking accept shares the queue fairly with the other process

class Drain(Exception):
    pass

def on_term(sig, frame):
    global draining
    draining = True
    raise Drain()  # out of accept() at once, in the main thread

def serve(conn):
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})  # only the main thread gets it
    f = conn.makefile("rb")
    try:
        while True:
            line = f.readline(65536)
            if not line:
                break
            target = line.split(b" ")[1]
            length, close = 0, False
            while True:
                h = f.readline(65536)
                if h in (b"\r\n", b"\n", b""):
                    break
                if h.lower().startswith(b"content-length:"):
                    length = int(h.split(b":")[1])
                close = close or h.lower().startswith(b"connection: close")
            f.read(length)
            if target == b"/watcher/status":
                doc = {"state": "Running", "uptime": "%.3fs" % (time.monotonic() - started)}
            else:
                doc = {"token": token, "draining": draining}
            body = json.dumps(doc).encode()
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                         % (len(body), body))
            if close:
                break
    except OSError:
        pass
    conn.close()

signal.signal(signal.SIGTERM, on_term)
try:
    while True:
        c, _ = listener.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()
except Drain:
    pass
listener.close()
time.sleep(2)
]==]

local function drainer_body(v, extra)
  local body = { dockerfile = "FROM hersh\nWORKDIR /app\nCOPY drainer.py /app/\nCMD [\"python3\", \"/app/drainer.py\"]\n",
    src_files = { ["drainer.py"] = DRAINER .. "# revision " .. v .. "\n" } }
  for k, val in pairs(extra or {}) do body[k] = val end
  return body
end

-- After an update in place the old process drains; the proxy pools keep-alive
-- connections to each program, so one opened to the old process before the swap must
-- never carry a request after it (src/http/upstream.c: a route's change retires them):
-- without that, the old process would answer, draining (a hersh program's stopped
-- watcher answers a message 409 "watcher stopped").
describe("hersh host: the proxy across an update in place", function()
  it("never reaches the old process through a connection pooled before the swap", function()
    local h = H.test_host()
    local id = H.create(h, drainer_body(1, { user_id = "swap", name = "swapped" })).program_id
    H.start_ready(h, id)
    local function whoami(what)
      return H.ok_json(H.call(h, "GET", "/programs/swapped/proxy/whoami"), 200, what)
    end
    for v = 2, 7 do -- each swap is a chance for a stale connection to be used
      local old = whoami("before update " .. v) -- a connection to the running process is pooled
      assert.is_false(old.draining)
      H.ok_json(H.call(h, "PUT", "/programs/swapped", drainer_body(v)), 202, "PUT " .. v)
      local ok = P.wait_for(function()
        whoami("during update " .. v) -- keeps that connection in use until the swap
        local rec = H.view(h, id)
        return rec.revision == v and rec.state == "Ready"
      end, H.WAIT * 2, 0.01)
      assert.is_true(ok, "update " .. v .. " never finished")
      for i = 1, 3 do
        local doc = whoami("after update " .. v .. ", " .. i)
        assert.is_false(doc.draining, "after update " .. v .. ", request " .. i .. " reached the old process")
        assert.are_not.equal(old.token, doc.token)
      end
    end
  end)
end)
