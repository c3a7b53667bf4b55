-- hersh.http's unix_socket option: the request goes to an HTTP server on a unix socket
-- (the Docker Engine's API is one), never to the URL's host, and a kept-alive
-- connection to one socket is never reused for a request to another.
local http = require "hersh.http"
local h = require "helpers"
local P = require "scripts.process"

-- An HTTP/1.1 server (keep-alive) on the unix socket argv[1] that answers
-- "<argv[2]> <path>": which server a request reached.
local SERVER = [[
import http.server, socketserver, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = (sys.argv[2] + " " + self.path).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def address_string(self):
        return "unix"
    def log_message(self, *args):
        pass
class S(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
S(sys.argv[1], H).serve_forever()
]]

local function serve(dir, name)
  local path = dir .. "/" .. name .. ".sock"
  local proc = P.start{ "env", "-u", "LD_PRELOAD", "python3", "-c", SERVER, path, name }
  P.defer(function() P.stop(proc) end)
  assert(P.wait_for(function() return os.execute("env -u LD_PRELOAD test -S " .. P.quote(path)) end, 10), "the server on " .. path .. " did not start")
  return path
end

describe("hersh.http's unix_socket", function()
  local dir
  before_each(function()
    dir = P.tmpdir()
    P.defer(function() os.execute("env -u LD_PRELOAD rm -rf " .. P.quote(dir)) end)
  end)

  it("sends the request over the socket; the URL's host is not looked up", function()
    local path = serve(dir, "one")
    -- "docker" resolves nowhere: only the socket can answer
    local res, err = h.fetch({ url = "http://docker/v1.41/version", unix_socket = path, timeout = 10 })
    assert.is_nil(err)
    assert.equal(200, res.status)
    assert.equal("one /v1.41/version", res.body)
  end)

  it("never reuses one socket's connection for another socket", function()
    local a, b = serve(dir, "a"), serve(dir, "b")
    for i = 1, 4 do -- alternating, each connection kept alive
      local res = h.fetch({ url = "http://docker/n" .. i, unix_socket = (i % 2 == 1) and a or b, timeout = 10 })
      assert.equal(((i % 2 == 1) and "a" or "b") .. " /n" .. i, res.body)
    end
    local res = h.fetch({ url = "http://docker/after", timeout = 2, connect_timeout = 1 })
    assert.is_nil(res) -- without the option, the URL's host: not found
  end)

  it("calls back a connection error when nothing listens on the path", function()
    local res, err, code = h.fetch({ url = "http://docker/", unix_socket = dir .. "/none.sock", timeout = 5 })
    assert.is_nil(res)
    assert.truthy(code == "ECONNREFUSED" or code == "ECONNECT", tostring(err) .. " " .. tostring(code))
  end)

  it("raises for a unix_socket that is no path", function()
    local cb = function() end
    assert.has_error(function() http.request({ url = "http://docker/", unix_socket = 42 }, cb) end)
    assert.has_error(function() http.request({ url = "http://docker/", unix_socket = "" }, cb) end)
    assert.has_error(function() http.request({ url = "http://docker/", unix_socket = "/a\0b" }, cb) end)
  end)
end)
