-- The dashboard's files served by a real Host under /ui (lua/host/ui.lua, the
-- public_prefix of src/http/server.c): deep links, content types, ETag and 304, the
-- security headers, no token for the files but still for every API call, and the
-- attacks of someone who wants a file outside ui/ or an API answer without the token
-- (dot segments raw and encoded, symlinks, NUL, backslashes, hidden and unknown files).
-- Real Host over loopback; the raw requests go through bash's /dev/tcp (curl would
-- normalize the path); no browser.
local H = require "scripts.host_harness"
local R = require "scripts.raw_http"
local P = H.P

local TOKEN = "ui-spec-token-0123456789"
local INDEX = "<!doctype html><html><head><title>Hersh</title></head><body>dashboard</body></html>\n"
local APP = "export const answer = 42;\n"
local SECRET = "the secret outside ui/\n"

local FILES = {
  ["index.html"] = { INDEX, "text/html; charset=utf-8" },
  ["app.js"] = { APP, "text/javascript; charset=utf-8" },
  ["style.css"] = { "body { color: black; }\n", "text/css; charset=utf-8" },
  ["pages/dashboard.js"] = { "export default 1;\n", "text/javascript; charset=utf-8" },
  ["icon.svg"] = { "<svg xmlns='http://www.w3.org/2000/svg'/>\n", "image/svg+xml" },
  ["data.json"] = { "{}\n", "application/json" },
  ["logo.png"] = { "\137PNG\r\n\26\n", "image/png" },
}

local root, ui_dir, host

-- A raw GET (or `method`) of `target` exactly as written, without the token.
local function raw(target, method, lines)
  return R.request(host.port, R.build(method or "GET", target, host.port, lines))
end

local function get(path, headers)
  return H.call({ port = host.port }, "GET", path, nil, headers)
end

local function assert_security_headers(res, what)
  local csp = res.headers["content-security-policy"] or ""
  assert.is_truthy(csp:find("default-src 'self'", 1, true), what .. ": CSP " .. csp)
  assert.is_truthy(csp:find("frame-ancestors 'none'", 1, true), what .. ": CSP " .. csp)
  assert.equal("nosniff", res.headers["x-content-type-options"], what)
  assert.equal("no-cache", res.headers["cache-control"], what)
end

-- Nothing of the secret, and no program list, in an answer.
local function assert_nothing_leaked(res, what)
  assert.is_falsy(res.raw:find(SECRET, 1, true), what .. " leaked the file outside ui/: " .. res.raw)
  assert.is_falsy(res.raw:find('"programs"', 1, true), what .. " answered an API call without the token: " .. res.raw)
end

setup(function()
  root = H.public_tmpdir()
  ui_dir = root .. "/ui"
  for name, f in pairs(FILES) do
    assert(H.sh("mkdir -p " .. P.quote((ui_dir .. "/" .. name):match("^(.*)/"))))
    P.write(ui_dir .. "/" .. name, f[1])
  end
  P.write(ui_dir .. "/CONTRACT.md", "notes, not served\n")
  P.write(ui_dir .. "/.secret.js", "hidden\n")
  P.write(root .. "/secret.js", SECRET)
  assert(H.sh("mkdir -p " .. P.quote(root .. "/outside")))
  P.write(root .. "/outside/secret.js", SECRET)
  assert(H.sh("ln -s ../secret.js " .. P.quote(ui_dir .. "/leak.js")))
  assert(H.sh("ln -s ../outside " .. P.quote(ui_dir .. "/linked")))
  assert(H.sh("ln -s app.js " .. P.quote(ui_dir .. "/alias.js")))
  P.write(root .. "/token", TOKEN .. "\n")
  assert(H.sh("chmod 600 " .. P.quote(root .. "/token")))
  host = H.start_host{ token_file = root .. "/token", env = { HERSH_UI_DIR = ui_dir } }
end)

teardown(function()
  H.stop_host(host)
  if root then H.sh("rm -rf " .. P.quote(root)) end
end)

describe("GET /ui", function()
  it("answers index.html for the page and its deep links, without the token", function()
    for _, path in ipairs { "/ui", "/ui/", "/ui/programs", "/ui/programs/p-1", "/ui/programs/counter/watcher" } do
      local res = get(path)
      assert.equal(200, res.status, path .. ": " .. res.body)
      assert.equal(INDEX, res.body, path)
      assert.equal("text/html; charset=utf-8", res.headers["content-type"], path)
      assert_security_headers(res, path)
    end
  end)

  it("serves each file with the type of its extension and an ETag of its content", function()
    for name, f in pairs(FILES) do
      local res = get("/ui/" .. name)
      assert.equal(200, res.status, name .. ": " .. res.body)
      assert.equal(f[1], res.body, name)
      assert.equal(f[2], res.headers["content-type"], name)
      assert.equal('"' .. P.sha256sum(f[1]) .. '"', res.headers["etag"], name)
      assert_security_headers(res, name)
    end
  end)

  it("answers 304 with no body when If-None-Match holds the ETag, 200 once the file changed", function()
    local first = get("/ui/app.js")
    local etag = first.headers["etag"]
    for _, given in ipairs { etag, "W/" .. etag, '"other", ' .. etag, "*" } do
      local res = get("/ui/app.js", { "If-None-Match: " .. given })
      assert.equal(304, res.status, given)
      assert.equal("", res.body, given)
      assert.equal(etag, res.headers["etag"], given)
    end
    assert.equal(200, get("/ui/app.js", { 'If-None-Match: "stale"' }).status)
    P.write(ui_dir .. "/app.js", APP .. "// changed\n")
    P.defer(function() P.write(ui_dir .. "/app.js", APP) end)
    local changed = get("/ui/app.js", { "If-None-Match: " .. etag })
    assert.equal(200, changed.status)
    assert.equal(APP .. "// changed\n", changed.body)
    assert.are_not.equal(etag, changed.headers["etag"])
  end)

  it("answers HEAD with the headers of GET", function()
    local res = H.call({ port = host.port }, "HEAD", "/ui/app.js")
    assert.equal(200, res.status)
    assert.equal("text/javascript; charset=utf-8", res.headers["content-type"])
    assert.equal('"' .. P.sha256sum(APP) .. '"', res.headers["etag"])
  end)

  it("answers 404 with a JSON error for an unknown file, a folder, notes and hidden files", function()
    for _, path in ipairs { "/ui/nope.js", "/ui/pages", "/ui/pages/", "/ui/CONTRACT.md", "/ui/.secret.js",
      "/ui/pages/.secret.js", "/ui/programs/a/b/c", "/ui/index.html/x" } do
      H.assert_error(get(path), 404, path)
    end
  end)

  it("refuses other methods: 401 without the token (no body is read), 405 with it", function()
    for _, method in ipairs { "POST", "PUT", "DELETE", "OPTIONS" } do
      H.assert_error(H.call({ port = host.port }, method, "/ui/app.js"), 401, method)
      H.assert_error(H.call({ port = host.port, token = TOKEN }, method, "/ui/app.js"), 405, method)
    end
  end)
end)

describe("the token", function()
  it("is still needed by every API call, and by paths that only begin like /ui", function()
    H.assert_error(get("/programs"), 401, "/programs")
    H.assert_error(get("/events?follow=false"), 401, "/events")
    H.assert_error(get("/uix"), 401, "/uix")
    H.assert_error(get("/ui.js"), 401, "/ui.js")
    local with = H.call({ port = host.port, token = TOKEN }, "GET", "/programs")
    assert.equal(200, with.status, with.body)
  end)

  it("cannot be skipped by reaching an API route through /ui", function()
    for _, target in ipairs { "/ui/../programs", "/ui/%2e%2e/programs", "/ui/%2E%2E/programs", "/ui/..%2fprograms",
      "/ui/%2e%2e%2fprograms", "/ui/./../programs", "/ui//../programs", "/ui/..", "/ui/programs/../../programs",
      "/ui%2f..%2fprograms", "/ui/%2e%2e/health" } do
      local res = raw(target)
      assert.is_truthy(res.status == 400 or res.status == 404 or res.status == 401, target .. ": " .. res.raw)
      assert_nothing_leaked(res, target)
    end
  end)
end)

describe("a path that tries to leave ui/", function()
  it("is refused: dot segments, raw or encoded", function()
    for _, target in ipairs { "/ui/../secret.js", "/ui/%2e%2e/secret.js", "/ui/%2e%2E%2fsecret.js",
      "/ui/pages/../../secret.js", "/ui/pages/%2e%2e/%2e%2e/secret.js", "/ui/..%2f..%2f..%2fetc%2fpasswd" } do
      local res = raw(target)
      assert.equal(400, res.status, target .. ": " .. res.raw)
      assert.is_truthy((res.json and res.json.message or ""):find("..", 1, true), target)
      assert_nothing_leaked(res, target)
    end
  end)

  it("is refused: a symlink, to a file or a folder outside, or even to a file inside", function()
    for _, target in ipairs { "/ui/leak.js", "/ui/linked/secret.js", "/ui/alias.js" } do
      local res = raw(target)
      assert.equal(404, res.status, target .. ": " .. res.raw)
      assert_nothing_leaked(res, target)
    end
  end)

  it("is refused: NUL, control bytes and backslashes, never cut short to another file", function()
    for _, target in ipairs { "/ui/app.js%00.png", "/ui/leak.js%00", "/ui/%00../secret.js", "/ui/app%01.js",
      "/ui/..%5csecret.js", "/ui/pages%5c..%5c..%5csecret.js" } do
      local res = raw(target)
      assert.is_truthy(res.status == 400 or res.status == 404, target .. ": " .. res.raw)
      assert.is_falsy(res.raw:find(APP, 1, true), target .. " served app.js: " .. res.raw)
      assert_nothing_leaked(res, target)
    end
  end)

  it("keeps the Host-header check (DNS rebinding) for the files too", function()
    local res = R.request(host.port, "GET /ui/ HTTP/1.1\r\nHost: evil.example:80\r\nConnection: close\r\n\r\n")
    assert.equal(403, res.status, res.raw)
    assert.is_falsy(res.raw:find(INDEX, 1, true))
  end)
end)

describe("without HERSH_UI_DIR", function()
  it("serves the repository's ui/ from a build tree", function()
    local index = P.read("ui/index.html")
    if not index then
      pending("ui/index.html is not in the tree yet")
      return
    end
    local h = H.test_host()
    local res = H.call(h, "GET", "/ui/programs")
    assert.equal(200, res.status, res.body)
    assert.equal(index, res.body)
    assert.equal("text/html; charset=utf-8", res.headers["content-type"])
  end)
end)

describe("the Host that served all this", function()
  it("ends cleanly on SIGTERM, with no sanitizer report", function()
    H.assert_clean_exit(host)
  end)
end)
