-- The subcommands on programs one at a time: ps, inspect, start, stop, restart, rm,
-- send, rollback. Each gets the parsed arguments `a`, a client `c` and an output `out`,
-- and returns an exit code.
local client = require "cli.client"
local EXIT = require("cli.args").EXIT

local programs = {}

-- The events that end a wait for Ready, and for Stopped.
local READY, STOPPED = { ready = true, error = true }, { stopped = true, error = true }
programs.READY = READY
-- The events that end an update in place or a rollback (issue 14, the Host side).
programs.UPDATED = { updated = true, update_failed = true, rolled_back = true, error = true }

local function number_option(a, key, default, what)
  if a[key] == nil then return default end
  local n = tonumber(a[key])
  if not n or n < 0 then client.fail(EXIT.usage, "--" .. key .. " wants " .. what .. ", not '" .. a[key] .. "'") end
  return n
end
programs.number_option = number_option

-- Prints each lifecycle event of a wait on stderr: what a person watches while it works.
function programs.progress(name)
  return function(ev) io.stderr:write(name, ": ", ev.message, "\n") end
end

-- The end of a wait (client:wait_event): 0 and the record when the ending event is
-- not a failure, else 1 and the reason (the event's message, or the state the program
-- was still in at the timeout).
local FAILED = { error = true, update_failed = true }
function programs.outcome(out, name, rec, ending)
  if rec and not FAILED[ending.kind] then
    if out.json_mode then out:json(rec) else out:line(name .. " is " .. out:state(rec.state) .. (rec.state == "Ready" and " at " .. rec.proxy_url or "")) end
    return EXIT.ok
  end
  local why = rec and ending.message or ("still " .. ending.state .. " when the wait ended (--timeout)")
  if out.json_mode then out:json(rec or ending) end
  io.stderr:write("hersh: ", name, " is not ", rec and "Ready" or "done", ": ", why, "\n")
  return EXIT.failed
end

function programs.ps(a, c, out)
  local query = a.state and ("?state=" .. client.check_name(a.state)) or ""
  local doc = c:call("GET", "/programs" .. query)
  if out.json_mode then
    out:json(doc)
    return EXIT.ok
  end
  out:table({
    { "NAME", function(p) return p.name end },
    { "ID", function(p) return p.program_id end },
    { "STATE", function(p) return p.state end, function(o, _, t) return o:state(t) end },
    { "REV", function(p) return p.revision end },
    { "URL", function(p) return p.proxy_url end },
    { "RESTARTS", function(p) return p.restarts end },
    { "UPDATED", function(p) return p.updated_at end },
  }, doc.programs or {})
  return EXIT.ok
end

function programs.inspect(a, c, out)
  local rec = c:program(a.name)
  if out.json_mode then out:json(rec) else out:fields(rec) end
  return EXIT.ok
end

-- POST /programs/NAME/ACTION, then waits for one of `until_states` (timeout 0: no wait).
local function act(a, c, out, action, until_states, default_timeout)
  local timeout = number_option(a, "timeout", default_timeout, "seconds")
  local name = client.check_name(a.name)
  local since = c:each_event(name, 0, function() end)
  c:call("POST", "/programs/" .. name .. "/" .. action, nil, { program = name, what = action .. " " .. name })
  if timeout == 0 then
    local rec = c:program(name)
    if out.json_mode then out:json(rec) else out:line(name .. ": " .. out:state(rec.state)) end
    return EXIT.ok
  end
  local rec, last = c:wait_event(name, until_states, since, timeout, not out.json_mode and programs.progress(name) or nil)
  return programs.outcome(out, name, rec, last)
end

function programs.start(a, c, out) return act(a, c, out, "start", READY, 120) end
function programs.restart(a, c, out) return act(a, c, out, "restart", READY, 120) end
function programs.stop(a, c, out) return act(a, c, out, "stop", STOPPED, 60) end

function programs.rm(a, c, out)
  local name = client.check_name(a.name)
  local doc = c:call("DELETE", "/programs/" .. name .. (a.keep_state and "?keep_state=true" or ""), nil,
    { program = name, what = "rm " .. name })
  if out.json_mode then out:json(doc) else out:line(name .. " deleted") end
  return EXIT.ok
end

function programs.send(a, c, out)
  local name = client.check_name(a.name)
  local res = c:raw("POST", "/programs/" .. name .. "/proxy/watcher/message", { content = a.message })
  if res.status == 404 and type(res.json) == "table" and res.json.code == 404 then
    client.fail(EXIT.not_found, "no program '" .. name .. "' on the Host at " .. c.url .. " (hersh ps lists them)")
  end
  if res.status ~= 200 then
    local doc = type(res.json) == "table" and res.json or {}
    local why = doc.message or doc.error or res.body
    if doc.state then why = why .. " (state " .. doc.state .. ": hersh start " .. name .. ")" end
    client.fail(EXIT.failed, "send to " .. name .. ": HTTP " .. res.status .. ": " .. tostring(why))
  end
  if out.json_mode then out:json(res.json) else out:line("sent to " .. name) end
  return EXIT.ok
end

function programs.rollback(a, c, out)
  local name = client.check_name(a.name)
  local revision = a.revision and math.tointeger(tonumber(a.revision))
  if a.revision and (not revision or revision < 1) then
    client.fail(EXIT.usage, "--revision wants a revision number (1, 2, ...), not '" .. a.revision .. "'")
  end
  local rec = c:program(name)
  if rec.revision == nil then
    client.fail(EXIT.failed, "the Host at " .. c.url .. " keeps no revisions (it predates update in place)")
  end
  revision = revision or (rec.revision > 1 and rec.revision - 1)
  if not revision then client.fail(EXIT.usage, name .. " has only revision 1: nothing to roll back to") end
  local since = c:each_event(name, 0, function() end)
  c:call("POST", "/programs/" .. name .. "/rollback?revision=" .. revision, nil,
    { program = name, what = "rollback " .. name .. " to revision " .. revision })
  local done, last = c:wait_event(name, programs.UPDATED, since, 120, not out.json_mode and programs.progress(name) or nil)
  return programs.outcome(out, name, done, last)
end

return programs
