-- Attacks on the HTTP front door of the Host (lua/host/api.lua over src/lua/lhttpd.c)
-- and of a program's WatcherAPI (src/http/watcher_api.c), both on src/http/server.c:
-- unauthenticated memory use, connection exhaustion (idle and slowloris), cross-site
-- requests (DNS rebinding, cross-origin writes, non-JSON bodies) and the token check.
-- Real processes, real sockets on loopback: the attacker binds its sockets to
-- 127.0.0.2 (all of 127/8 is local) while the honest client stays on 127.0.0.1.
-- Every wait is bounded; every process and socket is closed at the end of its test.
local H = require "scripts.host_harness"
local P = H.P
local cjson = require "cjson"

local have_socket, socket = pcall(require, "socket")

local ATTACKER = "127.0.0.2"
local WAIT = 60 -- bound of every wait below (the sanitizer build is slow)
local MiB = 1024 * 1024

local defer = P.defer -- runs fn when the test ends, passed or failed

-- These tests keep the spec process's own loop idle for long stretches: afterwards its
-- cached time lags, and the next hersh.wait of another spec file would time out at once
-- (hersh_loop_run_until starts its timer from that time). One loop turn renews it.
after_each(function()
  require("hersh").wait(function() return false end, 0)
end)

-- Why this machine cannot run the attacks, or nil.
local function cannot_run(sockets_needed)
  if not have_socket then return "LuaSocket (lua-socket, installed by scripts/setup) is missing" end
  local p = io.popen("ulimit -n")
  local limit = tonumber(p:read("a"):match("%d+") or "") or 0
  p:close()
  if sockets_needed and limit < sockets_needed + 100 then
    return "the open-file limit " .. limit .. " is too low for " .. sockets_needed .. " sockets"
  end
  return nil
end

local function skip_unless_able(sockets_needed)
  local why = cannot_run(sockets_needed)
  if why then
    print("attack_http_spec: skipped: " .. why)
    pending(why)
  end
  return why == nil
end

-- ---- sockets ------------------------------------------------------------------------

-- A TCP connection from `src` to 127.0.0.1:port (blocking, `timeout` seconds per
-- call), or nil, err.
local function connect(port, src, timeout)
  local s = socket.tcp()
  s:settimeout(timeout or 10)
  local ok, err = s:bind(src or "127.0.0.1", 0)
  if ok then ok, err = s:connect("127.0.0.1", port) end
  if not ok then
    s:close()
    return nil, err
  end
  return s
end

-- The head of a POST /programs to port announcing a body of len bytes, with an
-- Authorization header when auth is given.
local function post_head(port, len, auth)
  return "POST /programs HTTP/1.1\r\nHost: 127.0.0.1:" .. port .. "\r\nContent-Type: application/json\r\n"
    .. (auth and "Authorization: " .. auth .. "\r\n" or "") .. "Content-Length: " .. len .. "\r\n\r\n"
end

-- n connections from ATTACKER to port, the i-th sent head_of(i) and then made
-- non-blocking, all closed when the test ends: { s = socket, sent = 0, got = "",
-- open = true, sending = true } each, for the caller's select loop.
local function attackers(port, n, head_of)
  local clients = {}
  defer(function()
    for _, c in ipairs(clients) do c.s:close() end
  end)
  for i = 1, n do
    local s = assert(connect(port, ATTACKER))
    clients[i] = { s = s, sent = 0, got = "", open = true, sending = true }
    assert(s:send(head_of(i)))
    s:settimeout(0)
  end
  return clients
end

-- Reads from s (after `got`, already read) until the answer's headers and
-- Content-Length bytes of body are in, the peer closes, or `timeout` passes: status
-- (nil if none), headers, body.
local function read_answer(s, timeout, got)
  s:settimeout(0.2)
  local deadline = socket.gettime() + (timeout or WAIT)
  got = got or ""
  while socket.gettime() < deadline do
    local data, err, partial = s:receive(65536)
    got = got .. (data or partial or "")
    local head, rest = got:match("^(.-\r\n)\r\n(.*)$")
    if head then
      local len = tonumber(head:lower():match("\ncontent%-length:%s*(%d+)") or "")
      if len and #rest >= len then break end
    end
    if err and err ~= "timeout" then break end
  end
  local head, body = got:match("^(.-\r\n)\r\n(.*)$")
  if not head then return nil, {}, got end
  local headers = {}
  for name, value in head:gmatch("\n([^:\r\n]+):%s*([^\r\n]*)") do headers[name:lower()] = value end
  return tonumber(head:match("^HTTP/1%.%d (%d%d%d)")), headers, body
end

-- One request on a new connection from 127.0.0.1 with exactly these headers:
-- {status, headers, body, json}.
local function raw(port, method, path, headers, body)
  local s = assert(connect(port))
  local lines = { method .. " " .. path .. " HTTP/1.1" }
  for _, h in ipairs(headers) do lines[#lines + 1] = h end
  if body then lines[#lines + 1] = "Content-Length: " .. #body end
  lines[#lines + 1] = "Connection: close"
  assert(s:send(table.concat(lines, "\r\n") .. "\r\n\r\n" .. (body or "")))
  local status, hdrs, text = read_answer(s)
  s:close()
  local ok, doc = pcall(cjson.decode, text)
  return { status = status or 0, headers = hdrs, body = text, json = ok and doc or nil }
end

-- Whether the peer has closed s (it reads an end of file or an error), waiting at most
-- `timeout` seconds.
local function peer_closed(s, timeout)
  s:settimeout(timeout or 0)
  local _, err = s:receive(1)
  return err ~= nil and err ~= "timeout"
end

local function close_all(list)
  for _, s in ipairs(list) do s:close() end
end

-- ---- the Host's process ------------------------------------------------------------------

-- A field of /proc/PID/status in bytes (VmRSS, VmHWM).
local function vm(pid, field)
  local text = P.read("/proc/" .. pid .. "/status") or ""
  return (tonumber(text:match(field .. ":%s*(%d+) kB") or "") or 0) * 1024
end

local function health(port)
  return P.http(port, "GET", "/health")
end

-- ---- 1: memory before authentication -----------------------------------------------------------

describe("attack: bodies sent to a Host with a token", function()
  local h, dir
  local TOKEN = "attack-spec-token-0123456789"
  lazy_setup(function()
    if cannot_run(100) then return end
    dir = P.tmpdir()
    P.write(dir .. "/token", TOKEN .. "\n")
    h = H.start_host{ token_file = dir .. "/token" }
  end)
  lazy_teardown(function()
    H.stop_host(h)
    if dir then H.sh("rm -rf " .. P.quote(dir)) end
  end)

  it("answers 401 from the headers, before any of the body is sent", function()
    if not skip_unless_able(100) then return end
    for _, auth in ipairs { false, "Bearer wrong", "Bearer " .. TOKEN .. "x", "Basic " .. TOKEN } do
      local s = assert(connect(h.port))
      defer(function() s:close() end)
      assert(s:send(post_head(h.port, 16 * MiB, auth or nil))) -- and not one byte of the body
      local status, headers, body = read_answer(s, 15)
      assert.equal(401, status, "auth " .. tostring(auth) .. ": " .. tostring(body))
      assert.equal("application/json", headers["content-type"])
      local doc = cjson.decode(body)
      assert.equal("Unauthorized", doc.error)
      assert.equal(401, doc.code)
      assert.truthy(doc.message:find("token", 1, true))
    end
    -- /health stays open, the right token still works
    assert.equal(200, health(h.port).status)
    assert.equal(200, H.call({ port = h.port, token = TOKEN }, "GET", "/programs").status)
  end)

  it("keeps its memory far below N x body when 40 clients send 16 MiB bodies without the token", function()
    if not skip_unless_able(100) then return end
    local N, LEN = 40, 16 * MiB
    local before = vm(h.proc.pid, "VmRSS")
    assert.is_true(before > 0, "cannot read the Host's memory")
    local chunk = string.rep("x", 256 * 1024)
    local clients = attackers(h.port, N, function(i)
      return post_head(h.port, LEN, i % 2 == 0 and "Bearer wrong" or nil)
    end)
    -- every client sends its whole body as fast as the Host takes it, and reads
    local deadline = socket.gettime() + 4 * WAIT
    while socket.gettime() < deadline do
      local readers, writers = {}, {}
      for _, c in ipairs(clients) do
        if c.open then readers[#readers + 1] = c.s end
        if c.open and c.sending then writers[#writers + 1] = c.s end
      end
      if #readers == 0 then break end
      local r, w = socket.select(readers, writers, 1)
      for _, c in ipairs(clients) do
        if r[c.s] then
          local data, err, partial = c.s:receive(65536)
          c.got = c.got .. (data or partial or "")
          if err == "closed" or (err and err ~= "timeout") then c.open = false end
          if c.got:find("\r\n\r\n", 1, true) and not c.sending then c.open = false end
        end
        if w[c.s] and c.sending then
          local n = math.min(#chunk, LEN - c.sent)
          local last, err, partial = c.s:send(chunk, 1, n)
          c.sent = c.sent + (last or partial or 0)
          if err and err ~= "timeout" then c.sending = false end -- refused: the Host closed
          if c.sent >= LEN then c.sending = false end
        end
      end
    end
    local peak = vm(h.proc.pid, "VmHWM")
    for i, c in ipairs(clients) do
      local status = tonumber(c.got:match("^HTTP/1%.%d (%d%d%d)") or "")
      -- a 401, or (the Host closed while we still sent) a reset that lost it
      assert.is_true(status == 401 or (status == nil and c.sent < LEN),
        "client " .. i .. ": " .. tostring(status) .. " after " .. c.sent .. " bytes")
      assert.is_false(c.open, "client " .. i .. " never got an answer")
    end
    print(string.format("attack_http_spec: %d x %d MiB without the token: the Host's RSS %.0f MiB before, peak %.0f MiB",
      N, LEN // MiB, before / MiB, peak / MiB))
    assert.is_true(peak - before < 100 * MiB, string.format(
      "the Host grew from %.0f MiB to a peak of %.0f MiB", before / MiB, peak / MiB))
    assert.equal(200, health(h.port).status)
  end)

  it("ends cleanly afterwards (exit 0, no sanitizer report)", function()
    if not skip_unless_able(100) then return end
    H.assert_clean_exit(h)
  end)
end)

describe("attack: bodies held at once by a Host without a token", function()
  local h
  lazy_setup(function()
    if cannot_run(100) then return end
    h = H.start_host()
  end)
  lazy_teardown(function() H.stop_host(h) end)

  it("refuses with 503 the body that would pass the cap on buffered bodies", function()
    if not skip_unless_able(100) then return end
    -- 5 x 15 MiB, each left one byte short, over the cap of 64 MiB: one must be refused
    local N, LEN = 5, 15 * MiB
    local chunk = string.rep("x", 256 * 1024)
    local clients = attackers(h.port, N, function() return post_head(h.port, LEN + 1) end)
    local refused
    local deadline = socket.gettime() + 4 * WAIT
    while not refused and socket.gettime() < deadline do
      local readers, writers = {}, {}
      for _, c in ipairs(clients) do
        readers[#readers + 1] = c.s
        if c.sent < LEN then writers[#writers + 1] = c.s end
      end
      local r, w = socket.select(readers, writers, 1)
      for _, c in ipairs(clients) do
        if r[c.s] then
          local data, _, partial = c.s:receive(65536)
          c.got = c.got .. (data or partial or "")
          if c.got:find("\r\n\r\n", 1, true) then refused = c end
        end
        if w[c.s] and c.sent < LEN then
          local last, err, partial = c.s:send(chunk, 1, math.min(#chunk, LEN - c.sent))
          c.sent = c.sent + (last or partial or 0)
          if err and err ~= "timeout" then c.sent = LEN end
        end
      end
    end
    assert.is_not_nil(refused, "no client was refused: the Host holds " .. N .. " x 15 MiB")
    local status, headers, body = read_answer(refused.s, WAIT, refused.got)
    assert.equal(503, status, body)
    assert.equal("application/json", headers["content-type"])
    local doc = cjson.decode(body)
    assert.equal("Service Unavailable", doc.error)
    assert.equal(503, doc.code)
    assert.truthy(doc.message:find("request bodies", 1, true), doc.message)
    for _, c in ipairs(clients) do c.s:close() end
    clients = {}
    -- the others' memory comes back: one more body goes through
    assert.equal(201, H.call(h, "POST", "/programs", H.counter_body("after-cap")).status)
  end)

  it("ends cleanly afterwards (exit 0, no sanitizer report)", function()
    if not skip_unless_able(100) then return end
    H.assert_clean_exit(h)
  end)
end)

-- ---- 2: connection exhaustion ------------------------------------------------------------------

-- Opens n connections from ATTACKER (those the server refuses at once close again):
-- the list of sockets that connected.
local function flood(port, n)
  local list = {}
  for _ = 1, n do
    local s = connect(port, ATTACKER, 5)
    if s then list[#list + 1] = s end
  end
  return list
end

-- Slowloris: connections that send a request's headers a byte at a time, never ending
-- them (hold_until_closed trickles the bytes).
local function slowloris(port, n)
  local list = {}
  for _, s in ipairs(flood(port, n)) do
    s:settimeout(0)
    s:send("GET /health HTTP/1.1\r\nHost: 127.0.0.1:" .. port .. "\r\nX-")
    list[#list + 1] = s
  end
  return list
end

-- GET url from 127.0.0.1 in the background (curl): a function that returns its status
-- once it is in (0: no answer within 15 s), nil before.
local function ask(url)
  local proc = P.start { "env", "-u", "LD_PRELOAD", "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
    "--max-time", "15", url }
  defer(function() P.stop(proc) end)
  return function()
    if P.status(proc) == nil then return nil end
    return tonumber(P.stdout(proc)) or 0
  end
end

local function count_open(list)
  local n = 0
  for _, s in ipairs(list) do
    if not peer_closed(s) then n = n + 1 end
  end
  return n
end

-- The attack on a server at `port`: 20 idle connections, then 1200 slowloris ones
-- (more than libmicrohttpd's default limit of about 1020), all from ATTACKER, a byte
-- into each slowloris connection every half second (less than any idle timeout).
-- Meanwhile `url` is asked from 127.0.0.1, again and again: it must always answer 200,
-- the server must keep at most `per_client` attacker connections, and close them all:
-- the idle ones after the idle timeout, the slow ones after the request timeout.
local function exhaust(port, per_client, url)
  local idle, slow = {}, {}
  defer(function()
    close_all(idle)
    close_all(slow)
  end)
  idle = flood(port, 20)
  slow = slowloris(port, 1200)
  local open = {}
  for _, s in ipairs(idle) do open[s] = true end
  for _, s in ipairs(slow) do open[s] = true end
  local deadline = socket.gettime() + WAIT
  local answer, answers, failures, kept, left = ask(url), 0, {}, nil, nil
  repeat
    for _, s in ipairs(slow) do
      if open[s] then
        s:settimeout(0)
        s:send("a")
      end
    end
    local status = answer()
    if status then
      answers = answers + 1
      if status ~= 200 then failures[#failures + 1] = status end
      -- its connection came after the attacker's: those over the limit were closed by now
      kept = kept or count_open(idle) + count_open(slow)
      answer = ask(url)
    end
    socket.sleep(0.5)
    left = 0
    for s in pairs(open) do
      if peer_closed(s) then open[s] = nil else left = left + 1 end
    end
  until (left == 0 and answers > 0) or socket.gettime() > deadline
  assert.is_true(answers > 0, "no answer at all under " .. #idle + #slow .. " connections")
  assert.same({}, failures, "answers other than 200 during the attack")
  assert.is_true(kept <= per_client, kept .. " attacker connections kept open")
  assert.equal(0, left, left .. " attacker connections still open")
  print(string.format("attack_http_spec: %d attacker connections opened, %d kept, all closed by the server; %d answers",
    #idle + #slow, kept, answers))
end

describe("attack: many idle and slowloris connections to the Host", function()
  local h
  lazy_setup(function()
    if cannot_run(1500) then return end
    h = H.start_host{ args = { "--idle-timeout", "2", "--request-timeout", "3", "--max-per-client", "200" } }
  end)
  lazy_teardown(function() H.stop_host(h) end)

  it("keeps /health answering from another address, and closes them after the timeouts", function()
    if not skip_unless_able(1500) then return end
    exhaust(h.port, 200, "http://127.0.0.1:" .. h.port .. "/health")
    H.assert_clean_exit(h)
  end)
end)

describe("attack: many idle and slowloris connections to a WatcherAPI (hersh run)", function()
  it("keeps answering 127.0.0.1, and closes them after the timeouts (10 s idle, 15 s a request)", function()
    if not skip_unless_able(1500) then return end
    local proc = P.run_with_dir("spec/scripts/api_main.lua")
    local port = P.announced(proc)
    exhaust(port, 64, "http://127.0.0.1:" .. port .. "/watcher/status")
    assert.is_nil(P.sanitizer_report(proc))
  end)
end)

-- ---- 3: cross-site requests ------------------------------------------------------------------

describe("attack: a web page on the machine drives a Host without a token", function()
  local h
  lazy_setup(function()
    if cannot_run(100) then return end
    h = H.start_host{ args = { "--allow-host", "hersh.internal", "--allow-host", "other.internal:1234" } }
  end)
  lazy_teardown(function() H.stop_host(h) end)

  local function body()
    return cjson.encode(H.counter_body("csrf"))
  end

  local function count()
    return H.ok_json(H.call(h, "GET", "/programs")).count
  end

  it("refuses a Host header of another name (DNS rebinding) with 403", function()
    if not skip_unless_able(100) then return end
    local port = h.port
    for _, name in ipairs { "evil.example:" .. port, "evil.example", "127.0.0.1:" .. (port + 1),
        "hersh.internal:" .. (port + 1), "other.internal:" .. port, "localhost.evil.example:" .. port } do
      local res = raw(port, "GET", "/health", { "Host: " .. name })
      H.assert_error(res, 403, "Host " .. name)
      assert.truthy(res.json.message:find(name, 1, true), res.body)
      H.assert_error(raw(port, "POST", "/programs", { "Host: " .. name, "Content-Type: application/json" }, body()),
        403, "POST with Host " .. name)
    end
    assert.equal(0, count(), "created through a foreign Host name")
    for _, name in ipairs { "127.0.0.1:" .. port, "localhost:" .. port, "LocalHost:" .. port, "[::1]:" .. port,
        "hersh.internal:" .. port, "other.internal:1234" } do
      assert.equal(200, raw(port, "GET", "/health", { "Host: " .. name }).status, "Host " .. name)
    end
  end)

  it("refuses a cross-origin write with 403, and takes a same-origin one", function()
    if not skip_unless_able(100) then return end
    local port = h.port
    local host = "Host: 127.0.0.1:" .. port
    for _, origin in ipairs { "http://evil.example", "null", "http://127.0.0.1:" .. (port + 1),
        "https://127.0.0.1:" .. port, "http://127.0.0.1:" .. port .. ".evil.example" } do
      local res = raw(port, "POST", "/programs", { host, "Origin: " .. origin, "Content-Type: application/json" }, body())
      H.assert_error(res, 403, "Origin " .. origin)
      H.assert_error(raw(port, "POST", "/programs/some-id/stop", { host, "Origin: " .. origin }), 403,
        "stop from " .. origin)
      H.assert_error(raw(port, "DELETE", "/programs/some-id", { host, "Origin: " .. origin }), 403,
        "DELETE from " .. origin)
    end
    assert.equal(0, count(), "created from another origin")
    -- a cross-origin read is the browser's to refuse to the page
    assert.equal(200, raw(port, "GET", "/programs", { host, "Origin: http://evil.example" }).status)
    local res = raw(port, "POST", "/programs",
      { host, "Origin: http://127.0.0.1:" .. port, "Content-Type: application/json" }, body())
    assert.equal(201, res.status, res.body)
    h.ids[#h.ids + 1] = res.json.program_id
    assert.equal(1, count())
  end)

  it("refuses a body that is not application/json with 415 naming it", function()
    if not skip_unless_able(100) then return end
    local port = h.port
    local host = "Host: 127.0.0.1:" .. port
    local before = count()
    for _, ctype in ipairs { "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
        "application/jsonp", false } do
      local headers = { host }
      if ctype then headers[2] = "Content-Type: " .. ctype end
      local res = raw(port, "POST", "/programs", headers, body())
      H.assert_error(res, 415, "Content-Type " .. tostring(ctype))
      assert.truthy(res.json.message:find("application/json", 1, true), res.body)
      H.assert_error(raw(port, "POST", "/programs/some-id/proxy/watcher/message", headers, '{"content":"x"}'), 415,
        "proxy with " .. tostring(ctype))
    end
    -- a form without fields still says its type
    H.assert_error(raw(port, "POST", "/programs/some-id/stop", { host, "Content-Type: text/plain" }, ""), 415,
      "empty text/plain")
    assert.equal(before, count(), "created from a non-JSON body")
    local res = raw(port, "POST", "/programs", { host, "Content-Type: application/json; charset=utf-8" }, body())
    assert.equal(201, res.status, res.body)
    h.ids[#h.ids + 1] = res.json.program_id
  end)

  it("ends cleanly afterwards (exit 0, no sanitizer report)", function()
    if not skip_unless_able(100) then return end
    H.assert_clean_exit(h)
  end)
end)

-- ---- 4: the token ------------------------------------------------------------------------------

describe("attack: guessing the token", function()
  it("refuses every near miss and an oversized header, and a token file over 1024 bytes", function()
    if not skip_unless_able(100) then return end
    local dir = H.public_tmpdir()
    local h
    defer(function()
      H.stop_host(h)
      H.sh("rm -rf " .. P.quote(dir))
    end)
    local token = string.rep("k", 1024)
    P.write(dir .. "/token", token)
    h = H.start_host{ token_file = dir .. "/token" }
    local host = "Host: 127.0.0.1:" .. h.port
    for _, guess in ipairs { "", "k", token:sub(1, -2), token .. "k", token:sub(1, -2) .. "K",
        string.rep("k", 1025), string.rep("k", 5000), "K" .. token:sub(2) } do
      H.assert_error(raw(h.port, "GET", "/programs", { host, "Authorization: Bearer " .. guess }), 401,
        "guess of " .. #guess .. " bytes")
    end
    assert.equal(200, raw(h.port, "GET", "/programs", { host, "Authorization: Bearer " .. token }).status)
    H.stop_host(h)
    h = nil
    -- one byte more cannot be compared in fixed time: the Host says so and stops
    P.write(dir .. "/long", token .. "k")
    local proc = P.start { P.hersh, "host", "--port", "0", "--storage", dir .. "/storage", "--token-file", dir .. "/long" }
    defer(function() P.stop(proc) end)
    assert.is_not_nil(P.wait_exit(proc, WAIT), "the Host started with a 1025-byte token")
    assert.equal(2, P.status(proc))
    assert.truthy(P.stderr(proc):find("1024", 1, true), P.stderr(proc))
  end)
end)
