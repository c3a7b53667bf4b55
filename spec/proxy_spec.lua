-- The Host's proxy forwards in C (src/http/proxy.c), end to end: a real `hersh host`,
-- a real program in the sandbox (spec/programs/upstream: a small HTTP/1.1 server that
-- shows what it got), curl and raw sockets as clients. What is asserted is what a
-- client or the program sees: bytes, headers, statuses, the program's count of accepted
-- connections, and the Host's peak memory (VmHWM) -- never how long anything took.
local H = require "scripts.host_harness"
local raw = require "scripts.raw_http"
local cjson = require "cjson"
local P = H.P

local UPSTREAM = "spec/programs/upstream"
-- Tools run without the sanitizer runtimes the san build preloads into lua5.4.
local PLAIN = "env -u LD_PRELOAD "

local function upstream_body(user_id, proxy)
  return { user_id = user_id, dockerfile = assert(P.read(UPSTREAM .. "/Dockerfile")),
    src_files = { ["upstream.py"] = assert(P.read(UPSTREAM .. "/upstream.py")) }, proxy = proxy }
end

-- The Host's peak resident memory so far, in KiB (/proc/PID/status VmHWM).
local function peak_kib(h)
  local status = assert(P.read("/proc/" .. h.proc.pid .. "/status"))
  return tonumber(assert(status:match("VmHWM:%s*(%d+) kB")))
end

-- curl straight to a file: status, bytes received, the header block.
local function download(h, path, extra)
  local dir = P.tmpdir()
  local cmd = PLAIN .. "curl -s --max-time 120 -o /dev/null -D " .. P.quote(dir .. "/head") .. " " .. (extra or "")
    .. " -w '%{http_code} %{size_download}' " .. P.quote(h.url .. path)
  local pipe = assert(io.popen(cmd))
  local out = pipe:read("a")
  pipe:close()
  local head = P.read(dir .. "/head") or ""
  os.execute("rm -rf " .. P.quote(dir))
  local status, size = out:match("^(%d+) (%d+)$")
  return tonumber(status), tonumber(size), head
end

describe("hersh host: the proxy streams", function()
  local h, id, prefix

  lazy_setup(function()
    h = H.start_host()
    id = H.create(h, upstream_body("streams")).program_id
    H.start_ready(h, id)
    prefix = "/programs/" .. id .. "/proxy"
  end)

  lazy_teardown(function() H.stop_host(h) end)

  local function echo(method, headers, body)
    local res = H.call(h, method, prefix .. "/echo", body, headers)
    assert.equal(200, res.status, res.body)
    assert.is_table(res.json, res.body)
    return res.json
  end

  local function header_names(doc)
    local names = {}
    for _, line in ipairs(doc.headers) do
      local name, value = line:match("^([^:]+):%s*(.*)$")
      names[name:lower()] = value
    end
    return names
  end

  it("streams a 50 MiB answer whole, with the Host's peak memory flat", function()
    -- a first one warms the Host up (libcurl loaded, buffers made)
    local status, size = download(h, prefix .. "/big?mib=1")
    assert.equal(200, status)
    assert.equal(1 << 20, size)
    local before = peak_kib(h)
    status, size = download(h, prefix .. "/big?mib=50")
    assert.equal(200, status)
    assert.equal(50 << 20, size)
    local grown = peak_kib(h) - before
    -- a Host that held the answer would grow by 50 MiB or more
    assert.is_true(grown < 16 * 1024, "the Host's peak memory grew by " .. grown .. " KiB")
  end)

  it("forwards a chunked request body", function()
    local body = string.rep("0123456789abcdef", 4096) -- 64 KiB in 16 chunks
    local chunks = {}
    for i = 1, #body, 4096 do
      local piece = body:sub(i, i + 4095)
      chunks[#chunks + 1] = string.format("%x\r\n%s\r\n", #piece, piece)
    end
    chunks[#chunks + 1] = "0\r\n\r\n"
    local req = table.concat{ "POST ", prefix, "/echo HTTP/1.1\r\nHost: 127.0.0.1:", h.port,
      "\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
      table.concat(chunks) }
    local res = raw.request(h.port, req)
    assert.equal(200, res.status, res.raw:sub(1, 400))
    local doc = cjson.decode(res.body)
    assert.equal("POST", doc.method)
    assert.equal(#body, #doc.body)
    assert.equal(body, doc.body)
  end)

  it("streams a 40 MiB chunked request body to the program, with the Host's peak memory flat", function()
    local dir = P.tmpdir()
    local file = dir .. "/body"
    assert(os.execute(PLAIN .. "head -c " .. (40 << 20) .. " /dev/urandom > " .. P.quote(file)))
    local sum = assert(io.popen(PLAIN .. "sha256sum " .. P.quote(file)))
    local want = sum:read("a"):match("^(%x+) ")
    sum:close()
    local before = peak_kib(h)
    local pipe = assert(io.popen(PLAIN .. "curl -s --max-time 120 -H 'Content-Type: application/json'"
      .. " -H 'Transfer-Encoding: chunked' --data-binary @" .. P.quote(file) .. " "
      .. P.quote(h.url .. prefix .. "/count")))
    local out = pipe:read("a")
    pipe:close()
    os.execute("rm -rf " .. P.quote(dir))
    local ok, doc = pcall(cjson.decode, out)
    assert.is_true(ok and type(doc) == "table", out)
    assert.equal(40 << 20, doc.length, out)
    assert.equal(want, doc.sha256)
    local grown = peak_kib(h) - before
    -- a Host that held the body would grow by 40 MiB or more (or refuse it: 16 MiB at most)
    assert.is_true(grown < 16 * 1024, "the Host's peak memory grew by " .. grown .. " KiB")
  end)

  it("still refuses a body that is not JSON (415) though it takes the request on its headers", function()
    for _, ctype in ipairs{ "", "Content-Type: text/plain\r\n" } do
      local res = raw.request(h.port, table.concat{ "POST ", prefix, "/count HTTP/1.1\r\nHost: 127.0.0.1:", h.port,
        "\r\n", ctype, "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n" })
      assert.equal(415, res.status, res.raw)
      assert.equal(415, cjson.decode(res.body).code, res.raw)
    end
  end)

  it("never forwards hop-by-hop headers, the Host's token, or what Connection names", function()
    local doc = echo("GET", {
      "Connection: keep-alive, X-Hop", "X-Hop: must not pass", "Keep-Alive: timeout=300", "TE: trailers",
      "Proxy-Authorization: Basic c2VjcmV0", "Authorization: Bearer not-for-programs",
      "X-End-To-End: passes",
    })
    local got = header_names(doc)
    for _, name in ipairs{ "x-hop", "keep-alive", "te", "proxy-authorization", "authorization" } do
      assert.is_nil(got[name], name .. " reached the program: " .. cjson.encode(doc.headers))
    end
    assert.is_true(got.connection == nil or not got.connection:lower():find("x-hop", 1, true),
      cjson.encode(doc.headers))
    assert.equal("passes", got["x-end-to-end"])
  end)

  it("appends the client to X-Forwarded-For and sets X-Forwarded-Proto and -Host", function()
    local got = header_names(echo("GET", { "X-Forwarded-For: 10.1.2.3", "X-Forwarded-Proto: https" }))
    assert.equal("10.1.2.3, 127.0.0.1", got["x-forwarded-for"])
    assert.equal("http", got["x-forwarded-proto"])
    assert.equal("127.0.0.1:" .. h.port, got["x-forwarded-host"])
    got = header_names(echo("GET"))
    assert.equal("127.0.0.1", got["x-forwarded-for"])
  end)

  it("never passes the program's hop-by-hop headers back", function()
    local status, size, head = download(h, prefix .. "/big?mib=1")
    assert.equal(200, status)
    assert.equal(1 << 20, size)
    local lower = head:lower()
    assert.truthy(lower:find("\nx%-end%-to%-end: kept"), head)
    for _, name in ipairs{ "x-hop-resp", "keep-alive", "proxy-authenticate" } do
      assert.is_nil(lower:find("\n" .. name:gsub("%-", "%%-") .. ":"), name .. " came back:\n" .. head)
    end
    assert.is_nil(lower:find("connection:[^\n]*x%-hop%-resp"), head)
  end)

  it("keeps connections to the program alive: many requests, few connections", function()
    local first = echo("GET").connections
    for _ = 1, 30 do echo("GET") end
    local last = echo("GET").connections
    assert.is_true(last - first <= 2, (last - first) .. " new connections for 31 requests")
  end)

  it("serves a second client while a first one does not read its answer", function()
    local stalled = H.never_reading_client(h.port, "GET " .. prefix .. "/big?mib=50 HTTP/1.1\r\nHost: 127.0.0.1:"
      .. h.port .. "\r\n\r\n")
    assert.truthy(stalled)
    for _ = 1, 5 do
      assert.equal(200, H.call(h, "GET", prefix .. "/watcher/status").status)
      assert.equal(200, H.call(h, "GET", "/health").status)
    end
    local status, size = download(h, prefix .. "/big?mib=4")
    assert.equal(200, status)
    assert.equal(4 << 20, size)
  end)

  it("answers 502 in the Host's error shape when the program resets the connection", function()
    local res = H.call(h, "GET", prefix .. "/reset")
    H.assert_error(res, 502, "a reset")
    assert.truthy(res.json.message:find("program " .. id .. " did not answer", 1, true), res.body)
    assert.is_number(echo("GET").connections) -- and it goes on forwarding
  end)

  it("stops cleanly on SIGTERM", function()
    H.assert_clean_exit(h)
  end)
end)

describe("hersh host: the proxy's timeout", function()
  local h

  lazy_setup(function() h = H.start_host() end)
  lazy_teardown(function() H.stop_host(h) end)

  it("answers 504 in the Host's error shape after the program's proxy.timeout", function()
    local id = H.create(h, upstream_body("hangs", { timeout = 1 })).program_id
    H.start_ready(h, id)
    local res = H.call(h, "GET", "/programs/" .. id .. "/proxy/hang")
    H.assert_error(res, 504, "past proxy.timeout")
    assert.truthy(res.json.message:find("did not answer within 1 s (its proxy.timeout)", 1, true), res.body)
    assert.equal(200, H.call(h, "GET", "/health").status)
  end)

  it("stops cleanly on SIGTERM", function()
    H.assert_clean_exit(h)
  end)
end)
