-- The Host's REST API: routes, JSON in and out, errors as {"error", "code",
-- "message"}, the checks of who may call (the bearer token, in C on the headers; the
-- Host, Origin and Content-Type headers, here), log tails and follows, the event stream
-- (GET /events), and the proxy to each program's WatcherAPI. Handlers run on the loop;
-- none waits for a build, a spawn or a program.
local core = require "hersh.core"
local sys = require "hersh.os"
local httpd = require "hersh.httpd"
local http = require "hersh.http"
local json = require "hersh.json"
local events = require "host.events"
local metrics = require "host.metrics"
local host_metrics = require "host.host_metrics"
local ui = require "host.ui"

local api = {}

api.MAX_BODY = 16 * 1024 * 1024
api.MAX_BUFFERED = 4 * api.MAX_BODY -- bodies held at once, over all connections

local STATUS_TEXT = {
  [200] = "OK", [201] = "Created", [202] = "Accepted", [400] = "Bad Request", [401] = "Unauthorized",
  [403] = "Forbidden", [404] = "Not Found", [405] = "Method Not Allowed", [409] = "Conflict",
  [413] = "Payload Too Large", [415] = "Unsupported Media Type", [422] = "Unprocessable Content", [500] = "Internal Server Error",
  [502] = "Bad Gateway", [503] = "Service Unavailable", [504] = "Gateway Timeout", [507] = "Insufficient Storage",
}

local JSON = { ["Content-Type"] = "application/json" }

local function send_json(res, status, value)
  res:send(status, json.encode(value) .. "\n", JSON)
end

local function send_error(res, status, message, extra)
  local body = { error = STATUS_TEXT[status] or "Error", code = status, message = message }
  for k, v in pairs(extra or {}) do body[k] = v end
  send_json(res, status, body)
end

-- A Host operation's outcome: the value, or the refusal it returned.
local function answer(res, status, value, err)
  if value then return send_json(res, status, value) end
  send_error(res, err.status, err.message, err.state and { state = err.state } or nil)
end

-- ---- who may call ---------------------------------------------------------------------

-- "name:port" for a host name or address (an IPv6 one in brackets), lower-case.
local function with_port(name, port)
  name = name:lower()
  if name:find(":", 1, true) and not name:match("^%[") then name = "[" .. name .. "]" end
  return name .. ":" .. port
end

-- The Host header values this Host answers to: its bind address, localhost, 127.0.0.1
-- and [::1] with its port, and the --allow-host names (with the port unless they give
-- one). Any other name reached it by accident or by DNS rebinding, where a web page's
-- own name is made to resolve here so that the browser lets it read the answers.
local function allowed_hosts(bind, port, extra)
  local set = {}
  for _, name in ipairs { bind, "localhost", "127.0.0.1", "::1" } do set[with_port(name, port)] = true end
  for _, name in ipairs(extra or {}) do
    local given = name:match("^%[.*%]:%d+$") or name:match("^[^:]+:%d+$")
    set[given and name:lower() or with_port(name, port)] = true
  end
  return set
end

local function is_json(content_type)
  local t = (content_type or ""):lower()
  return t:match("^%s*application/json%s*$") ~= nil or t:match("^%s*application/json%s*;") ~= nil
end

-- Whether the request has a body: the one read, or one still to come (a proxied request
-- taken on its headers: see api.serve).
local function has_body(req)
  if not req.body_follows then return req.body ~= "" end
  local length = req.headers["content-length"]
  return req.headers["transfer-encoding"] ~= nil or (length ~= nil and length ~= "0")
end

-- Refuses (answers, and returns true) a request for an unexpected Host name, a
-- cross-origin write (a web page's form or fetch: browsers send Origin with those),
-- and a body that is not JSON (a page may send text/plain without asking first).
local function refuse_foreign(hosts, req, res)
  local host = req.headers.host
  if host and not hosts[host:lower()] then
    send_error(res, 403, "Host '" .. host .. "' is not a name of this Host (see --allow-host)")
    return true
  end
  local origin = req.headers.origin
  local own = origin and hosts[(origin:lower():match("^http://([^/]+)$") or "")]
  if origin and not own and req.method ~= "GET" and req.method ~= "HEAD" then
    send_error(res, 403, "cross-origin " .. req.method .. " from " .. origin .. " refused")
    return true
  end
  local ctype = req.headers["content-type"]
  if (has_body(req) or ctype) and not is_json(ctype) then
    send_error(res, 415, "a request body must come with Content-Type: application/json, not "
      .. (ctype and "'" .. ctype .. "'" or "none"))
    return true
  end
  return false
end

-- ---- logs ---------------------------------------------------------------------------

local TAIL_CHUNK = 64 * 1024

-- The last n lines of the file, read backwards from its end in chunks (a log may be
-- megabytes; a tail is a few lines), and the file's size.
local function last_lines(path, n)
  local st = sys.fs.stat(path)
  if not st or st.type ~= "file" then return "", 0 end -- a FIFO would block the loop
  local f = io.open(path, "rb")
  if not f then return "", 0 end
  local size = f:seek("end")
  local pos, text = size, ""
  while pos > 0 and select(2, text:gsub("\n", "")) <= n do
    local step = math.min(TAIL_CHUNK, pos)
    pos = pos - step
    f:seek("set", pos)
    text = f:read(step) .. text
  end
  f:close()
  local lines = {}
  for line in text:gmatch("[^\n]+") do lines[#lines + 1] = line end
  if pos > 0 then table.remove(lines, 1) end -- the first may have been cut by the chunk edge
  local from = math.max(1, #lines - n + 1)
  return table.concat(lines, "\n", from) .. (#lines >= from and "\n" or ""), size
end

local TEXT = { ["Content-Type"] = "text/plain; charset=utf-8" }

-- Streams `first`, then what the log gets from byte `offset` on, until the client
-- leaves or the program is deleted (its log directory goes). Woken by inotify on the
-- log's directory, never by a timer. The open file is read to its end before the one
-- that replaced it (a rotation loses no line); a truncated one is read from its start.
local function follow(res, path, first, offset)
  local dir = path:match("^(.*)/[^/]+$")
  local stream, watch, f
  -- Unbuffered: stdio would serve a seek back (after a truncation) from stale buffer.
  local function open()
    f = io.open(path, "rb")
    if f then f:setvbuf("no") end
  end
  open()
  local function stop()
    if watch then watch:stop() end
    if f then f:close() end
    f = nil
  end
  -- A client too slow for what the log gets (its buffer full): reset it, as the event
  -- stream does, rather than hold the connection and the buffer until it leaves.
  local function too_slow()
    stop()
    if not stream:closed() then stream:cut() end
  end
  local function drain()
    if not f then return true end
    local size = f:seek("end")
    if size < offset then offset = 0 end
    if size == offset then return true end
    f:seek("set", offset)
    local chunk = f:read(size - offset) or ""
    offset = offset + #chunk
    return stream:write(chunk)
  end
  local function on_change()
    if stream:closed() then return stop() end
    if not drain() then return too_slow() end
    local id = sys.file_id(path)
    if f and id ~= sys.file_id(f) then
      f:close()
      f = nil
    end
    if not f and id then
      open()
      offset = 0
      if not drain() then return too_slow() end
    end
    if not sys.file_id(dir) then
      stop()
      stream:finish()
    end
  end
  local err
  watch, err = sys.fs_watch(dir, on_change)
  if not watch then
    stop()
    return send_error(res, 500, "cannot follow the log: " .. err)
  end
  stream = res:stream(200, TEXT)
  if not stream then return stop() end
  stream:on_close(stop)
  if not stream:write(first) then too_slow() end
end

local function route_logs(h, res, id, query)
  local path, err = h:log_path(id, query.type or "runtime")
  if not path then return answer(res, nil, nil, err) end
  local tail = tonumber(query.tail or "200")
  if not tail or tail < 0 or tail ~= math.floor(tail) then
    return send_error(res, 400, "tail must be a non-negative integer")
  end
  local text, size = last_lines(path, tail)
  if query.follow == "true" or query.follow == "1" then
    return follow(res, path, text, size)
  end
  res:send(200, text, TEXT)
end

-- ---- the proxy ------------------------------------------------------------------------
-- Lua decides (the program, its state, what cannot be forwarded); the forwarding itself,
-- headers, streaming and the 502/504 answers are C's (src/http/proxy.c, hersh.http.proxy).
-- src/http/proxy_route.c decides the same in C for the requests it forwards unchanged
-- (a Ready program, nothing refused): keep the two in step.

local function escape(s)
  return (s:gsub("[^%w%-._~]", function(c) return string.format("%%%02X", c:byte()) end))
end

local function encode_query(query)
  local parts = {}
  for k, v in pairs(query or {}) do parts[#parts + 1] = escape(k) .. "=" .. escape(v) end
  table.sort(parts)
  return #parts > 0 and "?" .. table.concat(parts, "&") or ""
end

local TOKEN = "^[%w!#$%%&'*+%-.^_`|~]+$"

-- Why the request cannot be forwarded as it is, or nil: a method that is not an HTTP
-- token, control characters in the (decoded) path, a header libcurl would refuse.
local function unforwardable(req, rest)
  if not req.method:match(TOKEN) then return "the method is not an HTTP token" end
  if rest:find("%c") then return "the path holds a control character" end
  for k, v in pairs(req.headers) do
    if not k:match(TOKEN) then return "a header name is not an HTTP token" end
    if v:find("[\0\r\n]") then return "the value of header " .. k .. " holds a CR, LF or NUL" end
  end
end

-- The decoded path, encoded again for the program: a %20 the client sent stays one.
local function encode_path(rest)
  return (rest:gsub("[^%w%-._~!$&'()*+,;=:@/]", function(c) return string.format("%%%02X", c:byte()) end))
end

local function route_proxy(h, res, req, id, rest, m)
  local p, err = h:get(id)
  if not p then return answer(res, nil, nil, err) end
  if p.sup.record.state ~= "Ready" then
    return send_error(res, 503, "program " .. id .. " is " .. p.sup.record.state .. ", not Ready",
      { state = p.sup.record.state })
  end
  local why = unforwardable(req, rest)
  if why then return send_error(res, 400, "cannot forward this request: " .. why) end
  local limits = h:proxy_timeouts(p)
  local started = core.now()
  res:proxy({ method = req.method, program = id,
    url = "http://127.0.0.1:" .. p.port .. "/" .. encode_path(rest) .. encode_query(req.query),
    headers = req.headers, body = not req.body_follows and req.body or nil, stream_body = req.body_follows,
    timeout = limits.timeout, connect_timeout = limits.connect_timeout, fresh_after = p.changed },
    function() m:proxied(core.now() - started) end)
end

-- ---- dispatch -------------------------------------------------------------------------

local function decode_body(req)
  if not req.body or req.body == "" then return nil, "the request has no body" end
  local value, err = json.decode(req.body)
  if value == nil then return nil, "malformed JSON " .. (err:gsub("^invalid JSON ", "")) end
  return value
end

local function method_not_allowed(res, allowed)
  send_error(res, 405, "use " .. allowed, nil)
end

-- ---- events -----------------------------------------------------------------------------

api.HEARTBEAT = 15 -- seconds between ": keep-alive" comments on a stream (--events-heartbeat)
local PAGE = 500 -- events read from the store at once
local HIGH_WATER = 256 * 1024 -- bytes waiting for a client before the backlog pauses
local PACE = 0.05 -- seconds before a paused backlog looks again
local BACKLOG_MAX = 10000 -- events one follow=false answer holds at most

local KINDS = {}
for _, k in ipairs(events.KINDS) do KINDS[k] = true end

local SSE = { ["Content-Type"] = "text/event-stream", ["Cache-Control"] = "no-store" }

-- A non-negative integer from a query or header value, or nil.
local function event_id(v)
  return v:match("^%d+$") and math.tointeger(tonumber(v)) or nil
end

-- The parameters of an event request: filter {program_id, kinds}, since, follow, limit;
-- or nil and the 400 message naming the parameter. `program` is the one of the path.
local function event_params(req, program)
  local q = req.query
  local f = { program_id = program }
  if not program and q.program then
    if q.program == "" then return nil, "program: give a program id" end
    f.program_id = q.program
  end
  if q.kind then
    f.kinds = {}
    for k in (q.kind .. ","):gmatch("([^,]*),") do
      if not KINDS[k] then
        return nil, "kind: '" .. k .. "' is not an event kind (" .. table.concat(events.KINDS, ", ") .. ")"
      end
      f.kinds[k] = true
    end
  end
  -- Last-Event-ID first: a reconnecting EventSource sends it with the URL it began with.
  local last = req.headers["last-event-id"]
  local since = 0
  if last then
    since = event_id(last)
    if not since then return nil, "Last-Event-ID: '" .. last .. "' is not an event id" end
  elseif q.since then
    since = event_id(q.since)
    if not since then return nil, "since: '" .. q.since .. "' is not an event id" end
  end
  local follow = q.follow == nil or q.follow == "true" or q.follow == "1"
  if not follow and q.follow ~= "false" and q.follow ~= "0" then
    return nil, "follow: '" .. q.follow .. "' is not true or false"
  end
  local limit = BACKLOG_MAX
  if q.limit then
    limit = event_id(q.limit)
    if not limit or limit < 1 or limit > BACKLOG_MAX then
      return nil, "limit: '" .. q.limit .. "' is not a number from 1 to " .. BACKLOG_MAX
    end
  end
  return { filter = f, since = since, follow = follow, limit = limit }
end

local function matches(f, e)
  return (not f.program_id or e.program_id == f.program_id) and (not f.kinds or f.kinds[e.kind] == true)
end

local function sse_frame(e)
  return "id: " .. e.id .. "\nevent: " .. e.kind .. "\ndata: " .. json.encode(e) .. "\n\n"
end

-- Streams the events after `since` that pass the filter: the backlog from the store,
-- paced by what the client takes, then live ones as they are recorded. Subscribed
-- before the backlog is read, live events are skipped while it is (the store has them)
-- and by id afterwards, so none is missed or sent twice. Every `heartbeat` s a comment
-- keeps a quiet stream's proxies awake. A client is too slow, and cut off (it resumes by
-- id), when it took no byte of what waited for it since the last heartbeat, or when
-- HERSH_HTTP_STREAM_MAX_BUFFER bytes wait for it: what the Host holds for it is bounded.
local function stream_events(ev, res, params, heartbeat)
  local f, sent = params.filter, params.since
  local stream, unsubscribe, beat, pace
  local live = false
  local written, seen_written, seen_waiting = 0, 0, 0
  local function stop()
    if unsubscribe then unsubscribe() end
    unsubscribe = nil
    if beat then beat:stop() end
    if pace then pace:stop() end
    beat, pace = nil, nil
    stream:finish()
  end
  local function too_slow()
    stream:cut()
    stop()
  end
  local function write(text)
    if not stream:write(text) then
      too_slow()
      return false
    end
    written = written + #text
    return true
  end
  local function send(e)
    if e.id <= sent or not matches(f, e) then return true end
    sent = e.id
    return write(sse_frame(e))
  end
  local function backlog()
    pace = nil
    while true do
      local page = ev:since(sent, f, PAGE)
      if not page then return stop() end -- the store failed: the client resumes later
      for _, e in ipairs(page) do
        if stream:waiting() >= HIGH_WATER then
          pace = core.timer(PACE, backlog) -- the rest is read again from `sent` on
          return
        end
        if not send(e) then return end
      end
      if #page < PAGE then
        live = true
        return
      end
    end
  end
  local function tick()
    local waiting = stream:waiting()
    local taken = seen_waiting + (written - seen_written) - waiting
    if waiting > 0 and taken == 0 then return too_slow() end
    seen_waiting, seen_written = waiting, written
    write(": keep-alive\n\n")
  end
  stream = res:stream(200, SSE)
  if not stream then return end
  unsubscribe = ev:subscribe(function(e)
    if live then send(e) end
  end)
  stream:on_close(stop)
  beat = core.timer(heartbeat, tick, heartbeat)
  backlog()
end

local function route_events(h, req, res, heartbeat, program)
  if req.method ~= "GET" and req.method ~= "HEAD" then return method_not_allowed(res, "GET") end
  if program then -- an id or a name: events are kept by id
    local p, err = h:get(program)
    if err then return answer(res, nil, nil, err) end
    program = p.id
  end
  local params, err = event_params(req, program)
  if not params then return send_error(res, 400, err) end
  if params.follow then return stream_events(h.events, res, params, heartbeat) end
  local list, list_err = h.events:since(params.since, params.filter, params.limit)
  if not list then return send_error(res, 500, "cannot read the events: " .. tostring(list_err)) end
  local last = #list == params.limit and list[#list].id or math.max(params.since, h.events:last_id())
  send_json(res, 200, { events = json.array(list), last_id = last })
end

-- GET /policy, POST /policy/reload, and the policy's own routes under /x/ (host.policy).
local function route_policy(h, req, res)
  local pol, method = h.policy, req.method
  if req.path == "/policy" then
    if method ~= "GET" and method ~= "HEAD" then return method_not_allowed(res, "GET") end
    return send_json(res, 200, pol:view())
  elseif req.path == "/policy/reload" then
    if method ~= "POST" then return method_not_allowed(res, "POST") end
    if not pol.file then return send_error(res, 409, "the Host was started without --policy: there is no file to reload") end
    local ok, why = pol:reload()
    if not ok then return send_error(res, 422, "the policy was not reloaded: " .. why .. "; the one loaded at "
      .. pol:view().loaded_at .. " stays", { policy = pol:view() }) end
    return send_json(res, 200, pol:view())
  end
  local status, value, message = pol:route(req)
  if value == nil then return send_error(res, status, message) end
  send_json(res, status, value)
end

-- GET /programs: every program, or a page of `limit` with the cursor of the next.
local LIST_MAX = 1000
local function route_list(h, req, res)
  local q = req.query
  local limit = q.limit
  if limit ~= nil then
    limit = tostring(limit):match("^%d%d?%d?%d?$") and math.tointeger(tonumber(limit))
    if not limit or limit < 1 or limit > LIST_MAX then
      return send_error(res, 400, "limit must be a whole number from 1 to " .. LIST_MAX)
    end
  end
  local list, next_or_err = h:list{ user_id = q.user_id, state = q.state, name = q.name, after = q.after, limit = limit }
  if not list then return answer(res, nil, nil, next_or_err) end
  res:send(200, h.cache:listing(list, { count = #list, next = next_or_err }) .. "\n", JSON)
end

-- The body of /health, encoded once per count of programs.
local health_count, health_text
local function health_body(n)
  if n ~= health_count then
    health_count, health_text = n, json.encode{ status = "ok", programs = n } .. "\n"
  end
  return health_text
end

-- The token was checked already (httpd.serve, on the headers: /health needs none).
local function handle(h, hosts, req, res, m, heartbeat)
  local path, method = req.path, req.method
  if refuse_foreign(hosts, req, res) then return end
  if ui.owns(path) then
    local status, body, headers = ui.answer(method, path, req.headers["if-none-match"])
    if not status then
      if body == 405 then return method_not_allowed(res, "GET") end
      return send_error(res, body, headers)
    end
    return res:send(status, body, headers)
  end
  if path == "/health" then
    if method ~= "GET" and method ~= "HEAD" then return method_not_allowed(res, "GET") end
    local text = health_body(#h.order)
    if h.routes then h.routes:set_health(text) end -- C answers the next ones, until a change
    return res:send(200, text, JSON)
  end
  if path == "/metrics" then
    if method ~= "GET" and method ~= "HEAD" then return method_not_allowed(res, "GET") end
    return res:send(200, m:render(), { ["Content-Type"] = metrics.CONTENT_TYPE })
  end
  if path == "/events" then return route_events(h, req, res, heartbeat) end
  if path == "/policy" or path == "/policy/reload" or path:match("^/x/") then return route_policy(h, req, res) end
  if path == "/programs" then
    if method == "POST" then
      local body, err = decode_body(req)
      if body == nil then return send_error(res, 400, err) end
      local created, cerr = h:create(body)
      return answer(res, 201, created, cerr)
    elseif method == "GET" or method == "HEAD" then
      return route_list(h, req, res)
    end
    return method_not_allowed(res, "GET, POST")
  end
  local id, rest = path:match("^/programs/([^/]+)(.*)$")
  if not id then return send_error(res, 404, "no route for " .. path) end
  if rest == "" then
    if method == "GET" or method == "HEAD" then
      local p, err = h:get(id)
      if not p then return answer(res, nil, nil, err) end
      local text = h.cache:get(p) .. "\n" -- encoded once per change
      if h.routes then h.routes:set_record(id, text) end -- C answers the next ones, until a change
      return res:send(200, text, JSON)
    elseif method == "PUT" then
      local body, err = decode_body(req)
      if body == nil then return send_error(res, 400, err) end
      local result, uerr = h:update(id, body)
      return answer(res, 202, result, uerr)
    elseif method == "DELETE" then
      local keep = req.query.keep_state == "true" or req.query.keep_state == "1"
      local p = h.programs[id] or h.by_name[id]
      local ok, err = h:delete(id, keep, function()
        send_json(res, 200, { program_id = p.id, state = "Deleted", message = "program deleted" })
      end)
      if not ok then return answer(res, nil, nil, err) end
      return
    end
    return method_not_allowed(res, "GET, PUT, DELETE")
  end
  local action = rest:match("^/(%a+)$")
  if action == "start" or action == "stop" or action == "restart" then
    if method ~= "POST" then return method_not_allowed(res, "POST") end
    local result, err = h:act(id, action)
    return answer(res, 202, result, err)
  elseif action == "logs" then
    if method ~= "GET" and method ~= "HEAD" then return method_not_allowed(res, "GET") end
    return route_logs(h, res, id, req.query)
  elseif action == "events" then
    return route_events(h, req, res, heartbeat, id)
  elseif action == "revisions" then
    if method ~= "GET" and method ~= "HEAD" then return method_not_allowed(res, "GET") end
    local list, err = h:revisions(id)
    return answer(res, 200, list, err)
  elseif action == "rollback" then
    if method ~= "POST" then return method_not_allowed(res, "POST") end
    local result, err = h:rollback(id, req.query.revision)
    return answer(res, 202, result, err)
  elseif action == "source" then
    if method ~= "GET" and method ~= "HEAD" then return method_not_allowed(res, "GET") end
    local src, err = h:source(id)
    return answer(res, 200, src, err)
  elseif action == "trace" then -- the program's WatcherAPI trace, for hersh replay (docs/replay.md)
    if method ~= "GET" and method ~= "HEAD" then return method_not_allowed(res, "GET") end
    return route_proxy(h, res, req, id, "watcher/trace", m)
  end
  local proxied = rest == "/proxy" and "" or rest:match("^/proxy/(.*)$")
  if proxied then return route_proxy(h, res, req, id, proxied, m) end
  send_error(res, 404, "no route for " .. path)
end

-- The answer, counting the status of the request under its route pattern: one small
-- table per request, its methods shared, and the count a plain tally[route][status]
-- that GET /metrics takes in (closures and label strings per request cost the fixed
-- routes as much as their work).
local Counted = {}
Counted.__index = Counted

function Counted:count(status)
  local by_status = self.tally[self.route]
  if not by_status then
    by_status = {}
    self.tally[self.route] = by_status
  end
  by_status[status] = (by_status[status] or 0) + 1
end

function Counted:send(status, ...)
  self:count(status)
  return self.res:send(status, ...)
end

function Counted:stream(status, ...)
  self:count(status)
  return self.res:stream(status, ...)
end

-- done(status) when the answer is over; a request the proxy refused at once is
-- counted with what it answered (400 or 502)
function Counted:proxy(opts, done)
  local ok, _, code = http.proxy(opts, self.res, function(status)
    self:count(status)
    done(status)
  end)
  if not ok then self:count(code == "EINVAL" and 400 or 502) end
end

local function counted(res, tally, route)
  return setmetatable({ res = res, tally = tally, route = route }, Counted)
end

-- The requests answered since the last scrape, into the metrics: those counted here
-- (tally), those the proxy's fast path forwarded and the GET /health and GET
-- /programs/{id} answered in C from the texts given below (none reach the handlers).
local FAST_ROUTE = "/programs/{id}/proxy"
local function absorb(m, tally, routes)
  for route, by_status in pairs(tally) do
    for status, n in pairs(by_status) do m.http:inc({ route = route, status = tostring(status) }, n) end
    tally[route] = nil
  end
  local statuses, sum, count, le, health, record = routes:take()
  for status, n in pairs(statuses) do m.http:inc({ route = FAST_ROUTE, status = tostring(status) }, n) end
  if health > 0 then m.http:inc({ route = "/health", status = "200" }, health) end
  if record > 0 then m.http:inc({ route = "/programs/{id}", status = "200" }, record) end
  if count == 0 then return end
  local s = m.proxy:get(nil)
  s.sum, s.count = s.sum + sum, s.count + count
  for i, n in ipairs(le) do s.counts[i] = s.counts[i] + n end
end

-- api.serve(host, {bind, port, token, allow_hosts = {name...}, max_connections,
-- max_per_client, idle_timeout, request_timeout, events_heartbeat}) -> server | nil, err, code
-- (the limits as httpd.serve takes them; nil: its defaults; events_heartbeat: seconds)
function api.serve(h, opts)
  local bind = opts.bind or "127.0.0.1"
  local server, hosts, err, code
  local m = host_metrics.new(h)
  local routes = httpd.routes(host_metrics.PROXY_BUCKETS)
  local tally = {}
  local render = m.render
  function m.render(self)
    absorb(self, tally, routes)
    return render(self)
  end
  server, err, code = httpd.serve{
    bind = bind, port = opts.port or 9000, max_body = api.MAX_BODY, max_buffered = api.MAX_BUFFERED,
    token = opts.token, public_path = "/health", public_prefix = ui.PREFIX,
    max_connections = opts.max_connections, max_per_client = opts.max_per_client,
    idle_timeout = opts.idle_timeout, request_timeout = opts.request_timeout,
    proxy_routes = routes,
    handler = function(req, res)
      req.query = req.query or {}
      req.headers = req.headers or {}
      req.body = req.body or ""
      hosts = hosts or allowed_hosts(bind, server:port(), opts.allow_hosts)
      handle(h, hosts, req, counted(res, tally, host_metrics.route(req.path)), m,
        opts.events_heartbeat or api.HEARTBEAT)
    end,
    -- A request for the proxy is taken on its headers, so that its body goes to the
    -- program as it comes (hersh.http.proxy), never held here; the others wait for theirs.
    -- Most proxied requests never come here: C forwards those of a Ready program from
    -- the routes table (src/http/proxy_route.c); this route answers the rest.
    on_headers = function(req, res)
      local route = host_metrics.route(req.path)
      if route ~= "/programs/{id}/proxy" then return end
      req.query = req.query or {}
      req.headers = req.headers or {}
      req.body, req.body_follows = "", true
      hosts = hosts or allowed_hosts(bind, server:port(), opts.allow_hosts)
      handle(h, hosts, req, counted(res, tally, route), m, opts.events_heartbeat or api.HEARTBEAT)
    end,
  }
  if not server then return nil, err, code end
  hosts = allowed_hosts(bind, server:port(), opts.allow_hosts)
  local names = {}
  for name in pairs(hosts) do names[#names + 1] = name end
  routes:hosts(names)
  h:use_routes(routes)
  return server
end

return api
