-- The subcommands that read what happens: logs [-f] [--build], events [-f], watch.
-- A follow holds one streamed answer open (hersh.http.stream) and prints each piece as
-- it arrives; it ends quietly, with 0, on SIGINT.
local json = require "hersh.json"
local http = require "hersh.http"
local sys = require "hersh.os"
local client = require "cli.client"
local programs = require "cli.programs"
local EXIT = require("cli.args").EXIT

local stream = {}

local RETRY = 1       -- seconds between two attempts to resume a dropped event stream
local RETRIES = 30    -- attempts in a row before a follow gives up on the Host
local MAX_LINE = 1024 * 1024 -- a longer line (or SSE field) is cut: memory stays bounded
local MAX_ERROR = 64 * 1024  -- of the body of a refusal kept for its message

-- Follows c's `path`: on_piece(text) for each piece of a 200 answer as it arrives,
-- until the Host ends it or SIGINT. Returns the answer's status (nil: never connected)
-- and, for any other status, its body; then how it ended: true, or nil, err, code.
local function follow(c, path, accept, on_piece, headers)
  local status, body, ended = nil, {}, nil
  local h = c:headers(accept)
  for k, v in pairs(headers or {}) do h[k] = v end
  local s, err, code = http.stream({ url = c.url .. path, headers = h, connect_timeout = 5 }, {
    head = function(res) status = res.status end,
    data = function(piece)
      if status == 200 then
        on_piece(piece)
      elseif #body < MAX_ERROR / 1024 then
        body[#body + 1] = piece:sub(1, 1024)
      end
    end,
    done = function(...)
      ended = table.pack(...)
      sys.stop_serving()
    end,
  })
  if not s then return nil, nil, nil, err, code end
  while not ended and not client.interrupted do sys.serve() end
  if not ended then
    s:cancel() -- its done comes on the loop's next turn
    while not ended do sys.serve() end
  end
  return status, table.concat(body), table.unpack(ended, 1, ended.n)
end

-- A failed answer of a follow ends the command as client:call does.
local function refuse(c, status, body, name)
  if status == 401 then c:refused() end
  if status == 404 and name then
    client.fail(EXIT.not_found, "no program '" .. name .. "' on the Host at " .. c.url .. " (hersh ps lists them)")
  end
  local ok, doc = pcall(json.decode, body)
  client.fail(EXIT.failed, client.reason({ status = status, body = body, json = ok and doc or nil }))
end

-- Text pieces as whole lines: fn(line) for each, the rest kept for the next piece
-- (up to MAX_LINE: then it goes out as a line of its own).
local function line_splitter(fn)
  local rest = ""
  return function(piece)
    rest = rest .. piece
    local pos = 1
    for line, stop in rest:gmatch("([^\n]*)\n()") do
      fn(line)
      pos = stop
    end
    rest = rest:sub(pos)
    if #rest > MAX_LINE then
      fn(rest)
      rest = ""
    end
  end
end

function stream.logs(a, c, out)
  local name = client.check_name(a.name)
  local tail = a.tail and math.tointeger(tonumber(a.tail))
  if a.tail and (not tail or tail < 0) then client.fail(EXIT.usage, "--tail wants a number of lines, not '" .. a.tail .. "'") end
  local path = "/programs/" .. name .. "/logs?type=" .. (a.build and "build" or "runtime") .. "&tail=" .. (tail or 200)
  local function emit(l)
    if l == "" then return end
    if out.json_mode then
      local at, from, rest = l:match("^(%S+) (%S+) ?(.*)$")
      out:json({ at = at, stream = from, text = rest })
    else
      out:line(l)
    end
  end
  if not a.follow then
    for l in c:call("GET", path, nil, { program = name, text = true }):gmatch("[^\n]+") do emit(l) end
    io.stdout:flush()
    return EXIT.ok
  end
  client.on_interrupt()
  local split = line_splitter(emit)
  local status, body, ok, err = follow(c, path .. "&follow=true", "text/plain", function(piece)
    split(piece)
    io.stdout:flush()
  end)
  if not status then c:unreachable(err) end
  if status ~= 200 then refuse(c, status, body, name) end
  if not ok and not client.interrupted then
    client.fail(EXIT.unreachable, "the Host at " .. c.url .. " broke off the log of '" .. name .. "': " .. tostring(err))
  end
  return EXIT.ok -- the Host ends a followed log when its program is deleted
end

local function event_line(out, ev)
  if out.json_mode then return out:json(ev) end
  local at = os.date("!%Y-%m-%dT%H:%M:%S", math.floor(ev.at)) .. string.format(".%03dZ", math.floor(ev.at % 1 * 1000))
  -- the Host's own events (a policy's) concern no program
  local name = ev.name or type(ev.details) == "table" and ev.details.name or ev.program_id or "host"
  out:line(string.format("%-6d %s  %s  %s", ev.id, at, out:paint("1", name), ev.message))
  io.stdout:flush()
end

-- Server-Sent Events as they arrive: fn(frame) for each whole frame with data
-- ({id, event, data}); comments (the keep-alives) are skipped.
local function sse_parser(fn)
  local frame = {}
  return line_splitter(function(line)
    line = line:gsub("\r$", "")
    if line == "" then
      if frame.data then fn(frame) end
      frame = {}
    elseif line:sub(1, 1) ~= ":" then
      local field, value = line:match("^([^:]*):? ?(.*)$")
      if field == "data" then
        frame.data = frame.data and (frame.data .. "\n" .. value) or value
      elseif field == "id" or field == "event" then
        frame[field] = value
      end
    end
  end)
end

-- Follows the event stream from the id `since`; a stream that drops is resumed where
-- it stopped (Last-Event-ID), so nothing is missed or shown twice.
local function follow_events(c, out, name, since)
  local path = name and ("/programs/" .. name .. "/events") or "/events"
  local tries, connected = 0, false
  while not client.interrupted do
    local status, body, ok, err = follow(c, path, "text/event-stream", sse_parser(function(frame)
      local dok, ev = pcall(json.decode, frame.data)
      if dok and type(ev) == "table" and math.tointeger(ev.id) then
        since = math.max(since, ev.id)
        event_line(out, ev)
      end
    end), { ["Last-Event-ID"] = tostring(since) })
    if status and status ~= 200 then refuse(c, status, body, name) end
    if client.interrupted then break end
    connected = connected or status ~= nil
    tries = status and 1 or tries + 1
    if not connected or tries >= RETRIES then c:unreachable(err) end
    if tries == 1 then
      io.stderr:write("hersh: the event stream of the Host at ", c.url, " ended (", ok and "closed" or tostring(err),
        "): resuming after event ", since, "\n")
    end
    if not client.sleep(RETRY) then break end
  end
end

function stream.events(a, c, out)
  local name = a.name and client.check_name(a.name)
  local since = a.since and math.tointeger(tonumber(a.since))
  if a.since and (not since or since < 0) then client.fail(EXIT.usage, "--since wants an event id, not '" .. a.since .. "'") end
  if not a.follow then
    c:each_event(name, since or 0, function(ev) event_line(out, ev) end)
    return EXIT.ok
  end
  client.on_interrupt()
  follow_events(c, out, name, since or 0)
  return EXIT.ok
end

-- One screen of `watch`: the program's state, then its watcher's status, vars and
-- newest log entries, read through the Host's proxy.
local function snapshot(c, name)
  local rec = c:program(name)
  local snap = { program = rec }
  if rec.state == "Ready" then
    for _, part in ipairs { { "status", "/watcher/status" }, { "vars", "/watcher/vars" },
      { "logs", "/watcher/logs?type=effect&limit=10" } } do
      local res = c:raw("GET", "/programs/" .. name .. "/proxy" .. part[2], nil, 5)
      snap[part[1]] = res.status == 200 and res.json or { error = "HTTP " .. res.status .. ": " .. res.body }
    end
  end
  return snap
end

local function show(out, name, snap)
  local rec = snap.program
  if out.colour then io.stdout:write("\27[H\27[2J") end
  out:line(out:paint("1", name) .. "  " .. out:state(rec.state) .. "  " .. tostring(rec.proxy_url)
    .. "  " .. os.date("!%H:%M:%SZ"))
  if rec.state ~= "Ready" then
    if rec.error_msg ~= json.null then out:line("  " .. tostring(rec.error_msg)) end
    return
  end
  local st = snap.status or {}
  out:line("watcher " .. tostring(st.watcherID) .. ": " .. tostring(st.state) .. ", up " .. tostring(st.uptime))
  out:line("vars:")
  local vars = (snap.vars or {}).vars or {}
  local keys = {}
  for k in pairs(vars) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do out:line("  " .. k .. " = " .. tostring(vars[k])) end
  out:line("recent logs:")
  for _, e in ipairs((snap.logs or {}).effectLogs or {}) do
    out:line("  " .. tostring(e.Timestamp) .. " " .. tostring(e.Message))
  end
  io.stdout:flush()
end

function stream.watch(a, c, out)
  local name = client.check_name(a.name)
  local interval = programs.number_option(a, "interval", 1, "seconds")
  local count = a.count and math.tointeger(tonumber(a.count))
  if a.count and (not count or count < 1) then client.fail(EXIT.usage, "--count wants a positive number, not '" .. a.count .. "'") end
  if interval <= 0 then client.fail(EXIT.usage, "--interval wants a positive number of seconds") end
  client.on_interrupt()
  local n = 0
  repeat
    local snap = snapshot(c, name)
    if out.json_mode then out:json(snap) else show(out, name, snap) end
    n = n + 1
  until (count and n >= count) or not client.sleep(interval)
  return EXIT.ok
end

return stream
