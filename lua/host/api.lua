-- The Host's REST API: routes, JSON in and out, errors as {"error", "code",
-- "message"}, bearer-token auth, log tails and follows, and the proxy to each
-- program's WatcherAPI. Handlers run on the loop; none waits for a build, a spawn
-- or a program.
local core = require "hersh.core"
local cjson = require "cjson"

local api = {}

api.MAX_BODY = 16 * 1024 * 1024
api.PROXY_TIMEOUT = 30
api.FOLLOW_INTERVAL = 0.2

local STATUS_TEXT = {
  [200] = "OK", [201] = "Created", [202] = "Accepted", [400] = "Bad Request", [401] = "Unauthorized",
  [404] = "Not Found", [405] = "Method Not Allowed", [409] = "Conflict", [413] = "Payload Too Large",
  [500] = "Internal Server Error", [502] = "Bad Gateway", [503] = "Service Unavailable", [504] = "Gateway Timeout",
}

local JSON = { ["Content-Type"] = "application/json" }

local function send_json(res, status, value)
  res:send(status, cjson.encode(value) .. "\n", JSON)
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

-- Compares in time that does not depend on where the strings differ.
local function same_secret(a, b)
  if type(a) ~= "string" or #a ~= #b then return false end
  local diff = 0
  for i = 1, #a do diff = diff | (a:byte(i) ~ b:byte(i)) end
  return diff == 0
end

-- ---- logs ---------------------------------------------------------------------------

local TAIL_CHUNK = 64 * 1024

-- The last n lines of the file, read backwards from its end in chunks (a log may be
-- megabytes; a tail is a few lines), and the file's size.
local function last_lines(path, n)
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

-- Streams `first`, then the file as it grows, until the client leaves; a rotated or
-- truncated file (a restart writes on) is read again from its start.
local function follow(res, path, first, offset)
  local stream = res:stream(200, { ["Content-Type"] = "text/plain; charset=utf-8" })
  stream:write(first)
  local timer
  timer = core.timer(api.FOLLOW_INTERVAL, function()
    if stream:closed() then return timer:stop() end
    local st = core.fs.stat(path)
    local size = st and st.size or 0
    if size < offset then offset = 0 end
    if size == offset then return end
    local f = io.open(path, "rb")
    if not f then return end
    f:seek("set", offset)
    local chunk = f:read(size - offset)
    f:close()
    if chunk and #chunk > 0 then
      offset = offset + #chunk
      if not stream:write(chunk) then timer:stop() end
    end
  end, api.FOLLOW_INTERVAL)
  stream:on_close(function() timer:stop() end)
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
  res:send(200, text, { ["Content-Type"] = "text/plain; charset=utf-8" })
end

-- ---- the proxy ------------------------------------------------------------------------

local HOP_BY_HOP = { connection = true, ["keep-alive"] = true, ["transfer-encoding"] = true, te = true,
  trailer = true, upgrade = true, ["proxy-authorization"] = true, ["proxy-authenticate"] = true,
  host = true, ["content-length"] = true, authorization = true }

local function escape(s)
  return (s:gsub("[^%w%-._~]", function(c) return string.format("%%%02X", c:byte()) end))
end

local function encode_query(query)
  local parts = {}
  for k, v in pairs(query or {}) do parts[#parts + 1] = escape(k) .. "=" .. escape(v) end
  table.sort(parts)
  return #parts > 0 and "?" .. table.concat(parts, "&") or ""
end

local function route_proxy(h, res, req, id, rest)
  local p, err = h:get(id)
  if not p then return answer(res, nil, nil, err) end
  if p.sup.record.state ~= "Ready" then
    return send_error(res, 503, "program " .. id .. " is " .. p.sup.record.state .. ", not Ready",
      { state = p.sup.record.state })
  end
  local query = encode_query(req.query)
  local headers = {}
  for k, v in pairs(req.headers or {}) do
    if not HOP_BY_HOP[k] then headers[k] = v end
  end
  core.http_request({ method = req.method, url = "http://127.0.0.1:" .. p.port .. "/" .. rest .. query,
    headers = headers, body = req.body, timeout = api.PROXY_TIMEOUT }, function(r, http_err, code)
    if not r then
      local status = code == "ETIMEOUT" and 504 or 502
      return send_error(res, status, "program " .. id .. " did not answer: " .. tostring(http_err))
    end
    local out = {}
    for k, v in pairs(r.headers or {}) do
      if not HOP_BY_HOP[k] then out[k] = v end
    end
    res:send(r.status, r.body or "", out)
  end)
end

-- ---- dispatch -------------------------------------------------------------------------

local function decode_body(req)
  if not req.body or req.body == "" then return nil, "the request has no body" end
  local ok, value = pcall(cjson.decode, req.body)
  if not ok then return nil, "malformed JSON: " .. tostring(value):gsub("^.-: ", "") end
  return value
end

local function method_not_allowed(res, allowed)
  send_error(res, 405, "use " .. allowed, nil)
end

local function handle(h, token, req, res)
  local path, method = req.path, req.method
  if path == "/health" then
    if method ~= "GET" and method ~= "HEAD" then return method_not_allowed(res, "GET") end
    return send_json(res, 200, { status = "ok", programs = #h.order })
  end
  if token and not same_secret((req.headers.authorization or ""):match("^Bearer (.+)$"), token) then
    return send_error(res, 401, "missing or wrong bearer token")
  end
  if path == "/programs" then
    if method == "POST" then
      local body, err = decode_body(req)
      if body == nil then return send_error(res, 400, err) end
      local created, cerr = h:create(body)
      return answer(res, 201, created, cerr)
    elseif method == "GET" or method == "HEAD" then
      local list = h:list{ user_id = req.query.user_id, state = req.query.state }
      local items = {}
      for i, view in ipairs(list) do items[i] = cjson.encode(view) end
      -- by hand: cjson 2.1 would write an empty list as {}
      return res:send(200, string.format('{"programs":[%s],"count":%d}\n', table.concat(items, ","), #list), JSON)
    end
    return method_not_allowed(res, "GET, POST")
  end
  local id, rest = path:match("^/programs/([^/]+)(.*)$")
  if not id then return send_error(res, 404, "no route for " .. path) end
  if rest == "" then
    if method == "GET" or method == "HEAD" then
      local p, err = h:get(id)
      return answer(res, 200, p and h:view(p), err)
    elseif method == "DELETE" then
      local keep = req.query.keep_state == "true" or req.query.keep_state == "1"
      local ok, err = h:delete(id, keep, function()
        send_json(res, 200, { program_id = id, state = "Deleted", message = "program deleted" })
      end)
      if not ok then return answer(res, nil, nil, err) end
      return
    end
    return method_not_allowed(res, "GET, DELETE")
  end
  local action = rest:match("^/(%a+)$")
  if action == "start" or action == "stop" or action == "restart" then
    if method ~= "POST" then return method_not_allowed(res, "POST") end
    local result, err = h:act(id, action)
    return answer(res, 202, result, err)
  elseif action == "logs" then
    if method ~= "GET" and method ~= "HEAD" then return method_not_allowed(res, "GET") end
    return route_logs(h, res, id, req.query)
  elseif action == "source" then
    if method ~= "GET" and method ~= "HEAD" then return method_not_allowed(res, "GET") end
    local src, err = h:source(id)
    return answer(res, 200, src, err)
  end
  local proxied = rest == "/proxy" and "" or rest:match("^/proxy/(.*)$")
  if proxied then return route_proxy(h, res, req, id, proxied) end
  send_error(res, 404, "no route for " .. path)
end

-- api.serve(host, {bind, port, token}) -> server | nil, err, code
function api.serve(h, opts)
  return core.http_serve{
    bind = opts.bind or "127.0.0.1", port = opts.port or 9000, max_body = api.MAX_BODY,
    handler = function(req, res)
      req.query = req.query or {}
      req.headers = req.headers or {}
      handle(h, opts.token, req, res)
    end,
  }
end

return api
