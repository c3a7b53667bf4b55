-- The Host's REST API, called synchronously: each request runs the loop (hersh.http on
-- hersh.os's serve) until its answer. Every failure a person can fix ends the command
-- through client.fail with an exit code of cli.args.EXIT and a message saying what to do.
local http = require "hersh.http"
local sys = require "hersh.os"
local core = require "hersh.core"
local json = require "hersh.json"
local EXIT = require("cli.args").EXIT

local client = {}

-- A failure to report (no traceback): what cli.main prints and exits with.
local Failure = {}
Failure.__index = Failure
Failure.__tostring = function(f) return f.message end

function client.fail(code, message)
  error(setmetatable({ exit = code, message = message }, Failure), 0)
end

function client.is_failure(e)
  return getmetatable(e) == Failure
end

-- A program's name or id as one path segment: names and ids are [a-z0-9_-].
function client.check_name(name)
  if not name:match("^[%w_%-]+$") or #name > 128 then
    client.fail(EXIT.usage, "'" .. name .. "' is not a program name or id: they are letters, digits, '-' and '_'")
  end
  return name
end

local function read_token(path)
  local f, err = io.open(path, "r")
  if not f then client.fail(EXIT.usage, "cannot read the token file: " .. err .. " (--token-file or HERSH_TOKEN_FILE)") end
  local token = (f:read("a") or ""):match("^%s*(.-)%s*$")
  f:close()
  if token == "" then client.fail(EXIT.usage, "the token file " .. path .. " is empty") end
  return token
end

-- client.new(opts): the Host of --host or HERSH_HOST (a URL, or HOST:PORT), the token of
-- --token-file or HERSH_TOKEN_FILE.
function client.new(opts)
  local url = opts.host or os.getenv("HERSH_HOST") or "http://127.0.0.1:9000"
  if not url:match("^%a[%w+.-]*://") then url = "http://" .. url end
  url = url:gsub("/+$", "")
  if not url:match("^https?://[%w%.%-%[%]:]+$") then
    client.fail(EXIT.usage, "--host wants a URL like http://127.0.0.1:9000, not '" .. url .. "'")
  end
  local token_file = opts.token_file or os.getenv("HERSH_TOKEN_FILE")
  local c = setmetatable({ url = url, token = token_file and token_file ~= "" and read_token(token_file) },
    { __index = client })
  return c
end

-- Runs the loop until fn(done) calls done(...); returns what done got.
local function wait_for(fn)
  local result
  fn(function(...)
    result = table.pack(...)
    sys.stop_serving()
  end)
  while not result do sys.serve() end
  return table.unpack(result, 1, result.n)
end

-- Sleeps `seconds` on the loop; false when SIGINT came meanwhile (client.interrupted).
function client.sleep(seconds)
  if client.interrupted then return false end
  local t
  wait_for(function(done) t = core.timer(seconds, done) end)
  t:stop()
  return not client.interrupted
end

-- From now on SIGINT ends the wait (a follow or a watch) quietly instead of the process.
function client.on_interrupt()
  sys.on_signal("INT", function()
    client.interrupted = true
    sys.stop_serving()
  end)
end

-- The headers of every request: what it accepts, and the token.
function client:headers(accept)
  local headers = { Accept = accept }
  if self.token then headers.Authorization = "Bearer " .. self.token end
  return headers
end

-- Ends the command: the Host cannot be reached (err says why).
function client:unreachable(err)
  client.fail(EXIT.unreachable, "cannot reach the Host at " .. self.url .. ": " .. tostring(err)
    .. " (is `hersh host` running there? give its URL with --host or HERSH_HOST)")
end

-- Ends the command: the Host answered 401.
function client:refused()
  client.fail(EXIT.auth, "the Host at " .. self.url .. " refused the token" .. (self.token and "" or " (none given)")
    .. ": give the right one with --token-file or HERSH_TOKEN_FILE")
end

-- c:raw(method, path, body, timeout) -> {status, headers, body, json} (any status); a
-- Host it cannot reach or a refused token end the command.
function client:raw(method, path, body, timeout)
  local headers = self:headers("application/json")
  if body ~= nil then body = json.encode(body) end
  -- libcurl labels even an empty POST form data, which the Host refuses (415).
  if body ~= nil or method ~= "GET" then headers["Content-Type"] = "application/json" end
  local res, err = wait_for(function(done)
    local ok, e = http.request({ method = method, url = self.url .. path, headers = headers, body = body,
      timeout = timeout or 30, connect_timeout = 5 }, done)
    if not ok then done(nil, e) end
  end)
  if not res then self:unreachable(err) end
  if res.status == 401 then self:refused() end
  res.json = json.decode(res.body or "")
  return res
end

-- The Host's own words for a failed answer ({status, body, json}).
function client.reason(res)
  local doc = type(res.json) == "table" and res.json
  local msg = doc and (doc.message or doc.error)
  if type(msg) ~= "string" then msg = res.body ~= "" and res.body or "no message" end
  return "HTTP " .. res.status .. ": " .. msg
end

-- c:call(method, path, body, opts) -> the decoded JSON (or the text) of a 2xx answer.
-- opts.program names the program the path is about, so a 404 says "no program NAME";
-- opts.text: the body as is (a log).
function client:call(method, path, body, opts)
  opts = opts or {}
  local res = self:raw(method, path, body, opts.timeout)
  if res.status >= 200 and res.status < 300 then
    if res.json == nil or opts.text then return res.body end
    return res.json
  end
  if res.status == 404 and opts.program then
    client.fail(EXIT.not_found, "no program '" .. opts.program .. "' on the Host at " .. self.url
      .. " (hersh ps lists them)")
  end
  client.fail(EXIT.failed, (opts.what or (method .. " " .. path)) .. ": " .. client.reason(res))
end

-- c:program(name) -> the program's record.
function client:program(name)
  return self:call("GET", "/programs/" .. client.check_name(name), nil, { program = name })
end

-- c:wait_event(name, kinds, since, timeout, on_event) -> the record once an event of
-- one of `kinds` (a set) came after the event id `since`, and that event; nil, the last
-- record after `timeout` seconds or a SIGINT. on_event(event) sees each event on the way.
function client:wait_event(name, kinds, since, timeout, on_event)
  local deadline, ending = os.time() + timeout, nil
  while true do
    since = self:each_event(name, since, function(ev)
      if on_event then on_event(ev) end
      if kinds[ev.kind] and not ending then ending = ev end
    end)
    if ending then return self:program(name), ending end
    if os.time() >= deadline or not client.sleep(0.2) then return nil, self:program(name) end
  end
end

-- Calls fn(event) for each stored event of `name` (nil: every program) after `since`;
-- the id of the last one.
function client:each_event(name, since, fn)
  local path = name and ("/programs/" .. name .. "/events") or "/events"
  local res = self:raw("GET", path .. "?follow=false&since=" .. since)
  if res.status == 404 and name and type(res.json) == "table" and not tostring(res.json.message):match("^no route") then
    client.fail(EXIT.not_found, "no program '" .. name .. "' on the Host at " .. self.url .. " (hersh ps lists them)")
  end
  if res.status ~= 200 or type(res.json) ~= "table" then
    client.fail(EXIT.failed, "GET " .. path .. ": " .. client.reason(res) .. " (a Host without lifecycle events is too old)")
  end
  for _, ev in ipairs(res.json.events or {}) do
    fn(ev)
    since = math.max(since, ev.id)
  end
  return since
end

return client
